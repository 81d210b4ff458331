//! The request handlers: a [`fuser::Filesystem`] over a [`View`].
//!
//! Every handler computes its answer inside [`guarded`], which turns a panic into `EIO` for
//! that one request: a panic escaping a handler would end its event-loop thread and take the
//! whole mount down.

use std::cell::RefCell;
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyXattr, Request,
};

use crate::files::Files;
use crate::{Attr, Data, Ino, View, BLOCK_SIZE};

/// Host files at least this large are handed to the kernel (passthrough); smaller ones are
/// read through the daemon once and then kept in the page cache (KEEP_CACHE, which the kernel
/// refuses with passthrough). Measured on libguestfs's appliance (mostly small files): `tar`
/// of every file, warm, took 0.4 s through the daemon and 0.7-1.0 s with passthrough for all,
/// because every passthrough open registers and unregisters a backing file.
pub const PASSTHROUGH_MIN_SIZE: u64 = 1 << 20;

/// The tree never changes while mounted, so the kernel may keep what it learns for as long
/// as it likes; a year is "forever" without risking overflow in the kernel's conversion.
const TTL: Duration = Duration::from_secs(365 * 24 * 3600);

pub(crate) struct ViewFs<V: View> {
    view: V,
    files: Files,
    /// The kernel agreed to FUSE_NO_OPENDIR_SUPPORT: answering opendir with ENOSYS makes it
    /// stop sending opendir/releasedir (two round trips per directory per `find`), and it
    /// then caches listings (CACHE_DIR, KEEP_CACHE) by default.
    no_opendir: bool,
    /// The same for files (FUSE_NO_OPEN_SUPPORT), used whenever passthrough is off: an open
    /// then has nothing to set up, and skipping its round trip is what makes opening
    /// thousands of small files (tar, a program start) cost what it costs natively. Also
    /// when the kernel refuses passthrough at the first large file (a host file on a stacked
    /// filesystem): the next open answers ENOSYS and the connection stops sending opens.
    no_open: bool,
    /// Every entry is looked up by name before use (no attributes with listings), so that
    /// the view sees each path the first time it is used (see [`crate::Options::every_lookup`]).
    every_lookup: bool,
}

thread_local! {
    /// One read buffer per event-loop thread, reused for every read (and never cleared: zeroing
    /// a megabyte per request would cost as much as the copy itself).
    static READ_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Run `f`, turning a panic into EIO.
fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T, Errno>) -> Result<T, Errno> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(_) => {
            log::error!("{what}: internal error (panic); answered EIO");
            Err(Errno::EIO)
        }
    }
}

fn errno(e: &io::Error) -> Errno {
    Errno::from_i32(e.raw_os_error().unwrap_or(libc::EIO))
}

/// View inode ↔ kernel inode: the kernel's root is 1 and 0 means "no inode".
fn view_ino(ino: INodeNo) -> Result<Ino, Errno> {
    ino.0.checked_sub(1).ok_or(Errno::ENOENT)
}

fn kernel_ino(ino: Ino) -> INodeNo {
    INodeNo(ino + 1)
}

fn file_type(mode: u32) -> FileType {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => FileType::Directory,
        libc::S_IFLNK => FileType::Symlink,
        libc::S_IFCHR => FileType::CharDevice,
        libc::S_IFBLK => FileType::BlockDevice,
        libc::S_IFIFO => FileType::NamedPipe,
        libc::S_IFSOCK => FileType::Socket,
        _ => FileType::RegularFile,
    }
}

fn time(secs: i64, nsec: u32) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nsec)
    } else {
        UNIX_EPOCH.checked_sub(Duration::new(secs.unsigned_abs(), 0)).unwrap_or(UNIX_EPOCH)
    }
}

