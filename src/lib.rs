//! supermin-rs: a supermin-5-compatible appliance builder with a lazy FUSE view.
//!
//! See ARCHITECTURE.md for the map. The pipeline, one folder per stage: `inputs` reads a
//! supermin appliance, `packager` answers package questions (dpkg, rpm, pacman) with `host`
//! as the one door to host files, `resolve` turns both into one `manifest`, and either an
//! `output` writer (with `boot` for bootable formats) or the `view` served by `mount` turns
//! the manifest into an appliance. `build` and `prepare` are the engines behind the command
//! line (`cli`); `util` is plumbing. Only `util::sys` may use `unsafe`.

#![deny(unsafe_code)]

mod boot;
mod build;
mod cli;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod host;
mod inputs;
mod inspect;
mod manifest;
mod mount;
mod output;
pub mod packager;
mod prepare;
mod resolve;
mod run;
mod slim;
mod trace;
mod util;
mod view;

/// The `supermin` program: as process 1 the mini initrd's `/init` (or `run`'s namespace
/// init), otherwise the command line.
/// Errors are printed as `supermin: <message>` with the original's exit codes.
pub fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `supermin run`'s namespace init is process 1 too, but is told so by its arguments.
    // Its first argument is the log level of the `supermin run` that started it.
    if args.first().map(String::as_str) == Some(run::init::COMMAND) {
        cli::logger::install(args.get(1).and_then(|l| l.parse().ok()).unwrap_or(log::LevelFilter::Warn));
        run::init::main(args.get(2..).unwrap_or_default());
    }
    if std::process::id() == 1 {
        if run::vm::guest::is_vm() {
            run::vm::guest::main();
        }
        boot::init::main();
    }
    util::sys::die_on_broken_pipe();
    if let Err(e) = cli::run(args) {
        eprintln!("supermin: {e}");
        std::process::exit(e.exit_code);
    }
}

/// For `benches/rpmdb.rs`: resolve `inputs` against the package database of `root` (as
/// `--sysroot` would) up to the manifest; returns the packages of the closure and the
/// entries of the appliance.
pub fn resolve_appliance(inputs: &[std::path::PathBuf], root: &std::path::Path) -> Result<(usize, usize), String> {
    let pm = packager::Driver::detect(root).and_then(|d| d.open(root)).map_err(|e| e.to_string())?;
    let resolved =
        build::resolve_inputs(pm.as_ref(), inputs, root, Default::default(), None).map_err(|e| e.to_string())?;
    let mut entries = 0;
    resolved.manifest.walk(|_, _| entries += 1);
    Ok((resolved.packages.len(), entries))
}
