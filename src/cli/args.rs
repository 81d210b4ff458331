//! Argument definitions and conversions shared by the classic parser and the subcommands.

use std::path::{Path, PathBuf};

use clap::{Arg, ArgAction, ArgMatches, Command};

use crate::bail;
use crate::error::{Error, IoContext, Result};
use crate::packager::Driver;
use crate::resolve::{Deps, Settings};

/// A subcommand whose `-h`/`--help` text is a sentence like every other option's.
pub fn subcommand(name: &'static str) -> Command {
    Command::new(name)
        .disable_help_flag(true)
        .arg(Arg::new("help").short('h').long("help").action(ArgAction::Help).help("Print this help, with an example."))
}

pub fn flag(name: &'static str, help: &'static str) -> Arg {
    Arg::new(name).long(name).action(ArgAction::SetTrue).help(help)
}

/// `--NAME VALUE`; a value may start with `-` (as the original's parser allows).
pub fn value(name: &'static str, meta: &'static str, help: &'static str) -> Arg {
    Arg::new(name).long(name).value_name(meta).num_args(1).allow_hyphen_values(true).help(help)
}

/// `--force`, for a command whose output is named `meta` in its usage.
pub fn force(meta: &str) -> Arg {
    let help = format!("Replace {meta} even if it is not empty and not an earlier output (its contents are deleted).");
    Arg::new("force").long("force").action(ArgAction::SetTrue).help(help)
}

/// `-v` (repeatable) and `-q`.
pub fn verbose() -> [Arg; 2] {
    [
        Arg::new("verbose")
            .short('v')
            .long("verbose")
            .action(ArgAction::Count)
            .help("Print what is being done; repeat for more detail (-vv, -vvv)."),
        Arg::new("quiet")
            .short('q')
            .long("quiet")
            .action(ArgAction::SetTrue)
            .conflicts_with("verbose")
            .help("Print nothing but errors: no warnings and no progress bars."),
    ]
}

/// The positional supermin appliances (`SRC...`, at least one), described by `help`.
pub fn sources(name: &'static str, help: &'static str) -> Arg {
    Arg::new("src").num_args(1..).required(true).value_name(name).value_parser(clap::value_parser!(PathBuf)).help(help)
}

/// `--deps all|supermin`: which dependency closure to take.
pub fn deps() -> Arg {
    Arg::new("deps").long("deps").value_name("all|supermin").value_parser(["all", "supermin"]).help(
        "Take every installed dependency (all, the default), or exactly the original supermin's closure \
             (supermin: it loses later alternatives, virtual packages and arch-qualified names).",
    )
}

/// `--modules vm|all`: which kernel modules a bootable appliance carries.
pub fn modules() -> Arg {
    Arg::new("modules").long("modules").value_name("vm|all").value_parser(["vm", "all"]).help(
        "Which kernel modules -f ext2 and -f initramfs carry: vm, those an appliance in a virtual machine can \
             need (filesystems, block, md and device-mapper, crypto, virtio, emulated disks, network core; the \
             default for initramfs, which must fit in the VM's memory), or all, the whole modules directory (the \
             default for ext2, as the original supermin).",
    )
}

/// `--modules`, if given.
pub fn modules_choice(m: &ArgMatches) -> Option<crate::boot::modules::Modules> {
    m.get_one::<String>("modules").and_then(|s| crate::boot::modules::Modules::parse(s))
}

/// `--include-packagelist` (when the command has it) and `--deps`.
pub fn settings(m: &ArgMatches) -> Settings {
    let include_packagelist = m.try_get_one::<bool>("include-packagelist").ok().flatten().copied().unwrap_or(false);
    let deps = match m.get_one::<String>("deps").map(String::as_str) {
        Some("supermin") => Deps::Supermin,
        _ => Deps::All,
    };
    Settings { include_packagelist, deps }
}

/// `--sysroot DIR` and `--packager NAME`: where the packages are installed and which database
/// to read there, for every command that reads packages.
pub fn root_args() -> [Arg; 2] {
    [
        Arg::new("sysroot")
            .long("sysroot")
            .value_name("DIR")
            .num_args(1)
            .value_parser(clap::value_parser!(PathBuf))
            .help("Read the package database, packages and host files under DIR instead of /."),
        Arg::new("packager")
            .long("packager")
            .value_name("NAME")
            .num_args(1)
            .help("Use this package manager (dpkg, rpm or pacman) instead of detecting it."),
    ]
}

