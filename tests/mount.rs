//! The lazy view (`supermin mount`) against oracles: the chroot build of the same input (entry
//! for entry), the host's own programs and files, and the kernel's mount table. Mounts are
//! real (the CI runs as root) and always undone by a guard, also when an assertion fails.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn mount_options(mp: &Path) -> String {
    let mp = fs::canonicalize(mp).unwrap();
    let table = fs::read_to_string("/proc/mounts").unwrap();
    let line = table.lines().find(|l| l.split(' ').nth(1) == Some(mp.to_str().unwrap())).expect("mounted");
    line.split(' ').nth(3).unwrap().to_string()
}

/// bash+coreutils prepared, and built as a chroot: (supermin.d, built tree).
fn prepare_and_build_bash(s: &Scratch) -> (PathBuf, PathBuf) {
    let d = prepare_bash(s);
    let built = s.path("built");
    ok(ours().args(["--build", "-f", "chroot"]).arg(&d).arg("-o").arg(&built));
    (d, built)
}

/// bash+coreutils prepared and mounted with the defaults: (supermin.d, mountpoint, guard).
fn mounted_bash(s: &Scratch) -> (PathBuf, PathBuf, Mounted) {
    let d = prepare_bash(s);
    let mp = s.path("mnt");
    let m = mount(&d, &mp, &[]);
    (d, mp, m)
}

fn prepare_bash(s: &Scratch) -> PathBuf {
    let d = s.path("supermin.d");
    ok(ours().args(["--prepare", "--use-installed", "bash", "coreutils", "-o"]).arg(&d));
    d
}

/// `program` run as the unprivileged user nobody (65534), without supplementary groups.
fn as_nobody(program: &str) -> Command {
    let mut c = Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups", program]);
    c
}

