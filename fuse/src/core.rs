//! The answers, whatever carries the requests: each kernel request of the view becomes one
//! call here returning a value or an errno. Every transport uses it: `fs` (fuser over
//! `/dev/fuse`), `uring` (FUSE over io_uring) and `virtio` (virtio-fs to a guest).
//!
//! Every answer is computed inside [`guarded`], which turns a panic into `EIO` for that one
//! request: a panic escaping a handler would end its thread and take the whole mount down.

use std::fs::File;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fuser::Errno;

use crate::files::Files;
use crate::{Attr, Data, Ino, View};

/// Host files at least this large are handed to the kernel (passthrough); smaller ones are
/// read through the daemon once and then kept in the page cache (KEEP_CACHE, which the kernel
/// refuses with passthrough). Measured on libguestfs's appliance (mostly small files): `tar`
/// of every file, warm, took 0.4 s through the daemon and 0.7-1.0 s with passthrough for all,
/// because every passthrough open registers and unregisters a backing file.
pub const PASSTHROUGH_MIN_SIZE: u64 = 1 << 20;

/// [`PASSTHROUGH_MIN_SIZE`] over io_uring, where a read through the daemon costs less than
/// over `/dev/fuse` but still copies its bytes twice. Measured with `--passthrough` on
/// libguestfs's appliance, reading all its host files cold (native 1.37 s): 1.86 s from 1 MiB,
/// 1.65 s from 256 KiB, 1.51 s from 64 KiB, 1.61 s for every file; warm, 0.33-0.35 s from
/// 64 KiB up and 0.42 s for every file (every open is a round trip whatever the threshold).
pub const PASSTHROUGH_MIN_SIZE_URING: u64 = 64 << 10;

/// The tree never changes while mounted, so the kernel may keep what it learns for as long
/// as it likes; a year is "forever" without risking overflow in the kernel's conversion.
pub(crate) const TTL: Duration = Duration::from_secs(365 * 24 * 3600);

pub(crate) struct Core<V: View> {
    pub(crate) view: V,
    pub(crate) files: Files,
    /// The kernel agreed to FUSE_NO_OPENDIR_SUPPORT: answering opendir with ENOSYS makes it
    /// stop sending opendir/releasedir (two round trips per directory per `find`), and it
    /// then caches listings (CACHE_DIR, KEEP_CACHE) by default.
    pub(crate) no_opendir: AtomicBool,
    /// The same for files (FUSE_NO_OPEN_SUPPORT), used whenever passthrough is off: an open
    /// then has nothing to set up, and skipping its round trip is what makes opening
    /// thousands of small files (tar, a program start) cost what it costs natively. Also
    /// when the kernel refuses passthrough at the first large file (a host file on a stacked
    /// filesystem): the next open answers ENOSYS and the connection stops sending opens.
    pub(crate) no_open: AtomicBool,
    /// Every entry is looked up by name before use (no attributes with listings), so that
    /// the view sees each path the first time it is used (see [`crate::Options::every_lookup`]).
    pub(crate) every_lookup: bool,
    /// The smallest host file handed to the kernel: [`PASSTHROUGH_MIN_SIZE`], or
    /// [`PASSTHROUGH_MIN_SIZE_URING`] once the connection took io_uring.
    pub(crate) passthrough_min: AtomicU64,
}

/// Receives each directory entry (cookie, name, inode, attributes); true when full.
pub(crate) type AddEntry<'a> = dyn FnMut(u64, &[u8], Ino, &Attr) -> bool + 'a;

/// Where [`Core::read`] put the bytes.
pub(crate) enum ReadOut<'a> {
    /// At the start of the caller's buffer, this many.
    InBuf(usize),
    /// In the view's own memory (a mapped or in-memory file): no copy made.
    Bytes(&'a [u8]),
}

/// Run `f`, turning a panic into EIO.
pub(crate) fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T, Errno>) -> Result<T, Errno> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(_) => {
            log::error!("{what}: internal error (panic); answered EIO");
            Err(Errno::EIO)
        }
    }
}

