//! Tracing workloads in the lazy view of libguestfs's appliance (`mount --trace`) and
//! slimming the appliance to what they used (`slim`): each workload gives the same output in
//! the slim appliance as in the full one, built by us and (where the original's own build of
//! the appliance can run it) by the original supermin; the slim tree is the full one minus
//! untraced files only.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;

struct Workload {
    name: &'static str,
    argv: &'static [&'static str],
    stdin: &'static [u8],
    /// The original supermin's build of libguestfs's appliance has the programs it needs
    /// (it drops python3 and perl, which it cannot resolve through `:any`).
    original_runs_it: bool,
}

const WORKLOADS: &[Workload] = &[
    Workload {
        name: "sort",
        argv: &["/bin/bash", "-c", "sort | sha256sum; echo done"],
        stdin: b"pear\napple\nfig\n",
        original_runs_it: true,
    },
    Workload {
        name: "python",
        argv: &[
            "/usr/bin/python3",
            "-c",
            "import json, hashlib; print(hashlib.sha256(json.dumps([1, 'a']).encode()).hexdigest())",
        ],
        stdin: b"",
        original_runs_it: false,
    },
    Workload {
        name: "perl",
        // The program on standard input: with -e, perl opens /dev/null, which the appliance
        // has no device for.
        argv: &["/usr/bin/perl", "-MPOSIX", "-"],
        stdin: b"print floor(7.5), ' ', strftime('%Y-%m-%d', gmtime(86400)), qq(\\n);\n",
        original_runs_it: false,
    },
    Workload {
        name: "gzip",
        argv: &["/bin/bash", "-c", "seq 1000 | gzip -9 | gzip -d | tail -1"],
        stdin: b"",
        original_runs_it: true,
    },
];

