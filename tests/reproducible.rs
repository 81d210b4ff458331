//! Reproducible outputs: with `SOURCE_DATE_EPOCH` set, two builds of the same inputs, into
//! different directories, seconds apart and with the inputs touched in between, give
//! byte-identical ext2 `root` and `initrd`, initramfs and tar outputs. Without it the ext2
//! image differs (its UUID is random, its times are the clock's), which shows the check can
//! fail.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{ok, ours, sha256, Scratch};

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/supermin.d");
const EPOCH: &str = "1700000000";

/// Build `d` in `formats` into `out/<format>`; the checksums of the outputs that must agree.
fn build_all(d: &Path, out: &Path, formats: &[&str], epoch: Option<&str>) -> Vec<(String, String)> {
    std::fs::create_dir_all(out).unwrap();
    let mut sums = Vec::new();
    for &format in formats {
        let dir = out.join(format);
        let mut cmd = ours();
        cmd.args(["--build", "-f", format, "--size", "1G"]).arg(d).arg("-o").arg(&dir);
        match epoch {
            Some(e) => cmd.env("SOURCE_DATE_EPOCH", e),
            None => cmd.env_remove("SOURCE_DATE_EPOCH"),
        };
        ok(&mut cmd);
        let files: &[&str] = match format {
            "ext2" => &["root", "initrd"],
            "initramfs" => &["initrd"],
            _ => &["appliance.tar"],
        };
        for f in files {
            sums.push((format!("{format}/{f}"), sha256(&dir.join(f))));
        }
    }
    sums
}

#[test]
fn same_inputs_same_bytes() {
    let s = Scratch::new("reproducible");
    let d = s.path("supermin.d");
    ok(Command::new("cp").arg("-a").arg(EXAMPLE).arg(&d));
    let all = ["ext2", "initramfs", "tar"];
    let first = build_all(&d, &s.path("a"), &all, Some(EPOCH));
    std::thread::sleep(Duration::from_millis(1100));
    ok(Command::new("sh").arg("-c").arg("touch \"$0\"/*").arg(&d));
    let second = build_all(&d, &s.path("b"), &all, Some(EPOCH));
    assert_eq!(first, second, "with SOURCE_DATE_EPOCH, two builds differ");

    let unpinned = build_all(&d, &s.path("c"), &["ext2"], None);
    let root = |sums: &[(String, String)]| sums.iter().find(|(f, _)| f == "ext2/root").unwrap().1.clone();
    assert_ne!(root(&unpinned), root(&first), "without SOURCE_DATE_EPOCH the image should differ (random UUID)");
}
