//! Crash consistency: a build killed with SIGKILL at any moment leaves the previous output as
//! it was (or, if the kill came after the swap, the complete new one), and the next build
//! succeeds and removes what the killed one left behind; a full disk fails the build with one
//! line and leaves the previous output alone.
//!
//! The kill moments are random, spread over the build's measured duration, from a seeded
//! generator: the seed is printed, and `SUPERMIN_CRASH_SEED=N` replays a run.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// Kills per format.
const KILLS: usize = 20;

fn seed() -> u64 {
    let seed = std::env::var("SUPERMIN_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    println!("SUPERMIN_CRASH_SEED={seed}");
    seed
}

/// What changes when anything writes to, replaces or recreates a path: every entry under
/// `root` (and `root` itself) with its inode, change time, size and type.
fn stamps(root: &Path) -> BTreeMap<PathBuf, (u64, i64, i64, u64, u32)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        if m.is_dir() {
            stack.extend(fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
        out.insert(
            p.strip_prefix(root).unwrap().to_path_buf(),
            (m.ino(), m.ctime(), m.ctime_nsec(), m.size(), m.mode()),
        );
    }
    out
}

/// `cksum` (CRC-32) of a file: fast enough to compare 600 MB images after every kill.
fn cksum(path: &Path) -> String {
    stdout(&ok(Command::new("cksum").arg(path))).split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

struct Case {
    format: &'static str,
    input: PathBuf,
    extra: Vec<&'static str>,
}

impl Case {
    fn command(&self, out: &Path) -> Command {
        let mut c = ours();
        c.args(["--build", "-f", self.format]).args(&self.extra).arg(&self.input).arg("-o").arg(out);
        // Every build of the same inputs is then the same bytes (reproducible outputs).
        c.env("SOURCE_DATE_EPOCH", pinned_epoch());
        c
    }

    /// Why `out` is not a complete output equal to the build `reference`, if it is not.
    fn differs(&self, reference: &Path, out: &Path) -> Option<String> {
        if !has_xattr(out, "user.supermin.output") {
            return Some("no output marker".into());
        }
        if self.format == "chroot" {
            let d = compare(reference, out);
            let n = d.missing.len() + d.different.len() + d.extra.len();
            return (n > 0)
                .then(|| format!("{n} paths differ, e.g. {:?}", [d.missing, d.different, d.extra].concat()[0]));
        }
        if fs::read_link(out.join("kernel")).ok() != fs::read_link(reference.join("kernel")).ok() {
            return Some("the kernel link differs".into());
        }
        ["initrd", "root"]
            .iter()
            .find(|f| cksum(&out.join(f)) != cksum(&reference.join(f)))
            .map(|f| format!("{f} differs"))
    }

    /// `out` is a complete output, equal to the reference build. Other programs may upgrade
    /// host packages meanwhile (apt on a shared machine), so on a difference the reference is
    /// built again and compared once more.
    fn assert_complete(&self, reference: &Path, out: &Path, what: &str) {
        if self.differs(reference, out).is_none() {
            return;
        }
        ok(&mut self.command(reference));
        if let Some(why) = self.differs(reference, out) {
            panic!("{what}: {} is not a complete output: {why}", out.display());
        }
        println!("{what}: the host changed: the reference was built again");
    }
}

/// Wait (up to 10 s: the old tree is deleted in the background) until no `out.*` sibling is
/// left; fails naming them.
fn assert_no_temporaries(out: &Path, what: &str) {
    let parent = out.parent().unwrap();
    let prefix = format!("{}.", out.file_name().unwrap().to_string_lossy());
    let gone = within_10s(|| names_starting_with(parent, &prefix).is_empty());
    assert!(gone, "{what}: temporaries left after 10 s: {:?}", names_starting_with(parent, &prefix));
}

/// What a kill found: the build had not swapped yet, had swapped, or had already finished.
#[derive(Default, Debug)]
struct Tally {
    before_swap: usize,
    after_swap: usize,
    finished: usize,
}

fn kill_builds(case: &Case, name: &str) {
    let s = Scratch::new(name);
    let reference = s.path("reference");
    ok(&mut case.command(&reference));
    let out = s.path("out");
    let timed = || {
        let started = Instant::now();
        ok(&mut case.command(&out));
        started.elapsed()
    };
    // The build's duration, measured again at every build (the machine's load changes).
    let mut duration = timed();
    let mut rng = Rng(seed());
    let mut tally = Tally::default();
    let mut moments = Vec::new();
    for round in 0..KILLS {
        let before = stamps(&out);
        let delay = Duration::from_nanos(rng.below(duration.as_nanos() as u64));
        moments.push(format!("{}/{}", delay.as_millis(), duration.as_millis()));
        let what = format!("{} kill {round} at {} ms of {} ms", case.format, delay.as_millis(), duration.as_millis());
        let mut child = case.command(&out).stdout(std::process::Stdio::null()).spawn().unwrap();
        std::thread::sleep(delay);
        let finished = child.try_wait().unwrap().is_some();
        child.kill().unwrap_or(()); // SIGKILL; a finished child is reaped below
        child.wait().unwrap();
        let ino = fs::symlink_metadata(&out).unwrap().ino();
        match (finished, ino == before[Path::new("")].0) {
            (true, _) => tally.finished += 1,
            (false, true) => {
                assert_eq!(stamps(&out), before, "{what}: the previous output changed");
                tally.before_swap += 1;
            }
            // Killed after the swap: the new output is in place, and complete.
            (false, false) => {
                case.assert_complete(&reference, &out, &format!("{what}: after the kill"));
                tally.after_swap += 1;
            }
        }
        duration = timed();
        case.assert_complete(&reference, &out, &format!("{what}: the next build"));
        assert_no_temporaries(&out, &format!("{what}: the next build"));
    }
    println!("{}: kills at {moments:?} ms (of the build's duration just before): {tally:?}", case.format);
    assert!(tally.before_swap > 0, "no kill interrupted a build: {tally:?}");
}

#[test]
fn killed_chroot_builds_keep_the_previous_output() {
    let case = Case { format: "chroot", input: "examples/supermin.d".into(), extra: vec![] };
    kill_builds(&case, "crash-chroot");
}

/// The image is made smaller than the default 4G so that comparing it after every kill is
/// quick; it still holds the kernel's modules (about 400 MB).
#[test]
fn killed_ext2_builds_keep_the_previous_output() {
    let case = Case { format: "ext2", input: "examples/supermin.d".into(), extra: vec!["--size", "600M"] };
    kill_builds(&case, "crash-ext2");
}

/// An output filesystem that fills up: one line naming the path and saying so, exit 1, the
/// previous output (a tiny appliance that fits) untouched, nothing left behind.
#[test]
fn a_full_disk_fails_cleanly() {
    need("mount");
    let s = Scratch::new("crash-full");
    let tiny = s.path("tiny.d");
    fs::create_dir(&tiny).unwrap();
    fs::write(tiny.join("hostfiles"), "/etc/hostname\n").unwrap();
    let mp = s.path("small");
    fs::create_dir(&mp).unwrap();
    let _guard = Mounted::new(&mp);
    ok(Command::new("mount").args(["-t", "tmpfs", "-o", "size=8m", "tmpfs"]).arg(&mp));
    let out = mp.join("out");
    ok(ours().args(["--build", "-f", "chroot"]).arg(&tiny).arg("-o").arg(&out));
    let before = stamps(&out);
    for format in ["chroot", "ext2"] {
        let failed = run(ours().args(["--build", "-f", format, "examples/supermin.d", "-o"]).arg(&out));
        let line = assert_one_line_error(&failed, &["No space left on device"]);
        assert!(line.contains(&out.to_string_lossy().into_owned()), "{format}: {line:?} should name the output");
        assert_eq!(stamps(&out), before, "{format}: the previous output changed");
        assert_eq!(fs::read_to_string(out.join("etc/hostname")).unwrap(), fs::read_to_string("/etc/hostname").unwrap());
        assert_no_temporaries(&out, format);
    }
}
