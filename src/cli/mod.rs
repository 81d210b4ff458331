//! The command line: supermin 5's classic syntax (`classic`), with `supermin prepare|build …`
//! as a spelling of the same flags, and the lazy view's own subcommands (`view`). Argument
//! helpers both share are in `args`; logging setup in `logger`.

use crate::error::Result;

mod args;
mod classic;
mod logger;
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
        _ => classic::run(args),
    }
}
