//! Files created new, never opened through whatever is already at their name.
//!
//! We often run as root and write into directories other users can write to: a trace beside
//! a workload's files, an SVG report, the staging directory beside `-o` (whose parent another
//! user may own, and so may swap the staging directory for one of theirs). There, opening with
//! `O_CREAT|O_TRUNC` would follow a symlink planted at the name and overwrite its target (say
//! `/etc/shadow`) as root. The files made here are created with `O_CREAT|O_EXCL|O_NOFOLLOW`
//! instead: what is already there is refused, never truncated or followed.
//! A file that replaces another is written under a random temporary name beside it (a
//! predictable one, like a pid, could be planted in advance) and renamed over it, which
//! replaces a planted symlink itself, not its target.

use std::collections::hash_map::RandomState;
use std::fs::{self, File, OpenOptions};
use std::hash::BuildHasher;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Create `path`, which must not exist (not even as a symlink), with `mode` (less the umask).
pub fn create(path: &Path, mode: u32) -> io::Result<File> {
    OpenOptions::new().write(true).create_new(true).custom_flags(libc::O_NOFOLLOW).mode(mode).open(path)
}

/// Copy the regular file `from` to the new file `to`, with `from`'s permission bits (as
/// `fs::copy`, which would open `to` through a symlink).
pub fn copy(from: &Path, to: &Path) -> io::Result<()> {
    let mut src = File::open(from)?;
    let mode = src.metadata()?.permissions().mode() & 0o7777;
    let mut dest = create(to, mode)?;
    io::copy(&mut src, &mut dest)?;
    // `create` applied the umask; the copy has the source's bits, as `fs::copy` gives.
    dest.set_permissions(fs::Permissions::from_mode(mode))
}

/// Put `bytes` at `dest` atomically: written to a new file of a random name beside it
/// (`.NAME.XXXXXXXX`), then renamed over it. Readers see the old file or the new one.
pub fn replace(dest: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let name = dest.file_name().ok_or_else(|| io::Error::from_raw_os_error(libc::EISDIR))?.to_string_lossy();
    for _ in 0..100 {
        let tmp = dest.with_file_name(format!(".{name}.{}", random_suffix()));
        let mut file = match create(&tmp, mode) {
            // Someone's file, or a symlink, at that name: left alone; another name.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            file => file?,
        };
        let written = file.write_all(bytes).and_then(|()| fs::rename(&tmp, dest));
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        return written;
    }
    Err(io::Error::new(io::ErrorKind::AlreadyExists, "no free temporary name beside it"))
}

/// Eight random characters of `[a-z0-9]`, for a temporary name nobody can plant in advance
/// (std's `RandomState` keys come from the OS's random source, and differ at every call).
pub fn random_suffix() -> String {
    let mut x = RandomState::new().hash_one(0u8);
    let alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..8)
        .map(|_| {
            let c = alphabet[(x % 36) as usize] as char;
            x /= 36;
            c
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_through_what_is_there() {
        let dir = std::env::temp_dir().join(format!("supermin-newfile-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let (target, link, out) = (dir.join("target"), dir.join("link"), dir.join("out"));
        fs::write(&target, "precious").unwrap();
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert_eq!(create(&link, 0o644).unwrap_err().kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(copy(&target, &link).unwrap_err().kind(), io::ErrorKind::AlreadyExists);
        // The link is replaced, its target untouched.
        replace(&link, b"new", 0o644).unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "precious");
        assert_eq!(fs::read_to_string(&link).unwrap(), "new");
        assert!(!fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        copy(&target, &out).unwrap();
        assert_eq!(fs::read_to_string(&out).unwrap(), "precious");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 3, "a temporary file was left behind");
        fs::remove_dir_all(&dir).unwrap();
    }
}
