//! supermin 5's command line, flag for flag: `--prepare`/`--build` and their options, with
//! `supermin prepare|build …` as a spelling of the same flags (one parser, one code path).
//! Errors use the original's wording where scripts may match it.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use clap::{Arg, ArgAction, ArgMatches, Command};

use super::args::{self, flag, root_args, value, verbose};
use super::{logger, VERSION};
use crate::bail;
use crate::build;
use crate::error::{Error, IoContext, Result};
use crate::packager::{self, DRIVERS};
use crate::prepare;
use crate::util::sys;

const USAGE: &str = "\
supermin - tool for creating supermin appliances
Usage:
  supermin --prepare LIST OF PACKAGES ... -o OUTPUTDIR
  supermin --build -f chroot|ext2 INPUT [INPUT ...] -o OUTPUTDIR
  supermin --build -f initramfs|tar|erofs INPUT [INPUT ...] -o OUTPUTDIR   (-f tar -o - : to stdout)
  supermin prepare|build ...      (the same, as subcommands)
  supermin mount [--daemon] SUPERMIN.D... MOUNTPOINT   (a lazy read-only view; see mount --help)
  supermin umount MOUNTPOINT
  supermin slim SUPERMIN.D... --trace FILE... -o NEW.D   (see slim --help; traces from mount --trace)
  supermin materialize SUPERMIN.D|MOUNTPOINT -f chroot|ext2|initramfs|tar|erofs -o OUTPUTDIR
  supermin inspect [--json] [--svg FILE] SUPERMIN.D...   (what is in the appliance, and why)
  supermin run [--writable] SUPERMIN.D... [-- CMD...]   (a shell or CMD inside the appliance)
  supermin completions bash|zsh|fish   /   supermin manpage DIR
  supermin --list-drivers
For full instructions, read the README and man supermin.

Options:";

const EXAMPLES: &str = "\
Examples:
  supermin --prepare bash coreutils -o supermin.d
  supermin --build -f ext2 supermin.d -o appliance.d";

pub(super) fn command() -> Command {
    Command::new("supermin")
        .disable_version_flag(true)
        .disable_help_flag(true)
        .override_usage(USAGE)
        .help_template("{usage}\n{options}{after-help}")
        .after_help(EXAMPLES)
        .arg(flag("prepare", "Prepare a supermin appliance."))
        .arg(flag("build", "Build a full appliance."))
        .arg(Arg::new("output").short('o').value_name("OUTPUTDIR").num_args(1).help("Set the output directory."))
        .arg(
            value("format", "FORMAT", "Set the output format: chroot (or fs, filesystem), ext2, initramfs, tar or erofs (a kernel view's metadata image).")
                .short('f'),
        )
        .arg(flag("copy-kernel", "Copy the kernel instead of symlinking to it."))
        .arg(value("host-cpu", "ARCH", "Set the host CPU architecture (the default is this machine's)."))
        .arg(flag("if-newer", "Only build if the output is older than its inputs."))
        .arg(args::force("OUTPUTDIR"))
        .arg(value("lock", "LOCKFILE", "Hold a lock on LOCKFILE while building."))
        .arg(flag("include-packagelist", "Add a file with the list of packages (/packagelist)."))
        .arg(value("packager-config", "CONFIGFILE", "Set an alternate package manager configuration file."))
        .arg(flag("use-installed", "Use installed files instead of accessing the network."))
        .arg(value("size", "SIZE", "Set the size of the ext2 filesystem (e.g. 4G)."))
        .args(verbose())
        .arg(
            Arg::new("version")
                .short('V')
                .long("version")
                .action(ArgAction::SetTrue)
                .help("Display the version number and exit."),
        )
        .arg(flag("list-drivers", "Display the list of drivers and exit."))
        .arg(args::deps())
        .arg(args::modules())
        .args(root_args())
        .arg(flag("names", "Give an error (this flag was for supermin 4).").hide(true))
        .arg(value("dtb", "WILDCARD", "Give an error (this option was removed in supermin 5.1.18).").hide(true))
        .arg(Arg::new("help").long("help").action(ArgAction::SetTrue).help("Display this list of options."))
        .arg(
            Arg::new("args")
                .num_args(0..)
                .action(ArgAction::Append)
                .value_name("INPUT")
                .value_parser(clap::value_parser!(PathBuf))
                .help("With --prepare, the packages to include; with --build, the supermin appliances to build."),
        )
}

