//! Mountpoints: what must be true before mounting (each failure a one-line message naming the
//! mountpoint and what to do), whether a path is a mount, and unmounting.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn err(msg: String) -> io::Error {
    io::Error::other(msg)
}

/// Check `mp` can take a new mount; returns its absolute path.
pub fn check(mp: &Path) -> io::Result<PathBuf> {
    let shown = mp.display();
    let meta = match fs::metadata(mp) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(err(format!("{shown}: mountpoint does not exist (create it with mkdir)")))
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            return Err(err(format!(
                "{shown}: a dead FUSE mount is still there (remove it with `supermin umount {shown}`)"
            )))
        }
        Err(e) => return Err(err(format!("{shown}: cannot use as mountpoint: {}", plain(&e)))),
    };
    if !meta.is_dir() {
        return Err(err(format!("{shown}: mountpoint is not a directory")));
    }
    let abs = fs::canonicalize(mp).map_err(|e| err(format!("{shown}: {}", plain(&e))))?;
    if is_mounted(&abs) {
        return Err(err(format!("{shown}: already mounted (unmount it first with `supermin umount {shown}`)")));
    }
    let mut entries = fs::read_dir(&abs).map_err(|e| err(format!("{shown}: cannot list mountpoint: {}", plain(&e))))?;
    if entries.next().is_some() {
        return Err(err(format!("{shown}: mountpoint is not empty (use an empty directory)")));
    }
    match fs::OpenOptions::new().read(true).write(true).open("/dev/fuse") {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(err("/dev/fuse: no such device (load the module with `modprobe fuse`, or give the container --device /dev/fuse)".into()))
        }
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            return Err(err("/dev/fuse: permission denied (run as root or make /dev/fuse readable and writable)".into()))
        }
        Err(e) => return Err(err(format!("/dev/fuse: {}", plain(&e)))),
    }
    Ok(abs)
}

/// Whether `abs` (canonical) is the mount point of some mount, per `/proc/self/mountinfo`.
pub fn is_mounted(abs: &Path) -> bool {
    mounted_device(abs).is_some()
}

/// The device (`major:minor`) of the topmost mount at `abs` (canonical), per
/// `/proc/self/mountinfo`: read from the table, because a `stat` of our own mountpoint from
/// the daemon would wait for the daemon.
pub fn mounted_device(abs: &Path) -> Option<String> {
    device_in(&fs::read("/proc/self/mountinfo").ok()?, abs)
}

/// [`mounted_device`] on the text of a mountinfo table.
fn device_in(info: &[u8], abs: &Path) -> Option<String> {
    let want = abs.as_os_str().as_bytes();
    // Later lines are mounted on top of earlier ones: the last match is the visible mount.
    info.split(|&b| b == b'\n').rev().find_map(|line| {
        let mut fields = line.split(|&b| b == b' ');
        let device = fields.nth(2)?;
        (fields.nth(1).map(unescape).as_deref() == Some(want)).then(|| String::from_utf8_lossy(device).into_owned())
    })
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\' && i + 3 < field.len() && field[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let v = field[i + 1..i + 4].iter().fold(0u32, |v, c| v * 8 + u32::from(c - b'0'));
            out.push(v as u8);
            i += 4;
        } else {
            out.push(field[i]);
            i += 1;
        }
    }
    out
}

/// Unmount `mp` and wait (up to 10 s) for the serving process `daemon` to exit, so that the
/// caller can rely on the daemon's resources being gone when this returns.
pub fn unmount(mp: &Path, daemon: Option<u32>) -> io::Result<()> {
    let shown = mp.display();
    let abs = fs::canonicalize(mp).unwrap_or_else(|_| mp.to_path_buf());
    if !is_mounted(&abs) {
        return Err(err(format!("{shown}: not mounted")));
    }
    let c = CString::new(abs.as_os_str().as_bytes()).map_err(|_| err(format!("{shown}: invalid path")))?;
    // SAFETY: a valid NUL-terminated path.
    if unsafe { libc::umount2(c.as_ptr(), 0) } != 0 {
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            // Not root: the setuid helper unmounts mounts the caller owns.
            Some(libc::EPERM) => {
                let out = Command::new("fusermount3").arg("-u").arg(&abs).output().map_err(|e| {
                    err(format!("{shown}: cannot run fusermount3 ({e}): install the fuse3 package"))
                })?;
                if !out.status.success() {
                    let msg = String::from_utf8_lossy(&out.stderr);
                    return Err(err(format!("{shown}: cannot unmount: {}", msg.trim())));
                }
            }
            Some(libc::EBUSY) => {
                return Err(err(format!("{shown}: busy (a process is using it; close it, or detach with `umount -l {shown}`)")))
            }
            _ => return Err(err(format!("{shown}: cannot unmount: {}", plain(&e)))),
        }
    }
    if let Some(pid) = daemon {
        let deadline = Instant::now() + Duration::from_secs(10);
        // SAFETY: signal 0 only checks that the process exists.
        while unsafe { libc::kill(pid as libc::pid_t, 0) } == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    Ok(())
}

/// Detach `abs` lazily (the last resort when a plain unmount finds it busy).
pub(crate) fn detach(abs: &Path) {
    if let Ok(c) = CString::new(abs.as_os_str().as_bytes()) {
        // SAFETY: a valid NUL-terminated path.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

/// An OS error's text without Rust's " (os error N)".
pub(crate) fn plain(e: &io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape(br"/mnt/a\040b"), b"/mnt/a b");
        assert_eq!(unescape(br"/x\134y"), b"/x\\y");
        assert_eq!(unescape(b"/plain"), b"/plain");
    }

    #[test]
    fn root_is_mounted_and_a_fresh_dir_is_not() {
        assert!(is_mounted(Path::new("/")));
        assert!(!is_mounted(Path::new("/definitely/not/a/mount")));
    }

    #[test]
    fn the_device_of_a_mount_is_its_topmost_line() {
        let info = b"22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n\
                     60 22 0:42 / /mnt/a\\040b rw,nosuid shared:30 - fuse.supermin supermin ro\n\
                     61 22 0:50 / /mnt/x rw - tmpfs tmpfs rw\n\
                     62 61 0:51 / /mnt/x rw - fuse.supermin supermin ro\n";
        assert_eq!(device_in(info, Path::new("/")).as_deref(), Some("254:0"));
        assert_eq!(device_in(info, Path::new("/mnt/a b")).as_deref(), Some("0:42"));
        assert_eq!(device_in(info, Path::new("/mnt/x")).as_deref(), Some("0:51"));
        assert_eq!(device_in(info, Path::new("/mnt")), None);
    }
}
