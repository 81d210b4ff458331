//! The mini initrd's `/init`: this very binary, run by the kernel as process 1.
//!
//! Its job is the original's: mount /proc and /sys, load the kernel modules listed in
//! `/modules` (in order), find the root device (`root=/dev/NAME` or `root=UUID=…`, matching
//! the ext superblock UUID), mount it as ext2 on /root, delete the initramfs's own files to
//! give the memory back, then `chroot` and `exec` the appliance's `/init`. It is statically
//! linked (see .cargo/config.toml), so the initrd needs nothing else. `quiet` on the kernel
//! command line silences it; every failure prints one line saying what failed.

use std::ffi::CString;
use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::mount::MsFlags;

use crate::util::sys;

/// How long to wait for the root device: the original's five minutes.
const ROOT_TIMEOUT: Duration = Duration::from_secs(300);

struct Console {
    quiet: bool,
}

/// One console line in one write: `eprintln!` may write a line in pieces, and the kernel's
/// own messages (printed as modules load and devices appear) then land in the middle of it.
fn line(msg: &str) {
    use std::io::Write;
    let _ = std::io::stderr().write_all(format!("supermin: {msg}\n").as_bytes());
}

impl Console {
    fn say(&self, msg: impl AsRef<str>) {
        if !self.quiet {
            line(msg.as_ref());
        }
    }
    /// Failures are printed even when quiet: the boot is about to stop.
    fn fail(&self, msg: impl AsRef<str>) {
        line(msg.as_ref());
    }
}

pub fn main() -> ! {
    let code = match run() {
        Ok(never) => match never {},
        Err(msg) => {
            line(&msg);
            for dir in ["/", "/bin", "/lib", "/lib64"] {
                if let Ok(rd) = fs::read_dir(dir) {
                    let names: Vec<String> =
                        rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
                    line(&format!("contents of {dir}: {}", names.join(" ")));
                }
            }
            1
        }
    };
    // Process 1 exiting makes the kernel panic, which (with panic=1) ends the VM: what we want.
    std::process::exit(code)
}

enum Never {}

fn run() -> Result<Never, String> {
    if fs::read("/proc/uptime").is_err() {
        let _ = fs::create_dir("/proc");
        mount("proc", "/proc", "proc", MsFlags::empty(), "").map_err(|e| format!("mount /proc: {e}"))?;
    }
    let cmdline = fs::read("/proc/cmdline")
        .map(|b| String::from_utf8_lossy(&b[..b.len().min(1023)]).into_owned())
        .unwrap_or_default();
    let con = Console { quiet: cmdline.split_whitespace().any(|w| w == "quiet") };
    con.say(format!("ext2 mini initrd starting up: supermin-rs {}", env!("CARGO_PKG_VERSION")));

    for d in ["/dev", "/root", "/sys"] {
        let _ = fs::create_dir(d);
    }
    mount("sysfs", "/sys", "sysfs", MsFlags::empty(), "").map_err(|e| format!("mount /sys: {e}"))?;

    load_modules(con.quiet);

    let root = cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("root="))
        .ok_or("no root= on the kernel command line")?
        .to_string();
    let (devno, dax) = find_root(&con, &root)?;
    let _ = nix::mount::umount("/sys");

    let _ = fs::remove_file("/dev/root");
    mknod("/dev/root", libc::S_IFBLK | 0o700, devno).map_err(|e| format!("mknod /dev/root: {e}"))?;
    let data = if dax { "dax" } else { "" };
    let flags = MsFlags::MS_NOATIME;
    mount("/dev/root", "/root", "ext2", flags, data)
        .or_else(|_| mount("/dev/root", "/root", "ext4", flags, data))
        .map_err(|e| format!("mount /dev/root on /root: {e}"))?;

    con.say("chroot");
    delete_initramfs_files();
    nix::unistd::chroot("/root").map_err(|e| format!("chroot /root: {e}"))?;
    let _ = nix::unistd::chdir("/");
    let init = CString::new("/init").expect("no NUL");
    let Err(e) = nix::unistd::execv(&init, &[&init]);
    Err(format!("execute /init in the appliance: {e}"))
}

