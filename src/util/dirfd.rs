//! Creating and changing what we make through descriptors, never through a path that someone
//! else can change (issue 19).
//!
//! An output is built in a staging directory next to `-o`, whose parent may belong to another
//! user: that user can rename our directory away and put a symlink in its place at any moment.
//! So the staging directory is opened once ([`Dir::open_own`]: no symlink, ours) and every
//! entry is then made relative to that descriptor, with `O_EXCL`/`O_NOFOLLOW` for files and
//! `AT_SYMLINK_NOFOLLOW` for metadata; a directory's owner, times and mode are set through a
//! descriptor of the directory itself ([`finish`]). Relative paths below the descriptor cross
//! only directories we made, which stay private (0700) until their own mode is set, children
//! before parents, so nobody else can put anything in the way.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid};

/// A directory we made, held open.
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

/// Owner, times and permission bits to give something we made.
#[derive(Clone, Copy, Debug)]
pub struct Attrs {
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub mtime_nsec: u32,
    /// Permission bits (`0o7777`).
    pub perm: u32,
}

fn errno(e: nix::errno::Errno) -> io::Error {
    io::Error::from(e)
}

/// Open the directory `name` of `parent` (a descriptor, or `AT_FDCWD`'s path), not following
/// a symlink.
fn open_dir_at<Fd: AsFd>(parent: Fd, name: &Path) -> io::Result<OwnedFd> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    nix::fcntl::openat(parent, name, flags, Mode::empty()).map_err(errno)
}

impl Dir {
    /// Open `path`, a directory this process just made: refused if it is a symlink, not a
    /// directory, or not owned by us (someone put theirs in its place).
    pub fn open_own(path: &Path) -> io::Result<Dir> {
        let fd = open_dir_at(nix::fcntl::AT_FDCWD, path)?;
        let owner = File::from(fd.try_clone()?).metadata()?.uid();
        if owner != nix::unistd::geteuid().as_raw() {
            return Err(io::Error::other(format!("owned by uid {owner}, not by us: someone replaced it")));
        }
        Ok(Dir { fd, path: path.to_path_buf() })
    }

    /// Where it was when opened (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `rel` below it, as a path for messages.
    pub fn shown(&self, rel: &Path) -> PathBuf {
        self.path.join(rel)
    }

    /// Create the new file `rel` (`O_EXCL`, never through a symlink), open for writing and,
    /// with `read`, reading.
    pub fn create_file(&self, rel: &Path, mode: u32, read: bool) -> io::Result<File> {
        let access = if read { OFlag::O_RDWR } else { OFlag::O_WRONLY };
        let flags = access | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = nix::fcntl::openat(&self.fd, rel, flags, Mode::from_bits_truncate(mode)).map_err(errno)?;
        Ok(File::from(fd))
    }

    pub fn mkdir(&self, rel: &Path, mode: u32) -> io::Result<()> {
        nix::sys::stat::mkdirat(&self.fd, rel, Mode::from_bits_truncate(mode)).map_err(errno)
    }

    /// Open the directory `rel` (not through a symlink).
    pub fn open_dir(&self, rel: &Path) -> io::Result<OwnedFd> {
        open_dir_at(&self.fd, rel)
    }

    pub fn symlink(&self, target: &OsStr, rel: &Path) -> io::Result<()> {
        nix::unistd::symlinkat(target, &self.fd, rel).map_err(errno)
    }

    /// A device node, fifo or socket with the full `st_mode` `mode`.
    pub fn mknod(&self, rel: &Path, mode: u32, rdev: u64) -> io::Result<()> {
        let kind = SFlag::from_bits_truncate(mode & libc::S_IFMT);
        let perm = Mode::from_bits_truncate(mode & 0o7777);
        nix::sys::stat::mknodat(&self.fd, rel, kind, perm, rdev).map_err(errno)
    }

    /// A second name `new` for the file `existing` (a symlink is linked itself, not followed).
    pub fn hard_link(&self, existing: &Path, new: &Path) -> io::Result<()> {
        nix::unistd::linkat(&self.fd, existing, &self.fd, new, AtFlags::empty()).map_err(errno)
    }

    /// Owner and times of `rel` itself (a symlink is not followed). Changing the owner needs
    /// root; like `cp -p`, a non-root build keeps its own.
    pub fn set_owner_and_time(&self, rel: &Path, uid: u32, gid: u32, mtime: (i64, u32)) -> io::Result<()> {
        let owner = (Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)));
        match nix::unistd::fchownat(&self.fd, rel, owner.0, owner.1, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Err(nix::errno::Errno::EPERM) | Ok(()) => {}
            Err(e) => return Err(errno(e)),
        }
        let t = TimeSpec::new(mtime.0, i64::from(mtime.1));
        nix::sys::stat::utimensat(&self.fd, rel, &t, &t, UtimensatFlags::NoFollowSymlink).map_err(errno)
    }

    /// The directory's own permission bits.
    pub fn set_mode(&self, mode: u32) -> io::Result<()> {
        nix::sys::stat::fchmod(&self.fd, Mode::from_bits_truncate(mode & 0o7777)).map_err(errno)
    }

    /// [`finish`] the directory itself.
    pub fn finish(&self, attrs: &Attrs) -> io::Result<()> {
        finish(&self.fd, attrs)
    }
}

/// Owner, then times, then mode of an open file or directory (the mode after the owner, whose
/// change clears set-id bits). A non-root caller keeps its own owner.
pub fn finish<Fd: AsFd>(fd: Fd, attrs: &Attrs) -> io::Result<()> {
    let fd = fd.as_fd();
    match nix::unistd::fchown(fd, Some(Uid::from_raw(attrs.uid)), Some(Gid::from_raw(attrs.gid))) {
        Err(nix::errno::Errno::EPERM) | Ok(()) => {}
        Err(e) => return Err(errno(e)),
    }
    let t = TimeSpec::new(attrs.mtime, i64::from(attrs.mtime_nsec));
    nix::sys::stat::futimens(fd, &t, &t).map_err(errno)?;
    nix::sys::stat::fchmod(fd, Mode::from_bits_truncate(attrs.perm & 0o7777)).map_err(errno)
}

/// Make every directory of the tree at `path` writable by us again (0700), so that it can be
/// deleted, through descriptors: a symlink met on the way is left alone, never followed.
pub fn make_writable(path: &Path) {
    if let Ok(fd) = open_dir_at(nix::fcntl::AT_FDCWD, path) {
        make_writable_fd(fd, 0);
    }
}

fn make_writable_fd(fd: OwnedFd, depth: u32) {
    // Deeper than any path the kernel would let us name: a tree made to exhaust our stack.
    if depth > 512 || nix::sys::stat::fchmod(&fd, Mode::from_bits_truncate(0o700)).is_err() {
        return;
    }
    let Ok(mut dir) = nix::dir::Dir::from_fd(fd) else { return };
    let fd = dir.as_fd().try_clone_to_owned();
    let names: Vec<std::ffi::CString> = dir
        .iter()
        .flatten()
        .filter(|e| matches!(e.file_type(), Some(nix::dir::Type::Directory) | None))
        .map(|e| e.file_name().to_owned())
        .filter(|n| n.as_bytes() != b"." && n.as_bytes() != b"..")
        .collect();
    let Ok(fd) = fd else { return };
    for name in names {
        if let Ok(child) = open_dir_at(&fd, Path::new(OsStr::from_bytes(name.as_bytes()))) {
            make_writable_fd(child, depth + 1);
        }
    }
}
