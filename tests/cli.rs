//! The command line: messages and exit codes, held against the real supermin where it defines
//! them, and our own one-line errors for bad input (naming the file and the problem, exit 1,
//! previous output untouched).

mod common;

use std::fs;
use std::io::Write;
use std::path::Path;

use common::*;

/// Same exit code and same first line of stderr as the original.
#[test]
fn errors_match_the_original() {
    let t = Scratch::new("cli-errors");
    let x = t.path("x");
    let x = x.to_str().unwrap();
    let cases: &[&[&str]] = &[
        &[],
        &["--prepare", "--build", "-o", x],
        &["--build"],
        &["--build", "-o", x],
        &["--bogus"],
        &["--prepare", "-f", "chroot", "bash", "-o", x],
        &["--build", "-f", "ext3", "/etc/hostname", "-o", x],
        &["--build", "-f", "ext2", "--size", "12Q", "/etc/hostname", "-o", x],
        &["--prepare", "-o", x],
        &["--prepare", "nosuchpackage", "-o", x],
        &["--build", "-f", "chroot", "-o", x],
    ];
    for args in cases {
        let theirs = run(oracle().args(*args));
        let mine = run(ours().args(*args));
        assert_eq!(theirs.status.code(), mine.status.code(), "exit code for {args:?}: {}", stderr(&mine));
        // OCaml's Arg prefixes its own errors with argv[0]; compare what follows the name.
        let first = |s: String| {
            let line = s.lines().next().unwrap_or("").to_string();
            line.split_once(": ").map(|(_, rest)| rest.to_string()).unwrap_or(line)
        };
        let (t1, m1) = (first(stderr(&theirs)), first(stderr(&mine)));
        // We append a hint to argument errors; the original's text must be a prefix.
        assert!(m1.starts_with(t1.trim_end_matches('.')), "message for {args:?}: theirs {t1:?}, ours {m1:?}");
        assert!(!Path::new(x).exists());
    }
}

#[test]
fn version_help_and_drivers() {
    let v = ok(ours().arg("--version"));
    assert!(String::from_utf8_lossy(&v.stdout).starts_with("supermin "));
    let v = ok(ours().arg("-V"));
    assert!(String::from_utf8_lossy(&v.stdout).starts_with("supermin 5."));
    for h in ["--help", "-help"] {
        let out = ok(ours().arg(h));
        assert!(String::from_utf8_lossy(&out.stdout).contains("--prepare"));
    }
    let d = String::from_utf8(ok(ours().arg("--list-drivers")).stdout).unwrap();
    let theirs = String::from_utf8(ok(oracle().arg("--list-drivers")).stdout).unwrap();
    let names = |s: &str| s.lines().map(|l| l.split('\t').next().unwrap().to_string()).collect::<Vec<_>>();
    assert_eq!(names(&d), names(&theirs), "same drivers in the same order");
    assert!(d.contains("debian/dpkg\tdetected"), "{d}");
    for (args, needle) in [(&["--names"][..], "supermin version 4"), (&["--dtb", "x"][..], "5.1.18")] {
        let out = run(ours().args(args));
        assert_eq!(out.status.code(), Some(1));
        assert!(stderr(&out).contains(needle));
    }
}

/// The subcommand spelling is the same code path as the classic flags.
#[test]
fn subcommands_are_the_classic_flags() {
    let t = Scratch::new("subcmd");
    ok(ours().args(["prepare", "--use-installed", "bash", "-o"]).arg(t.path("a")));
    ok(ours().args(["--prepare", "--use-installed", "bash", "-o"]).arg(t.path("b")));
    assert_eq!(fs::read(t.path("a/packages")).unwrap(), fs::read(t.path("b/packages")).unwrap());
    ok(ours().args(["build", "-f", "chroot"]).arg(t.path("a")).arg("-o").arg(t.path("c")));
    assert!(t.path("c/usr/bin/bash").is_file());
}