/// The errno a failed host file answers with, the failure logged (`-vv`) with its path.
fn host_errno(path: &Path) -> impl Fn(io::Error) -> Errno + '_ {
    move |e| {
        log::debug!("{}: {e}", path.display());
        Errno::from_i32(e.raw_os_error().unwrap_or(libc::EIO))
    }
}

/// View inode ↔ kernel inode: the kernel's root is 1 and 0 means "no inode".
pub(crate) fn view_ino(kernel: u64) -> Result<Ino, Errno> {
    kernel.checked_sub(1).ok_or(Errno::ENOENT)
}

pub(crate) fn kernel_ino(ino: Ino) -> u64 {
    ino + 1
}

impl<V: View> Core<V> {
    pub(crate) fn new(view: V, passthrough: bool, every_lookup: bool) -> Self {
        Core {
            view,
            files: Files::new(passthrough),
            no_opendir: AtomicBool::new(false),
            no_open: AtomicBool::new(false),
            every_lookup,
            passthrough_min: AtomicU64::new(PASSTHROUGH_MIN_SIZE),
        }
    }

    pub(crate) fn attr(&self, ino: Ino) -> Result<Attr, Errno> {
        self.view.attr(ino).ok_or(Errno::ENOENT)
    }

    pub(crate) fn is_dir(&self, ino: Ino) -> Result<Attr, Errno> {
        let a = self.attr(ino)?;
        if a.mode & libc::S_IFMT != libc::S_IFDIR {
            return Err(Errno::ENOTDIR);
        }
        Ok(a)
    }

    /// Opens answer ENOSYS (the kernel then stops sending them).
    pub(crate) fn no_open(&self) -> bool {
        self.no_open.load(Ordering::Relaxed) && !self.files.passthrough()
    }

    pub(crate) fn no_opendir(&self) -> bool {
        self.no_opendir.load(Ordering::Relaxed)
    }

    /// `name` in kernel directory `parent`: its inode and attributes, or None (a negative
    /// entry the kernel may remember).
    pub(crate) fn lookup(&self, parent: u64, name: &[u8]) -> Result<Option<(Ino, Attr)>, Errno> {
        guarded("lookup", || {
            let parent = view_ino(parent)?;
            self.is_dir(parent)?;
            match self.view.lookup(parent, name) {
                Some(ino) => Ok(Some((ino, self.attr(ino)?))),
                None => Ok(None),
            }
        })
    }

    pub(crate) fn getattr(&self, kernel: u64) -> Result<(Ino, Attr), Errno> {
        guarded("getattr", || {
            let ino = view_ino(kernel)?;
            Ok((ino, self.attr(ino)?))
        })
    }

    pub(crate) fn readlink(&self, kernel: u64) -> Result<&[u8], Errno> {
        guarded("readlink", || self.view.readlink(view_ino(kernel)?).ok_or(Errno::EINVAL))
    }

    /// An open of kernel inode `kernel` with `flags`: the host file to hand to the kernel
    /// (passthrough on, a host file of at least `passthrough_min` bytes), opened, or None for
    /// a plain open (read through the daemon: the host file is opened at the first read that
    /// misses the page cache, so a warm open costs no syscall, and a vanished host file then
    /// fails that read). Writing is EROFS, a directory EISDIR, and ENOSYS tells the kernel to
    /// stop sending opens ([`Core::no_open`]).
    pub(crate) fn open(&self, kernel: u64, flags: i32) -> Result<Option<(Ino, Arc<File>)>, Errno> {
        if flags & libc::O_ACCMODE != libc::O_RDONLY {
            return Err(Errno::EROFS);
        }
        if self.no_open() {
            return Err(Errno::ENOSYS);
        }
        guarded("open", || {
            let ino = view_ino(kernel)?;
            let a = self.attr(ino)?;
            let large = a.size >= self.passthrough_min.load(Ordering::Relaxed);
            match self.view.data(ino) {
                Some(Data::Host(path)) if self.files.passthrough() && large && only_root_writes(&a) => {
                    let file = self.files.get(ino, (path, a.size), &|i, n| self.view.open(i, n));
                    Ok(Some((ino, file.map_err(host_errno(path))?)))
                }
                Some(_) => Ok(None),
                None if a.mode & libc::S_IFMT == libc::S_IFDIR => Err(Errno::EISDIR),
                None => Err(Errno::EINVAL),
            }
        })
    }

