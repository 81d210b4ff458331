//! Trust (issue 19), the hostile user: an unprivileged account owns directories that an
//! appliance names, or the parent of `-o`, and swaps files and symlinks in them while root
//! builds, mounts and runs. The oracle is a root-only secret file: its bytes must never reach
//! an output, a view or a command, however the races fall, and nothing outside the output may
//! change. Each race is run many times (the counts are in the tests); a failed read or build
//! is allowed, with a one-line error, another file's bytes never are.

mod common;

use std::fs;
use std::io::Read;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{as_hostile, dump, hostile_dir, hostile_user, ours, run, stderr, Scratch, Swapper};

/// The root-only file, and the user's files, all of this length: only the identity check
/// can tell them apart (a size check alone would not).
const SECRET: &[u8] = b"SECRET: root-only bytes 0600\n";
const MINE: &[u8] = b"mine: the user's own file...\n";

/// A root-owned 0600 file in a root-owned 0700 directory.
fn secret(s: &Scratch) -> PathBuf {
    assert_eq!(SECRET.len(), MINE.len());
    let dir = s.path("root-only");
    fs::create_dir_all(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
    let file = dir.join("secret");
    fs::write(&file, SECRET).unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
    file
}

/// A directory of the hostile user with `n` files `f<i>` (its own bytes) and as many
/// symlinks `l<i>` to the secret, and a supermin.d whose hostfiles name the files. Returns
/// the supermin.d, the user's directory and the (file, link) pairs.
fn hostile_input(s: &Scratch, n: usize) -> (PathBuf, PathBuf, Vec<(PathBuf, PathBuf)>) {
    let secret = secret(s);
    let home = hostile_dir(&s.0, "home");
    let (uid, gid) = hostile_user();
    let mut pairs = Vec::new();
    for i in 0..n {
        let (f, l) = (home.join(format!("f{i}")), home.join(format!("l{i}")));
        fs::write(&f, MINE).unwrap();
        std::os::unix::fs::chown(&f, Some(uid), Some(gid)).unwrap();
        symlink(&secret, &l).unwrap();
        std::os::unix::fs::lchown(&l, Some(uid), Some(gid)).unwrap();
        pairs.push((f, l));
    }
    let d = s.path("d");
    fs::create_dir_all(&d).unwrap();
    fs::write(d.join("hostfiles"), format!("{}/f*\n", home.display())).unwrap();
    (d, home, pairs)
}

/// What a build that lost no race may hold at the user's file: its bytes, or a symlink (the
/// resolve saw the link).
fn assert_not_secret(path: &Path) {
    let m = fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if m.file_type().is_symlink() {
        return;
    }
    assert_eq!(fs::read(path).unwrap(), MINE, "{}: another file's bytes", path.display());
}

/// A build that failed must say the file changed, in one line.
fn assert_changed_error(out: &std::process::Output) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("changed since the appliance was resolved"), "{err}");
}

#[test]
fn builds_never_copy_a_file_a_user_swaps_in() {
    let s = Scratch::new("trust-build");
    let (d, home, pairs) = hostile_input(&s, 1);
    let mut swapper = Swapper::start(&pairs[0].0, &pairs[0].1);
    let out = s.path("out");
    let (mut copied, mut failed, mut linked) = (0, 0, 0);
    for round in 0..1000 {
        if round % 2 == 0 {
            let r = run(ours().args(["--build", "-f", "chroot"]).arg(&d).arg("-o").arg(&out));
            if !r.status.success() {
                assert_changed_error(&r);
                failed += 1;
                continue;
            }
            let f = out.join(home.strip_prefix("/").unwrap()).join("f0");
            if fs::symlink_metadata(&f).is_err() {
                panic!("{}: not built: {}", f.display(), stderr(&r));
            }
            assert_not_secret(&f);
            match fs::symlink_metadata(&f).unwrap().file_type().is_symlink() {
                true => linked += 1,
                false => copied += 1,
            }
        } else {
            let r = run(ours().args(["--build", "-f", "tar", "-o", "-"]).arg(&d));
            if !r.status.success() {
                assert_changed_error(&r);
                failed += 1;
                continue;
            }
            assert!(!r.stdout.windows(SECRET.len()).any(|w| w == SECRET), "the archive holds the secret");
        }
    }
    assert!(swapper.alive(), "the swap loop died: the races were not run");
    eprintln!("1000 builds under swaps: {copied} copied the user's file, {linked} its link, {failed} refused");
    assert!(copied > 0 && failed + linked > 0, "the races were not exercised: {copied} {linked} {failed}");
}

