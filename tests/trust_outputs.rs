//! What we write never destroys what the user gave us (issue 19, findings 5 and 7):
//! - no `slim`, `materialize` or `--build -o` whose output is, lies inside or contains an
//!   input, however spelled, runs: each is refused with one line before anything is written,
//!   `--force` or not, and every input stays byte for byte as it was;
//! - `mount --trace` never writes through a symlink planted beside the trace by the owner of
//!   its directory (the daemon is root).

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// Every entry under `root` with its metadata, and each regular file's bytes.
fn snapshot(root: &Path) -> BTreeMap<String, (Entry, Vec<u8>)> {
    dump(root)
        .into_iter()
        .map(|(rel, e)| {
            let bytes = if e.kind == 'f' { fs::read(root.join(rel.trim_start_matches('/'))).unwrap() } else { vec![] };
            (rel, (e, bytes))
        })
        .collect()
}

/// A small supermin.d (a package and a hostfiles list) and a trace for `slim`, in `s`.
fn appliance(s: &Scratch) -> (PathBuf, PathBuf) {
    let input = s.path("in.d");
    fs::create_dir(&input).unwrap();
    fs::write(input.join("packages"), "hostname\n").unwrap();
    fs::write(input.join("hostfiles"), "/etc/hostname\n").unwrap();
    let trace = s.path("t.trace");
    let header = "# supermin trace 1: one used path per line, \"read PATH\" or \"stat PATH\", \\ooo escapes";
    fs::write(&trace, format!("{header}\nread /etc/hostname\n")).unwrap();
    (input, trace)
}

/// The commands that write an output from inputs, each given its inputs: what it is called
/// and its arguments before `-o OUT`.
fn writers(inputs: &[PathBuf], trace: &Path) -> Vec<(String, Vec<String>)> {
    let inputs: Vec<String> = inputs.iter().map(|p| p.display().to_string()).collect();
    let with = |head: &[&str], tail: &[&str]| -> Vec<String> {
        head.iter()
            .map(|a| a.to_string())
            .chain(inputs.iter().cloned())
            .chain(tail.iter().map(|a| a.to_string()))
            .collect()
    };
    let trace = trace.display().to_string();
    vec![
        ("slim".into(), with(&["slim"], &["--trace", &trace])),
        ("materialize".into(), with(&["materialize", "-f", "chroot"], &[])),
        ("--build -f chroot".into(), with(&["--build", "-f", "chroot"], &[])),
        ("--build -f ext2".into(), with(&["--build", "-f", "ext2"], &[])),
    ]
}

/// Each writer, with and without `--force`, to each output of `outputs` (as spelled, run
/// from `cwd`, and how it relates to the input it names): refused with one line naming the
/// output and the relation, and nothing under `s` changes.
fn assert_all_refused(s: &Scratch, inputs: &[PathBuf], trace: &Path, outputs: &[(&str, &str)], cwd: &Path) {
    let before = snapshot(&s.0);
    for (what, args) in writers(inputs, trace) {
        for (out, relation) in outputs {
            for force in [false, true] {
                let mut cmd = ours();
                cmd.current_dir(cwd).args(&args).args(["-o", out]).args(force.then_some("--force"));
                let attempt = run(&mut cmd);
                let case = format!("{what} {inputs:?} -o {out}{}", if force { " --force" } else { "" });
                let line = assert_one_line_error(
                    &attempt,
                    &[&format!("{out}: "), &format!("the output {relation} the input")],
                );
                assert!(line.starts_with("supermin: "), "{case}: {line}");
                let after = snapshot(&s.0);
                let changed: Vec<&String> =
                    before.keys().chain(after.keys()).filter(|k| before.get(*k) != after.get(*k)).collect();
                assert!(changed.is_empty(), "{case} changed {changed:?}");
            }
        }
    }
}

/// An input directory: the output is it (however spelled), inside it (a new directory, one of
/// its files) or contains it (its parent).
#[test]
fn no_output_is_inside_equal_to_or_containing_an_input_directory() {
    let s = Scratch::new("trust-outputs-dir");
    let (input, trace) = appliance(&s);
    symlink("in.d", s.path("link")).unwrap();
    let abs = input.display().to_string();
    let (sub, file) = (format!("{abs}/sub.d"), format!("{abs}/packages"));
    let parent = s.0.display().to_string();
    let outputs = [
        (abs.as_str(), "is"),
        ("in.d", "is"),
        ("in.d/.", "is"),
        ("in.d/../in.d", "is"),
        ("./in.d/", "is"),
        ("link", "is"),
        (sub.as_str(), "is inside"),
        ("link/sub.d", "is inside"),
        (file.as_str(), "is inside"),
        (parent.as_str(), "contains"),
        (".", "contains"),
        ("in.d/..", "contains"),
    ];
    assert_all_refused(&s, &[input], &trace, &outputs, &s.0);
}

/// Inputs given as files (`IN/*`): the output is one of them, inside one, or contains them.
#[test]
fn no_output_is_inside_equal_to_or_containing_an_input_file() {
    let s = Scratch::new("trust-outputs-files");
    let (input, trace) = appliance(&s);
    let files = [input.join("hostfiles"), input.join("packages")];
    let outputs = [
        ("in.d/packages", "is"),
        ("in.d/./hostfiles", "is"),
        ("in.d/packages/sub.d", "is inside"),
        ("in.d", "contains"),
        (".", "contains"),
    ];
    assert_all_refused(&s, &files, &trace, &outputs, &s.0);
}

/// The owner of the trace's directory plants symlinks to a root-owned file at the trace's
/// name and at the temporary name it was written under (`.NAME.tmp<daemon pid>`): the root
/// daemon neither follows nor truncates them, and the trace is written.
#[test]
fn a_trace_is_never_written_through_a_planted_symlink() {
    let s = Scratch::new("trust-outputs-trace");
    let input = s.path("in.d");
    fs::create_dir(&input).unwrap();
    fs::write(input.join("hostfiles"), "/etc/hostname\n").unwrap();
    let precious = s.path("precious");
    fs::write(&precious, "root's own file\n").unwrap();
    let dir = hostile_dir(&s.0, "traces");
    let trace = dir.join("trace");
    let (mp, trace_arg) = (s.path("mnt"), trace.display().to_string());
    let guard = mount(&input, &mp, &["--trace", &trace_arg]);
    let pid = guard.daemon().expect("the daemon's pid");
    let planted = [".trace.tmp".to_string() + &pid.to_string(), "trace".to_string()];
    for name in &planted {
        ok(as_hostile({
            let mut ln = Command::new("ln");
            ln.arg("-s").arg(&precious).arg(dir.join(name));
            ln
        })
        .stdin(std::process::Stdio::null()));
    }
    assert!(!fs::read(mp.join("etc/hostname")).unwrap().is_empty());
    ok(ours().arg("umount").arg(&mp));
    assert_eq!(fs::read_to_string(&precious).unwrap(), "root's own file\n", "written through a planted symlink");
    let written = fs::symlink_metadata(&trace).unwrap();
    assert!(written.is_file() && written.uid() == 0, "the trace is not the daemon's new file");
    let text = fs::read_to_string(&trace).unwrap();
    assert!(text.starts_with("# supermin trace 1") && text.lines().any(|l| l == "read /etc/hostname"), "{text}");
    let left: Vec<String> = names_starting_with(&dir, ".").into_iter().filter(|n| !planted.contains(n)).collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}