/// Run `w` chrooted into `root`; its standard output (which must be non-empty).
fn run_in(root: &Path, w: &Workload) -> Vec<u8> {
    let mut child = Command::new("chroot")
        .arg(root)
        .args(w.argv)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(w.stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{} in {}: {}", w.name, root.display(), String::from_utf8_lossy(&out.stderr));
    assert!(!out.stdout.is_empty(), "{}: no output", w.name);
    out.stdout
}

/// Mount libguestfs's appliance with `--trace`, run `w` in it; its output and the trace.
fn trace(s: &Scratch, w: &Workload) -> (Vec<u8>, PathBuf) {
    let mp = s.path(&format!("{}-mnt", w.name));
    let trace = s.path(&format!("{}.trace", w.name));
    let m = mount(Path::new(LIBGUESTFS_APPLIANCE), &mp, &["--suid", "--dev", "--trace", trace.to_str().unwrap()]);
    let output = run_in(&mp, w);
    ok(ours().arg("umount").arg(&mp));
    drop(m);
    (output, trace)
}

/// The used paths of a trace file, unescaped.
fn traced(trace: &Path) -> BTreeSet<String> {
    let text = fs::read_to_string(trace).unwrap();
    assert!(text.starts_with("# supermin trace 1"), "{text}");
    text.lines().skip(1).map(|l| l.split_once(' ').unwrap().1.to_string()).collect()
}

/// The slim tree is the full one minus untraced non-directories, entries otherwise identical.
fn assert_slimmed(full: &Path, slim: &Path, used: &BTreeSet<String>, what: &str) {
    let diff = compare(slim, full);
    assert!(
        diff.missing.is_empty(),
        "{what}: the slim tree has paths the full one lacks: {:?}",
        &diff.missing[..5.min(diff.missing.len())]
    );
    let different: Vec<&String> = diff.different.iter().filter(|d| !d.contains("nlink")).collect();
    assert!(different.is_empty(), "{what}: entries differ: {different:?}");
    for extra in &diff.extra {
        assert!(!used.contains(extra), "{what}: {extra} was used, yet left out");
        assert!(!full.join(&extra[1..]).symlink_metadata().unwrap().is_dir(), "{what}: directory {extra} left out");
    }
    for path in used {
        assert!(slim.join(path.trim_start_matches('/')).symlink_metadata().is_ok(), "{what}: used {path} missing");
    }
    assert!(diff.extra.len() > 1000, "{what}: only {} paths left out", diff.extra.len());
}

#[test]
fn slim_appliances_run_their_workloads() {
    let s = Scratch::new("slim");
    let full = s.path("full");
    // The builds compared share a SOURCE_DATE_EPOCH (see `pinned_epoch`).
    ok(ours()
        .env("SOURCE_DATE_EPOCH", pinned_epoch())
        .args(["--build", "-f", "chroot", LIBGUESTFS_APPLIANCE, "-o"])
        .arg(&full));
    let mut traces = Vec::new();
    for w in WORKLOADS {
        let (expected, trace) = trace(&s, w);
        assert_eq!(run_in(&full, w), expected, "{}: the view and the build disagree", w.name);
        let slim_d = s.path(&format!("{}.d", w.name));
        let said =
            stdout(&ok(ours().arg("slim").arg(LIBGUESTFS_APPLIANCE).arg("--trace").arg(&trace).arg("-o").arg(&slim_d)));
        eprintln!("{}: {}", w.name, said.lines().next().unwrap_or(""));
        let slim = s.path(&format!("{}-ours", w.name));
        ok(ours()
            .env("SOURCE_DATE_EPOCH", pinned_epoch())
            .args(["--build", "-f", "chroot"])
            .arg(&slim_d)
            .arg("-o")
            .arg(&slim));
        assert_eq!(run_in(&slim, w), expected, "{}: output in our slim build", w.name);
        assert_slimmed(&full, &slim, &traced(&trace), w.name);
        if w.original_runs_it {
            let theirs = s.path(&format!("{}-original", w.name));
            ok(oracle().args(["--build", "-f", "chroot"]).arg(&slim_d).arg("-o").arg(&theirs));
            assert_eq!(run_in(&theirs, w), expected, "{}: output in the original's slim build", w.name);
        }
        traces.push(trace);
    }
    // Several traces: their union; every workload runs in the one appliance.
    let all_d = s.path("all.d");
    let mut cmd = ours();
    cmd.arg("slim").arg(LIBGUESTFS_APPLIANCE).arg("-o").arg(&all_d);
    for t in &traces {
        cmd.arg("--trace").arg(t);
    }
    ok(&mut cmd);
    let all = s.path("all");
    ok(ours().args(["--build", "-f", "chroot"]).arg(&all_d).arg("-o").arg(&all));
    for w in WORKLOADS {
        assert_eq!(run_in(&all, w), run_in(&full, w), "{} in the union's slim build", w.name);
    }
}

/// A file only looked up and a file read are both recorded, each as what it was; the trace
/// is written when the mount ends by a signal too; --keep keeps what no trace used.
#[test]
fn traces_record_lookups_and_reads() {
    let s = Scratch::new("slim-trace");
    let mp = s.path("mnt");
    fs::create_dir_all(&mp).unwrap();
    let trace = s.path("t.trace");
    let _guard = Mounted::new(&mp);
    let mut daemon = ours()
        .args(["mount", "--suid", "--dev", "--trace"])
        .arg(&trace)
        .arg(LIBGUESTFS_APPLIANCE)
        .arg(&mp)
        .spawn()
        .unwrap();
    assert!(within_10s(|| is_mounted(&mp)), "the mount did not come up");
    let stat = Command::new("stat").arg("--format=%s").arg(mp.join("usr/bin/xz")).output().unwrap();
    assert!(stat.status.success());
    assert!(!fs::read(mp.join("usr/lib/os-release")).unwrap().is_empty());
    fs::read_dir(mp.join("usr/share/doc")).unwrap().for_each(drop);
    ok(Command::new("kill").arg("-TERM").arg(daemon.id().to_string()));
    assert!(daemon.wait().unwrap().success());
    let text = fs::read_to_string(&trace).unwrap();
    for line in ["stat /usr/bin/xz", "read /usr/lib/os-release", "read /usr/share/doc", "read /"] {
        assert!(text.lines().any(|l| l == line), "{line:?} not in the trace:\n{text}");
    }
    let d = s.path("kept.d");
    ok(ours()
        .arg("slim")
        .arg(LIBGUESTFS_APPLIANCE)
        .arg("--trace")
        .arg(&trace)
        .args(["--keep", "/usr/bin/gzip", "-o"])
        .arg(&d));
    let excludes = fs::read_to_string(d.join("zz-slim-excludefiles")).unwrap();
    assert!(!excludes.lines().any(|l| l.ends_with("/xz") || l.ends_with("/gzip")), "stat'ed or kept file excluded");
    assert!(excludes.lines().any(|l| l.ends_with("/bin/bzip2")), "an unused file is not excluded");
}
