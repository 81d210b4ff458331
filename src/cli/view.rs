//! The lazy view's subcommands: `mount`, `umount`, `materialize`. Each parses its own
//! arguments here and hands typed options to [`crate::mount`].

use std::path::PathBuf;

use clap::{Arg, ArgMatches, Command};

use super::args::{self, flag, parse, root_args, verbose};
use super::logger;
use crate::build;
use crate::error::{Error, Result};
use crate::mount::{self, MountOptions, ViewKind};

fn paths(m: &ArgMatches, id: &str) -> Vec<PathBuf> {
    m.get_many::<PathBuf>(id).map(|v| v.cloned().collect()).unwrap_or_default()
}

pub(super) fn mount_command() -> Command {
    args::subcommand("mount")
        .about("Serve the appliance described by SUPERMIN.D... read-only at MOUNTPOINT, resolving files on first use.")
        .override_usage("supermin mount [OPTIONS] SUPERMIN.D... MOUNTPOINT")
        .arg(flag(
            "daemon",
            "Detach once the mount is ready (by default a FUSE view is served in the foreground until unmounted; a \
             kernel view has no process to serve it and returns once mounted either way).",
        ))
        .arg(flag(
            "allow-other",
            "Let other users in; file modes are then enforced by the kernel (default_permissions).",
        ))
        .arg(flag("suid", "Honour set-uid bits, for use as a chroot (the default is nosuid)."))
        .arg(flag("dev", "Honour device nodes, for use as a chroot (the default is nodev)."))
        .arg(flag(
            "passthrough",
            "Hand large host files to the kernel (FUSE passthrough, as root); every open then costs a round trip \
             (by default this is chosen from the appliance's file sizes).",
        ))
        .arg(
            flag("no-passthrough", "Read host files through the daemon, so that opens never reach it.")
                .conflicts_with("passthrough"),
        )
        .arg(flag("include-packagelist", "Add /packagelist, as --build --include-packagelist does."))
        .arg(
            flag(
                "kernel",
                "Mount the view in the kernel, or fail saying why (the default when run as root and the kernel \
                 can): an overlay whose lower layer is an EROFS image of the appliance's metadata and whose data \
                 layer is the host (or --sysroot), so reads go straight to the host files' page cache and no \
                 process serves it. It returns once mounted (as with --daemon); every user may enter, as files' \
                 modes allow (as with --allow-other).",
            )
            .conflicts_with_all(["trace", "passthrough", "no-passthrough", "threads", "fuse"]),
        )
        .arg(flag(
            "fuse",
            "Serve the view over FUSE from this process (the default when not root, with --trace, \
             --passthrough or --threads, or when the kernel cannot have the kernel view).",
        ))
        .arg(Arg::new("trace").long("trace").value_name("FILE").value_parser(clap::value_parser!(PathBuf)).help(
            "Record every path used while mounted, and write the list to FILE when the mount ends (for supermin slim).",
        ))
        .arg(Arg::new("threads").long("threads").value_name("N").value_parser(clap::value_parser!(usize)).help(
            "Serve requests with N threads (the default is one per core). Over FUSE io_uring, when the \
                     kernel offers it, there is one thread per CPU instead.",
        ))
        .arg(args::deps())
        .args(root_args())
        .args(verbose())
        .arg(
            Arg::new("args")
                .num_args(0..)
                .value_name("SUPERMIN.D... MOUNTPOINT")
                .value_parser(clap::value_parser!(PathBuf))
                .help("The supermin appliances to serve, then the empty directory to mount them on."),
        )
        .after_help("Example:\n  supermin mount --daemon /usr/lib/x86_64-linux-gnu/guestfs/supermin.d /mnt/appliance")
}

pub fn mount(argv: &[String]) -> Result<()> {
    let m = parse(mount_command(), argv)?;
    logger::init(&m);
    let mut inputs = paths(&m, "args");
    if inputs.len() < 2 {
        return Err(Error::usage("mount: needs SUPERMIN.D... MOUNTPOINT (see supermin mount --help)"));
    }
    let mountpoint = inputs.pop().unwrap_or_default();
    let passthrough = match (m.get_flag("passthrough"), m.get_flag("no-passthrough")) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    };
    mount::mount(MountOptions {
        inputs,
        mountpoint,
        daemon: m.get_flag("daemon"),
        allow_other: m.get_flag("allow-other"),
        suid: m.get_flag("suid"),
        dev: m.get_flag("dev"),
        passthrough,
        threads: m.get_one::<usize>("threads").copied().unwrap_or(0),
        settings: args::settings(&m),
        root: args::sysroot(&m)?,
        packager: m.get_one::<String>("packager").cloned(),
        trace: m.get_one::<PathBuf>("trace").map(|t| args::output_file(t)).transpose()?,
        view: match (m.get_flag("kernel"), m.get_flag("fuse")) {
            (true, _) => ViewKind::Kernel,
            (_, true) => ViewKind::Fuse,
            _ => ViewKind::Auto,
        },
    })
}

