//! A mount's record (the `user.supermin.*` xattrs on a view's root, which name the inputs and
//! sysroot it was resolved from) is believed by `materialize` and `inspect` only on a live
//! FUSE mount of ours made by the same user (issue 19, finding 10). Anyone can set `user.`
//! xattrs on a directory they own, or mount a view of their own: root must not read and
//! build from the paths such a record names. The oracle of the refusal is the absence of
//! any output; of acceptance, the chroot build of the same input.

mod common;

use std::ffi::CString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

/// What the refusal says, whatever the path.
const REFUSED: &str = "not a live supermin view";

/// The small appliance of `examples/`, absolute.
fn example() -> PathBuf {
    fs::canonicalize("examples/supermin.d").unwrap()
}

/// The names of the extended attributes of `path` (`listxattr`).
fn xattr_names(path: &Path) -> Vec<String> {
    let c_path = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let mut buf = vec![0u8; 64 << 10];
    // SAFETY: a valid C string, and a buffer of the length given.
    let n = unsafe { libc::listxattr(c_path.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    let n = usize::try_from(n)
        .unwrap_or_else(|_| panic!("listxattr {}: {}", path.display(), std::io::Error::last_os_error()));
    buf[..n].split(|&b| b == 0).filter(|s| !s.is_empty()).map(|s| String::from_utf8_lossy(s).into_owned()).collect()
}

/// `setxattr(path, name, value)`, which must succeed.
fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    let (c_path, c_name) = (CString::new(path.as_os_str().as_encoded_bytes()).unwrap(), CString::new(name).unwrap());
    // SAFETY: valid C strings, and a buffer of the length given.
    let r = unsafe { libc::setxattr(c_path.as_ptr(), c_name.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    assert_eq!(r, 0, "setxattr {name} on {}: {}", path.display(), std::io::Error::last_os_error());
}

/// Copy every `user.supermin.*` attribute of a live view's root `from` onto `to`; returns
/// how many (the record's inputs, options and pid at least).
fn copy_record(from: &Path, to: &Path) -> usize {
    let names: Vec<String> = xattr_names(from).into_iter().filter(|n| n.starts_with("user.supermin.")).collect();
    assert!(names.iter().any(|n| n == "user.supermin.inputs"), "{}: no record on the view: {names:?}", from.display());
    for name in &names {
        set_xattr(to, name, &xattr(from, name).unwrap());
    }
    assert_eq!(xattr(to, "user.supermin.inputs"), xattr(from, "user.supermin.inputs"));
    names.len()
}

fn materialize(src: &Path, out: &Path) -> Output {
    run(ours().arg("materialize").arg(src).args(["-f", "chroot", "-o"]).arg(out))
}

fn inspect(src: &Path) -> Output {
    run(ours().arg("inspect").arg("--json").arg(src))
}

/// Both commands refuse `src` with one line naming it, and write nothing to `out`.
fn assert_refused(src: &Path, out: &Path, what: &str) {
    let shown = src.display().to_string();
    let m = materialize(src, out);
    assert_one_line_error(&m, &[&shown, REFUSED]);
    assert!(!out.exists(), "{what}: materialize wrote {}", out.display());
    let i = inspect(src);
    assert_one_line_error(&i, &[&shown, REFUSED]);
    assert!(i.stdout.is_empty(), "{what}: inspect reported: {}", tail(&stdout(&i)));
}

/// `/dev/fuse` usable by every user for a test (as Debian's udev rule for fuse3 makes it; a
/// container may have it 0600), its mode put back when dropped: the other user mounts too.
struct FuseForAll {
    old: u32,
}

impl FuseForAll {
    fn on() -> FuseForAll {
        let old = fs::metadata("/dev/fuse").unwrap_or_else(|e| panic!("/dev/fuse: {e}")).permissions().mode() & 0o7777;
        fs::set_permissions("/dev/fuse", fs::Permissions::from_mode(0o666)).unwrap();
        FuseForAll { old }
    }
}

impl Drop for FuseForAll {
    fn drop(&mut self) {
        let _ = fs::set_permissions("/dev/fuse", fs::Permissions::from_mode(self.old));
    }
}

/// A plain directory carrying an exact copy of a live view's record is not that view.
#[test]
fn a_directory_with_a_copied_record_is_refused() {
    let s = Scratch::new("trust-copied");
    let mp = s.path("mnt");
    let _m = mount(&example(), &mp, &[]);
    let fake = s.path("fake");
    fs::create_dir(&fake).unwrap();
    assert!(copy_record(&mp, &fake) >= 3);
    assert_refused(&fake, &s.path("out"), "a copied record");
}

/// A record a user wrote, naming a supermin.d of theirs whose hostfiles list `/etc/shadow`:
/// root never reads it into anything.
#[test]
fn a_record_naming_a_hostile_users_inputs_is_refused() {
    let s = Scratch::new("trust-hostile-record");
    let (uid, gid) = hostile_user();
    let home = hostile_dir(&s.0, "home");
    let evil = hostile_dir(&home, "supermin.d");
    fs::write(evil.join("hostfiles"), "/etc/shadow\n").unwrap();
    std::os::unix::fs::chown(evil.join("hostfiles"), Some(uid), Some(gid)).unwrap();
    let fake = hostile_dir(&home, "view");
    set_xattr(&fake, "user.supermin.inputs", evil.as_os_str().as_encoded_bytes());
    set_xattr(&fake, "user.supermin.options", b"");
    set_xattr(&fake, "user.supermin.pid", b"1");
    // Given as the input it is, it puts the shadow file in the appliance: what the record asks.
    let direct = s.path("direct");
    ok(ours().arg("materialize").arg(&evil).args(["-f", "chroot", "-o"]).arg(&direct));
    assert!(direct.join("etc/shadow").is_file(), "the hostile supermin.d copies /etc/shadow");
    let out = s.path("out");
    assert_refused(&fake, &out, "a hostile record");
    // The same through a symlink the user owns, and as a tar stream on standard output.
    let link = home.join("link");
    std::os::unix::fs::symlink(&fake, &link).unwrap();
    assert_refused(&link, &out, "a hostile record through a symlink");
    let tar = run(ours().arg("materialize").arg(&fake).args(["-f", "tar", "-o", "-"]));
    assert_one_line_error(&tar, &[REFUSED]);
    assert!(tar.stdout.is_empty(), "a tar stream was written");
}

/// A real view, mounted by another user: its record names what that user chose, so root
/// refuses it, whether the user let root in (`--allow-other`) or not; that user's own
/// `inspect` believes it; root's own view still materializes to the chroot build.
#[test]
fn another_users_view_is_refused_and_roots_own_is_believed() {
    need("fusermount3");
    let s = Scratch::new("trust-other-user");
    fs::set_permissions(&s.0, fs::Permissions::from_mode(0o755)).unwrap();
    let home = hostile_dir(&s.0, "home");
    let hostile = || {
        let mut cmd = as_hostile(ours());
        cmd.env("HOME", &home).env("XDG_CACHE_HOME", home.join("cache"));
        cmd
    };
    let out = s.path("out");
    {
        let _fuse = FuseForAll::on();
        // A user may pass allow_other only with fuse.conf's leave (mount_by reads the pid as root).
        let conf = Restore::new(Path::new("/etc/fuse.conf"));
        fs::write("/etc/fuse.conf", [conf.original(), b"\nuser_allow_other\n"].concat()).unwrap();
        let (open, closed) = (hostile_dir(&home, "open"), hostile_dir(&home, "closed"));
        let (_open, _) = mount_by(hostile(), &example(), &open, &["--allow-other"]);
        assert!(xattr(&open, "user.supermin.inputs").is_some(), "root reads the other user's record");
        assert_refused(&open, &out, "another user's view, open to root");
        let _closed = Mounted::new(&closed);
        ok(hostile().args(["mount", "--daemon"]).arg(example()).arg(&closed));
        assert_refused(&closed, &out, "another user's view, closed to root");
        ok(hostile().arg("inspect").arg(&open));
    }
    let built = s.path("built");
    ok(ours().args(["--build", "-f", "chroot"]).arg(example()).arg("-o").arg(&built));
    let mp = s.path("mnt");
    let _ours = mount(&example(), &mp, &[]);
    ok(ours().current_dir("/").arg("materialize").arg(&mp).args(["-f", "chroot", "-o"]).arg(&out));
    assert_same_tree(&built, &out);
    assert_eq!(stdout(&ok(&mut inspect_cmd(&mp))), stdout(&ok(&mut inspect_cmd(&example()))));
}

fn inspect_cmd(src: &Path) -> Command {
    let mut cmd = ours();
    cmd.arg("inspect").arg("--json").arg(src);
    cmd
}

/// A mount that is not ours (a tmpfs), carrying a copy of a live view's record.
#[test]
fn a_tmpfs_with_a_copied_record_is_refused() {
    let s = Scratch::new("trust-tmpfs");
    let mp = s.path("mnt");
    let _m = mount(&example(), &mp, &[]);
    let tmpfs = s.path("tmpfs");
    fs::create_dir(&tmpfs).unwrap();
    let _t = Mounted::new(&tmpfs);
    ok(Command::new("mount").args(["-t", "tmpfs", "-o", "size=1m", "supermin"]).arg(&tmpfs));
    assert!(is_mounted(&tmpfs));
    copy_record(&mp, &tmpfs);
    assert_refused(&tmpfs, &s.path("out"), "a tmpfs");
}
