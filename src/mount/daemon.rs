//! `mount --daemon`: serve in a child process, and let the parent exit only once the mount
//! is ready (0) or has failed (1, with the child's message).

use std::fs::File;
use std::io::{Read, Write};

use nix::unistd::ForkResult;

use crate::error::{Error, Result};
use crate::util::sys;

/// The daemon's end of the readiness pipe of [`daemonize`].
pub struct Ready(File);

impl Ready {
    /// The mount is up: let the waiting parent exit 0, and detach from its terminal and pipes.
    pub fn ok(mut self) {
        let _ = self.0.write_all(b"\0");
        detach_stdio();
        // Do not keep the caller's working directory busy (it may be on a filesystem someone
        // wants to unmount); the inputs were resolved already.
        let _ = std::env::set_current_dir("/");
    }

    /// Starting failed: the parent prints `message` and exits 1.
    pub fn fail(mut self, message: &str) {
        let _ = self.0.write_all(message.as_bytes());
    }
}

/// Fork; the parent waits until the child reports readiness and exits (0 when the mount is
/// up, 1 with the child's message otherwise); the child returns its end of the pipe.
/// Must be called before any thread is started (only the calling thread survives a fork).
pub fn daemonize() -> Result<Ready> {
    let cannot = |e: std::io::Error| Error::new(format!("cannot start the mount daemon: {e}"));
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| cannot(e.into()))?;
    match sys::fork().map_err(cannot)? {
        ForkResult::Child => {
            drop(r);
            // A new session leaves the caller's terminal and job control.
            let _ = nix::unistd::setsid();
            Ok(Ready(File::from(w)))
        }
        ForkResult::Parent { .. } => {
            drop(w);
            let mut msg = Vec::new();
            let _ = File::from(r).read_to_end(&mut msg);
            if msg.first() == Some(&0) {
                std::process::exit(0);
            }
            let text = String::from_utf8_lossy(&msg);
            if text.is_empty() {
                eprintln!(
                    "supermin: the mount daemon exited before the mount was ready (run without --daemon to see why)"
                );
            } else {
                eprintln!("supermin: {text}");
            }
            std::process::exit(1);
        }
    }
}

/// Point stdin, stdout and stderr at /dev/null, so whoever started us (a shell's command
/// substitution, a test harness) is not kept waiting on a pipe the daemon still holds.
fn detach_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
        let _ = nix::unistd::dup2_stdin(&null);
        let _ = nix::unistd::dup2_stdout(&null);
        let _ = nix::unistd::dup2_stderr(&null);
    }
}
