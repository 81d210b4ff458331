//! What the benches share: running a shell line timed, dropping the page cache, medians, and
//! a timed mount. Included with `#[path]`, like `tests/common`.

#![allow(dead_code)] // each bench uses its own part

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{daemon_pid, median, ours, Mounted};

/// Run `script` with `sh -c` (output discarded) and return how long it took; panics if it fails.
pub fn sh(script: &str) -> Duration {
    let start = Instant::now();
    let status = Command::new("sh").arg("-c").arg(script).stdout(Stdio::null()).status().unwrap();
    let t = start.elapsed();
    assert!(status.success(), "{script} failed");
    t
}

/// Write back and drop the page cache, dentries and inodes: the next read is "cold".
pub fn drop_caches() {
    let _ = Command::new("sync").status();
    fs::write("/proc/sys/vm/drop_caches", "3\n").expect("drop_caches needs root");
}

/// The median of `n` runs of `f`.
pub fn times(n: usize, mut f: impl FnMut() -> Duration) -> Duration {
    median((0..n).map(|_| f()).collect())
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// How many runs each figure is the median of: `BENCH_RUNS`, default 3.
pub fn runs() -> usize {
    std::env::var("BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(3)
}

/// `supermin mount --daemon` of `input` at `mp`, and the time until the view answered `ls /`.
pub fn mount_timed(input: &Path, mp: &Path, args: &[&str]) -> (Mounted, Duration) {
    fs::create_dir_all(mp).unwrap();
    let guard = Mounted::new(mp);
    let start = Instant::now();
    let status = ours().arg("mount").arg("--daemon").args(args).arg(input).arg(mp).status().unwrap();
    assert!(status.success(), "mount failed");
    // Ready to use: the mount answered `ls /`.
    let listed = fs::read_dir(mp).unwrap().count();
    let t = start.elapsed();
    assert!(listed > 0);
    // Dropping the guard unmounts and waits for the daemon, as `supermin umount` does.
    (guard.with_daemon(daemon_pid(mp)), t)
}

/// Sequential read of `native` and `view` (the same file), cold then warm: the four medians.
pub fn read_cold_warm(native: &Path, view: &Path, runs: usize) -> (Duration, Duration, Duration, Duration) {
    let read = |p: &Path| format!("dd if={} of=/dev/null bs=1M status=none", p.display());
    let cold = |p: &Path| {
        times(runs, || {
            drop_caches();
            sh(&read(p))
        })
    };
    let (cold_n, cold_v) = (cold(native), cold(view));
    sh(&read(native));
    sh(&read(view));
    let (warm_n, warm_v) = (times(runs, || sh(&read(native))), times(runs, || sh(&read(view))));
    (cold_n, cold_v, warm_n, warm_v)
}