/// Writes `base.tar.gz`-like tarballs with arbitrary member names (the tar crate refuses `..`
/// when asked nicely, so names are written into the header directly).
fn tarball(members: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, data_or_target) in members {
        let mut h = tar::Header::new_gnu();
        let raw = name.as_bytes();
        h.as_gnu_mut().unwrap().name[..raw.len()].copy_from_slice(raw);
        h.set_entry_type(*kind);
        h.set_mode(if *kind == tar::EntryType::Directory { 0o755 } else { 0o644 });
        h.set_mtime(1_600_000_000);
        h.set_uid(0);
        h.set_gid(0);
        if *kind == tar::EntryType::Symlink {
            h.set_link_name(data_or_target).unwrap();
            h.set_size(0);
            h.set_cksum();
            b.append(&h, &[][..]).unwrap();
        } else {
            h.set_size(data_or_target.len() as u64);
            h.set_cksum();
            b.append(&h, data_or_target.as_bytes()).unwrap();
        }
    }
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

/// Building `input` over a previous output fails with a one-line error naming `needles`; the
/// previous output stays and no temporary directory is left behind.
fn assert_fails_cleanly(t: &Scratch, input: &Path, needles: &[&str]) {
    let out = t.path("out");
    previous_output(&out);
    assert_one_line_error(&run(ours().args(["--build", "-f", "chroot"]).arg(input).arg("-o").arg(&out)), needles);
    assert_previous_output_kept(&out);
    assert!(names_starting_with(&t.0, "out.").is_empty(), "temporary directory left behind");
}

#[test]
fn bad_inputs_give_one_line_errors() {
    let t = Scratch::new("bad-inputs");
    let d = t.path("d");
    fs::create_dir_all(&d).unwrap();

    let f = d.join("packages");
    fs::write(&f, "# a comment\nbash\n").unwrap();
    assert_fails_cleanly(&t, &d, &[f.to_str().unwrap(), "unknown file type"]);

    fs::write(&f, "070701000000").unwrap();
    assert_fails_cleanly(&t, &d, &[f.to_str().unwrap(), "cpio"]);

    fs::write(&f, "-/usr/share/doc/*\n/etc/hostname\n").unwrap();
    assert_fails_cleanly(&t, &d, &[f.to_str().unwrap(), "does not start with '-'"]);

    fs::remove_file(&f).unwrap();
    let tgz = d.join("base.tar.gz");
    let good = gzip(&tarball(&[("./etc/x", tar::EntryType::Regular, "hello")]));
    fs::write(&tgz, &good[..good.len() - 10]).unwrap();
    assert_fails_cleanly(&t, &d, &[tgz.to_str().unwrap(), "corrupt"]);

    let mut corrupt_tar = tarball(&[("./etc/x", tar::EntryType::Regular, "hello")]);
    corrupt_tar[148..156].copy_from_slice(b"0000000\0"); // wrong header checksum
    fs::write(&tgz, gzip(&corrupt_tar)).unwrap();
    assert_fails_cleanly(&t, &d, &[tgz.to_str().unwrap(), "corrupt tar"]);

    fs::write(&tgz, gzip(&tarball(&[("../../etc/passwd", tar::EntryType::Regular, "root::0:0::/:/bin/sh\n")])))
        .unwrap();
    let before = fs::read(t.path("../passwd")).ok();
    assert_fails_cleanly(&t, &d, &[tgz.to_str().unwrap(), "../../etc/passwd", ".."]);
    assert_eq!(fs::read(t.path("../passwd")).ok(), before);

    assert_fails_cleanly(&t, &t.path("nonexistent"), &["nonexistent", "No such file"]);
}

