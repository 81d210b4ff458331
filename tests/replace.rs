//! What `-o` may replace: an earlier output (ours, or the original's by its exact shape) or
//! an empty directory. Everything else is refused with one line naming the directory and
//! `--force`, and left exactly as it was; `/` and the inputs are never replaced.

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::{Command, Output};

use common::{assert_one_line_error, ok, oracle, ours, run, Scratch};

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/supermin.d");

fn build(format: &str, out: &Path, extra: &[&str]) -> Output {
    run(ours().args(["--build", "-f", format]).args(extra).arg(EXAMPLE).arg("-o").arg(out))
}

/// A directory of someone's files: two files and a subdirectory.
fn users_files(dir: &Path) {
    fs::create_dir_all(dir.join("docs")).unwrap();
    fs::write(dir.join("thesis.tex"), "years of work").unwrap();
    fs::write(dir.join("docs/notes"), "more work").unwrap();
}

fn assert_users_files(dir: &Path) {
    assert_eq!(fs::read_to_string(dir.join("thesis.tex")).unwrap(), "years of work");
    assert_eq!(fs::read_to_string(dir.join("docs/notes")).unwrap(), "more work");
}

fn assert_built(out: &Path) {
    assert!(out.join("usr/bin/bash").is_file(), "{}: no appliance built there", out.display());
}

#[test]
fn a_directory_of_user_files_is_refused_unless_forced() {
    let t = Scratch::new("replace-user");
    let out = t.path("mine");
    users_files(&out);
    for format in ["chroot", "ext2", "initramfs"] {
        let err = assert_one_line_error(&build(format, &out, &[]), &[&out.display().to_string(), "--force"]);
        assert!(err.contains("not an earlier output"), "{err}");
        assert_users_files(&out);
    }
    let prepared = run(ours().args(["--prepare", "bash", "-o"]).arg(&out));
    assert_one_line_error(&prepared, &["--force"]);
    assert_users_files(&out);
    let materialized = run(ours().args(["materialize", "-f", "chroot", EXAMPLE, "-o"]).arg(&out));
    assert_one_line_error(&materialized, &["--force"]);
    assert_users_files(&out);
    // Nothing was left next to it either.
    assert_eq!(fs::read_dir(&t.0).unwrap().count(), 1);

    ok(ours().args(["--build", "-f", "chroot", "--force", EXAMPLE, "-o"]).arg(&out));
    assert_built(&out);
    assert!(!out.join("thesis.tex").exists());
}

#[test]
fn empty_directories_and_earlier_outputs_are_replaced() {
    let t = Scratch::new("replace-ours");
    let out = t.path("out");
    fs::create_dir(&out).unwrap();
    for format in ["chroot", "chroot", "ext2", "ext2", "initramfs", "initramfs", "chroot"] {
        let built = build(format, &out, &[]);
        assert!(built.status.success(), "{format}: {}", common::stderr(&built));
    }
    assert_built(&out);
    let d = t.path("d");
    ok(ours().args(["--prepare", "bash", "-o"]).arg(&d));
    ok(ours().args(["--prepare", "bash", "coreutils", "-o"]).arg(&d));
    assert_eq!(fs::read_to_string(d.join("packages")).unwrap(), "bash\ncoreutils\n");
}

#[test]
fn symlinks_regular_files_and_the_root_are_refused() {
    let t = Scratch::new("replace-odd");
    let target = t.path("target");
    users_files(&target);
    let link = t.path("link");
    symlink(&target, &link).unwrap();
    assert_one_line_error(&build("chroot", &link, &[]), &["symbolic link", "--force"]);
    assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert_users_files(&target);

    let file = t.path("file");
    fs::write(&file, "precious").unwrap();
    assert_one_line_error(&build("chroot", &file, &[]), &["not a directory", "--force"]);
    assert_eq!(fs::read_to_string(&file).unwrap(), "precious");

    for root in ["/", "//", "/usr/.."] {
        assert_one_line_error(&build("chroot", Path::new(root), &["--force"]), &["root directory"]);
    }
    assert!(Path::new("/usr/bin").is_dir());
}

#[test]
fn the_inputs_are_never_the_output() {
    let t = Scratch::new("replace-inputs");
    let d = t.path("d");
    ok(Command::new("cp").arg("-a").arg(EXAMPLE).arg(&d));
    let before = fs::read_dir(&d).unwrap().count();
    let attempt = |out: &Path| run(ours().args(["--build", "-f", "chroot", "--force"]).arg(&d).arg("-o").arg(out));
    assert_one_line_error(&attempt(&d), &["the output is the input"]);
    assert_one_line_error(&attempt(&d.join("out")), &["the output is inside the input"]);
    assert_one_line_error(&attempt(&t.0), &["the output contains the input"]);
    assert_eq!(fs::read_dir(&d).unwrap().count(), before, "the input changed");
    assert!(d.join("packages").is_file());
}

/// The original's outputs: an ext2 appliance is recognised by its exact shape (libguestfs's
/// cache directory, built by the original before this tool was installed, keeps working); a
/// chroot tree cannot be told from anyone's files, so it needs --force.
#[test]
fn outputs_of_the_original() {
    let t = Scratch::new("replace-original");
    let ext2 = t.path("appliance.d");
    ok(oracle().args(["--build", "-f", "ext2", EXAMPLE, "-o"]).arg(&ext2));
    let libguestfs_way = ["--if-newer", "--lock", "LOCK", "--copy-kernel"];
    let lock = t.path("lock");
    let args: Vec<&str> =
        libguestfs_way.iter().map(|a| if *a == "LOCK" { lock.to_str().unwrap() } else { a }).collect();
    let rebuilt = build("ext2", &ext2, &args);
    assert!(rebuilt.status.success(), "{}", common::stderr(&rebuilt));
    let mut names: Vec<String> =
        fs::read_dir(&ext2).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["initrd", "kernel", "root"]);

    let tree = t.path("tree");
    ok(oracle().args(["--build", "-f", "chroot", EXAMPLE, "-o"]).arg(&tree));
    assert_one_line_error(&build("chroot", &tree, &[]), &["--force"]);
    ok(ours().args(["--build", "-f", "chroot", "--force", EXAMPLE, "-o"]).arg(&tree));
    assert_built(&tree);
}

/// A build killed just after swapping the new output in (the previous one, now a temporary
/// sibling, marked as finished) leaves it for the next build to delete; a finished output of
/// someone's that merely has such a name is kept.
#[test]
fn temporaries_of_killed_builds_are_removed_later() {
    let t = Scratch::new("replace-stale");
    let out = t.path("out");
    assert!(build("chroot", &out, &[]).status.success());
    let mut gone = Command::new("true").spawn().unwrap();
    let dead = gone.id().to_string();
    gone.wait().unwrap();
    let setfattr = |dir: &Path, name: &str, value: &str| {
        fs::create_dir_all(dir).unwrap();
        ok(Command::new("setfattr").args(["-n", name, "-v", value]).arg(dir));
    };
    let stale = t.path("out.k1lled00");
    setfattr(&stale, "user.supermin.output", "chroot");
    setfattr(&stale, "user.supermin.staging", &dead);
    let kept = t.path("out.s0meones");
    setfattr(&kept, "user.supermin.output", "chroot");
    setfattr(&kept, "user.supermin.builder", &dead);
    assert!(build("chroot", &out, &[]).status.success());
    assert!(!stale.exists(), "the abandoned temporary is deleted");
    assert!(kept.exists(), "a finished output with a temporary-like name is kept");
    assert!(common::xattr(&out, "user.supermin.staging").is_none(), "the new output is not marked as a temporary");
}