/// Run the classic command line (`args` without the program name).
pub fn run(mut args: Vec<String>) -> Result<()> {
    // `supermin prepare …` / `supermin build …` are the classic flags spelled as words.
    if let Some(first) = args.first_mut() {
        if first == "prepare" || first == "build" {
            *first = format!("--{first}");
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
    logger::init(&matches);
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
    refuse_removed_options(m)?;
    if m.get_flag("list-drivers") {
        return list_drivers(m);
    }
    let prepare = m.get_flag("prepare");
    if prepare == m.get_flag("build") {
        bail!("you must use --prepare or --build to select the mode");
    }
    let format = m.get_one::<String>("format");
    match (prepare, format) {
        (true, Some(_)) => bail!("cannot use --prepare and --format options together"),
        (false, None) => bail!("when using --build, you must specify an output --format"),
        _ => {}
    }
    let Some(out) = m.get_one::<String>("output") else {
        bail!("output directory (-o option) must be supplied");
    };
    let size = args::size(m)?;
    let tmpdir = tmpdir()?;
    let (root, driver) = args::root_and_driver(m)?;
    // Held until the process exits.
    let _lock = m.get_one::<String>("lock").map(|path| take_lock(Path::new(path))).transpose()?;
    let inputs: Vec<PathBuf> = m.get_many::<PathBuf>("args").map(|v| v.cloned().collect()).unwrap_or_default();
    if prepare {
        let names: Vec<String> = inputs.iter().map(|p| p.to_string_lossy().into_owned()).collect();
        let opts = prepare::Options {
            packages: &names,
            root: &root,
            out: Path::new(out),
            use_installed: m.get_flag("use-installed"),
            force: m.get_flag("force"),
            tmpdir: &tmpdir,
        };
        return prepare::prepare(driver.open(&root)?.as_ref(), &opts);
    }
    let opts = build::Options {
        inputs,
        out: PathBuf::from(out),
        format: args::format(format.map_or("", String::as_str))?,
        if_newer: m.get_flag("if-newer"),
        settings: args::settings(m),
        copy_kernel: m.get_flag("copy-kernel"),
        host_cpu: args::host_cpu(m),
        size,
        root,
        force: m.get_flag("force"),
        modules: args::modules_choice(m),
    };
    build::build(driver, &opts)
}

/// Options of older supermins, refused with the original's words.
fn refuse_removed_options(m: &ArgMatches) -> Result<()> {
    if m.get_flag("names") {
        bail!(
            "This is supermin version 5. It looks like you are looking for supermin version 4. \
             Supermin 5 does not support the --names option."
        );
    }
    if m.get_one::<String>("dtb").is_some() {
        bail!("--dtb option was removed in supermin 5.1.18 (device trees are not supported)");
    }
    Ok(())
}

/// `--list-drivers`: each driver of the original, and whether it is detected here.
fn list_drivers(m: &ArgMatches) -> Result<()> {
    let root = args::sysroot(m)?;
    for (system, packager) in DRIVERS {
        let state = if packager::detected(&root, system) { "detected" } else { "not-detected" };
        println!("{system}/{packager}\t{state}");
    }
    Ok(())
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
    sys::lock(&file).at(path, "cannot lock")?;
    Ok(file)
}

/// `$TMPDIR` (default `/var/tmp`), which must be absolute as in the original.
fn tmpdir() -> Result<PathBuf> {
    match std::env::var_os("TMPDIR") {
        Some(t) if !t.is_empty() => {
            let t = PathBuf::from(t);
            if t.is_relative() {
                bail!("error: environment variable $TMPDIR must be an absolute path");
            }
            Ok(t)
        }
        _ => Ok(PathBuf::from("/var/tmp")),
    }
}
