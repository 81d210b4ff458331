//! `supermin run`: parses its arguments and hands typed options to [`crate::run`].

use std::path::PathBuf;

use clap::{Arg, ArgAction, Command};

use super::args::{self, flag, parse, root_args, verbose};
use super::logger;
use crate::bail;
use crate::error::{IoContext, Result};
use crate::mount::{MountOptions, ViewKind};
use crate::run::{self, Options};

pub(super) fn run_command() -> Command {
    args::subcommand("run")
        .about(
            "Run a command (by default the appliance's shell) inside the appliance, served lazily in a private \
             mount namespace; nothing stays mounted afterwards.",
        )
        .override_usage("supermin run [--writable] [--bind HOST:GUEST]... SUPERMIN.D... [-- CMD [ARG]...]")
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
    let mount = MountOptions {
        inputs: m.get_many::<PathBuf>("src").map(|v| v.cloned().collect()).unwrap_or_default(),
        mountpoint: PathBuf::new(),
        daemon: false,
        allow_other: true,
        suid: true,
        dev: false,
        passthrough: None,
        threads: 0,
        settings: args::settings(&m),
        root: args::sysroot(&m)?,
        packager: m.get_one::<String>("packager").cloned(),
        trace: None,
        view: ViewKind::Auto,
    };
    let command = m.get_many::<String>("command").map(|v| v.cloned().collect()).unwrap_or_default();
    let code = run::run(Options { mount, writable: m.get_flag("writable"), binds, command })?;
    std::process::exit(code)
}
