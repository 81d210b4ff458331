//! The command line: supermin 5's classic syntax, and `supermin prepare|build …` as a spelling
//! of the same thing for humans. Both go through one parser and one code path.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use clap::{Arg, ArgAction, ArgMatches, Command};

use crate::build::{self, Format};
use crate::error::{Error, IoContext, Result};
use crate::packager::{self, DRIVERS};
use crate::{prepare, sys};

/// The version line; it starts with `supermin ` and the supermin release we are compatible with.
pub const VERSION: &str = concat!("supermin 5.2.2 (supermin-rs ", env!("CARGO_PKG_VERSION"), ")");

const USAGE: &str = "\
supermin - tool for creating supermin appliances
Usage:
  supermin --prepare LIST OF PACKAGES ... -o OUTPUTDIR
  supermin --build -f chroot|ext2 INPUT [INPUT ...] -o OUTPUTDIR
  supermin prepare|build ...      (the same, as subcommands)
  supermin mount [--daemon] SUPERMIN.D... MOUNTPOINT   (a lazy read-only view; see mount --help)
  supermin umount MOUNTPOINT
  supermin materialize SUPERMIN.D|MOUNTPOINT -f chroot|ext2|initramfs -o OUTPUTDIR
  supermin --list-drivers
For full instructions, read the README.

Options:";

fn command() -> Command {
    let flag = |name: &'static str, help: &'static str| Arg::new(name).long(name).action(ArgAction::SetTrue).help(help);
    let value = |name: &'static str, meta: &'static str, help: &'static str| {
        Arg::new(name).long(name).value_name(meta).num_args(1).allow_hyphen_values(true).help(help)
    };
    Command::new("supermin")
        .disable_version_flag(true)
        .disable_help_flag(true)
        .override_usage(USAGE)
        .help_template("{usage}\n{options}")
        .arg(flag("prepare", "Prepare a supermin appliance"))
        .arg(flag("build", "Build a full appliance"))
        .arg(Arg::new("output").short('o').value_name("OUTPUTDIR").num_args(1).help("Set output directory"))
        .arg(value("format", "FORMAT", "Set output format: chroot (fs, filesystem) or ext2").short('f'))
        .arg(flag("copy-kernel", "Copy kernel instead of symlinking to it"))
        .arg(value("host-cpu", "ARCH", "Set host CPU architecture (default: this machine's)"))
        .arg(flag("if-newer", "Only build if needed"))
        .arg(value("lock", "LOCKFILE", "Use a lock file while building"))
        .arg(flag("include-packagelist", "Add a file with the list of packages"))
        .arg(value("packager-config", "CONFIGFILE", "Set alternate package manager configuration file"))
        .arg(flag("use-installed", "Use installed files instead of accessing network"))
        .arg(value("size", "SIZE", "Set the size of the ext2 filesystem"))
        .arg(Arg::new("verbose").short('v').long("verbose").action(ArgAction::Count).help("Enable debugging messages"))
        .arg(Arg::new("version").short('V').long("version").action(ArgAction::SetTrue).help("Display version number and exit"))
        .arg(flag("list-drivers", "Display list of drivers and exit"))
        .args(root_args())
        .arg(flag("names", "Give an error (this flag was for supermin 4)").hide(true))
        .arg(value("dtb", "WILDCARD", "Give an error (removed in supermin 5.1.18)").hide(true))
        .arg(Arg::new("help").long("help").action(ArgAction::SetTrue).help("Display this list of options"))
        .arg(Arg::new("args").num_args(0..).action(ArgAction::Append).value_parser(clap::value_parser!(PathBuf)))
}

/// `--sysroot DIR` and `--packager NAME`: where the packages are installed and which database
/// to read there. Shared by every subcommand that reads packages (a function, so `mount` and
/// `materialize` add the same two arguments).
pub fn root_args() -> [Arg; 2] {
    [
        Arg::new("sysroot")
            .long("sysroot")
            .value_name("DIR")
            .num_args(1)
            .value_parser(clap::value_parser!(PathBuf))
            .help("Read the package database, packages and host files under DIR instead of /"),
        Arg::new("packager")
            .long("packager")
            .value_name("NAME")
            .num_args(1)
            .help("Use this package manager (dpkg, rpm, pacman) instead of detecting it"),
    ]
}

/// The root (`/` or `--sysroot`, made absolute) and its driver, from [`root_args`].
pub fn root_and_driver(m: &ArgMatches) -> Result<(PathBuf, packager::Driver)> {
    let root = sysroot(m)?;
    let driver = match m.get_one::<String>("packager") {
        Some(name) => packager::Driver::from_name(name)?,
        None => packager::Driver::detect(&root)?,
    };
    Ok((root, driver))
}

fn sysroot(m: &ArgMatches) -> Result<PathBuf> {
    let Some(dir) = m.get_one::<PathBuf>("sysroot") else { return Ok(PathBuf::from("/")) };
    // Canonical, so that paths under it can be compared and joined without surprises.
    let root = std::fs::canonicalize(dir).at(dir, "--sysroot")?;
    if !root.is_dir() {
        return Err(Error::new(format!("{}: --sysroot: not a directory", dir.display())));
    }
    Ok(root)
}