/// Absolute and `..` symlinks in base images resolve inside the appliance, never on the host.
#[test]
fn symlink_escapes_stay_inside() {
    let t = Scratch::new("escape");
    let d = t.path("d");
    fs::create_dir_all(&d).unwrap();
    let canary = format!("supermin-escape-test-{}", std::process::id());
    let tar = tarball(&[
        ("./etc/", tar::EntryType::Directory, ""),
        ("./etc/abs", tar::EntryType::Symlink, "/etc"),
        ("./etc/rel", tar::EntryType::Symlink, "../../../../../../etc"),
        (&format!("./etc/abs/{canary}-a"), tar::EntryType::Regular, "a"),
        (&format!("./etc/rel/{canary}-b"), tar::EntryType::Regular, "b"),
    ]);
    fs::write(d.join("base.tar"), tar).unwrap();
    let out = t.path("out");
    ok(ours().args(["--build", "-f", "chroot"]).arg(&d).arg("-o").arg(&out));
    assert_eq!(fs::read_to_string(out.join(format!("etc/{canary}-a"))).unwrap(), "a");
    assert_eq!(fs::read_to_string(out.join(format!("etc/{canary}-b"))).unwrap(), "b");
    assert!(!Path::new(&format!("/etc/{canary}-a")).exists());
    assert!(!Path::new(&format!("/etc/{canary}-b")).exists());
}

/// Names that are not installed are dropped, as by the original, and said at -v.
#[test]
fn missing_packages_are_dropped_and_reported() {
    let t = Scratch::new("missing-pkg");
    let d = t.path("d");
    fs::create_dir_all(&d).unwrap();
    fs::write(d.join("packages"), "bash\nno-such-package-here\n").unwrap();
    let res = ok(ours().args(["-v", "--build", "-f", "chroot"]).arg(&d).arg("-o").arg(t.path("out")));
    assert!(stderr(&res).contains("no-such-package-here is not installed"));
    assert!(t.path("out/usr/bin/bash").is_file());
}

