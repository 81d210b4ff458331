//! The `supermin` binary: parse, run, map errors to the original's messages and exit codes.

fn main() {
    // As process 1 this binary is the mini initrd's /init.
    if std::process::id() == 1 {
        supermin::init::main();
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = supermin::cli::run(args) {
        eprintln!("supermin: {e}");
        std::process::exit(e.exit_code);
    }
}