    /// An opendir: ENOSYS once the kernel agreed to stop sending them ([`Core::no_opendir`]).
    pub(crate) fn opendir(&self, kernel: u64) -> Result<(), Errno> {
        guarded("opendir", || self.is_dir(view_ino(kernel)?))?;
        if self.no_opendir() {
            return Err(Errno::ENOSYS);
        }
        Ok(())
    }

    /// Up to `size` bytes at `offset`: host files are read into `buf` (at least `size` long),
    /// the view's own bytes are handed out as they are.
    pub(crate) fn read(&self, kernel: u64, offset: u64, size: usize, buf: &mut [u8]) -> Result<ReadOut<'_>, Errno> {
        guarded("read", || {
            let ino = view_ino(kernel)?;
            match self.view.data(ino) {
                Some(Data::Bytes(bytes)) => {
                    let start = (offset.min(bytes.len() as u64)) as usize;
                    let end = start.saturating_add(size).min(bytes.len());
                    Ok(ReadOut::Bytes(&bytes[start..end]))
                }
                Some(Data::Host(path)) => {
                    let len = self.attr(ino)?.size;
                    let open = &|i, n| self.view.open(i, n);
                    let n = self
                        .files
                        .read(ino, (path, len), open, (offset, &mut buf[..size]))
                        .map_err(host_errno(path))?;
                    Ok(ReadOut::InBuf(n))
                }
                None => Err(Errno::EINVAL),
            }
        })
    }

    /// Entries of kernel directory `dir` from cookie `offset`: `.` is 1, `..` is 2, children
    /// 3.., each entry's cookie being the one to resume *after* it. `add` gets the cookie,
    /// name, inode and attributes, and returns true when full.
    pub(crate) fn entries(&self, dir: u64, offset: u64, add: &mut AddEntry) -> Result<(), Errno> {
        guarded("readdir", || {
            let dir = view_ino(dir)?;
            self.is_dir(dir)?;
            let mut emit = |cookie, name: &[u8], ino| add(cookie, name, ino, &self.view.attr(ino).unwrap_or_default());
            if offset < 1 && emit(1, b".", dir) {
                return Ok(());
            }
            if offset < 2 && emit(2, b"..", self.view.parent(dir)) {
                return Ok(());
            }
            let skip = offset.saturating_sub(2) as usize;
            let mut cookie = offset.max(2);
            self.view
                .children(dir, skip, &mut |name, ino| {
                    cookie += 1;
                    // `children` goes on while we return true: while the reply has room.
                    !emit(cookie, name, ino)
                })
                .ok_or(Errno::ENOTDIR)
        })
    }

    pub(crate) fn xattr(&self, kernel: u64, name: &[u8]) -> Result<Vec<u8>, Errno> {
        guarded("getxattr", || self.view.xattr(view_ino(kernel)?, name).ok_or(Errno::ENODATA))
    }

    /// The names of an inode's xattrs, each NUL-terminated.
    pub(crate) fn xattr_list(&self, kernel: u64) -> Result<Vec<u8>, Errno> {
        guarded("listxattr", || {
            let mut out = Vec::new();
            for name in self.view.xattr_names(view_ino(kernel)?) {
                out.extend_from_slice(&name);
                out.push(0);
            }
            Ok(out)
        })
    }

    /// Without default_permissions only the mounting user can reach us at all (the kernel
    /// refuses everyone else), and that user may read everything; nothing is writable.
    pub(crate) fn access(&self, kernel: u64, write: bool) -> Result<(), Errno> {
        guarded("access", || self.attr(view_ino(kernel)?))?;
        if write {
            Err(Errno::EROFS)
        } else {
            Ok(())
        }
    }
}

