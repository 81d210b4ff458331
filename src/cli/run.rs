//! `supermin run` and `supermin serve`: parse their arguments and hand typed options to
//! [`crate::run`] and [`crate::run::vm`].

use std::path::PathBuf;

use clap::{Arg, ArgAction, ArgMatches, Command};

use super::args::{self, flag, parse, root_args, verbose};
use super::logger;
use crate::bail;
use crate::error::{IoContext, Result};
use crate::mount::{MountOptions, ViewKind};
use crate::run::vm::{Accel, VmOptions};
use crate::run::{self, Options};

pub(super) fn run_command() -> Command {
    args::subcommand("run")
        .about(
            "Run a command (by default the appliance's shell) inside the appliance, served lazily in a private \
             mount namespace; nothing stays mounted afterwards.",
        )
        .override_usage(
            "supermin run [--vm [--accel auto|kvm|tcg] [--memory MIB] [--cpus N] [--kernel FILE] [--trace FILE]] \
             [--writable] [--bind HOST:GUEST]... SUPERMIN.D... [-- CMD [ARG]...]",
        )
        .arg(flag(
            "writable",
            "Put a writable layer (in memory) over the appliance, so that the command can change files; the changes \
             are dropped at the end.",
        ))
        .arg(
            Arg::new("bind")
                .long("bind")
                .value_name("HOST:GUEST")
                .action(ArgAction::Append)
                .help("Make the host directory or file HOST appear at GUEST inside the appliance (repeatable)."),
        )
        .arg(flag(
            "vm",
            "Boot the appliance in a VM (qemu) whose root is the view, served over virtio-fs by this process: \
             nothing is built and root is not needed. The command's output and exit status are its own.",
        ))
        .args(vm_args())
        .arg(args::deps())
        .args(root_args())
        .args(verbose())
        .arg(args::sources("SUPERMIN.D", "The supermin appliances to run in."))
        .arg(
            Arg::new("command")
                .num_args(0..)
                .last(true)
                .value_name("CMD")
                .help("The command to run and its arguments, after --; the default is /bin/bash or /bin/sh."),
        )
        .after_help("Example:\n  supermin run --writable examples/supermin.d -- /bin/bash -c 'echo hello > /etc/motd; cat /etc/motd'")
}

/// `--vm`'s own options.
fn vm_args() -> Vec<Arg> {
    let vm = |a: Arg| a.requires("vm");
    vec![
        vm(Arg::new("accel").long("accel").value_name("auto|kvm|tcg").value_parser(["auto", "kvm", "tcg"]).help(
            "The accelerator: KVM when it really works (auto, the default: a probe guest must run on it), else TCG \
             emulation.",
        )),
        vm(Arg::new("memory")
            .long("memory")
            .value_name("MIB")
            .value_parser(clap::value_parser!(u64))
            .help("The guest's memory in MiB (default 1024).")),
        vm(Arg::new("cpus")
            .long("cpus")
            .value_name("N")
            .value_parser(clap::value_parser!(u32))
            .help("The guest's CPUs (default 1).")),
        vm(Arg::new("kernel")
            .long("kernel")
            .value_name("FILE")
            .value_parser(clap::value_parser!(PathBuf))
            .help("The kernel to boot (its modules from /lib/modules/VERSION); the default is the one -f ext2 picks.")),
        vm(Arg::new("trace")
            .long("trace")
            .value_name("FILE")
            .value_parser(clap::value_parser!(PathBuf))
            .help("Record every path the guest used, written to FILE when it ends (for supermin slim).")),
    ]
}

