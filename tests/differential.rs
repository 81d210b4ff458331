//! Differential tests on random appliances: a seeded generator writes a tree of odd names,
//! sizes around block boundaries, modes, owners, times, symlinks and hard links; part of it
//! becomes a base image, part stays on the host behind `hostfiles` globs, and a package
//! (dash) comes with `excludefiles` that drop some of its files (excludes apply to package
//! files only). Then these trees must agree entry for entry: the original supermin's
//! chroot build (the oracle), ours, our lazy view and our tar archive (listed as GNU tar lists
//! our build, and unpacked); and our ext2 image must hold the same tree. Each seed is a different appliance; a failure names its seed.

mod common;

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, UNIX_EPOCH};

use common::*;

/// Names a base image may carry: spaces, UTF-8, leading dash or dot, glob and shell
/// characters, and a long one.
fn image_name(rng: &mut Rng) -> String {
    let long = "long".repeat(50);
    let names = [
        "a",
        "bin",
        "conf.d",
        "with space",
        "ünïcödé",
        "-dash",
        ".hidden",
        "UPPER",
        "x.conf",
        "semi;colon",
        "quo'te",
        "br[ack]et",
        "star*",
        "q?",
        "dollar$",
        "percent%",
        "amp&",
        &long,
    ];
    format!("{}{}", rng.pick(&names), if rng.below(3) == 0 { rng.below(100).to_string() } else { String::new() })
}

/// Host file names stay plain: `hostfiles` lines are globs.
fn host_name(rng: &mut Rng) -> String {
    format!("{}{}", rng.pick(&["data", "cfg", "lib", "x", "note"]), rng.below(1000))
}

fn content(rng: &mut Rng) -> Vec<u8> {
    let size = *rng.pick(&[0u64, 1, 100, 4095, 4096, 4097, 12 * 4096, 12 * 4096 + 1, 65536]);
    let size = if rng.below(4) == 0 { rng.below(300_000) } else { size };
    (0..size).map(|_| rng.next() as u8).collect()
}

/// Give `path` a random mode, owner and mtime (files and directories).
fn dress(rng: &mut Rng, path: &Path, dir: bool) {
    let modes: &[u32] =
        if dir { &[0o755, 0o700, 0o1777, 0o2755, 0o555] } else { &[0o644, 0o600, 0o755, 0o4755, 0o444, 0o2711] };
    let (uid, gid) = *rng.pick(&[(0, 0), (1000, 100), (65534, 65534), (0, 42)]);
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(*rng.pick(modes))).unwrap();
    let when = UNIX_EPOCH + Duration::from_secs(1_000_000_000 + rng.below(700_000_000));
    if !dir {
        fs::File::options().write(true).open(path).unwrap().set_modified(when).unwrap();
    }
}

/// A random tree under `root`: returns its regular files (relative paths).
fn grow(rng: &mut Rng, root: &Path, entries: usize, fancy_names: bool) -> Vec<PathBuf> {
    let mut dirs = vec![PathBuf::new()];
    let mut files: Vec<PathBuf> = Vec::new();
    let mut made_dirs = Vec::new();
    for _ in 0..entries {
        let parent = rng.pick(&dirs).clone();
        let name = if fancy_names { image_name(rng) } else { host_name(rng) };
        let rel = parent.join(name);
        let full = root.join(&rel);
        if fs::symlink_metadata(&full).is_ok() {
            continue;
        }
        match rng.below(10) {
            0..=1 => {
                fs::create_dir(&full).unwrap();
                dirs.push(rel.clone());
                made_dirs.push(rel);
            }
            2 if !files.is_empty() => {
                // Relative, absolute (inside the appliance) or dangling.
                let target = match rng.below(3) {
                    0 => PathBuf::from("..").join(rng.pick(&files)),
                    1 => Path::new("/").join(rng.pick(&files)),
                    _ => PathBuf::from("nowhere/at/all"),
                };
                symlink(target, &full).unwrap();
            }
            3 if !files.is_empty() && fancy_names => {
                let other = rng.pick(&files).clone();
                fs::hard_link(root.join(&other), &full).unwrap();
            }
            _ => {
                fs::write(&full, content(rng)).unwrap();
                dress(rng, &full, false);
                files.push(rel);
            }
        }
    }
    // Directories last, so their times and modes are not disturbed by what went inside.
    for d in made_dirs.iter().rev() {
        dress(rng, &root.join(d), true);
    }
    files
}