/// Whether only root may write the host file: the kernel then reads it directly (passthrough).
/// A file someone else may write is read through the daemon instead, whose reads notice a
/// change and answer EIO: passed through, a file rewritten while it is read would give a mix
/// of old and new bytes, or reads past its new end. Both modes then give the same answers
/// for what other users can change (issue 19, finding 8).
fn only_root_writes(a: &Attr) -> bool {
    a.uid == 0 && a.mode & 0o022 == 0
}

/// An xattr value or list for a request that allows `size` bytes (0 asks for the length).
pub(crate) enum XattrReply {
    Size(u32),
    Data(Vec<u8>),
}

pub(crate) fn xattr_reply(value: Vec<u8>, size: u32) -> Result<XattrReply, Errno> {
    if size == 0 {
        Ok(XattrReply::Size(value.len() as u32))
    } else if value.len() > size as usize {
        Err(Errno::ERANGE)
    } else {
        Ok(XattrReply::Data(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_handler_answers_eio() {
        let r: Result<(), Errno> = guarded("test", || panic!("bug"));
        assert_eq!(r, Err(Errno::EIO));
        assert_eq!(guarded("test", || Ok(7)), Ok(7));
    }

    /// A flat directory of `n` files.
    struct Flat(u64);

    impl View for Flat {
        fn attr(&self, ino: Ino) -> Option<Attr> {
            let mode = if ino == 0 { libc::S_IFDIR | 0o755 } else { libc::S_IFREG | 0o644 };
            (ino <= self.0).then_some(Attr { mode, nlink: 1, ..Attr::default() })
        }
        fn lookup(&self, _parent: Ino, _name: &[u8]) -> Option<Ino> {
            None
        }
        fn parent(&self, _dir: Ino) -> Ino {
            0
        }
        fn children(&self, dir: Ino, skip: usize, f: &mut dyn FnMut(&[u8], Ino) -> bool) -> Option<()> {
            if dir != 0 {
                return None;
            }
            for i in (1..=self.0).skip(skip) {
                if !f(format!("f{i}").as_bytes(), i) {
                    break;
                }
            }
            Some(())
        }
        fn readlink(&self, _ino: Ino) -> Option<&[u8]> {
            None
        }
        fn data(&self, _ino: Ino) -> Option<Data<'_>> {
            None
        }
        fn open(&self, _ino: Ino, _size: u64) -> io::Result<File> {
            Err(io::Error::from_raw_os_error(libc::ENOENT))
        }
    }

    /// How many replies of `room` entries each list a directory of `n` children, as a
    /// transport asks for them (resuming at the cookie of the last entry it took).
    fn replies(n: u64, room: usize) -> (usize, usize) {
        let core = Core::new(Flat(n), false, false);
        let (mut replies, mut seen, mut offset) = (0, 0, 0);
        loop {
            let mut taken = Vec::new();
            // As the transports' buffers do: a full reply refuses the entry (true).
            let mut add: Box<AddEntry> = Box::new(|cookie, _name: &[u8], _ino, _attr: &Attr| {
                let full = taken.len() >= room;
                if !full {
                    taken.push(cookie);
                }
                full
            });
            core.entries(1, offset, &mut add).unwrap();
            drop(add);
            if taken.is_empty() {
                return (replies, seen);
            }
            replies += 1;
            seen += taken.len();
            offset = *taken.last().unwrap();
        }
    }

    #[test]
    fn a_listing_fills_each_reply() {
        // 100 children plus `.` and `..` fit in two replies of 64 entries (the lost `!` of
        // issue 20 made it one child per reply: 101).
        assert_eq!(replies(100, 64), (2, 102));
        assert_eq!(replies(0, 64), (1, 2));
        assert_eq!(replies(200, 1000), (1, 202));
    }

    #[test]
    fn kernel_and_view_inode_numbers() {
        assert_eq!(view_ino(1), Ok(0));
        assert_eq!(view_ino(0), Err(Errno::ENOENT));
        assert_eq!(kernel_ino(0), 1);
    }
}
