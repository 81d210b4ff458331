//! `-f tar`: the archive lists, entry for entry, what GNU tar makes of the chroot build of the
//! same input (sorted, numeric owners); unpacked it is that tree; `-o -` streams the same
//! bytes; and podman imports it and runs a shell in it.

mod common;

use std::fs;
use std::process::{Command, Stdio};

use common::{assert_tar_is_tree, need, ok, ours, pinned_epoch, Scratch, LIBGUESTFS_APPLIANCE};

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/supermin.d");

/// Build `input` as a chroot and as a tar in `t`; returns (chroot dir, our archive).
fn both(t: &Scratch, input: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let tree = t.path("tree");
    // Two builds of one input: the same SOURCE_DATE_EPOCH, so that host directories other
    // tests touch meanwhile (/var/tmp) have the same time in both.
    ok(ours().env("SOURCE_DATE_EPOCH", pinned_epoch()).args(["--build", "-f", "chroot", input, "-o"]).arg(&tree));
    let out = t.path("tar");
    ok(ours().env("SOURCE_DATE_EPOCH", pinned_epoch()).args(["--build", "-f", "tar", input, "-o"]).arg(&out));
    (tree, out.join("appliance.tar"))
}

#[test]
fn the_archive_is_the_chroot_build() {
    for (name, input) in [("example", EXAMPLE), ("libguestfs", LIBGUESTFS_APPLIANCE)] {
        let t = Scratch::new(&format!("tar-{name}"));
        let (tree, archive) = both(&t, input);
        assert_tar_is_tree(&archive, &tree, &t.0, name);
    }
}

#[test]
fn standard_output_gets_the_same_bytes() {
    let t = Scratch::new("tar-stdout");
    let out = t.path("tar");
    let pinned = || {
        let mut c = ours();
        c.env("SOURCE_DATE_EPOCH", pinned_epoch());
        c
    };
    ok(pinned().args(["--build", "-f", "tar", EXAMPLE, "-o"]).arg(&out));
    let streamed = ok(pinned().args(["--build", "-f", "tar", EXAMPLE, "-o", "-"])).stdout;
    let file = fs::read(out.join("appliance.tar")).unwrap();
    assert!(streamed == file, "the stream and the file differ");
    let err = ours().args(["--build", "-f", "chroot", EXAMPLE, "-o", "-"]).output().unwrap();
    common::assert_one_line_error(&err, &["only -f tar"]);
}

/// Container engines run what we stream to them. podman runs with runc and explicit
/// ulimits: on this CI machine (cgroups in hybrid mode, a lower hard limit on open files)
/// crun refuses to start any container, whatever its image.
#[test]
fn podman_imports_it_and_runs_a_shell() {
    need("podman");
    need("runc");
    let image = format!("localhost/supermin-test-{}", std::process::id());
    let mut build =
        ours().args(["--build", "-f", "tar", LIBGUESTFS_APPLIANCE, "-o", "-"]).stdout(Stdio::piped()).spawn().unwrap();
    let import = Command::new("podman").args(["import", "-", &image]).stdin(build.stdout.take().unwrap()).output();
    assert!(build.wait().unwrap().success());
    let import = import.unwrap();
    assert!(import.status.success(), "podman import: {}", String::from_utf8_lossy(&import.stderr));
    let limits = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"];
    let run = Command::new("podman")
        .args(["--runtime", "runc", "run", "--rm", "--network=none"])
        .args(limits)
        .args([&image, "/bin/sh", "-c", "echo ok; ls /usr/bin | wc -l"])
        .output()
        .unwrap();
    let _ = Command::new("podman").args(["rmi", "-f", &image]).output();
    let said = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(run.status.success(), "podman run: {}", String::from_utf8_lossy(&run.stderr));
    let programs: usize = said.lines().nth(1).and_then(|n| n.trim().parse().ok()).unwrap_or(0);
    assert!(said.starts_with("ok\n") && programs > 500, "{said}");
}
