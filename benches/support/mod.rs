//! What the benches share: running a shell line timed, dropping the page cache, medians, and
//! a timed mount. Included with `#[path]`, like `tests/common`.

#![allow(dead_code)] // each bench uses its own part

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{daemon_pid, median, ours, Mounted, LIBGUESTFS_APPLIANCE, ORACLE};

pub mod table;

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

/// `supermin mount --fuse --daemon` of `input` at `mp`, and the time until the view answered `ls /`.
pub fn mount_timed(input: &Path, mp: &Path, args: &[&str]) -> (Mounted, Duration) {
    fs::create_dir_all(mp).unwrap();
    let guard = Mounted::new(mp);
    let start = Instant::now();
    let status = ours().args(["mount", "--fuse", "--daemon"]).args(args).arg(input).arg(mp).status().unwrap();
    assert!(status.success(), "mount failed");
    // Ready to use: the mount answered `ls /`.
    let listed = fs::read_dir(mp).unwrap().count();
    let t = start.elapsed();
    assert!(listed > 0);
    // Dropping the guard unmounts and waits for the daemon, as `supermin umount` does.
    (guard.with_daemon(daemon_pid(mp)), t)
}

/// `supermin mount --kernel` of `input` at `mp` (no daemon), and the time until `ls /` answered.
pub fn kernel_mount_timed(input: &Path, mp: &Path) -> (Mounted, Duration) {
    fs::create_dir_all(mp).unwrap();
    let guard = Mounted::new(mp);
    let start = Instant::now();
    let status = ours().args(["mount", "--kernel"]).arg(input).arg(mp).status().unwrap();
    assert!(status.success(), "mount --kernel failed");
    let listed = fs::read_dir(mp).unwrap().count();
    let t = start.elapsed();
    assert!(listed > 0);
    (guard, t)
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

/// Flush what the last run wrote before the next starts. Outputs are only deleted at the end:
/// deleting a large tree on a filesystem mounted with `discard` slows the next writer down
/// for seconds, and would be charged to whichever tool runs next. Deletions also make ext4
/// skip the inodes freed in the last 60-300 s when it allocates new ones (`recently_deleted`
/// in a profile): start a bench on a filesystem that has not just deleted large trees (the
/// test suite does), or every file creation is slower for both tools.
pub fn settle() {
    let _ = Command::new("sync").status();
    std::thread::sleep(Duration::from_millis(1000));
}

/// Median times of `runs` runs each of `ours` and `reference`, alternating, with [`settle`]
/// after each (a slow spell of the shared disk is charged to both), each given the run number.
pub fn alternate(
    runs: usize,
    mut ours: impl FnMut(usize) -> Duration,
    mut reference: impl FnMut(usize) -> Duration,
) -> (Duration, Duration) {
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for i in 0..runs {
        a.push(ours(i));
        settle();
        b.push(reference(i));
        settle();
    }
    (median(a), median(b))
}

/// A bench's scratch directory, `/var/tmp/NAME`, emptied; checks first that the original
/// supermin the benches compare with is installed.
pub fn scratch(name: &str) -> PathBuf {
    assert!(Path::new(ORACLE).exists(), "{ORACLE} missing: run scripts/install-deps.sh");
    let scratch = PathBuf::from("/var/tmp").join(name);
    let _ = Command::new("rm").arg("-rf").arg(&scratch).status();
    fs::create_dir_all(&scratch).unwrap();
    scratch
}

/// bash+coreutils prepared by us into `scratch/bash.d`.
pub fn prepare_bash(scratch: &Path) -> PathBuf {
    let bash = scratch.join("bash.d");
    let status = ours().args(["--prepare", "--use-installed", "bash", "coreutils", "-o"]).arg(&bash).status();
    assert!(status.unwrap().success(), "--prepare bash coreutils failed");
    bash
}

/// The view's regular files that are the host's own files at the same path (same size), in
/// the view's order, relative to `/`.
pub fn host_backed_files(built: &Path) -> Vec<String> {
    let list = Command::new("sh")
        .arg("-c")
        .arg(format!("cd {} && find . -type f -printf '%P %s\\n'", built.display()))
        .output()
        .unwrap();
    String::from_utf8(list.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(p, size)| {
            let host = Path::new("/").join(p);
            fs::symlink_metadata(&host).is_ok_and(|m| m.is_file() && m.len().to_string() == *size)
        })
        .map(|(p, _)| p.to_string())
        .collect()
}

/// The time of `mount -t tmpfs` + `ls` + `umount`: what any mount costs.
pub fn tmpfs_ready(mp: &Path) -> Duration {
    fs::create_dir_all(mp).unwrap();
    let start = Instant::now();
    assert!(Command::new("mount").args(["-t", "tmpfs", "none"]).arg(mp).status().unwrap().success());
    fs::read_dir(mp).unwrap().count();
    assert!(Command::new("umount").arg(mp).status().unwrap().success());
    start.elapsed()
}

pub fn build(bin: &str, format: &str, extra: &[&str], out: &Path) -> Duration {
    let start = Instant::now();
    let status = Command::new(bin)
        .args(["--build", "-f", format])
        .args(extra)
        .arg(LIBGUESTFS_APPLIANCE)
        .arg("-o")
        .arg(out)
        .status();
    assert!(status.unwrap().success(), "{bin} --build -f {format} failed");
    start.elapsed()
}
