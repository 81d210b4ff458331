//! The fuser adapter: a [`fuser::Filesystem`] whose handlers ask [`Core`] and reply.
//!
//! It negotiates the connection (`init`) and serves `/dev/fuse`; when the kernel offers FUSE
//! over io_uring, `init` also prepares the rings that `uring` then serves (see there), and
//! from then on only forgets and interrupts come this way.

use std::cell::RefCell;
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyXattr, Request,
};
use parking_lot::Mutex;

use crate::core::{guarded, kernel_ino, xattr_reply, Core, ReadOut, XattrReply, PASSTHROUGH_MIN_SIZE_URING, TTL};
use crate::uring::Rings;
use crate::{Attr, Ino, View, BLOCK_SIZE};

pub(crate) struct ViewFs<V: View> {
    pub(crate) core: Arc<Core<V>>,
    /// Try FUSE over io_uring (when the kernel offers it).
    uring: bool,
    /// The rings prepared at `init` when the kernel took FUSE over io_uring: the session
    /// must serve them (`uring::serve`), or requests wait forever.
    pub(crate) rings: Arc<Mutex<Option<Rings>>>,
}

thread_local! {
    /// One read buffer per event-loop thread, reused for every read (and never cleared: zeroing
    /// a megabyte per request would cost as much as the copy itself).
    static READ_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
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
        ino: INodeNo(kernel_ino(ino)),
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
    pub(crate) fn new(core: Arc<Core<V>>, uring: bool) -> Self {
        ViewFs { core, uring, rings: Arc::new(Mutex::new(None)) }
    }

    /// Ask for FUSE over io_uring when the kernel offers it, with the rings made first: once
    /// the kernel took it, no request is sent until every queue has a ring entry.
    fn negotiate_uring(&mut self, config: &mut KernelConfig) {
        match crate::uring::kernel_switch() {
            Some(true) if self.uring => {}
            Some(false) if self.uring => return log::info!("{}", crate::uring::switch_hint()),
            _ => return,
        }
        // The kernel sizes each entry's payload buffer from max_write, which fuser sets to
        // 16 MiB; reads need 1 MiB at most (256 pages), and the view takes no writes.
        let payload = crate::uring::PAYLOAD;
        if config.set_max_write(payload as u32).is_err() {
            return;
        }
        match Rings::prepare(payload) {
            Ok(rings) if config.add_capabilities(InitFlags::FUSE_OVER_IO_URING).is_ok() => {
                *self.rings.lock() = Some(rings);
                self.core.passthrough_min.store(PASSTHROUGH_MIN_SIZE_URING, Ordering::Relaxed);
            }
            Ok(_) => log::debug!("kernel does not offer FUSE over io_uring"),
            Err(e) => log::info!("FUSE over io_uring unavailable ({e}); serving /dev/fuse"),
        }
    }
}

fn entry_reply(r: Result<Option<(Ino, Attr)>, Errno>, reply: ReplyEntry) {
    match r {
        Ok(Some((ino, a))) => reply.entry(&TTL, &file_attr(ino, &a), Generation(0)),
        Ok(None) => reply.entry(&TTL, &negative(), Generation(0)),
        Err(e) => reply.error(e),
    }
}

fn xattr_send(r: Result<Vec<u8>, Errno>, size: u32, reply: ReplyXattr) {
    match r.and_then(|v| xattr_reply(v, size)) {
        Ok(XattrReply::Size(n)) => reply.size(n),
        Ok(XattrReply::Data(v)) => reply.data(&v),
        Err(e) => reply.error(e),
    }
}