fn file_attr(ino: Ino, a: &Attr) -> FileAttr {
    let t = time(a.mtime, a.mtime_nsec);
    FileAttr {
        ino: kernel_ino(ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: t,
        mtime: t,
        ctime: t,
        crtime: t,
        kind: file_type(a.mode),
        perm: (a.mode & 0o7777) as u16,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        // Linux's dev_t for majors < 4096 is the kernel's 32-bit encoding FUSE carries.
        rdev: a.rdev as u32,
        blksize: 4096,
        flags: 0,
    }
}

/// A negative entry: inode 0 with a TTL tells the kernel to remember that the name is absent.
fn negative() -> FileAttr {
    FileAttr { ino: INodeNo(0), ..file_attr(0, &Attr::default()) }
}

impl<V: View> ViewFs<V> {
    pub(crate) fn new(view: V, passthrough: bool, every_lookup: bool) -> Self {
        ViewFs { view, files: Files::new(passthrough), no_opendir: false, no_open: false, every_lookup }
    }

    fn attr(&self, ino: Ino) -> Result<Attr, Errno> {
        self.view.attr(ino).ok_or(Errno::ENOENT)
    }

    fn is_dir(&self, ino: Ino) -> Result<Attr, Errno> {
        let a = self.attr(ino)?;
        if a.mode & libc::S_IFMT != libc::S_IFDIR {
            return Err(Errno::ENOTDIR);
        }
        Ok(a)
    }

    /// Entries of a directory from cookie `offset`: `.` is 1, `..` is 2, children 3.., each
    /// entry's cookie being the one to resume *after* it. `add` returns true when full.
    fn entries(&self, dir: Ino, offset: u64, add: &mut dyn FnMut(u64, &[u8], Ino) -> bool) -> Result<(), Errno> {
        self.is_dir(dir)?;
        if offset < 1 && add(1, b".", dir) {
            return Ok(());
        }
        if offset < 2 && add(2, b"..", self.view.parent(dir)) {
            return Ok(());
        }
        let skip = offset.saturating_sub(2) as usize;
        let mut cookie = offset.max(2);
        self.view
            .children(dir, skip, &mut |name, ino| {
                cookie += 1;
                !add(cookie, name, ino)
            })
            .ok_or(Errno::ENOTDIR)
    }

    fn xattr_reply(value: Vec<u8>, size: u32, reply: ReplyXattr) {
        if size == 0 {
            reply.size(value.len() as u32);
        } else if value.len() > size as usize {
            reply.error(Errno::ERANGE);
        } else {
            reply.data(&value);
        }
    }
}

impl<V: View> Filesystem for ViewFs<V> {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        // Attributes come with directory listings: `find`/`ls -l` need no lookup per entry
        // (unless every first use must be seen).
        let plus = (!self.every_lookup).then_some(InitFlags::FUSE_DO_READDIRPLUS);
        // Each is asked for separately: an older kernel lacking one still gets the others.
        for flag in plus.into_iter().chain([InitFlags::FUSE_CACHE_SYMLINKS, InitFlags::FUSE_PARALLEL_DIROPS]) {
            if config.add_capabilities(flag).is_err() {
                log::debug!("kernel does not offer {flag:?}");
            }
        }
        self.no_opendir = config.add_capabilities(InitFlags::FUSE_NO_OPENDIR_SUPPORT).is_ok();
        if self.files.passthrough() {
            let ok =
                config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok() && config.set_max_stack_depth(1).is_ok();
            if !ok {
                self.files.disable_passthrough(&io::Error::other("kernel does not offer FUSE_PASSTHROUGH"));
            }
        }
        // Only announces that an open may be answered ENOSYS; see `open`.
        self.no_open = config.add_capabilities(InitFlags::FUSE_NO_OPEN_SUPPORT).is_ok();
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let r = guarded("lookup", || {
            let parent = view_ino(parent)?;
            self.is_dir(parent)?;
            match self.view.lookup(parent, name.as_bytes()) {
                Some(ino) => Ok(Some((ino, self.attr(ino)?))),
                None => Ok(None),
            }
        });
        match r {
            Ok(Some((ino, a))) => reply.entry(&TTL, &file_attr(ino, &a), Generation(0)),
            Ok(None) => reply.entry(&TTL, &negative(), Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match guarded("getattr", || {
            let ino = view_ino(ino)?;
            Ok((ino, self.attr(ino)?))
        }) {
            Ok((ino, a)) => reply.attr(&TTL, &file_attr(ino, &a)),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match guarded("readlink", || {
            let ino = view_ino(ino)?;
            self.view.readlink(ino).map(<[u8]>::to_vec).ok_or(Errno::EINVAL)
        }) {
            Ok(target) => reply.data(&target),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.0 & libc::O_ACCMODE != libc::O_RDONLY {
            return reply.error(Errno::EROFS);
        }
        if self.no_open && !self.files.passthrough() {
            return reply.error(Errno::ENOSYS);
        }
        // The kernel keeps pages across opens: nothing can change underneath.
        let keep = FopenFlags::FOPEN_KEEP_CACHE;
        let r = guarded("open", || {
            let ino = view_ino(ino)?;
            match self.view.data(ino) {
                Some(Data::Host(path)) if self.files.passthrough() && self.attr(ino)?.size >= PASSTHROUGH_MIN_SIZE => {
                    let file = self.files.get(ino, path, self.attr(ino)?.size).map_err(|e| {
                        log::debug!("{}: {e}", path.display());
                        errno(&e)
                    })?;
                    Ok(Some(file))
                }
                // Read through the daemon: the host file is opened at the first read that
                // misses the page cache, so a warm open costs no syscall (a vanished host
                // file then fails that read with ENOENT).
                Some(Data::Host(_)) => Ok(None),
                Some(Data::Bytes(_)) => Ok(None),
                None => Err(if self.attr(ino)?.mode & libc::S_IFMT == libc::S_IFDIR {
                    Errno::EISDIR
                } else {
                    Errno::EINVAL
                }),
            }
        });
        match r {
            // The kernel refuses KEEP_CACHE with passthrough (the backing file's page cache is
            // used instead), and a refused open is EIO for the caller.
            Ok(Some(file)) => match view_ino(ino) {
                Ok(vino) => {
                    if let Err((reply, e)) = self.files.open_passthrough(vino, file, reply) {
                        self.files.disable_passthrough(&e);
                        reply.opened(FileHandle(0), keep);
                    }
                }
                Err(e) => reply.error(e),
            },
            Ok(_) => reply.opened(FileHandle(0), keep),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        READ_BUF.with(|b| {
            let mut buf = b.borrow_mut();
            let r = guarded("read", || {
                let ino = view_ino(ino)?;
                match self.view.data(ino) {
                    // Straight from the mapping or memory: no copy before the kernel's.
                    Some(Data::Bytes(bytes)) => {
                        let start = (offset.min(bytes.len() as u64)) as usize;
                        let end = start.saturating_add(size as usize).min(bytes.len());
                        Ok(&bytes[start..end])
                    }
                    Some(Data::Host(path)) => {
                        let len = self.attr(ino)?.size;
                        let n = self.files.read(ino, (path, len), offset, size as usize, &mut buf).map_err(|e| {
                            log::debug!("{}: {e}", path.display());
                            errno(&e)
                        })?;
                        Ok(&buf[..n])
                    }
                    None => Err(Errno::EINVAL),
                }
            });
            match r {
                Ok(data) => reply.data(data),
                Err(e) => reply.error(e),
            }
        })
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let _ = guarded("release", || {
            self.files.release(fh.0);
            Ok(())
        });
        reply.ok();
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match guarded("opendir", || self.is_dir(view_ino(ino)?)) {
            Ok(_) if self.no_opendir => reply.error(Errno::ENOSYS),
            // Listings stay in the kernel's cache across opens.
            Ok(_) => reply.opened(FileHandle(0), FopenFlags::FOPEN_CACHE_DIR | FopenFlags::FOPEN_KEEP_CACHE),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let r = guarded("readdir", || {
            let dir = view_ino(ino)?;
            self.entries(dir, offset, &mut |cookie, name, child| {
                let kind = self.view.attr(child).map(|a| file_type(a.mode)).unwrap_or(FileType::RegularFile);
                reply.add(kernel_ino(child), cookie, kind, OsStr::from_bytes(name))
            })
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn readdirplus(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectoryPlus) {
        let r = guarded("readdirplus", || {
            let dir = view_ino(ino)?;
            self.entries(dir, offset, &mut |cookie, name, child| {
                let a = self.view.attr(child).unwrap_or_default();
                reply.add(
                    kernel_ino(child),
                    cookie,
                    OsStr::from_bytes(name),
                    &TTL,
                    &file_attr(child, &a),
                    Generation(0),
                )
            })
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        // Read-only: everything used, nothing free, so `df` tells how big the appliance
        // would be if built.
        let u = self.view.usage();
        reply.statfs(u.blocks, 0, 0, u.inodes, 0, BLOCK_SIZE as u32, 255, BLOCK_SIZE as u32);
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        match guarded("getxattr", || self.view.xattr(view_ino(ino)?, name.as_bytes()).ok_or(Errno::ENODATA)) {
            Ok(value) => Self::xattr_reply(value, size, reply),
            Err(e) => reply.error(e),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match guarded("listxattr", || {
            let mut out = Vec::new();
            for name in self.view.xattr_names(view_ino(ino)?) {
                out.extend_from_slice(&name);
                out.push(0);
            }
            Ok(out)
        }) {
            Ok(list) => Self::xattr_reply(list, size, reply),
            Err(e) => reply.error(e),
        }
    }

    fn access(&self, _req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        // Without default_permissions only the mounting user can reach us at all (the kernel
        // refuses everyone else), and that user may read everything; nothing is writable.
        match guarded("access", || self.attr(view_ino(ino)?)) {
            Ok(_) if mask.contains(AccessFlags::W_OK) => reply.error(Errno::EROFS),
            Ok(_) => reply.ok(),
            Err(e) => reply.error(e),
        }
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

    #[test]
    fn kernel_and_view_inode_numbers() {
        assert_eq!(view_ino(INodeNo(1)), Ok(0));
        assert_eq!(view_ino(INodeNo(0)), Err(Errno::ENOENT));
        assert_eq!(kernel_ino(0), INodeNo(1));
        let a =
            Attr { mode: libc::S_IFCHR | 0o620, rdev: libc::makedev(4, 1), nlink: 1, size: 1000, ..Attr::default() };
        let f = file_attr(5, &a);
        assert_eq!((f.ino, f.kind, f.perm, f.blocks), (INodeNo(6), FileType::CharDevice, 0o620, 2));
        assert_eq!(f.rdev, (4 << 8) | 1);
    }
}