/// Read every file of `dir` (as the view shows them): the bytes of each, or the errno.
fn read_all(files: &[PathBuf]) -> Vec<Result<Vec<u8>, i32>> {
    files
        .iter()
        .map(|f| {
            let mut bytes = Vec::new();
            fs::File::open(f)
                .and_then(|mut h| h.read_to_end(&mut bytes))
                .map(|_| bytes)
                .map_err(|e| e.raw_os_error().unwrap_or(0))
        })
        .collect()
}

#[test]
fn the_view_never_serves_a_file_a_user_swapped_in() {
    let s = Scratch::new("trust-view");
    let (d, _home, pairs) = hostile_input(&s, 1000);
    let in_view =
        |mp: &Path| -> Vec<PathBuf> { pairs.iter().map(|(f, _)| mp.join(f.strip_prefix("/").unwrap())).collect() };
    for (round, args) in [&[][..], &["--no-passthrough"][..], &["--passthrough"][..]].iter().enumerate() {
        // Each file replaced by a link to the secret after the mount, before its first read.
        let mp = s.path(&format!("mnt{round}"));
        let _m = common::mount(&d, &mp, args);
        let script = "for (my $i = 0; $i < @ARGV; $i += 2) { rename($ARGV[$i + 1], $ARGV[$i]) or die \"$!\" }";
        let mut replace = Command::new("perl");
        replace.args(["-e", script]);
        for (f, l) in &pairs {
            replace.arg(f).arg(l);
        }
        common::ok(&mut as_hostile(replace));
        for (file, got) in in_view(&mp).iter().zip(read_all(&in_view(&mp))) {
            assert_eq!(got, Err(libc::EIO), "{} with {args:?}: not EIO", file.display());
        }
        // Put the user's files back for the next round.
        for (f, l) in &pairs {
            fs::rename(f, l).unwrap();
            fs::write(f, MINE).unwrap();
            let (uid, gid) = hostile_user();
            std::os::unix::fs::chown(f, Some(uid), Some(gid)).unwrap();
        }
    }
    // Racing: every pair swapped round after round while the view reads each file once.
    let mp = s.path("mnt-race");
    let _m = common::mount(&d, &mp, &[]);
    let mut swapper = Swapper::start_many(&pairs);
    let got = read_all(&in_view(&mp));
    assert!(swapper.alive(), "the swap loop died: the races were not run");
    let served = got.iter().filter(|g| g.is_ok()).count();
    for (file, got) in in_view(&mp).iter().zip(&got) {
        match got {
            Ok(bytes) => assert_eq!(bytes, MINE, "{}: another file's bytes", file.display()),
            Err(e) => assert_eq!(*e, libc::EIO, "{}", file.display()),
        }
    }
    eprintln!("1000 racing first reads: {served} served the user's file, the others EIO");
}