pub(super) fn umount_command() -> Command {
    args::subcommand("umount")
        .about("Unmount a view made by supermin mount, and wait for its daemon to exit.")
        .override_usage("supermin umount MOUNTPOINT")
        .args(verbose())
        .arg(
            Arg::new("mountpoint")
                .required(true)
                .value_parser(clap::value_parser!(PathBuf))
                .help("The directory the view is mounted on."),
        )
        .after_help("Example:\n  supermin umount /mnt/appliance")
}

pub fn umount(argv: &[String]) -> Result<()> {
    let m = parse(umount_command(), argv)?;
    logger::init(&m);
    mount::umount(&m.get_one::<PathBuf>("mountpoint").cloned().unwrap_or_default())
}

pub(super) fn materialize_command() -> Command {
    args::subcommand("materialize")
        .about("Build the appliance for real, as --build does, from SUPERMIN.D... or from a live mount of it.")
        .override_usage("supermin materialize SRC... -f chroot|ext2|initramfs|tar|erofs -o OUTPUT")
        .arg(
            Arg::new("format")
                .short('f')
                .long("format")
                .value_name("FORMAT")
                .required(true)
                .help("Set the output format: chroot, ext2, initramfs, tar or erofs."),
        )
        .arg(
            Arg::new("output")
                .short('o')
                .value_name("OUTPUT")
                .required(true)
                .value_parser(clap::value_parser!(PathBuf))
                .help("Set the output directory (or - for -f tar on standard output)."),
        )
        .arg(flag("include-packagelist", "Add /packagelist (from a mount: only if it was mounted with it)."))
        .arg(flag("copy-kernel", "Copy the kernel instead of symlinking to it (ext2)."))
        .arg(args::force("OUTPUT"))
        .arg(Arg::new("size").long("size").value_name("SIZE").help("Set the size of the ext2 filesystem (e.g. 4G)."))
        .arg(
            Arg::new("host-cpu")
                .long("host-cpu")
                .value_name("ARCH")
                .help("Set the host CPU architecture (the default is this machine's)."),
        )
        .arg(args::deps())
        .arg(args::modules())
        .args(root_args())
        .args(verbose())
        .arg(args::sources(
            "SRC",
            "The supermin appliances (supermin.d) to build, or the mountpoint of a supermin mount.",
        ))
        .after_help("Example:\n  supermin materialize /mnt/appliance -f ext2 -o appliance.d")
}

pub fn materialize(argv: &[String]) -> Result<()> {
    let m = parse(materialize_command(), argv)?;
    logger::init(&m);
    let format = args::format(m.get_one::<String>("format").map_or("", String::as_str))?;
    let (root, driver) = args::root_and_driver(&m)?;
    let opts = build::Options {
        inputs: paths(&m, "src"),
        out: m.get_one::<PathBuf>("output").cloned().unwrap_or_default(),
        format,
        if_newer: false,
        settings: args::settings(&m),
        copy_kernel: m.get_flag("copy-kernel"),
        host_cpu: args::host_cpu(&m),
        size: args::size(&m)?,
        root,
        force: m.get_flag("force"),
        modules: args::modules_choice(&m),
    };
    mount::materialize(opts, driver)
}

pub(super) fn slim_command() -> Command {
    args::subcommand("slim")
        .about(
            "Write a supermin appliance that leaves out every package file the traces (from supermin mount --trace) \
             did not use.",
        )
        .override_usage("supermin slim SUPERMIN.D... --trace FILE... [--keep GLOB]... -o NEW.D")
        .arg(
            Arg::new("trace")
                .long("trace")
                .value_name("FILE")
                .required(true)
                .action(clap::ArgAction::Append)
                .value_parser(clap::value_parser!(PathBuf))
                .help("Use a trace written by supermin mount --trace; repeat it for several workloads to keep their union."),
        )
        .arg(
            Arg::new("keep")
                .long("keep")
                .value_name("GLOB")
                .action(clap::ArgAction::Append)
                .help("Keep the package files this fnmatch pattern matches, used or not (e.g. '/usr/lib/locale/*')."),
        )
        .arg(
            Arg::new("output")
                .short('o')
                .value_name("NEW.D")
                .required(true)
                .value_parser(clap::value_parser!(PathBuf))
                .help("Write the slimmed supermin appliance to this directory."),
        )
        .arg(args::force("NEW.D"))
        .arg(args::deps())
        .args(root_args())
        .args(verbose())
        .arg(args::sources("SUPERMIN.D", "The supermin appliances the traces were recorded on."))
        .after_help(
            "Example:\n  supermin mount --daemon --trace sort.trace app.d /mnt/app\n  \
             chroot /mnt/app sort --version; supermin umount /mnt/app\n  \
             supermin slim app.d --trace sort.trace -o slim.d",
        )
}

pub fn slim(argv: &[String]) -> Result<()> {
    let m = parse(slim_command(), argv)?;
    logger::init(&m);
    let (root, driver) = args::root_and_driver(&m)?;
    let opts = crate::slim::Options {
        inputs: paths(&m, "src"),
        traces: paths(&m, "trace"),
        keep: m.get_many::<String>("keep").map(|v| v.cloned().collect()).unwrap_or_default(),
        out: m.get_one::<PathBuf>("output").cloned().unwrap_or_default(),
        root,
        force: m.get_flag("force"),
    };
    crate::slim::slim(driver, &opts)
}