/// A killed build leaves the previous output as it was.
#[test]
fn killed_build_keeps_previous_output() {
    let t = Scratch::new("killed");
    let out = t.path("out");
    previous_output(&out);
    let mut child = ours().args(["--build", "-f", "chroot", LIBGUESTFS_APPLIANCE, "-o"]).arg(&out).spawn().unwrap();
    // Kill it mid-write: as soon as its temporary output directory exists and carries the
    // builder mark (set right after creation; a kill between the two is not cleaned up).
    let start = std::time::Instant::now();
    while !names_starting_with(&t.0, "out.").iter().any(|n| has_xattr(&t.path(n), "user.supermin.builder")) {
        assert!(start.elapsed().as_secs() < 30, "the build never started writing");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_previous_output_kept(&out);
    // The next build removes what the killed one left behind, and nothing else.
    let leftovers = |t: &Scratch| names_starting_with(&t.0, "out.");
    assert_eq!(leftovers(&t).len(), 1, "the killed build's temporary directory");
    fs::create_dir(t.path("out.keepme12")).unwrap();
    let d = t.path("d");
    fs::create_dir_all(&d).unwrap();
    fs::write(d.join("hostfiles"), "/etc/hostname\n").unwrap();
    ok(ours().args(["--build", "-f", "chroot"]).arg(&d).arg("-o").arg(&out));
    // The swapped-out previous output is removed by a background `rm -rf`: give it time
    // (under a loaded test run it may still be there when the build returns).
    for _ in 0..100 {
        if leftovers(&t).len() == 1 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(leftovers(&t), vec!["out.keepme12".to_string()]);
}

/// A full disk is a one-line error; the previous output stays and nothing is left behind.
#[test]
fn full_disk_is_a_clean_error() {
    assert_eq!(unsafe { libc::geteuid() }, 0, "this test mounts a small tmpfs: run the tests as root (CI does)");
    let t = Scratch::new("full");
    let mnt = t.path("small");
    fs::create_dir_all(&mnt).unwrap();
    let _mounted = Mounted::new(&mnt);
    ok(std::process::Command::new("mount").args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"]).arg(&mnt));
    let d = t.path("d");
    ok(ours().args(["--prepare", "--use-installed", "bash", "coreutils", "-o"]).arg(&d));
    let out = mnt.join("out");
    previous_output(&out);
    let res = run(ours().args(["--build", "-f", "chroot"]).arg(&d).arg("-o").arg(&out));
    assert_one_line_error(&res, &["No space left on device"]);
    assert_previous_output_kept(&out);
    let names: Vec<_> = fs::read_dir(&mnt).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, vec![std::ffi::OsString::from("out")], "temporary directory left behind");
}

/// Inputs are typed by content, with gzip and xz unwrapped: the same appliance with its
/// files compressed (and renamed) builds the same tree, also against the original.
#[test]
fn compressed_inputs_are_sniffed() {
    let t = Scratch::new("xz-inputs");
    let plain = t.path("plain");
    fs::create_dir_all(&plain).unwrap();
    fs::write(plain.join("packages"), "bash\n").unwrap();
    fs::write(plain.join("hostfiles"), "/etc/host*\n").unwrap();
    fs::write(plain.join("base.tar"), tarball(&[("./etc/motd", tar::EntryType::Regular, "hi\n")])).unwrap();
    let packed = t.path("packed");
    fs::create_dir_all(&packed).unwrap();
    for (from, to, tool) in [("packages", "a", "xz"), ("hostfiles", "b", "gzip"), ("base.tar", "c", "xz")] {
        let out = ok(std::process::Command::new(tool).arg("-c").arg(plain.join(from)));
        fs::write(packed.join(to), out.stdout).unwrap();
    }
    for (input, out) in [(&plain, "o1"), (&packed, "o2")] {
        ok(ours().args(["--build", "-f", "chroot"]).arg(input).arg("-o").arg(t.path(out)));
    }
    ok(oracle().args(["--build", "-f", "chroot"]).arg(&packed).arg("-o").arg(t.path("o3")));
    assert_same_tree(&t.path("o1"), &t.path("o2"));
    // Against the original: nothing missing or different (we may add packages it loses).
    compare(&t.path("o3"), &t.path("o2")).assert_same_but("ours against the original", |_| true);
    assert_eq!(fs::read_to_string(t.path("o2/etc/motd")).unwrap(), "hi\n");
    assert!(t.path("o2/etc/hostname").exists());
}

/// Base images unpack as GNU tar does for the original: devices, fifos, hard links (with
/// their link counts), setuid bits, owners, absolute and relative symlinks.
#[test]
fn base_image_special_files_match_the_original() {
    let t = Scratch::new("specials");
    let src = t.path("src");
    fs::create_dir_all(src.join("dev")).unwrap();
    fs::create_dir_all(src.join("usr/bin")).unwrap();
    let sh = |cmd: &str| ok(std::process::Command::new("sh").arg("-c").arg(cmd).current_dir(&src));
    sh("mknod dev/null c 1 3 && mknod dev/sda b 8 0 && mkfifo dev/pipe && chmod 0640 dev/sda");
    sh("echo tool > usr/bin/tool && chmod 4755 usr/bin/tool && ln usr/bin/tool usr/bin/tool2");
    sh("chown 1234:5678 usr/bin/tool && ln -s /usr/bin/tool usr/bin/abs && ln -s tool usr/bin/rel");
    let d = t.path("d");
    fs::create_dir_all(&d).unwrap();
    ok(std::process::Command::new("tar").arg("-C").arg(&src).arg("-czf").arg(d.join("base.tar.gz")).arg("."));
    ok(oracle().args(["--build", "-f", "chroot"]).arg(&d).arg("-o").arg(t.path("theirs")));
    ok(ours().args(["--build", "-f", "chroot"]).arg(&d).arg("-o").arg(t.path("ours")));
    assert_same_tree(&t.path("theirs"), &t.path("ours"));
    let m = fs::metadata(t.path("ours/usr/bin/tool2")).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::nlink(&m), 2);
}
