//! Mountpoints: what must be true before mounting (each failure a one-line message naming the
//! mountpoint and what to do), whether a path is a mount, and unmounting.

use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::bail;
use crate::error::{Error, IoContext, Result};
use crate::util::escape::unescape_octal;
use crate::util::sys;

/// Check `mp` can take a new mount; returns its absolute path.
pub fn check(mp: &Path) -> Result<PathBuf> {
    let shown = mp.display();
    let meta = match fs::metadata(mp) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            bail!("{shown}: mountpoint does not exist: create it (mkdir -p {shown})")
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            bail!("{shown}: a dead FUSE mount is still there: remove it (supermin umount {shown})")
        }
        Err(e) => return Err(Error::io(mp, "cannot use as mountpoint", e)),
    };
    if !meta.is_dir() {
        bail!("{shown}: mountpoint is not a directory: mount on an empty directory (mkdir {shown}.mnt)");
    }
    let abs = fs::canonicalize(mp).at(mp, "cannot use as mountpoint")?;
    if is_mounted(&abs) {
        bail!("{shown}: already mounted: unmount it first (supermin umount {shown}), or use another directory");
    }
    if fs::read_dir(&abs).at(mp, "cannot list mountpoint")?.next().is_some() {
        bail!("{shown}: mountpoint is not empty: mount on an empty directory (mkdir {shown}.mnt)");
    }
    check_fuse_device()?;
    check_fusermount()?;
    Ok(abs)
}

fn check_fuse_device() -> Result<()> {
    match fs::OpenOptions::new().read(true).write(true).open("/dev/fuse") {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => bail!(
            "/dev/fuse: not available: load the module (modprobe fuse) or install fuse3 (apt-get install fuse3); in a \
             container, pass the device (docker run --device /dev/fuse)"
        ),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            bail!("/dev/fuse: permission denied: run as root, or make it usable by all (sudo chmod 0666 /dev/fuse)")
        }
        Err(e) => Err(Error::io(Path::new("/dev/fuse"), "cannot open", e)),
    }
}

/// A user other than root mounts through the set-uid helper `fusermount3`: without it the
/// mount would fail with a bare "permission denied". Looked for where `fuser` looks.
fn check_fusermount() -> Result<()> {
    if nix::unistd::geteuid().is_root() || std::env::var_os("FUSERMOUNT_PATH").is_some() {
        return Ok(());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain(["/sbin", "/bin"].map(PathBuf::from));
    let found = dirs.into_iter().any(|d| ["fusermount3", "fusermount"].iter().any(|n| d.join(n).is_file()));
    if !found {
        bail!(
            "fusermount3: not found: a user other than root mounts through it: install fuse3 (sudo apt-get install \
             fuse3), or run as root"
        );
    }
    Ok(())
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
    mount_in(info, abs).map(|m| m.device)
}

/// The fields of one mountinfo line that say what a mount is and whose.
struct MountLine {
    /// `major:minor`, as `st_dev` of the files on it.
    device: String,
    fstype: Vec<u8>,
    source: Vec<u8>,
    /// The filesystem's own options (FUSE's `user_id=N` among them).
    super_options: Vec<u8>,
}

impl MountLine {
    /// A mount `supermin_fuse` made, as it names them (`fsname` and `subtype` "supermin"):
    /// type `fuse.supermin`, or `fuse` from source `supermin` where subtypes are not shown.
    fn is_supermin_fuse(&self) -> bool {
        self.fstype == b"fuse.supermin" || (self.fstype == b"fuse" && self.source == b"supermin")
    }

    /// A `mount --kernel` view: an overlay from source `supermin` whose first lower layer is
    /// an image mounted in `layers` (`DIR/layer.`: our private cache directory, where nobody
    /// else can mount anything). Only root can mount an overlay in this mount namespace.
    fn is_supermin_kernel(&self, layers: &[u8]) -> bool {
        let lower = self.super_options.split(|&b| b == b',').find_map(|o| o.strip_prefix(b"lowerdir="));
        self.fstype == b"overlay" && self.source == b"supermin" && lower.is_some_and(|l| l.starts_with(layers))
    }
}

/// The topmost mount whose mount point is exactly `abs` (canonical) in a mountinfo table.
fn mount_in(info: &[u8], abs: &Path) -> Option<MountLine> {
    let want = abs.as_os_str().as_bytes();
    // Later lines are mounted on top of earlier ones: the last match is the visible mount.
    info.split(|&b| b == b'\n').rev().find_map(|line| {
        let fields: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
        // mountinfo escapes space, tab, newline and backslash as `\ooo`.
        if fields.get(4).map(|f| unescape_octal(f)).as_deref() != Some(want) {
            return None;
        }
        // Optional fields (`shared:N`…) run up to a lone `-`; three fields follow it.
        let dash = fields.iter().skip(6).position(|f| *f == b"-")? + 6;
        let [fstype, source, super_options] = fields.get(dash + 1..dash + 4)? else { return None };
        Some(MountLine {
            device: String::from_utf8_lossy(fields[2]).into_owned(),
            fstype: unescape_octal(fstype),
            source: unescape_octal(source),
            super_options: super_options.to_vec(),
        })
    })
}

/// Which of our mounts a directory is: the one test of whether the record on its root
/// (`user.supermin.*`, see [`crate::view`]) may be believed. Anyone can set `user.` xattrs on a
/// directory they own, so a record is trusted only where our own daemon answers for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OurMount {
    /// Not the root of a live mount of ours: no mount there, another filesystem, or a view
    /// another user mounted (whose record names paths of that user's choosing).
    None,
    /// The FUSE mount of a supermin daemon that the caller's effective user mounted.
    Fuse,
    /// A `mount --kernel` view (an overlay over an image in root's cache), asked by root.
    Kernel,
}

