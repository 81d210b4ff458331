//! `supermin run`: a command inside the lazy view, in private namespaces; its exit status,
//! the mounts it gets, `--writable` and `--bind`, and nothing left behind (mounts, processes,
//! directories), also when the command is killed or the user presses Ctrl-C.

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{ours, run, stderr, stdout, Scratch, OURS};

const EXAMPLE: &str = "examples/supermin.d";

/// `supermin run`, with `$TMPDIR` (where it makes its work directory) in `tmp`.
fn ours_run(tmp: &Scratch) -> Command {
    let mut cmd = ours();
    cmd.env("TMPDIR", &tmp.0).arg("run");
    cmd
}

/// `supermin run EXAMPLE ARGS… -- /bin/bash -c SCRIPT`, checking it leaves nothing in `$TMPDIR`.
fn bash(args: &[&str], script: &str) -> std::process::Output {
    // One per call: tests run in parallel, and a Scratch of the same name would be shared.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let tmp = Scratch::new(&format!("run-tmp{}", CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst)));
    let out = run(ours_run(&tmp).args(args).arg(EXAMPLE).args(["--", "/bin/bash", "-c", script]));
    assert!(left_nothing(&tmp));
    out
}

/// Nothing left in `$TMPDIR`.
fn left_nothing(tmp: &Scratch) -> bool {
    fs::read_dir(&tmp.0).unwrap().next().is_none()
}

/// Mounts of this (the host's) namespace made by supermin or under a `supermin-run` dir.
fn our_host_mounts() -> Vec<String> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines().filter(|l| l.contains("supermin")).map(String::from).collect()
}

fn processes_matching(needle: &str) -> Vec<String> {
    let out = Command::new("pgrep").args(["-af", needle]).output().unwrap();
    stdout(&out).lines().filter(|l| !l.contains("pgrep")).map(String::from).collect()
}

#[test]
fn exit_status_mounts_and_nothing_on_the_host() {
    let tmp = Scratch::new("run-status");
    let mut child = ours_run(&tmp)
        .args([EXAMPLE, "--", "/bin/bash", "-c"])
        .arg("test -c /dev/null -a -c /dev/urandom -a -d /proc/1 -a -d /sys/kernel && echo > /tmp/t && echo > /run/r && echo ready; read line; exit 3")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready", "/dev, /proc, /sys, /tmp and /run inside");
    assert!(our_host_mounts().is_empty(), "the host sees none of run's mounts: {:?}", our_host_mounts());
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(3), "the command's exit status");
    assert!(left_nothing(&tmp), "the work directory is removed");

    let out = bash(&[], "echo $$; mount | wc -l >/dev/null; touch /usr/x");
    assert_eq!(stdout(&out).lines().next(), Some("2"), "the command runs under a namespace init (pid 1)");
    assert_ne!(out.status.code(), Some(0), "the view is read-only without --writable");
    assert!(stderr(&out).contains("Read-only file system"), "{}", stderr(&out));
}

#[test]
fn writable_and_bind() {
    let t = Scratch::new("run-bind");
    fs::write(t.path("from-host"), "host\n").unwrap();
    let bind = format!("{}:/mnt/shared", t.0.display());
    let out = bash(
        &["--writable", "--bind", &bind],
        "echo x > /usr/bin/new && cat /usr/bin/new; \
         cat /mnt/shared/from-host && echo guest > /mnt/shared/from-guest",
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "x\nhost\n");
    assert_eq!(fs::read_to_string(t.path("from-guest")).unwrap(), "guest\n", "a --bind is shared both ways");
    assert!(!Path::new("/usr/bin/new").exists(), "--writable changes stay in memory");
    assert!(!Path::new(EXAMPLE).join("new").exists());
    // The next run starts from the appliance as it is.
    let out = bash(&["--writable"], "test -e /usr/bin/new && echo kept || echo fresh");
    assert_eq!(stdout(&out), "fresh\n");
    let out = run(ours().args(["run", "--bind", "no-colon", EXAMPLE]));
    assert_eq!(out.status.code(), Some(1));
    common::assert_one_line_error(&out, &["--bind no-colon", "HOST:GUEST"]);
}

#[test]
fn killed_commands_leave_nothing_behind() {
    let out = bash(&[], "sleep 4321 & kill -9 $$");
    assert_eq!(out.status.code(), Some(137), "128 + SIGKILL");
    // The namespace's processes end with its init.
    assert!(
        common::within_10s(|| processes_matching("sleep 4321").is_empty()),
        "{:?}",
        processes_matching("sleep 4321")
    );
    assert!(our_host_mounts().is_empty());
}

/// `script`, with SIGINT and SIGQUIT at their defaults: a test run from a background job
/// inherits them ignored, and a terminal's Ctrl-C would then reach nothing.
fn terminal() -> Command {
    let mut cmd = Command::new("env");
    cmd.args(["--default-signal=INT,QUIT", "script"]);
    cmd
}