/// Run the tool with `args` (without the program name); returns the exit code.
pub fn run(args: Vec<String>) -> Result<()> {
    let mut args = args;
    // The view's commands have their own syntax; everything else is the classic parser.
    if let Some(first) = args.first().cloned() {
        if let Some(result) = crate::mount::run(&first, args[1..].to_vec()) {
            return result;
        }
    }
    // `supermin prepare …` / `supermin build …` are the classic flags spelled as words.
    if let Some(first) = args.first() {
        if first == "prepare" || first == "build" {
            args[0] = format!("--{first}");
        }
    }
    for a in args.iter_mut() {
        if a == "-help" {
            *a = "--help".into();
        }
    }
    let matches = command()
        .try_get_matches_from(std::iter::once("supermin".to_string()).chain(args))
        .map_err(|e| Error::usage(clap_message(&e)))?;
    crate::logger::init(matches.get_count("verbose"));
    dispatch(&matches)
}

/// The original's wording for the two common mistakes; clap's own text otherwise.
fn clap_message(e: &clap::Error) -> String {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let arg = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(s)) => s.split_whitespace().next().unwrap_or("").to_string(),
        _ => String::new(),
    };
    match e.kind() {
        ErrorKind::UnknownArgument => format!("unknown option '{arg}'. (see supermin --help)"),
        ErrorKind::InvalidValue | ErrorKind::NoEquals if !arg.is_empty() => {
            format!("option '{arg}' needs an argument. (see supermin --help)")
        }
        _ => {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("").trim_start_matches("error: ");
            format!("{first} (see supermin --help)")
        }
    }
}

fn dispatch(m: &ArgMatches) -> Result<()> {
    if m.get_flag("version") {
        println!("{VERSION}");
        return Ok(());
    }
    if m.get_flag("help") {
        println!("{}", command().render_help());
        return Ok(());
    }
    if m.get_flag("names") {
        return Err(Error::new(
            "This is supermin version 5. It looks like you are looking for supermin version 4. \
             Supermin 5 does not support the --names option.",
        ));
    }
    if m.get_one::<String>("dtb").is_some() {
        return Err(Error::new("--dtb option was removed in supermin 5.1.18 (device trees are not supported)"));
    }
    if m.get_flag("list-drivers") {
        let root = sysroot(m)?;
        for (system, packager) in DRIVERS {
            let state = if packager::detected(&root, system) { "detected" } else { "not-detected" };
            println!("{system}/{packager}\t{state}");
        }
        return Ok(());
    }

    let prepare = m.get_flag("prepare");
    let build = m.get_flag("build");
    if prepare == build {
        return Err(Error::new("you must use --prepare or --build to select the mode"));
    }
    let format = m.get_one::<String>("format");
    if prepare && format.is_some() {
        return Err(Error::new("cannot use --prepare and --format options together"));
    }
    if build && format.is_none() {
        return Err(Error::new("when using --build, you must specify an output --format"));
    }
    let Some(out) = m.get_one::<String>("output") else {
        return Err(Error::new("output directory (-o option) must be supplied"));
    };
    let size = m.get_one::<String>("size").map(|s| parse_size(s)).transpose()?;
    let tmpdir = tmpdir()?;
    let args: Vec<PathBuf> = m.get_many::<PathBuf>("args").map(|v| v.cloned().collect()).unwrap_or_default();

    let (root, driver) = root_and_driver(m)?;
    // Held until the process exits.
    let _lock = match m.get_one::<String>("lock") {
        Some(path) => Some(take_lock(Path::new(path))?),
        None => None,
    };

    if prepare {
        let names: Vec<String> = args.iter().map(|p| p.to_string_lossy().into_owned()).collect();
        let opts = prepare::Options {
            packages: &names,
            root: &root,
            out: Path::new(out),
            use_installed: m.get_flag("use-installed"),
            tmpdir: &tmpdir,
        };
        let scratch = Scratch::new(&tmpdir)?;
        let pm = driver.open(&root)?;
        return prepare::prepare(pm.as_ref(), &prepare::Options { tmpdir: &scratch.0, ..opts });
    }

    let Some(format) = format else {
        return Err(Error::new("when using --build, you must specify an output --format"));
    };
    let Some(format) = Format::parse(format) else {
        return Err(Error::new(format!("unknown --format option ({format})")));
    };
    let opts = build::Options {
        inputs: args,
        out: PathBuf::from(out),
        format,
        if_newer: m.get_flag("if-newer"),
        include_packagelist: m.get_flag("include-packagelist"),
        copy_kernel: m.get_flag("copy-kernel"),
        host_cpu: m.get_one::<String>("host-cpu").cloned().unwrap_or_else(|| std::env::consts::ARCH.to_string()),
        size,
        root,
    };
    build::build(driver, &opts)
}

/// `--lock FILE`: open (creating it 0644) and take a blocking POSIX lock, before anything else.
fn take_lock(path: &Path) -> Result<std::fs::File> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(path)
        .at(path, "cannot open lock file")?;
    log::debug!("waiting for lock on {}", path.display());
    sys::lockf(&file).at(path, "cannot lock")?;
    Ok(file)
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

/// `$TMPDIR` (default `/var/tmp`), which must be absolute as in the original.
fn tmpdir() -> Result<PathBuf> {
    match std::env::var_os("TMPDIR") {
        Some(t) if !t.is_empty() => {
            let t = PathBuf::from(t);
            if t.is_relative() {
                return Err(Error::new("error: environment variable $TMPDIR must be an absolute path"));
            }
            Ok(t)
        }
        _ => Ok(PathBuf::from("/var/tmp")),
    }
}

/// A private scratch directory in `$TMPDIR`, removed on exit.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tmpdir: &Path) -> Result<Scratch> {
        crate::outdir::create_unique(tmpdir, "supermin", 0o700).map(Scratch)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        crate::outdir::remove_tree(&self.0);
    }
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
