//! The command line: supermin 5's classic syntax (`classic`), with `supermin prepare|build …`
//! as a spelling of the same flags, and the lazy view's own subcommands (`view`). Argument
//! helpers both share are in `args`; logging setup in `logger`.

use crate::error::Result;

mod args;
mod classic;
mod docs;
mod inspect;
pub mod logger;
mod run;
mod view;

/// The version line; it starts with `supermin ` and the supermin release we are compatible with.
pub const VERSION: &str = concat!("supermin 5.2.2 (supermin-rs ", env!("CARGO_PKG_VERSION"), ")");

/// Run the tool with `args` (without the program name).
pub fn run(args: Vec<String>) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("mount") => view::mount(&args[1..]),
        Some("umount" | "unmount") => view::umount(&args[1..]),
        Some("materialize") => view::materialize(&args[1..]),
        Some("slim") => view::slim(&args[1..]),
        Some("inspect") => inspect::inspect(&args[1..]),
        Some("run") => run::run(&args[1..]),
        Some("serve") => run::serve(&args[1..]),
        Some("completions") => docs::completions(&args[1..]),
        Some("manpage") => docs::manpage(&args[1..]),
        _ => classic::run(args),
    }
}

/// The whole command line as one clap tree, for manual pages and completions: the classic
/// flags at the top, `prepare`/`build` as their spelling as words, then every subcommand.
/// (Parsing goes through each part separately: the classic syntax has positional inputs
/// that a subcommand-aware parser would take for subcommand names.)
pub fn command() -> clap::Command {
    let classic = classic::command();
    let words = |name: &'static str, about: &'static str, example: &'static str| {
        let args = classic.get_arguments().filter(|a| !matches!(a.get_id().as_str(), "prepare" | "build" | "help"));
        args::subcommand(name).about(about).args(args.cloned()).after_help(format!("Example:\n  {example}"))
    };
    let prepare = words(
        "prepare",
        "The same as supermin --prepare: write a supermin appliance (supermin.d).",
        "supermin prepare bash coreutils -o supermin.d",
    );
    let build = words(
        "build",
        "The same as supermin --build: build a full appliance from supermin.d inputs.",
        "supermin build -f chroot supermin.d -o appliance",
    );
    classic
        .override_usage("supermin --prepare|--build [OPTIONS] INPUT... -o OUTPUTDIR\n       supermin COMMAND ...")
        .about("Build tiny Linux appliances from the host's installed packages, or serve them lazily (FUSE).")
        .long_about(
            "supermin builds small Linux appliances (a chroot tree, an ext2 disk image with a kernel and \
             initrd, an initramfs or a tar stream) out of the packages installed on the host. \
             --prepare writes a supermin appliance (supermin.d: a packages list, base tarballs, hostfiles \
             and excludefiles) that stores almost nothing; --build turns it into a full appliance. The \
             subcommands serve the same appliance lazily through FUSE (mount, run), show what is in it \
             (inspect) and slim it down to what a workload uses (mount --trace, slim). The classic \
             command line is supermin 5's, flag for flag.",
        )
        .disable_help_subcommand(true)
        .subcommands([
            prepare,
            build,
            view::mount_command(),
            view::umount_command(),
            view::materialize_command(),
            view::slim_command(),
            inspect::inspect_command(),
            run::run_command(),
            run::serve_command(),
            docs::completions_command(),
            docs::manpage_command(),
        ])
}

#[cfg(test)]
mod tests {
    /// Every option and subcommand is described in a full sentence, and every subcommand's help
    /// ends with an example.
    #[test]
    fn help_texts_are_sentences_with_examples() {
        let mut root = super::command();
        root.build();
        let mut missing = Vec::new();
        for cmd in std::iter::once(&root).chain(root.get_subcommands()) {
            let name = cmd.get_name();
            let about = cmd.get_about().map(|a| a.to_string()).unwrap_or_default();
            if !about.ends_with('.') {
                missing.push(format!("{name}: about {about:?}"));
            }
            let after = cmd.get_after_help().map(|a| a.to_string()).unwrap_or_default();
            if !after.starts_with("Example") {
                missing.push(format!("{name}: no example at the end of --help"));
            }
            for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
                let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
                if !help.ends_with('.') || !help.starts_with(|c: char| c.is_uppercase()) {
                    missing.push(format!("{name} {}: help {help:?}", arg.get_id()));
                }
            }
        }
        assert!(missing.is_empty(), "help texts that are not full sentences:\n{}", missing.join("\n"));
    }
}
