//! One error type for the whole tool.
//!
//! Every failure the user can see is a single line: what failed, the file it concerns and, where
//! we know it, what to do next. The binary prints it as `supermin: <message>` and exits 1, the
//! way the original does for everything but command-line mistakes (exit 2).

use std::fmt;
use std::io;
use std::path::Path;

#[derive(Debug)]
pub struct Error {
    message: String,
    /// Process exit code the binary should use: 1 for failures, 2 for usage errors.
    pub exit_code: i32,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(message: impl Into<String>) -> Error {
        Error { message: message.into(), exit_code: 1 }
    }

    /// A command-line mistake: exit code 2, as OCaml's `Arg` module gives in the original.
    pub fn usage(message: impl Into<String>) -> Error {
        Error { message: message.into(), exit_code: 2 }
    }

    /// `<path>: <what we were doing>: <os error>`.
    pub fn io(path: &Path, doing: &str, err: io::Error) -> Error {
        let mut message = format!("{}: {}: {}", path.display(), doing, strerror(&err));
        if let Some(hint) = hint_for(&err) {
            message.push_str(" (");
            message.push_str(hint);
            message.push(')');
        }
        Error::new(message)
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

/// The OS error text without Rust's " (os error N)" suffix, which users of the C tools never see.
pub fn strerror(err: &io::Error) -> String {
    let text = err.to_string();
    match text.find(" (os error") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

fn hint_for(err: &io::Error) -> Option<&'static str> {
    match err.raw_os_error() {
        Some(libc::ENOSPC) => Some("free some space or choose another output directory"),
        Some(libc::EACCES) | Some(libc::EPERM) => Some("run as root or fix the permissions"),
        Some(libc::EROFS) => Some("the output must be on a writable filesystem"),
        _ => None,
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// Attach a path and an activity to an `io::Result`.
pub trait IoContext<T> {
    fn at(self, path: &Path, doing: &str) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: &Path, doing: &str) -> Result<T> {
        self.map_err(|e| Error::io(path, doing, e))
    }
}

/// `bail!("...")` returns an `Error::new(format!(...))`.
#[macro_export]
macro_rules! bail {
    ($($arg:tt)*) => { return Err($crate::error::Error::new(format!($($arg)*))) };
}