/// The supermin.d for `seed`: base image, hostfiles, excludefiles; the host part lives in
/// `host` (absolute paths inside the scratch directory).
fn appliance(s: &Scratch, seed: u64) -> PathBuf {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let image = s.path("image");
    for d in ["etc", "usr/share/doc", "var/lib"] {
        fs::create_dir_all(image.join(d)).unwrap();
    }
    grow(&mut rng, &image, 300, true);
    let d = s.path("supermin.d");
    fs::create_dir_all(&d).unwrap();
    ok(Command::new("tar").arg("-C").arg(&image).args(["-czf"]).arg(d.join("base.tar.gz")).arg("."));

    let host = s.path("host");
    fs::create_dir_all(host.join("sub")).unwrap();
    let host_files = grow(&mut rng, &host, 60, false);
    let mut globs = vec![format!("{}/data*", host.display()), format!("{}/sub/*", host.display())];
    for f in host_files.iter().take(5) {
        globs.push(host.join(f).display().to_string());
    }
    fs::write(d.join("hostfiles"), globs.join("\n") + "\n").unwrap();

    // Excludes apply to package files only (as in the original), so there is a package.
    fs::write(d.join("packages"), "dash\n").unwrap();
    let excludes = ["-/usr/share/doc/*", "-/usr/share/man/*/*", "-*.gz", "-/usr/bin/dash"];
    fs::write(d.join("excludefiles"), excludes.join("\n") + "\n").unwrap();
    d
}

fn differential(seed: u64) {
    let s = Scratch::new(&format!("differential-{seed}"));
    let d = appliance(&s, seed);
    let (orig, built) = (s.path("orig"), s.path("built"));
    ok(oracle().args(["--build", "-f", "chroot"]).arg(&d).arg("-o").arg(&orig));
    ok(ours().args(["--build", "-f", "chroot"]).arg(&d).arg("-o").arg(&built));
    let tree = dump(&orig);
    let count = |k: char| tree.values().filter(|e| e.kind == k).count();
    let linked = tree.values().filter(|e| e.kind == 'f' && e.nlink > 1).count();
    let from_host = tree.keys().filter(|p| p.starts_with(&s.path("host").display().to_string())).count();
    eprintln!(
        "seed {seed}: {} dirs, {} files ({linked} hard-linked, {from_host} host entries), {} symlinks",
        count('d'),
        count('f'),
        count('l')
    );
    assert!(count('f') > 100 && count('l') > 10 && linked > 0 && from_host > 5, "seed {seed}: the tree is too plain");
    // The excludes took effect, and the package is there otherwise.
    assert!(tree.contains_key("/usr/share/doc") && !tree.keys().any(|p| p.starts_with("/usr/share/doc/")));
    assert!(!tree.contains_key("/usr/bin/dash") && tree.keys().any(|p| p.starts_with("/usr/share/man/man1")));
    let nothing = |_: &str| false;
    compare(&orig, &built).assert_same_but(&format!("seed {seed}, ours against the original"), nothing);

    let mp = s.path("mnt");
    {
        let _m = mount(&d, &mp, &[]);
        compare(&built, &mp).assert_same_but(&format!("seed {seed}, the view against our build"), nothing);
    }

    // The tar archive lists what GNU tar makes of a chroot build, and unpacks to it. Both
    // builds pin SOURCE_DATE_EPOCH: the host part's parents (this scratch directory,
    // /var/tmp) change between two builds as this and parallel tests come and go, and the
    // listing shows directory times.
    let (t, pinned_tree) = (s.path("tar"), s.path("tar-tree"));
    let pinned = |format: &str, out: &Path| {
        ok(ours().env("SOURCE_DATE_EPOCH", pinned_epoch()).args(["--build", "-f", format]).arg(&d).arg("-o").arg(out));
    };
    pinned("chroot", &pinned_tree);
    pinned("tar", &t);
    assert_tar_is_tree(&t.join("appliance.tar"), &pinned_tree, &s.0, &format!("seed {seed}, our tar archive"));

    // The ext2 image holds the same tree, plus lost+found and the kernel's modules.
    let e = s.path("ext2");
    ok(ours().args(["--build", "-f", "ext2"]).arg(&d).arg("-o").arg(&e));
    let fsck = run(Command::new("e2fsck").arg("-fn").arg(e.join("root")));
    assert!(fsck.status.success(), "seed {seed}: e2fsck: {}", stdout(&fsck));
    let loop_mp = s.path("ext2-mnt");
    let _mounted = loop_mount(&e.join("root"), &loop_mp);
    let modules = |p: &str| {
        p.starts_with("/lost+found")
            || p == "/usr/lib"
            || p.starts_with("/usr/lib/modules")
            || p == "/lib"
            || p.starts_with("/lib/modules")
    };
    compare(&built, &loop_mp).assert_same_but(&format!("seed {seed}, our ext2 image against our build"), modules);
}

#[test]
fn random_appliance_1() {
    differential(1);
}

#[test]
fn random_appliance_2() {
    differential(2);
}

#[test]
fn random_appliance_3() {
    differential(3);
}