pub fn run(argv: &[String]) -> Result<()> {
    let m = parse(run_command(), argv)?;
    logger::init(&m);
    let mut binds = Vec::new();
    for spec in m.get_many::<String>("bind").into_iter().flatten() {
        let Some((host, guest)) = spec.split_once(':') else {
            bail!("run: --bind {spec}: expected HOST:GUEST (e.g. --bind /srv/data:/data)");
        };
        if !guest.starts_with('/') {
            bail!("run: --bind {spec}: GUEST must be an absolute path inside the appliance");
        }
        let host = std::fs::canonicalize(host).at(std::path::Path::new(host), "--bind")?;
        binds.push((host, PathBuf::from(guest)));
    }
    let mount = MountOptions { allow_other: true, suid: true, view: ViewKind::Auto, ..view_options(&m)? };
    let command = m.get_many::<String>("command").map(|v| v.cloned().collect()).unwrap_or_default();
    let opts = Options { mount, writable: m.get_flag("writable"), binds, command };
    let code = if m.get_flag("vm") {
        let accel = match m.get_one::<String>("accel").map(String::as_str) {
            Some("kvm") => Accel::Kvm,
            Some("tcg") => Accel::Tcg,
            _ => Accel::Auto,
        };
        let vm = VmOptions {
            accel,
            memory_mib: m.get_one::<u64>("memory").copied().unwrap_or(1024),
            cpus: m.get_one::<u32>("cpus").copied().unwrap_or(1),
            kernel: m.get_one::<PathBuf>("kernel").cloned(),
        };
        run::vm::run(&opts, &vm)?
    } else {
        run::run(opts)?
    };
    std::process::exit(code)
}

pub(super) fn serve_command() -> Command {
    args::subcommand("serve")
        .about(
            "Serve the appliance as a virtio-fs device over vhost-user at SOCKET, for a qemu or libvirt started by \
             someone else; it returns when that VM disconnects.",
        )
        .override_usage("supermin serve --vhost-user SOCKET [--trace FILE] SUPERMIN.D...")
        .arg(
            Arg::new("vhost-user")
                .long("vhost-user")
                .required(true)
                .value_name("SOCKET")
                .value_parser(clap::value_parser!(PathBuf))
                .help(
                    "The Unix socket to listen on (it must not exist); the VM's vhost-user-fs device connects to it.",
                ),
        )
        .arg(
            Arg::new("trace")
                .long("trace")
                .value_name("FILE")
                .value_parser(clap::value_parser!(PathBuf))
                .help("Record every path the VM used, written to FILE when it disconnects (for supermin slim)."),
        )
        .arg(args::deps())
        .args(root_args())
        .args(verbose())
        .arg(args::sources("SUPERMIN.D", "The supermin appliances to serve."))
        .after_help(
            "Example:\n  supermin serve --vhost-user /run/app.sock supermin.d &\n  qemu-system-x86_64 -m 1G -object \
             memory-backend-memfd,id=mem,size=1G,share=on -numa node,memdev=mem -chardev \
             socket,id=vfs,path=/run/app.sock -device vhost-user-fs-pci,chardev=vfs,tag=root ...",
        )
}

pub fn serve(argv: &[String]) -> Result<()> {
    let m = parse(serve_command(), argv)?;
    logger::init(&m);
    let mount = view_options(&m)?;
    let socket = m.get_one::<PathBuf>("vhost-user").cloned().unwrap_or_default();
    run::vm::serve(&mount, &socket)
}

/// The view `run` and `serve` resolve (served by this process, read-only, no special files):
/// the sources, `--sysroot`, `--packager`, `--deps` and `--trace`.
fn view_options(m: &ArgMatches) -> Result<MountOptions> {
    Ok(MountOptions {
        inputs: m.get_many::<PathBuf>("src").map(|v| v.cloned().collect()).unwrap_or_default(),
        mountpoint: PathBuf::new(),
        daemon: false,
        allow_other: false,
        suid: false,
        dev: false,
        passthrough: None,
        threads: 0,
        settings: args::settings(m),
        root: args::sysroot(m)?,
        packager: m.get_one::<String>("packager").cloned(),
        trace: m.get_one::<PathBuf>("trace").map(|t| args::output_file(t)).transpose()?,
        view: ViewKind::Fuse,
    })
}