impl<V: View> Filesystem for ViewFs<V> {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        // Attributes come with directory listings: `find`/`ls -l` need no lookup per entry
        // (unless every first use must be seen).
        let plus = (!self.core.every_lookup).then_some(InitFlags::FUSE_DO_READDIRPLUS);
        // Each is asked for separately: an older kernel lacking one still gets the others.
        for flag in plus.into_iter().chain([InitFlags::FUSE_CACHE_SYMLINKS, InitFlags::FUSE_PARALLEL_DIROPS]) {
            if config.add_capabilities(flag).is_err() {
                log::debug!("kernel does not offer {flag:?}");
            }
        }
        let no_opendir = config.add_capabilities(InitFlags::FUSE_NO_OPENDIR_SUPPORT).is_ok();
        self.core.no_opendir.store(no_opendir, Ordering::Relaxed);
        let files = &self.core.files;
        if files.passthrough() {
            let ok =
                config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok() && config.set_max_stack_depth(1).is_ok();
            if !ok {
                files.disable_passthrough(&io::Error::other("kernel does not offer FUSE_PASSTHROUGH"));
            }
        }
        // Only announces that an open may be answered ENOSYS; see `open`.
        let no_open = config.add_capabilities(InitFlags::FUSE_NO_OPEN_SUPPORT).is_ok();
        self.core.no_open.store(no_open, Ordering::Relaxed);
        self.negotiate_uring(config);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        entry_reply(self.core.lookup(parent.0, name.as_bytes()), reply);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.core.getattr(ino.0) {
            Ok((ino, a)) => reply.attr(&TTL, &file_attr(ino, &a)),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.core.readlink(ino.0) {
            Ok(target) => reply.data(target),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        // The kernel keeps pages across opens: nothing can change underneath.
        let keep = FopenFlags::FOPEN_KEEP_CACHE;
        let files = &self.core.files;
        match self.core.open(ino.0, flags.0) {
            // The kernel refuses KEEP_CACHE with passthrough (the backing file's page cache is
            // used instead), and a refused open is EIO for the caller.
            Ok(Some((vino, file))) => {
                if let Err((reply, e)) = files.open_passthrough(vino, file, reply) {
                    files.disable_passthrough(&e);
                    reply.opened(FileHandle(0), keep);
                }
            }
            Ok(None) => reply.opened(FileHandle(0), keep),
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
            if buf.len() < size as usize {
                buf.resize(size as usize, 0);
            }
            match self.core.read(ino.0, offset, size as usize, &mut buf) {
                // Straight from the mapping or memory: no copy before the kernel's.
                Ok(ReadOut::Bytes(data)) => reply.data(data),
                Ok(ReadOut::InBuf(n)) => reply.data(&buf[..n]),
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
            self.core.files.release(fh.0);
            Ok(())
        });
        reply.ok();
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.core.opendir(ino.0) {
            // Listings stay in the kernel's cache across opens.
            Ok(()) => reply.opened(FileHandle(0), FopenFlags::FOPEN_CACHE_DIR | FopenFlags::FOPEN_KEEP_CACHE),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let r = self.core.entries(ino.0, offset, &mut |cookie, name, child, a| {
            reply.add(INodeNo(kernel_ino(child)), cookie, file_type(a.mode), OsStr::from_bytes(name))
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn readdirplus(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectoryPlus) {
        let r = self.core.entries(ino.0, offset, &mut |cookie, name, child, a| {
            let attr = file_attr(child, a);
            reply.add(INodeNo(kernel_ino(child)), cookie, OsStr::from_bytes(name), &TTL, &attr, Generation(0))
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        // Read-only: everything used, nothing free, so `df` tells how big the appliance
        // would be if built.
        let u = self.core.view.usage();
        reply.statfs(u.blocks, 0, 0, u.inodes, 0, BLOCK_SIZE as u32, 255, BLOCK_SIZE as u32);
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        xattr_send(self.core.xattr(ino.0, name.as_bytes()), size, reply);
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        xattr_send(self.core.xattr_list(ino.0), size, reply);
    }

    fn access(&self, _req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        match self.core.access(ino.0, mask.contains(AccessFlags::W_OK)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_attributes() {
        let a =
            Attr { mode: libc::S_IFCHR | 0o620, rdev: libc::makedev(4, 1), nlink: 1, size: 1000, ..Attr::default() };
        let f = file_attr(5, &a);
        assert_eq!((f.ino, f.kind, f.perm, f.blocks), (INodeNo(6), FileType::CharDevice, 0o620, 2));
        assert_eq!(f.rdev, (4 << 8) | 1);
    }
}