/// Load each module named in `/modules`, in order (also `run --vm`'s guest). A module that
/// fails to load is reported and skipped: the kernel may have it built in.
pub fn load_modules(quiet: bool) {
    let con = Console { quiet };
    let Ok(list) = fs::read_to_string("/modules") else { return };
    for name in list.lines().filter(|l| !l.is_empty()) {
        let path = format!("/{name}");
        match fs::read(&path) {
            Ok(image) => match nix::kmod::init_module(&image, c"") {
                Ok(()) => con.say(format!("internal insmod {name}")),
                Err(nix::errno::Errno::EEXIST) => {}
                Err(e) => con.fail(format!("insmod {name}: {e}")),
            },
            Err(_) => con.say(format!("skipped {name}, module is missing")),
        }
    }
}

/// Wait for the root device to appear; returns its device number and whether it wants `dax`.
fn find_root(con: &Console, root: &str) -> Result<(u64, bool), String> {
    let start = Instant::now();
    let mut delay = Duration::from_micros(250);
    let mut warned = false;
    loop {
        let found = if let Some(name) = root.strip_prefix("/dev/") {
            read_devno(&format!("/sys/class/block/{name}/dev")).map(|d| (d, name.starts_with("pmem")))
        } else if let Some(uuid) = root.strip_prefix("UUID=") {
            let want = parse_uuid(uuid).ok_or_else(|| format!("root=UUID={uuid}: not a UUID"))?;
            find_by_uuid(&want).map(|d| (d, false))
        } else {
            return Err(format!("root={root}: use root=/dev/NAME or root=UUID=…"));
        };
        if let Some(f) = found {
            return Ok(f);
        }
        if start.elapsed() > ROOT_TIMEOUT {
            return Err(format!("timed out waiting for the root device {root}"));
        }
        if !warned && start.elapsed() > Duration::from_secs(1) {
            warned = true;
            con.fail(format!(
                "waiting for the root device {root} (if this hangs, the disk driver may be missing: virtio_blk or virtio_scsi)"
            ));
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_secs(1));
    }
}

fn read_devno(path: &str) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    let (maj, min) = text.trim().split_once(':')?;
    Some(libc::makedev(maj.parse().ok()?, min.parse().ok()?))
}

/// 32 hex digits, dashes ignored.
fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let hex: Vec<u8> = s.bytes().filter(|&b| b != b'-').collect();
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        out[i] = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}

/// Scan every block device for an ext superblock with this UUID (16 bytes at offset 0x468).
fn find_by_uuid(want: &[u8; 16]) -> Option<u64> {
    for entry in fs::read_dir("/sys/class/block").ok()?.flatten() {
        let Some(devno) = read_devno(&format!("{}/dev", entry.path().display())) else { continue };
        let _ = fs::remove_file("/dev/disk");
        if mknod("/dev/disk", libc::S_IFBLK | 0o600, devno).is_err() {
            continue;
        }
        let mut uuid = [0u8; 16];
        let ok = fs::File::open("/dev/disk")
            .and_then(|mut f| f.seek(SeekFrom::Start(0x468)).and_then(|_| f.read_exact(&mut uuid)))
            .is_ok();
        let _ = fs::remove_file("/dev/disk");
        if ok && &uuid == want {
            return Some(devno);
        }
    }
    None
}

/// Free the initramfs's memory: its files are no longer needed once the root is mounted.
fn delete_initramfs_files() {
    if let Ok(rd) = fs::read_dir("/") {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_file()).unwrap_or(false) {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

fn mount(src: &str, target: &str, fstype: &str, flags: MsFlags, data: &str) -> nix::Result<()> {
    nix::mount::mount(Some(src), target, Some(fstype), flags, Some(data))
}

fn mknod(path: &str, mode: u32, dev: u64) -> io::Result<()> {
    sys::mknod(Path::new(path), mode, dev)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids() {
        let u = parse_uuid("01234567-89ab-cdef-0123-456789ABCDEF").unwrap();
        assert_eq!(u[0], 0x01);
        assert_eq!(u[15], 0xef);
        assert!(parse_uuid("0123").is_none());
        assert!(parse_uuid("zz234567-89ab-cdef-0123-456789abcdef").is_none());
    }
}