#[test]
fn run_never_reads_a_file_a_user_swaps_in() {
    let s = Scratch::new("trust-run");
    let (d, home, pairs) = hostile_input(&s, 1000);
    // The swaps start once the view is up (a resolve that sees a file change is refused whole).
    let script =
        format!("echo ready; read go; for f in {}/f*; do cat \"$f\" 2>/dev/null; done; exit 0", home.display());
    let tmp = Scratch::new("trust-run-tmp");
    let mut child = ours()
        .env("TMPDIR", &tmp.0)
        .arg("run")
        .arg("examples/supermin.d")
        .arg(&d)
        .args(["--", "/bin/bash", "-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    assert_eq!(line, "ready\n");
    let mut swapper = Swapper::start_many(&pairs);
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"go\n").unwrap();
    let mut rest = Vec::new();
    stdout.read_to_end(&mut rest).unwrap();
    assert!(child.wait().unwrap().success(), "run failed");
    assert!(swapper.alive(), "the swap loop died: the races were not run");
    let out = std::process::Output { status: child.wait().unwrap(), stdout: rest, stderr: Vec::new() };
    assert!(!out.stdout.windows(SECRET.len()).any(|w| w == SECRET), "the command read the secret");
    let mine = out.stdout.windows(MINE.len()).filter(|w| *w == MINE).count();
    eprintln!("1000 racing reads in run: {mine} read the user's file, the others failed");
}

/// The user owns the parent of `-o` and keeps replacing our temporary directory with a symlink
/// to a root-owned directory: nothing there may change (before, the build made its tree there
/// and gave its directories their modes, 1777 included).
#[test]
fn builds_into_a_users_directory_change_nothing_elsewhere() {
    let s = Scratch::new("trust-outdir");
    let target = s.path("target");
    fs::create_dir_all(target.join("tmp")).unwrap();
    fs::write(target.join("tmp/keep"), "root's\n").unwrap();
    let before = dump(&target);
    // An appliance with a world-writable directory, as every appliance has (/tmp).
    let src = s.path("src/tmp");
    fs::create_dir_all(&src).unwrap();
    fs::set_permissions(&src, fs::Permissions::from_mode(0o1777)).unwrap();
    let d = s.path("d");
    fs::create_dir_all(&d).unwrap();
    fs::write(d.join("hostfiles"), format!("{}\n", src.display())).unwrap();
    let parent = hostile_dir(&s.0, "parent");
    let out = parent.join("out");
    let script = "my ($p, $t) = @ARGV; my $n = 0; while (1) { for my $d (glob(\"$p/out.*\")) { \
                  next if -l $d; rename($d, \"$p/moved\" . $n++) and symlink($t, $d) } }";
    let mut mover = Swapper::perl(script, &[&parent, &target]);
    let mut ok = 0;
    for _ in 0..100 {
        for format in ["chroot", "tar"] {
            let r = run(ours().args(["--build", "--force", "-f", format]).arg(&d).arg("-o").arg(&out));
            ok += usize::from(r.status.success());
            if !r.status.success() {
                // One error line (after --force's warning when the user left a symlink at -o).
                let errors = stderr(&r).lines().filter(|l| !l.starts_with("supermin: warning:")).count();
                assert_eq!(errors, 1, "{}", stderr(&r));
            }
        }
    }
    assert!(mover.alive(), "the user's loop died: the races were not run");
    drop(mover);
    assert_eq!(dump(&target), before, "a root-owned directory changed through the user's symlink");
    let moved = fs::read_dir(&parent)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("moved"))
        .count();
    eprintln!("200 builds into the user's directory: {ok} succeeded; {moved} temporaries were moved away");
    assert!(moved > 0, "the races were not exercised");
}

/// The daemon's count of bytes read (`/proc/PID/io`): host file bytes it serves are read there.
fn daemon_rchar(pid: i32) -> u64 {
    let io = fs::read_to_string(format!("/proc/{pid}/io")).unwrap();
    let line = io.lines().find(|l| l.starts_with("rchar:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Passthrough hands the kernel only host files that nobody but root may write (finding 8):
/// a file the hostile user owns, or one anyone may write, is read through the daemon, whose
/// reads check that the file did not change (passed through, one rewritten during a read gave
/// a mix of old and new bytes). A root-owned 0644 file is still read by the kernel.
#[test]
fn passthrough_only_for_files_only_root_can_write() {
    let s = Scratch::new("trust-passthrough");
    let size: u64 = 4 << 20;
    let bytes: Vec<u8> = (0..size).map(|i| (i * 13 % 251) as u8).collect();
    let home = hostile_dir(&s.0, "home");
    let (uid, gid) = hostile_user();
    let cases =
        [("users", home.join("users"), true), ("rw-all", s.path("rw-all"), true), ("roots", s.path("roots"), false)];
    for (name, path, _) in &cases {
        fs::write(path, &bytes).unwrap();
        let mode = if *name == "rw-all" { 0o666 } else { 0o644 };
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
        if *name == "users" {
            std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
        }
    }
    let d = s.path("d");
    fs::create_dir_all(&d).unwrap();
    let globs: Vec<String> = cases.iter().map(|(_, p, _)| p.display().to_string()).collect();
    fs::write(d.join("hostfiles"), globs.join("\n") + "\n").unwrap();
    let mp = s.path("mnt");
    let m = common::mount(&d, &mp, &["--passthrough"]);
    let pid = m.daemon().unwrap();
    for (name, path, daemon_reads_it) in &cases {
        let before = daemon_rchar(pid);
        assert!(fs::read(mp.join(path.strip_prefix("/").unwrap())).unwrap() == bytes, "{name}: other bytes");
        let read = daemon_rchar(pid) - before;
        match daemon_reads_it {
            true => assert!(read >= size, "{name}: the daemon read {read} bytes of {size}: passed through"),
            false => assert!(read < size / 8, "{name}: the daemon read {read} bytes of {size}: not passed through"),
        }
    }
}