/// Which of our mounts `dir`, opened at `abs` (canonical), is the root of, per
/// `/proc/self/mountinfo`: the topmost mount at exactly `abs` must be a supermin FUSE mount
/// whose `user_id` is our effective uid (root believes only root's views), and `dir` must be on that mount (its device), so a
/// directory swapped in under the same path after it was opened is not believed. Read the
/// record through `dir` (`sys::get_xattr_of`).
pub fn our_mount(abs: &Path, dir: &fs::File) -> OurMount {
    use std::os::unix::fs::MetadataExt;
    let (Ok(info), Ok(meta)) = (fs::read("/proc/self/mountinfo"), dir.metadata()) else { return OurMount::None };
    let euid = nix::unistd::geteuid().as_raw();
    match kind_in(&info, abs, meta.dev(), euid) {
        OurMount::None if euid == 0 => kernel_in(&info, abs, meta.dev()),
        kind => kind,
    }
}

/// [`our_mount`] for a kernel view on the text of a mountinfo table.
fn kernel_in(info: &[u8], abs: &Path, dev: u64) -> OurMount {
    let Some(cache) = crate::inputs::cache::ImageCache::open_default() else { return OurMount::None };
    let layers = format!("{}/layer.", cache.dir().display());
    let Some(m) = mount_in(info, abs) else { return OurMount::None };
    let on_it = m.device == format!("{}:{}", nix::sys::stat::major(dev), nix::sys::stat::minor(dev));
    match on_it && m.is_supermin_kernel(layers.as_bytes()) {
        true => OurMount::Kernel,
        false => OurMount::None,
    }
}

/// [`our_mount`] on the text of a mountinfo table, for a directory on device `dev`, asked by `euid`.
fn kind_in(info: &[u8], abs: &Path, dev: u64, euid: u32) -> OurMount {
    let Some(m) = mount_in(info, abs) else { return OurMount::None };
    let on_it = m.device == format!("{}:{}", nix::sys::stat::major(dev), nix::sys::stat::minor(dev));
    let owner = m.super_options.split(|&b| b == b',').find_map(|o| o.strip_prefix(b"user_id="));
    let ours = owner.and_then(|o| std::str::from_utf8(o).ok()?.parse::<u32>().ok()) == Some(euid);
    if on_it && m.is_supermin_fuse() && ours {
        OurMount::Fuse
    } else {
        OurMount::None
    }
}

/// Whether a supermin FUSE view, anyone's, is mounted at `abs` (canonical): asked of the
/// table alone, because another user's view refuses even root's `stat` without `allow_other`.
pub fn is_supermin_view(abs: &Path) -> bool {
    let Ok(info) = fs::read("/proc/self/mountinfo") else { return false };
    mount_in(&info, abs).is_some_and(|m| m.is_supermin_fuse())
}

/// The connection's readahead window, in KiB: how far ahead of a sequential reader the
/// kernel asks the daemon for data (in requests of at most 1 MiB, FUSE's page limit), so how
/// many requests are in flight at once. The kernel proposes 128 KiB at the handshake and lets
/// the daemon lower it but not raise it, so root raises it afterwards through the mount's
/// `bdi` in sysfs. Measured on a 512 MiB host file read cold through the daemon: 1.5 GB/s at
/// 128 KiB, 1.9 GB/s at 4 MiB.
const READAHEAD_KIB: u32 = 4096;

