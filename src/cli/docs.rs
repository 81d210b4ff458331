//! `supermin completions SHELL` and `supermin manpage DIR`: shell completions and manual pages,
//! generated from the same clap definitions that parse the command line ([`super::command`]).
//! The copies shipped in `dist/` are these outputs; `tests/docs.rs` checks they are current.

use std::io::Write;
use std::path::PathBuf;

use clap::{Arg, Command};
use clap_complete::Shell;

use super::args::{self, parse};
use crate::error::{IoContext, Result};

pub(super) fn completions_command() -> Command {
    args::subcommand("completions")
        .about("Print the shell completion script for SHELL (bash, zsh or fish) on standard output.")
        .override_usage("supermin completions bash|zsh|fish")
        .arg(
            Arg::new("shell")
                .required(true)
                .value_parser(clap::value_parser!(Shell))
                .help("The shell to complete for: bash, zsh or fish."),
        )
        .after_help("Example:\n  supermin completions bash > /usr/share/bash-completion/completions/supermin")
}

pub fn completions(argv: &[String]) -> Result<()> {
    let m = parse(completions_command(), argv)?;
    let shell = m.get_one::<Shell>("shell").copied().unwrap_or(Shell::Bash);
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut super::command(), "supermin", &mut script);
    std::io::stdout().write_all(&script).at(std::path::Path::new("standard output"), "cannot write")
}

pub(super) fn manpage_command() -> Command {
    args::subcommand("manpage")
        .about("Write the manual pages (supermin.1 and one page per subcommand) into DIR.")
        .override_usage("supermin manpage DIR")
        .arg(
            Arg::new("dir")
                .required(true)
                .value_parser(clap::value_parser!(PathBuf))
                .help("The directory to write the pages into; it must exist."),
        )
        .after_help("Example:\n  supermin manpage /usr/local/share/man/man1")
}

pub fn manpage(argv: &[String]) -> Result<()> {
    let m = parse(manpage_command(), argv)?;
    let dir = m.get_one::<PathBuf>("dir").cloned().unwrap_or_default();
    clap_mangen::generate_to(super::command(), &dir).at(&dir, "cannot write manual pages")
}
