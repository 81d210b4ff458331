//! `supermin inspect`: parses its arguments and hands typed options to [`crate::inspect`].

use std::path::PathBuf;

use clap::{Arg, Command};

use super::args::{self, flag, parse, root_args, verbose};
use super::logger;
use crate::error::Result;
use crate::inspect::{self, Options};
use crate::mount::Source;

pub(super) fn inspect_command() -> Command {
    args::subcommand("inspect")
        .about("Show what the appliance holds and why: its packages, what pulled each in, and where the bytes go.")
        .override_usage("supermin inspect [--json] [--svg FILE] SUPERMIN.D...|MOUNTPOINT")
        .arg(flag("json", "Print the report as JSON (the schema is in the README)."))
        .arg(
            Arg::new("svg")
                .long("svg")
                .value_name("FILE")
                .value_parser(clap::value_parser!(PathBuf))
                .help("Also draw where the bytes go, one bar per package, into FILE (an SVG picture)."),
        )
        .arg(
            Arg::new("top")
                .long("top")
                .value_name("N")
                .default_value("20")
                .value_parser(clap::value_parser!(usize))
                .help("List the N largest files."),
        )
        .arg(flag("include-packagelist", "Count /packagelist, as --build --include-packagelist would add it."))
        .arg(args::deps())
        .args(root_args())
        .args(verbose())
        .arg(args::sources(
            "SRC",
            "The supermin appliances (supermin.d) to inspect, or the mountpoint of a supermin mount.",
        ))
        .after_help("Example:\n  supermin inspect --svg sizes.svg /usr/lib/x86_64-linux-gnu/guestfs/supermin.d | less")
}

pub fn inspect(argv: &[String]) -> Result<()> {
    let m = parse(inspect_command(), argv)?;
    logger::init(&m);
    let (root, driver) = args::root_and_driver(&m)?;
    let inputs = m.get_many::<PathBuf>("src").map(|v| v.cloned().collect()).unwrap_or_default();
    let source = Source { inputs, root, driver, settings: args::settings(&m) };
    let svg = m.get_one::<PathBuf>("svg").map(|p| args::output_file(p)).transpose()?;
    inspect::inspect(&Options {
        source: source.unmounted()?,
        json: m.get_flag("json"),
        svg,
        top: m.get_one::<usize>("top").copied().unwrap_or(20),
    })
}