/// Wait (up to 30 s) until the foreground mount `child` has mounted `mp`.
fn wait_until_mounted(mp: &Path, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !is_mounted(mp) {
        assert!(Instant::now() < deadline && child.try_wait().unwrap().is_none(), "foreground mount did not come up");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn view_equals_build(name: &str, input: &Path, s: &Scratch, mount_args: &[&str]) {
    let built = s.path(&format!("{name}-built"));
    ok(ours().args(["--build", "-f", "chroot"]).arg(input).arg("-o").arg(&built));
    let mp = s.path(&format!("{name}-mnt"));
    let _m = mount(input, &mp, mount_args);
    assert_same_tree(&built, &mp);
}

#[test]
fn view_of_bash_coreutils_equals_the_chroot_build() {
    let s = Scratch::new("mount-bash");
    let d = prepare_bash(&s);
    view_equals_build("bash", &d, &s, &[]);
}

/// Inodes and 4 KiB blocks of file contents in a tree, each inode once (hard links).
fn tree_usage(root: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let (mut inodes, mut blocks) = (0, 0);
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = fs::symlink_metadata(&p).unwrap();
        if !seen.insert(m.ino()) {
            continue;
        }
        inodes += 1;
        if m.is_file() {
            blocks += m.size().div_ceil(4096);
        }
        if m.is_dir() {
            stack.extend(fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
    }
    (inodes, blocks)
}

/// `df` on a view tells how big the appliance is: its inodes and the blocks its files fill,
/// counted on the chroot build of the same input.
#[test]
fn df_of_a_view_is_the_size_of_the_build() {
    let s = Scratch::new("mount-df");
    let (d, built) = prepare_and_build_bash(&s);
    let mp = s.path("mnt");
    let _m = mount(&d, &mp, &[]);
    let out = ok(Command::new("stat").args(["-f", "-c", "%S %b %f %c %d"]).arg(&mp));
    let v: Vec<u64> = String::from_utf8_lossy(&out.stdout).split_whitespace().map(|x| x.parse().unwrap()).collect();
    let (inodes, blocks) = tree_usage(&built);
    assert_eq!(v, vec![4096, blocks, 0, inodes, 0], "block size, blocks, free, inodes, free inodes");
}

/// With passthrough forced on, so that both ways of serving host files are compared (this
/// appliance's default is without).
#[test]
fn view_of_libguestfs_appliance_equals_the_chroot_build() {
    let s = Scratch::new("mount-guestfs");
    view_equals_build("guestfs", Path::new(LIBGUESTFS_APPLIANCE), &s, &["--passthrough"]);
}

/// The daemon's count of read syscalls and of bytes read (`/proc/PID/io`): every request
/// the kernel sends is one read of /dev/fuse, and host file bytes it serves are read too.
fn daemon_io(pid: i32) -> (u64, u64) {
    let io = fs::read_to_string(format!("/proc/{pid}/io")).unwrap();
    let field = |name: &str| -> u64 {
        let line = io.lines().find(|l| l.starts_with(name)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    (field("syscr:"), field("rchar:"))
}

/// Open and read every file by every name (tar would skip empty files and second names).
fn read_every_file(root: &Path) {
    ok(Command::new("find").arg(root).args(["-type", "f", "-exec", "cat", "{}", "+"]).stdout(Stdio::null()));
}

/// Requests the daemon of `mp` receives while every file is read a second time.
fn requests_for_a_second_read(mp: &Path) -> u64 {
    read_every_file(mp);
    let pid = daemon_pid(mp);
    let (before, _) = daemon_io(pid);
    read_every_file(mp);
    daemon_io(pid).0 - before
}

/// An appliance of many small files is mounted without passthrough, so the kernel neither
/// asks the daemon about opens nor forgets what it read: reading every file a second time
/// sends the daemon nothing. Forcing passthrough costs a round trip per open.
#[test]
fn reading_an_appliance_again_never_reaches_the_daemon() {
    // Requests are counted as the daemon's reads of /dev/fuse.
    let _dev_fuse = KernelUring::set(false);
    let s = Scratch::new("mount-quiet");
    let (d, mp, _m) = mounted_bash(&s);
    let found = ok(Command::new("find").arg(&mp).args(["-type", "f"]));
    let files = found.stdout.iter().filter(|&&b| b == b'\n').count() as u64;
    assert!(files > 100, "only {files} files in the view");
    // A few are allowed (the kernel may look up `.` again), not one per file.
    let requests = requests_for_a_second_read(&mp);
    assert!(requests < 16, "{requests} requests for a second read of {files} files");
    drop(_m);

    let _m = mount(&d, &mp, &["--passthrough"]);
    let requests = requests_for_a_second_read(&mp);
    assert!(requests >= files, "{requests} requests for {files} opens with passthrough");
}

/// Kernel release as (major, minor).
fn kernel_version() -> (u32, u32) {
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut parts = release.trim().split(|c: char| !c.is_ascii_digit()).map(|p| p.parse().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// An appliance whose bytes are in one large host file is mounted with passthrough: the
/// kernel reads the host file itself and the daemon reads none of its bytes. With
/// `--no-passthrough` the daemon reads all of them. Both over `/dev/fuse` and io_uring.
#[test]
fn a_large_host_file_is_read_by_the_kernel_not_the_daemon() {
    let (major, minor) = kernel_version();
    assert!((major, minor) >= (6, 9), "FUSE passthrough needs Linux 6.9 or later; this kernel is {major}.{minor}");
    let s = Scratch::new("mount-large");
    let fs_type = ok(Command::new("stat").args(["-f", "-c", "%T"]).arg(s.path(""))).stdout;
    assert!(
        String::from_utf8_lossy(&fs_type).trim() != "overlayfs",
        "{} is on overlayfs, where the kernel refuses passthrough under FUSE: set SUPERMIN_TEST_TMP to another filesystem",
        s.0.display()
    );
    let big = s.path("big");
    let size: u64 = 32 << 20;
    let bytes: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
    fs::write(&big, &bytes).unwrap();
    let d = s.path("supermin.d");
    fs::create_dir_all(&d).unwrap();
    fs::write(d.join("hostfiles"), format!("{}\n", big.display())).unwrap();
    let mp = s.path("mnt");
    let inside = mp.join(big.strip_prefix("/").unwrap());
    let cases = [(&[][..], false), (&["--no-passthrough"][..], true)];
    for ((args, daemon_reads_it), uring) in cases.iter().flat_map(|c| [(*c, false), (*c, true)]) {
        let _transport = KernelUring::set(uring);
        let _m = mount(&d, &mp, args);
        let pid = daemon_pid(&mp);
        assert_eq!(uring_threads(pid) > 0, uring, "{args:?}: io_uring {uring}");
        let (_, before) = daemon_io(pid);
        assert!(fs::read(&inside).unwrap() == bytes, "{args:?}: the view's bytes differ from the host file");
        let (_, after) = daemon_io(pid);
        let read = after - before;
        if daemon_reads_it {
            assert!(read >= size, "{args:?}: the daemon read {read} bytes of a {size}-byte file");
        } else {
            assert!(read < size / 8, "{args:?}: the daemon read {read} bytes of a {size}-byte file");
        }
    }
}

#[test]
fn programs_run_from_the_view_in_a_chroot() {
    let s = Scratch::new("mount-chroot");
    let d = prepare_bash(&s);
    let mp = s.path("mnt");
    let _m = mount(&d, &mp, &["--suid", "--dev"]);
    let opts = mount_options(&mp);
    assert!(!opts.contains("nosuid") && !opts.contains("nodev"), "{opts}");
    // exec, the dynamic loader, mmap of libraries from the view; output checked against the
    // host's own copies of the same programs.
    let out = ok(Command::new("chroot").arg(&mp).args([
        "/bin/bash",
        "-c",
        "echo $((6*7)); /usr/bin/sort --version | /usr/bin/head -n1; /usr/bin/sha256sum /usr/bin/ls",
    ]));
    let text = String::from_utf8_lossy(&out.stdout);
    let host_sort = ok(Command::new("sh").args(["-c", "sort --version | head -n1"])).stdout;
    let host_sum = sha256(Path::new("/usr/bin/ls"));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "42");
    assert_eq!(lines[1], String::from_utf8_lossy(&host_sort).trim());
    assert_eq!(lines[2].split_whitespace().next(), Some(host_sum.as_str()));
}

#[test]
fn defaults_are_private_nosuid_nodev_and_read_only() {
    let s = Scratch::new("mount-defaults");
    let (_, mp, _m) = mounted_bash(&s);
    let opts = mount_options(&mp);
    for o in ["ro", "nosuid", "nodev"] {
        assert!(opts.split(',').any(|x| x == o), "{o} missing from {opts}");
    }
    // Another user cannot even enter.
    let other = run(as_nobody("ls").arg(&mp));
    assert!(!other.status.success(), "another user could list the mount");
    // Nothing is writable, also for its owner.
    let err = fs::write(mp.join("new-file"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    // Names that are not in the appliance are absent (and stay so: negative entries).
    for _ in 0..2 {
        assert!(!mp.join("usr/share/doc/nonexistent").exists());
    }
}

#[test]
fn allow_other_enforces_modes() {
    let s = Scratch::new("mount-allow-other");
    // The scratch directory must be traversable by the other user.
    fs::set_permissions(&s.0, fs::Permissions::from_mode(0o755)).unwrap();
    let data = s.path("data");
    fs::create_dir_all(&data).unwrap();
    let (public, private) = (data.join("public"), data.join("private"));
    fs::write(&public, b"public\n").unwrap();
    fs::write(&private, b"private\n").unwrap();
    fs::set_permissions(&data, fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(&private, fs::Permissions::from_mode(0o600)).unwrap();
    let d = s.path("supermin.d");
    fs::create_dir_all(&d).unwrap();
    fs::write(d.join("hostfiles"), format!("{}\n{}\n", public.display(), private.display())).unwrap();
    let mp = s.path("mnt");
    let _m = mount(&d, &mp, &["--allow-other"]);
    let nobody = |p: &Path| {
        let inside = mp.join(p.strip_prefix("/").unwrap());
        run(as_nobody("cat").arg(inside))
    };
    // Oracle: what the same user gets from the host's files.
    for f in [&public, &private] {
        let host = run(as_nobody("cat").arg(f));
        let view = nobody(f);
        assert_eq!(view.status.success(), host.status.success(), "{}", f.display());
        assert_eq!(view.stdout, host.stdout);
    }
    assert!(!nobody(&private).status.success(), "the 0600 file must not be readable by another user");
    let opts = mount_options(&mp);
    assert!(opts.contains("default_permissions") && opts.contains("allow_other"), "{opts}");
}

/// As common::assert_one_line_error, and the line starts with the program's name.
fn one_line_error(out: &Output, needle: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert!(err.starts_with("supermin: ") && err.trim_end().lines().count() == 1, "not one line: {err:?}");
    assert!(err.contains(needle), "{err:?} should mention {needle:?}");
}

#[test]
fn bad_mountpoints_are_one_line_errors() {
    let s = Scratch::new("mount-errors");
    let d = prepare_bash(&s);
    let missing = s.path("missing");
    one_line_error(&run(ours().arg("mount").arg(&d).arg(&missing)), "does not exist");
    let full = s.path("full");
    fs::create_dir_all(&full).unwrap();
    fs::write(full.join("x"), b"").unwrap();
    one_line_error(&run(ours().arg("mount").arg(&d).arg(&full)), "not empty");
    one_line_error(&run(ours().arg("mount").arg("--daemon").arg(&d).arg(&full)), "not empty");
    let mp = s.path("mnt");
    let _m = mount(&d, &mp, &[]);
    one_line_error(&run(ours().arg("mount").arg("--daemon").arg(&d).arg(&mp)), "already mounted");
    // No /dev/fuse: a private mount namespace with an empty /dev.
    let empty = s.path("empty");
    fs::create_dir_all(&empty).unwrap();
    let script = format!("mount -t tmpfs none /dev && exec {OURS} mount --fuse {} {}", d.display(), empty.display());
    one_line_error(&run(Command::new("unshare").args(["-m", "sh", "-c", &script])), "/dev/fuse");
    // No permission: another user cannot even look into a root-only mountpoint.
    let private = s.path("private");
    fs::create_dir_all(&private).unwrap();
    fs::set_permissions(&s.0, fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(&private, fs::Permissions::from_mode(0o700)).unwrap();
    let out = run(as_nobody(OURS).arg("mount").arg(&d).arg(&private));
    one_line_error(&out, "ermission denied");
    assert!(!is_mounted(&private));
}

#[test]
fn foreground_mount_ends_cleanly_on_sigint_and_sigterm() {
    let s = Scratch::new("mount-signals");
    let d = prepare_bash(&s);
    for sig in [libc::SIGINT, libc::SIGTERM] {
        let mp = s.path(&format!("mnt{sig}"));
        fs::create_dir_all(&mp).unwrap();
        let _guard = Mounted::new(&mp);
        let mut child = ours().args(["mount", "--fuse"]).arg(&d).arg(&mp).spawn().unwrap();
        wait_until_mounted(&mp, &mut child);
        assert!(mp.join("usr/bin/bash").exists());
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, sig) };
        let status = child.wait().unwrap();
        assert!(status.success(), "signal {sig}: exit {status}");
        assert!(!is_mounted(&mp), "signal {sig}: still mounted");
    }
}

#[test]
fn fusermount_and_supermin_umount_end_the_daemon() {
    let s = Scratch::new("mount-umount");
    let d = prepare_bash(&s);
    let mp = s.path("mnt");
    let m = mount(&d, &mp, &[]);
    let pid = daemon_pid(&mp);
    ok(Command::new("fusermount3").arg("-u").arg(&mp));
    assert!(!is_mounted(&mp));
    assert!(wait_gone(pid), "daemon {pid} still running after fusermount3 -u");
    drop(m);
    let m = mount(&d, &mp, &[]);
    let pid = daemon_pid(&mp);
    ok(ours().arg("umount").arg(&mp));
    assert!(!is_mounted(&mp));
    // `supermin umount` waits for the daemon itself.
    assert!(!running(pid), "daemon still running when umount returned");
    drop(m);
    one_line_error(&run(ours().arg("umount").arg(&mp)), "not mounted");
}

#[test]
fn a_vanished_host_file_fails_alone() {
    let s = Scratch::new("mount-vanish");
    let data = s.path("data");
    fs::create_dir_all(&data).unwrap();
    let (a, b) = (data.join("a"), data.join("b"));
    fs::write(&a, b"first\n").unwrap();
    fs::write(&b, b"second\n").unwrap();
    let d = s.path("supermin.d");
    fs::create_dir_all(&d).unwrap();
    fs::write(d.join("hostfiles"), format!("{}\n{}\n", a.display(), b.display())).unwrap();
    let mp = s.path("mnt");
    let _m = mount(&d, &mp, &[]);
    let inside = |p: &Path| mp.join(p.strip_prefix("/").unwrap());
    fs::remove_file(&a).unwrap();
    let err = fs::read(inside(&a)).unwrap_err();
    assert!(matches!(err.raw_os_error(), Some(libc::ENOENT) | Some(libc::EIO)), "{err}");
    assert_eq!(fs::read(inside(&b)).unwrap(), b"second\n");
    assert!(inside(&data).is_dir(), "the mount survived");
}

/// The mount's record of its inputs is read at whatever length it has (it was once read into a
/// 256-byte buffer, and a mount with long input paths was then taken for a supermin.d).
#[test]
fn materialize_a_mount_whose_inputs_have_long_paths() {
    let s = Scratch::new("materialize-long");
    let (d, built) = prepare_and_build_bash(&s);
    let long = s.path(&format!("{}/{}", "a".repeat(200), "b".repeat(200)));
    fs::create_dir_all(&long).unwrap();
    let copy = long.join("supermin.d");
    ok(Command::new("cp").arg("-a").arg(&d).arg(&copy));
    let mp = s.path("mnt");
    let _m = mount(&copy, &mp, &[]);
    assert!(xattr(&mp, "user.supermin.inputs").is_some_and(|v| v.len() > 400));
    let out = s.path("out");
    ok(ours().arg("materialize").arg(&mp).args(["-f", "chroot", "-o"]).arg(&out));
    assert_same_tree(&built, &out);
}

#[test]
fn materialize_from_a_supermin_d_and_from_a_mount_equals_the_build() {
    let s = Scratch::new("materialize");
    let (d, built) = prepare_and_build_bash(&s);
    let from_dir = s.path("from-dir");
    ok(ours().args(["materialize"]).arg(&d).args(["-f", "chroot", "-o"]).arg(&from_dir));
    assert_same_tree(&built, &from_dir);
    let mp = s.path("mnt");
    let _m = mount(&d, &mp, &[]);
    let from_mount = s.path("from-mount");
    // From another directory: the mount's record holds absolute input paths.
    ok(ours().current_dir("/").arg("materialize").arg(&mp).args(["-f", "chroot", "-o"]).arg(&from_mount));
    assert_same_tree(&built, &from_mount);
    // Bootable formats go through the same build path: the same output files as --build.
    let via_mount = s.path("ext2-from-mount");
    ok(ours().arg("materialize").arg(&mp).args(["-f", "ext2", "-o"]).arg(&via_mount));
    let via_build = s.path("ext2-build");
    ok(ours().args(["--build", "-f", "ext2"]).arg(&d).arg("-o").arg(&via_build));
    let names = |p: &Path| {
        let mut v: Vec<(String, u64)> = fs::read_dir(p)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.file_name().to_string_lossy().into_owned(), fs::symlink_metadata(e.path()).unwrap().len())
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(&via_mount), names(&via_build));
}

#[test]
fn usage_mistakes_are_one_line_with_exit_2() {
    for args in [&["mount"][..], &["mount", "/only-one"], &["umount"], &["materialize", "/x"]] {
        let out = run(ours().args(args));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.starts_with("supermin: ") && err.trim_end().lines().count() == 1, "{args:?}: {err:?}");
    }
}

#[test]
fn a_foreground_mount_unmounted_from_outside_exits_quietly() {
    let s = Scratch::new("mount-outside");
    let d = prepare_bash(&s);
    let mp = s.path("mnt");
    fs::create_dir_all(&mp).unwrap();
    let _guard = Mounted::new(&mp);
    let mut child = ours().args(["mount", "--fuse"]).arg(&d).arg(&mp).stderr(Stdio::piped()).spawn().unwrap();
    wait_until_mounted(&mp, &mut child);
    ok(ours().arg("umount").arg(&mp));
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", out.status);
    assert!(out.stderr.is_empty(), "{}", stderr(&out));
}

#[test]
fn base_images_are_served_from_a_decompressed_mapped_cache() {
    let s = Scratch::new("mount-cache");
    let d = prepare_bash(&s);
    let cache = s.path("cache");
    let mp = s.path("mnt");
    let mut cmd = ours();
    cmd.env("XDG_CACHE_HOME", &cache);
    let _m = mount_by(cmd, &d, &mp, &[]).0;
    // Oracle: gunzip of the base image, decoded here independently.
    let mut expected = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(fs::File::open(d.join("base.tar.gz")).unwrap()),
        &mut expected,
    )
    .unwrap();
    let entries: Vec<PathBuf> = fs::read_dir(cache.join("supermin-rs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "tar"))
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(fs::read(&entries[0]).unwrap(), expected);
    let mode = fs::metadata(cache.join("supermin-rs")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "the cache directory must be private");
    // The daemon maps it (rather than holding the tar in its heap).
    let pid = daemon_pid(&mp);
    let maps = fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    assert!(maps.contains(entries[0].to_str().unwrap()), "cache file not mapped by the daemon");
}

/// Host files on overlayfs (a container's root) cannot back passthrough under FUSE: the
/// kernel refuses the first large file. That file is still served, and the connection then
/// stops asking about opens, so `--passthrough` costs nothing where it cannot work.
#[test]
fn refused_passthrough_falls_back_to_no_opens() {
    let s = Scratch::new("mount-refused");
    for d in ["lower", "upper", "work", "ov", "d"] {
        fs::create_dir_all(s.path(d)).unwrap();
    }
    let big: Vec<u8> = (0..(8u32 << 20)).map(|i| (i % 253) as u8).collect();
    fs::write(s.path("lower/big"), &big).unwrap();
    for i in 0..3 {
        fs::write(s.path(&format!("lower/small{i}")), format!("{i}\n")).unwrap();
    }
    let ov = s.path("ov");
    let layers = format!(
        "lowerdir={},upperdir={},workdir={}",
        s.path("lower").display(),
        s.path("upper").display(),
        s.path("work").display()
    );
    let _ov = Mounted::new(&ov);
    let mounted = run(Command::new("mount").args(["-t", "overlay", "overlay", "-o", &layers]).arg(&ov));
    let why = String::from_utf8_lossy(&mounted.stderr);
    assert!(
        mounted.status.success(),
        "cannot mount overlayfs here: {}",
        why.trim().lines().next().unwrap_or("no message")
    );
    fs::write(s.path("d/hostfiles"), format!("{}/*\n", ov.display())).unwrap();
    let mp = s.path("mnt");
    let _m = mount(&s.path("d"), &mp, &["--passthrough"]);
    let inside = |name: &str| mp.join(ov.strip_prefix("/").unwrap()).join(name);
    assert!(fs::read(inside("big")).unwrap() == big, "the refused file's bytes differ");
    assert_eq!(fs::read_to_string(inside("small2")).unwrap(), "2\n");
    let requests = requests_for_a_second_read(&mp);
    assert!(requests < 4, "{requests} requests for a second read of 4 files");
}

/// A user without privileges mounts through fusermount3 (from fuse3), reads host files
/// through the view as they are on the host, and unmounts with `fusermount3 -u`.
#[test]
fn an_unprivileged_user_mounts_reads_and_unmounts() {
    let s = Scratch::new("mount-user");
    let d = prepare_bash(&s);
    fs::set_permissions(&s.0, fs::Permissions::from_mode(0o755)).unwrap();
    let mp = s.path("mnt");
    fs::create_dir_all(&mp).unwrap();
    ok(Command::new("chown").arg("65534:65534").arg(&mp));
    let _guard = Mounted::new(&mp);
    ok(as_nobody(OURS).args(["mount", "--daemon"]).arg(&d).arg(&mp));
    assert!(is_mounted(&mp));
    assert!(mount_options(&mp).split(',').any(|o| o == "user_id=65534"), "{}", mount_options(&mp));
    let inside = stdout(&ok(as_nobody("sha256sum").arg(mp.join("usr/bin/bash"))));
    assert_eq!(inside.split(' ').next(), Some(sha256(Path::new("/usr/bin/bash")).as_str()));
    ok(as_nobody("fusermount3").arg("-u").arg(&mp));
    assert!(!is_mounted(&mp));
}

/// `mount -v --daemon INPUT MP` with the cache in `cache`: the guard and what `-v` said.
fn mount_cached(cache: &Path, input: &Path, mp: &Path) -> (Mounted, String) {
    let mut cmd = ours();
    cmd.env("XDG_CACHE_HOME", cache);
    let (guard, out) = mount_by(cmd, input, mp, &["-v"]);
    (guard, stderr(&out))
}

/// How a mount found its manifest: from the cache, or resolved (and why, when the cache had
/// an entry the host no longer agrees with).
#[derive(Debug, PartialEq)]
enum Found {
    Cached,
    /// From the cache, with the times of host directories whose entries changed refreshed.
    Refreshed,
    /// No usable entry (none for this key, or unreadable).
    Resolved,
    /// The entry was stale: the changed question, as `-v` names it.
    Stale(String),
}

/// The chroot build of `input` and a mount of it, compared; how the mount found its manifest.
fn cached_view_equals_build(s: &Scratch, input: &Path, round: &str) -> Found {
    let began = std::time::SystemTime::now();
    let built = s.path(&format!("out/built-{round}"));
    // The oracle resolves afresh: a cache of its own, empty.
    let fresh_cache = s.path(&format!("out/no-cache-{round}"));
    ok(ours().env("XDG_CACHE_HOME", &fresh_cache).args(["--build", "-f", "chroot"]).arg(input).arg("-o").arg(&built));
    let (_m, said) = mount_cached(&s.path("cache"), input, &s.path("out/mnt"));
    assert_same_tree(&built, &s.path("out/mnt"));
    // Directory times too, but for host directories something else changed meanwhile (the
    // build and the mount then each saw a different time, both right).
    let quiet =
        |p: &(String, String)| fs::metadata(Path::new("/").join(&p.0)).map_or(true, |m| m.modified().unwrap() < began);
    let times = |root: &Path| dir_times(root).into_iter().filter(quiet).collect::<Vec<_>>();
    assert_eq!(times(&built), times(&s.path("out/mnt")), "{round}: directory times");
    println!("{round}: {}", said.lines().filter(|l| l.contains("resolve")).collect::<Vec<_>>().join(" / "));
    if said.contains("as resolved before") {
        return if said.contains("changed only in time") { Found::Refreshed } else { Found::Cached };
    }
    match said.split_once("cached resolve is stale: ") {
        Some((_, rest)) => Found::Stale(rest.lines().next().unwrap_or_default().to_string()),
        None => Found::Resolved,
    }
}

/// Every directory under `root` but `root` itself, and its modification time.
fn dir_times(root: &Path) -> Vec<(String, String)> {
    let out = ok(Command::new("find").arg(root).args(["-mindepth", "1", "-type", "d", "-printf", "%P %T@\\n"]));
    let mut times: Vec<(String, String)> =
        stdout(&out).lines().filter_map(|l| l.rsplit_once(' ')).map(|(p, t)| (p.to_string(), t.to_string())).collect();
    times.sort();
    times
}

/// A second mount of the same appliance takes the manifest from the cache, and equals the
/// chroot build; any change to the inputs, a host file the resolve looked at, or what a
/// hostfiles pattern matches is seen, and the view is resolved again; a corrupt entry is a miss.
#[test]
fn the_resolved_manifest_cache_is_used_only_while_the_host_is_unchanged() {
    let s = Scratch::new("mount-manifest-cache");
    let d = prepare_bash(&s);
    for dir in ["out", "cache"] {
        fs::create_dir(s.path(dir)).unwrap();
    }
    // Every directory of the appliance is there with its mtime: keep out /tmp and /var/tmp,
    // where other tests come and go, and put the host files under /var/lib.
    fs::write(d.join("excludefiles"), b"-/var/tmp\n-/tmp\n").unwrap();
    let host = Scratch(PathBuf::from(format!("/var/lib/supermin-test-mount-cache-{}", std::process::id())));
    let data = host.path("data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("a.conf"), b"a\n").unwrap();
    fs::write(d.join("hostfiles"), format!("{}/*.conf\n", data.display())).unwrap();
    let a_changed = Found::Stale(format!("Lstat({:?}) changed", data.join("a.conf").display().to_string()));
    assert_eq!(cached_view_equals_build(&s, &d, "first"), Found::Resolved, "nothing cached yet");
    assert_eq!(cached_view_equals_build(&s, &d, "again"), Found::Cached, "the second mount did not use the cache");

    fs::set_permissions(data.join("a.conf"), fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(cached_view_equals_build(&s, &d, "chmod"), a_changed, "a changed mode was not seen");
    fs::write(data.join("a.conf"), b"longer\n").unwrap();
    assert_eq!(cached_view_equals_build(&s, &d, "write"), a_changed, "a changed size was not seen");
    // Entries coming and going in a directory of the appliance (as in /tmp) change only its
    // time: the cached tree is used with that time refreshed.
    let old_time = fs::metadata(&data).unwrap().modified().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    fs::write(data.join("notes.txt"), b"not a hostfile\n").unwrap();
    assert_ne!(fs::metadata(&data).unwrap().modified().unwrap(), old_time);
    assert_eq!(cached_view_equals_build(&s, &d, "entries"), Found::Refreshed, "a directory's new time");
    let view_time = |s: &Scratch| {
        let (_m, _) = mount_cached(&s.path("cache"), &d, &s.path("out/mnt"));
        fs::metadata(s.path("out/mnt").join(data.strip_prefix("/").unwrap())).unwrap().modified().unwrap()
    };
    assert_eq!(view_time(&s), fs::metadata(&data).unwrap().modified().unwrap(), "the view shows the host's time");
    fs::write(data.join("b.conf"), b"b\n").unwrap();
    let glob = Found::Stale(format!("Glob(\"{}/*.conf\") changed", data.display()));
    assert_eq!(cached_view_equals_build(&s, &d, "glob"), glob, "a new hostfiles match was not seen");
    fs::write(d.join("excludefiles"), b"-/var/tmp\n-/tmp\n-/usr/share/doc/*\n").unwrap();
    assert_eq!(cached_view_equals_build(&s, &d, "inputs"), Found::Resolved, "a changed input was not seen");
    assert_eq!(cached_view_equals_build(&s, &d, "settled"), Found::Cached);

    for e in fs::read_dir(s.path("cache/supermin-rs")).unwrap().flatten() {
        if e.path().extension().is_some_and(|x| x == "manifest") {
            fs::write(e.path(), b"not a manifest").unwrap();
        }
    }
    assert_eq!(cached_view_equals_build(&s, &d, "corrupt"), Found::Resolved, "a corrupt entry was used");
    assert_eq!(cached_view_equals_build(&s, &d, "rewritten"), Found::Cached, "the corrupt entry was not replaced");
}

/// The daemon's threads serving io_uring queues (one per possible CPU).
fn uring_threads(pid: i32) -> usize {
    let tasks = fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    tasks.filter(|t| fs::read_to_string(t.as_ref().unwrap().path().join("comm")).unwrap().starts_with("uring-")).count()
}

fn possible_cpus() -> usize {
    let text = fs::read_to_string("/sys/devices/system/cpu/possible").unwrap();
    text.trim().rsplit('-').next().unwrap().parse::<usize>().unwrap() + 1
}

/// Over io_uring, passthrough hands host files from 64 KiB to the kernel (over `/dev/fuse`,
/// from 1 MiB): the daemon reads none of a 64 KiB-1 MiB host file read through `mp`.
fn medium_files_are_read_by_the_kernel(built: &Path, mp: &Path) {
    let host_backed = |rel: &Path| {
        let size = fs::symlink_metadata(built.join(rel)).unwrap().len();
        let host = fs::symlink_metadata(Path::new("/").join(rel));
        (64 << 10..1 << 20).contains(&size) && host.is_ok_and(|h| h.is_file() && h.len() == size)
    };
    let names = fs::read_dir(built.join("usr/bin")).unwrap().map(|e| Path::new("usr/bin").join(e.unwrap().file_name()));
    let rel = names.into_iter().find(|rel| host_backed(rel)).expect("a 64 KiB-1 MiB host file in usr/bin");
    let pid = daemon_pid(mp);
    let (_, before) = daemon_io(pid);
    let bytes = fs::read(mp.join(&rel)).unwrap();
    let read = daemon_io(pid).1 - before;
    assert!(read < bytes.len() as u64 / 8, "{}: the daemon read {read} of its {} bytes", rel.display(), bytes.len());
}

/// With FUSE over io_uring on, every request is answered from the ring queues (a thread per
/// CPU), and the views still equal their chroot builds: host files with attributes from
/// listings (bash), base images from memory, with and without passthrough (libguestfs),
/// listings without attributes (a traced mount), xattrs (the daemon's pid) and `df`.
#[test]
fn over_io_uring_views_equal_the_chroot_build() {
    let (major, minor) = kernel_version();
    assert!((major, minor) >= (6, 14), "FUSE over io_uring needs Linux 6.14 or later; this kernel is {major}.{minor}");
    let _on = KernelUring::set(true);
    let s = Scratch::new("mount-uring");
    let (bash, bash_built) = prepare_and_build_bash(&s);
    let guestfs = Path::new(LIBGUESTFS_APPLIANCE);
    let guestfs_built = s.path("guestfs-built");
    ok(ours().args(["--build", "-f", "chroot"]).arg(guestfs).arg("-o").arg(&guestfs_built));
    let trace = s.path("trace.list");
    let trace_arg = trace.to_str().unwrap();
    let cases: [(&Path, &Path, &[&str]); 4] = [
        (&bash, &bash_built, &[]),
        (guestfs, &guestfs_built, &["--no-passthrough"]),
        (guestfs, &guestfs_built, &["--passthrough"]),
        (&bash, &bash_built, &["--trace", trace_arg]),
    ];
    for (i, (input, built, args)) in cases.into_iter().enumerate() {
        let mp = s.path(&format!("mnt-{i}"));
        let m = mount(input, &mp, args);
        assert_eq!(uring_threads(daemon_pid(&mp)), possible_cpus(), "{args:?}: not served over io_uring");
        if args == ["--passthrough"] {
            medium_files_are_read_by_the_kernel(built, &mp);
        }
        assert_same_tree(built, &mp);
        let out = ok(Command::new("stat").args(["-f", "-c", "%S %b %c"]).arg(&mp));
        let (inodes, blocks) = tree_usage(built);
        assert_eq!(stdout(&out).trim(), format!("4096 {blocks} {inodes}"), "{args:?}: df");
        drop(m);
    }
    assert!(fs::read_to_string(&trace).unwrap().lines().count() > 100, "the traced mount recorded its paths");
}
