//! `--if-newer` and `--lock`: no rebuild when nothing changed, a rebuild when any input file
//! (also inside an input directory), the package database or an output changed or vanished;
//! a blocking lock taken before the check.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use common::*;

fn build(d: &Path, out: &Path, extra: &[&str]) -> String {
    stderr(&ok(ours().args(["-v", "--build", "--if-newer", "-f", "chroot"]).args(extra).arg(d).arg("-o").arg(out)))
}

fn skipped(log: &str) -> bool {
    log.contains("if-newer: output does not need rebuilding")
}

fn ino(p: &Path) -> u64 {
    fs::symlink_metadata(p).unwrap().ino()
}

/// Set a file's mtime (`touch -d`), keeping the test independent of the clock's resolution.
fn set_mtime(p: &Path, secs: i64) {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let ts = libc::timespec { tv_sec: secs, tv_nsec: 0 };
    assert_eq!(unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), [ts, ts].as_ptr(), 0) }, 0);
}

/// The test that bumps dpkg's status mtime must not overlap the others.
static DPKG_DB: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn rebuilds_exactly_when_something_changed() {
    let _serial = DPKG_DB.lock().unwrap_or_else(|e| e.into_inner());
    let t = Scratch::new("if-newer");
    let d = t.path("supermin.d");
    let out = t.path("out");
    ok(ours().args(["--prepare", "--use-installed", "bash", "-o"]).arg(&d));
    fs::create_dir(d.join("sub")).unwrap();
    fs::write(d.join("sub/hostfiles"), "/etc/hostname\n").unwrap();

    assert!(!skipped(&build(&d, &out, &[])));
    let first = ino(&out);
    assert!(skipped(&build(&d, &out, &[])), "second identical run must do nothing");
    assert_eq!(ino(&out), first);

    // A file inside an input directory (the original only looks at the directory itself).
    let f = d.join("sub/hostfiles");
    set_mtime(&f, fs::metadata(&f).unwrap().mtime() + 5);
    assert!(!skipped(&build(&d, &out, &[])), "changed input inside a directory");
    assert!(skipped(&build(&d, &out, &[])));

    // Options that change the output.
    assert!(!skipped(&build(&d, &out, &["--include-packagelist"])));
    assert!(skipped(&build(&d, &out, &["--include-packagelist"])));

    // The output vanished.
    Command::new("rm").arg("-rf").arg(&out).status().unwrap();
    assert!(!skipped(&build(&d, &out, &["--include-packagelist"])));
    assert!(out.join("usr/bin/bash").is_file());

    // The package database changed (as after `apt-get install`): bump dpkg's status mtime,
    // then put it back.
    let status = Path::new("/var/lib/dpkg/status");
    let old = fs::metadata(status).unwrap().mtime();
    set_mtime(status, old + 1);
    let log = build(&d, &out, &["--include-packagelist"]);
    set_mtime(status, old);
    assert!(!skipped(&log), "package database changed");
}

use std::process::Command;

/// An output made by the original (no fingerprint of ours) is judged by the original's rule.
#[test]
fn outputs_of_the_original_use_its_mtime_rule() {
    let _serial = DPKG_DB.lock().unwrap_or_else(|e| e.into_inner());
    let t = Scratch::new("if-newer-orig");
    let d = t.path("supermin.d");
    let out = t.path("out");
    ok(ours().args(["--prepare", "--use-installed", "bash", "-o"]).arg(&d));
    ok(oracle().args(["--build", "-f", "chroot"]).arg(&d).arg("-o").arg(&out));
    assert!(skipped(&build(&d, &out, &[])), "inputs older than the output");
    set_mtime(&d.join("packages"), fs::metadata(&out).unwrap().mtime() + 10);
    // Rebuilding replaces it: a chroot tree of the original's needs --force (tests/replace.rs).
    assert!(!skipped(&build(&d, &out, &["--force"])), "input newer than the output");
}

/// `--lock` blocks while another process holds the lock, then proceeds.
#[test]
fn lock_blocks_until_released() {
    use std::os::unix::io::AsRawFd;
    let t = Scratch::new("lock");
    let d = t.path("supermin.d");
    ok(ours().args(["--prepare", "--use-installed", "bash", "-o"]).arg(&d));
    let lock = t.path("lock");
    let held = fs::OpenOptions::new().write(true).create(true).truncate(false).open(&lock).unwrap();
    assert_eq!(unsafe { libc::lockf(held.as_raw_fd(), libc::F_LOCK, 0) }, 0);
    // fcntl locks are per process, so the waiter must be another process: it is.
    let mut child = ours()
        .args(["--build", "--lock"])
        .arg(&lock)
        .args(["-f", "chroot"])
        .arg(&d)
        .arg("-o")
        .arg(t.path("out"))
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    assert!(child.try_wait().unwrap().is_none(), "build must wait for the lock");
    assert!(!t.path("out").exists());
    drop(held);
    assert!(child.wait().unwrap().success());
    assert!(t.path("out/usr/bin/bash").is_file());
}