/// The root (`/` or `--sysroot`, made absolute) and its driver, from [`root_args`].
pub fn root_and_driver(m: &ArgMatches) -> Result<(PathBuf, Driver)> {
    let root = sysroot(m)?;
    let driver = match m.get_one::<String>("packager") {
        Some(name) => Driver::from_name(name)?,
        None => Driver::detect(&root)?,
    };
    Ok((root, driver))
}

/// `--sysroot`, canonical (so that paths under it can be compared and joined without
/// surprises), or `/`.
pub fn sysroot(m: &ArgMatches) -> Result<PathBuf> {
    let Some(dir) = m.get_one::<PathBuf>("sysroot") else { return Ok(PathBuf::from("/")) };
    let root = std::fs::canonicalize(dir).at(dir, "--sysroot")?;
    if !root.is_dir() {
        bail!("{}: --sysroot: not a directory", dir.display());
    }
    Ok(root)
}

/// `--host-cpu`, by default this machine's.
pub fn host_cpu(m: &ArgMatches) -> String {
    m.get_one::<String>("host-cpu").cloned().unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// `--size`, if given.
pub fn size(m: &ArgMatches) -> Result<Option<u64>> {
    m.get_one::<String>("size").map(|s| parse_size(s)).transpose()
}

/// `-f`: one of the formats.
pub fn format(name: &str) -> Result<crate::output::Format> {
    crate::output::Format::parse(name).ok_or_else(|| {
        Error::new(format!(
            "unknown --format option ({name}): use -f chroot, -f ext2, -f initramfs, -f tar or -f erofs"
        ))
    })
}

/// A file to be written later (from another directory: a daemon works from `/`), made
/// absolute now, its directory checked now.
pub fn output_file(path: &Path) -> Result<PathBuf> {
    let abs = std::path::absolute(path).at(path, "cannot use")?;
    match abs.parent() {
        Some(dir) if dir.is_dir() => Ok(abs),
        _ => bail!("{}: its directory does not exist (create it first)", path.display()),
    }
}

/// `--size`: `^[.0-9]+[bKMG]$`, a decimal number of bytes, KiB, MiB or GiB.
pub fn parse_size(s: &str) -> Result<u64> {
    let bad = || Error::new(format!("cannot parse size field '{s}'"));
    let (num, unit) = s.split_at(s.len().checked_sub(1).ok_or_else(bad)?);
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(bad());
    }
    let n: f64 = num.parse().map_err(|_| bad())?;
    let mult = match unit {
        "b" => 1.0,
        "K" => 1024.0,
        "M" => 1024.0 * 1024.0,
        "G" => 1024.0 * 1024.0 * 1024.0,
        _ => return Err(bad()),
    };
    Ok((n * mult) as u64)
}

/// Parse a subcommand's arguments: `--help` prints and exits 0; a mistake is one line, exit 2.
pub fn parse(cmd: Command, args: &[String]) -> Result<ArgMatches> {
    let name = cmd.get_name().to_string();
    cmd.try_get_matches_from(std::iter::once(name.clone()).chain(args.iter().cloned())).map_err(|e| {
        if matches!(e.kind(), clap::error::ErrorKind::DisplayHelp) {
            print!("{e}");
            std::process::exit(0);
        }
        // clap's first paragraph, on one line (it names missing arguments on the next lines).
        let text = e.to_string();
        let first: Vec<&str> = text.lines().take_while(|l| !l.trim().is_empty()).map(str::trim).collect();
        let first = first.join(" ").trim_start_matches("error: ").to_string();
        Error::usage(format!("{name}: {first} (see supermin {name} --help)"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4G").unwrap(), 4 << 30);
        assert_eq!(parse_size("1.5M").unwrap(), 3 << 19);
        assert_eq!(parse_size("512b").unwrap(), 512);
        for bad in ["", "G", "4", "4T", "-1G", "1e3M"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
