//! Progress bars on stderr, drawn only when it is a terminal and `-q` was not given (so
//! libguestfs's and CI's logs stay as they are). A hidden [`Progress`] costs an atomic add.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Draw bars from now on if stderr is a terminal and not `quiet`.
pub fn enable(quiet: bool) {
    ENABLED.store(!quiet && std::io::stderr().is_terminal(), Ordering::Relaxed);
}

/// One bar over files and their bytes, or over items of work.
pub struct Progress {
    bar: Option<ProgressBar>,
    what: &'static str,
    done: AtomicU64,
    total: u64,
}

impl Progress {
    /// Writing `files` regular files of `bytes` bytes in all: shows files, bytes and the rate.
    pub fn files(what: &'static str, files: u64, bytes: u64) -> Progress {
        let style = "{msg} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} [{wide_bar}]";
        Progress::with(what, files, bytes, style)
    }

    /// Working through `total` items (packages, paths): shows how many are done.
    pub fn items(what: &'static str, total: u64) -> Progress {
        Progress::with(what, total, total, "{msg} [{wide_bar}]")
    }

    fn with(what: &'static str, total: u64, len: u64, template: &str) -> Progress {
        let bar = ENABLED.load(Ordering::Relaxed).then(|| {
            let style = ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar());
            let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
            bar.set_style(style.progress_chars("=> "));
            bar.set_message(format!("{what} 0/{total}"));
            bar
        });
        Progress { bar, what, done: AtomicU64::new(0), total }
    }

    /// One file (of `bytes` bytes) or item done; callable from several threads.
    pub fn inc(&self, bytes: u64) {
        let Some(bar) = &self.bar else { return };
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        bar.inc(bytes);
        if done.is_multiple_of(64) || done == self.total {
            bar.set_message(format!("{} {done}/{}", self.what, self.total));
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