/// Ctrl-C on a terminal (a pseudo-terminal made by `script`) reaches the command; the run
/// ends with its status and leaves nothing behind. The default command is an interactive shell.
#[test]
fn terminal_ctrl_c_and_interactive_shell() {
    common::need("script");
    let tmp = Scratch::new("run-tty");
    let mut term = terminal()
        .env("TMPDIR", &tmp.0)
        .args(["-qefc", &format!("{OURS} run {EXAMPLE} -- /bin/sleep 8765"), "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    assert!(common::within_10s(|| !processes_matching("^/bin/sleep 8765").is_empty()), "the command starts");
    let t0 = Instant::now();
    term.stdin.as_mut().unwrap().write_all(b"\x03").unwrap();
    let status = term.wait().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(5), "Ctrl-C ends the command");
    assert_eq!(status.code(), Some(130), "128 + SIGINT");
    assert!(processes_matching("8765").is_empty() && our_host_mounts().is_empty());
    assert!(left_nothing(&tmp));

    let mut term = terminal()
        .args(["-qefc", &format!("{OURS} run {EXAMPLE}"), "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    term.stdin.as_mut().unwrap().write_all(b"echo inside-$((6*7)); exit 5\n").unwrap();
    let out = term.wait_with_output().unwrap();
    assert!(stdout(&out).contains("inside-42"), "{}", stdout(&out));
    assert_eq!(out.status.code(), Some(5));
}

/// An appliance without `/dev` (and the view read-only) still runs a command: `/dev` is
/// left out with a warning, as `/proc` and the others are, instead of failing to make its
/// devices in a directory that is not there.
#[test]
fn an_appliance_without_dev_runs_with_a_warning() {
    let tmp = Scratch::new("run-no-dev");
    let d = tmp.path("no-dev.d");
    fs::create_dir(&d).unwrap();
    for f in ["base.tar.gz", "hostfiles", "packages"] {
        fs::copy(Path::new(EXAMPLE).join(f), d.join(f)).unwrap();
    }
    let excludes = fs::read_to_string(Path::new(EXAMPLE).join("excludefiles")).unwrap();
    fs::write(d.join("excludefiles"), excludes + "-/dev\n-/dev/*\n").unwrap();
    let work = Scratch::new("run-no-dev-tmp");
    let out = run(ours_run(&work).arg(&d).args(["--", "/bin/bash", "-c", "test ! -e /dev && echo ran"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "ran\n");
    assert!(stderr(&out).contains("/dev: not in the appliance"), "{}", stderr(&out));
    assert!(left_nothing(&work));
}

/// Pids of the processes whose command line holds `marker` (a supervisor knows nothing else
/// of the command `run` started: it lives in a PID namespace of its own).
fn pids_with(marker: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let pids = fs::read_dir("/proc").unwrap().filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok());
    pids.filter(|&pid| pid != me)
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.windows(marker.len()).any(|w| w == marker.as_bytes()))
        })
        .collect()
}

/// A SIGKILL of `supermin run` (a supervisor's timeout, the OOM killer) ends the command too:
/// within 3 s no process of the run is left (its init, the command, the command's children),
/// and nothing writes into the `--bind` directory any more. Before the fix the init and the
/// command ran on, orphaned, writing into the bind.
#[test]
fn sigkill_of_run_ends_the_command() {
    let t = Scratch::new("run-sigkill");
    let tmp = Scratch::new("run-sigkill-tmp");
    let marker = format!("sigkill-marker-{}", std::process::id());
    let script = format!("while :; do echo x >> /tmp/b/log; sleep 0.1; done; : {marker}");
    let mut child = ours_run(&tmp)
        .args(["--bind", &format!("{}:/tmp/b", t.0.display()), EXAMPLE, "--", "/bin/bash", "-c", &script])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let log = t.path("log");
    assert!(common::within_10s(|| fs::metadata(&log).is_ok_and(|m| m.len() > 0)), "the command writes");
    let before = pids_with(&marker);
    assert!(before.len() >= 2, "init and the command run: {before:?}");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    while !pids_with(&marker).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let left = pids_with(&marker);
    for &pid in &left {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
    assert!(left.is_empty(), "processes of the run left 3 s after its SIGKILL: {left:?}");
    let size = fs::metadata(&log).unwrap().len();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(fs::metadata(&log).unwrap().len(), size, "nothing writes into the bind any more");
    assert!(our_host_mounts().is_empty());
}

/// As root the command runs in the kernel view (an overlay over the appliance's EROFS image,
/// no daemon), with `--writable` too (its tmpfs-backed overlay stacked on it).
#[test]
fn the_command_runs_in_the_kernel_view() {
    for args in [&[][..], &["--writable"][..]] {
        let out = bash(args, "stat -f -c %T / && test -x /usr/bin/bash && echo ok");
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert_eq!(stdout(&out), "overlayfs\nok\n", "{args:?}: {}", stderr(&out));
    }
}