/// Raise the readahead window of the FUSE mount at `abs` (root only; others keep 128 KiB).
pub fn raise_readahead(abs: &Path) {
    let Some(dev) = mounted_device(abs) else { return };
    let knob = format!("/sys/class/bdi/{dev}/read_ahead_kb");
    match fs::write(&knob, format!("{READAHEAD_KIB}\n")) {
        Ok(()) => log::debug!("{knob}: readahead raised to {READAHEAD_KIB} KiB"),
        Err(e) => log::debug!("{knob}: readahead left as it is ({e})"),
    }
}

/// Unmount `mp` and wait (up to 10 s) for the serving process `daemon` to exit, so that the
/// caller can rely on the daemon's resources being gone when this returns.
pub fn unmount(mp: &Path, daemon: Option<u32>) -> Result<()> {
    let shown = mp.display();
    let abs = fs::canonicalize(mp).unwrap_or_else(|_| mp.to_path_buf());
    if !is_mounted(&abs) {
        bail!("{shown}: not mounted");
    }
    match nix::mount::umount2(&abs, nix::mount::MntFlags::empty()) {
        Ok(()) => {}
        // Not root: the setuid helper unmounts mounts the caller owns.
        Err(nix::errno::Errno::EPERM) => fusermount_unmount(mp, &abs)?,
        Err(nix::errno::Errno::EBUSY) => {
            bail!("{shown}: busy (a process is using it): close it (fuser -vm {shown} names it), or detach now (umount -l {shown})")
        }
        Err(e) => return Err(Error::io(mp, "cannot unmount", e.into())),
    }
    if let Some(pid) = daemon {
        let deadline = Instant::now() + Duration::from_secs(10);
        while sys::process_running(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    Ok(())
}

fn fusermount_unmount(mp: &Path, abs: &Path) -> Result<()> {
    let shown = mp.display();
    let out = Command::new("fusermount3").arg("-u").arg(abs).output();
    let out = out.map_err(|e| {
        Error::new(format!("{shown}: cannot run fusermount3 ({e}): install fuse3 (apt-get install fuse3)"))
    })?;
    if !out.status.success() {
        bail!("{shown}: cannot unmount: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn only_our_users_own_supermin_fuse_mount_is_ours() {
        let info = b"22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n\
                     45 22 0:40 / /tmp/root\\040view ro,nosuid,nodev,noatime - fuse supermin ro,user_id=0,group_id=0\n\
                     46 22 0:41 / /tmp/user ro,nosuid shared:7 master:2 - fuse.supermin supermin ro,user_id=1000,group_id=1000\n\
                     47 22 0:42 / /tmp/tmpfs rw - tmpfs tmpfs rw,user_id=0\n\
                     48 22 0:43 / /tmp/other ro - fuse sshfs ro,user_id=0,group_id=0\n\
                     49 22 0:44 / /tmp/under ro - fuse supermin ro,user_id=0,group_id=0\n\
                     50 49 0:45 / /tmp/under rw - tmpfs tmpfs rw\n";
        let dev = |major, minor| nix::sys::stat::makedev(major, minor);
        let kind = |path: &str, d, euid| kind_in(info, Path::new(path), d, euid);
        assert_eq!(kind("/tmp/root view", dev(0, 40), 0), OurMount::Fuse);
        assert_eq!(kind("/tmp/root view", dev(0, 40), 1000), OurMount::None, "another user's view");
        assert_eq!(kind("/tmp/root view", dev(254, 0), 0), OurMount::None, "a directory not on the mount");
        assert_eq!(kind("/tmp/root", dev(0, 40), 0), OurMount::None, "not the escaped mount point");
        assert_eq!(kind("/tmp/user", dev(0, 41), 1000), OurMount::Fuse);
        assert_eq!(kind("/tmp/user", dev(0, 41), 0), OurMount::None, "root believes only root's views");
        assert_eq!(kind("/tmp/tmpfs", dev(0, 42), 0), OurMount::None);
        assert_eq!(kind("/tmp/other", dev(0, 43), 0), OurMount::None);
        assert_eq!(kind("/tmp/under", dev(0, 44), 0), OurMount::None, "a view under another mount");
        assert_eq!(kind("/tmp", dev(254, 0), 0), OurMount::None, "no mount there");
    }
}
