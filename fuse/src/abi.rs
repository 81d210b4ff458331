//! The FUSE messages' bytes (`linux/fuse.h`), for the transports that carry them as bytes:
//! FUSE over io_uring (`uring`) and virtio-fs (`virtio`). Opcodes, the operations' fixed
//! arguments and the reply structures, little-endian fields read and written at their
//! offsets: no `unsafe`, no packed structs. How a request reaches us (an io_uring entry's
//! header buffer, a virtqueue's descriptors) is each transport's own.

use crate::core::{kernel_ino, TTL};
use crate::{Attr, Ino, Usage, BLOCK_SIZE};

/// `struct fuse_in_header`: len, opcode, unique, nodeid, uid, gid, pid, total_extlen.
pub(crate) const IN_HEADER: usize = 40;
/// `struct fuse_out_header`: len, error, unique.
pub(crate) const OUT_HEADER: usize = 16;

pub(crate) const FOPEN_KEEP_CACHE: u32 = 1 << 1;
pub(crate) const FOPEN_CACHE_DIR: u32 = 1 << 3;
pub(crate) const FOPEN_NOFLUSH: u32 = 1 << 5;
pub(crate) const FOPEN_PASSTHROUGH: u32 = 1 << 7;

/// The opcodes a transport answers or refuses by name; every other one is ENOSYS.
pub(crate) mod op {
    pub const LOOKUP: u32 = 1;
    pub const FORGET: u32 = 2;
    pub const GETATTR: u32 = 3;
    pub const SETATTR: u32 = 4;
    pub const READLINK: u32 = 5;
    pub const SYMLINK: u32 = 6;
    pub const MKNOD: u32 = 8;
    pub const MKDIR: u32 = 9;
    pub const UNLINK: u32 = 10;
    pub const RMDIR: u32 = 11;
    pub const RENAME: u32 = 12;
    pub const LINK: u32 = 13;
    pub const OPEN: u32 = 14;
    pub const READ: u32 = 15;
    pub const WRITE: u32 = 16;
    pub const STATFS: u32 = 17;
    pub const RELEASE: u32 = 18;
    pub const SETXATTR: u32 = 21;
    pub const GETXATTR: u32 = 22;
    pub const LISTXATTR: u32 = 23;
    pub const REMOVEXATTR: u32 = 24;
    pub const FLUSH: u32 = 25;
    pub const INIT: u32 = 26;
    pub const OPENDIR: u32 = 27;
    pub const READDIR: u32 = 28;
    pub const RELEASEDIR: u32 = 29;
    pub const ACCESS: u32 = 34;
    pub const CREATE: u32 = 35;
    pub const INTERRUPT: u32 = 36;
    pub const DESTROY: u32 = 38;
    pub const BATCH_FORGET: u32 = 42;
    pub const FALLOCATE: u32 = 43;
    pub const READDIRPLUS: u32 = 44;
    pub const RENAME2: u32 = 45;
    pub const COPY_FILE_RANGE: u32 = 47;
    pub const TMPFILE: u32 = 51;
}

/// The little-endian u32 at `at`; 0 past the end (callers check lengths first).
pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    b.get(at..at.saturating_add(4)).and_then(|s| s.try_into().ok()).map_or(0, u32::from_le_bytes)
}

/// The little-endian u64 at `at`; 0 past the end (callers check lengths first).
pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    b.get(at..at.saturating_add(8)).and_then(|s| s.try_into().ok()).map_or(0, u64::from_le_bytes)
}

/// The operation's fixed argument.
pub(crate) struct OpIn<'a>(pub &'a [u8]);

impl OpIn<'_> {
    /// `fuse_read_in`: offset and size (READ, READDIR, READDIRPLUS).
    pub(crate) fn read(&self) -> (u64, usize) {
        (u64_at(self.0, 8), u32_at(self.0, 16) as usize)
    }
    /// `fuse_open_in.flags`, `fuse_getxattr_in.size`, `fuse_access_in.mask`: the first u32.
    pub(crate) fn first_u32(&self) -> u32 {
        u32_at(self.0, 0)
    }
    /// `fuse_release_in.fh`.
    pub(crate) fn fh(&self) -> u64 {
        u64_at(self.0, 0)
    }
}

/// A reply payload being written. What does not fit is not written, and the reply is then
/// [`Out::overflowed`] (a transport answers ERANGE instead of a cut structure).
pub(crate) struct Out<'a> {
    buf: &'a mut [u8],
    pub len: usize,
    overflow: bool,
}

impl<'a> Out<'a> {
    pub(crate) fn new(buf: &'a mut [u8]) -> Self {
        Out { buf, len: 0, overflow: false }
    }

    pub(crate) fn room(&self) -> usize {
        self.buf.len() - self.len
    }

    /// Whether something did not fit.
    pub(crate) fn overflowed(&self) -> bool {
        self.overflow
    }

    pub(crate) fn bytes(&mut self, b: &[u8]) -> &mut Self {
        match self.buf.get_mut(self.len..self.len + b.len()) {
            Some(dst) => {
                dst.copy_from_slice(b);
                self.len += b.len();
            }
            None => self.overflow = true,
        }
        self
    }

    pub(crate) fn u16(&mut self, v: u16) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }

    pub(crate) fn u32(&mut self, v: u32) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }

    pub(crate) fn u64(&mut self, v: u64) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }

    /// `struct fuse_attr`.
    fn attr(&mut self, ino: Ino, a: &Attr) -> &mut Self {
        // Before the epoch only whole seconds, as fuser's conversion gives them.
        let (secs, nsec) = if a.mtime >= 0 { (a.mtime, a.mtime_nsec) } else { (a.mtime, 0) };
        self.u64(kernel_ino(ino)).u64(a.size).u64(a.size.div_ceil(512));
        self.u64(secs as u64).u64(secs as u64).u64(secs as u64);
        self.u32(nsec).u32(nsec).u32(nsec).u32(a.mode).u32(a.nlink).u32(a.uid).u32(a.gid);
        // Linux's dev_t for majors < 4096 is the kernel's 32-bit encoding FUSE carries.
        self.u32(a.rdev as u32).u32(4096).u32(0)
    }

    /// `struct fuse_entry_out`; `None` is a negative entry (inode 0, remembered).
    pub(crate) fn entry(&mut self, found: Option<(Ino, &Attr)>) -> &mut Self {
        let ttl = TTL.as_secs();
        match found {
            Some((ino, a)) => self.u64(kernel_ino(ino)).u64(0).u64(ttl).u64(ttl).u32(0).u32(0).attr(ino, a),
            None => self.u64(0).u64(0).u64(ttl).u64(ttl).u32(0).u32(0).bytes(&[0; 88]),
        }
    }

    /// `struct fuse_attr_out`.
    pub(crate) fn attr_out(&mut self, ino: Ino, a: &Attr) -> &mut Self {
        self.u64(TTL.as_secs()).u32(0).u32(0).attr(ino, a)
    }

    /// `struct fuse_open_out` with file handle 0.
    pub(crate) fn open(&mut self, flags: u32) -> &mut Self {
        self.u64(0).u32(flags).u32(0)
    }

    /// `struct fuse_open_out` handing the file to the kernel (passthrough) with `backing_id`.
    pub(crate) fn open_passthrough(&mut self, fh: u64, backing_id: u32) -> &mut Self {
        self.u64(fh).u32(FOPEN_PASSTHROUGH | FOPEN_NOFLUSH).u32(backing_id)
    }

    /// `struct fuse_statfs_out`: read-only, everything used, nothing free.
    pub(crate) fn statfs(&mut self, u: Usage) -> &mut Self {
        self.u64(u.blocks).u64(0).u64(0).u64(u.inodes).u64(0);
        self.u32(BLOCK_SIZE as u32).u32(255).u32(BLOCK_SIZE as u32).u32(0).bytes(&[0; 24])
    }

    /// `struct fuse_getxattr_out`: the size a value or list needs.
    pub(crate) fn xattr_size(&mut self, size: u32) -> &mut Self {
        self.u32(size).u32(0)
    }

    /// One `struct fuse_dirent` (with `plus`, a `fuse_direntplus`), or false when it does not
    /// fit in what is left.
    pub(crate) fn dirent(&mut self, plus: bool, cookie: u64, name: &[u8], ino: Ino, a: &Attr) -> bool {
        let size = (24 + name.len()).next_multiple_of(8) + if plus { 128 } else { 0 };
        if size > self.room() {
            return false;
        }
        if plus {
            self.entry(Some((ino, a)));
        }
        let kind = (a.mode & libc::S_IFMT) >> 12;
        // A view inode without attributes (never: see `Core::entries`) is listed as a file.
        let kind = if kind == 0 { libc::S_IFREG >> 12 } else { kind };
        self.u64(kernel_ino(ino)).u64(cookie).u32(name.len() as u32).u32(kind).bytes(name);
        let pad = self.len.next_multiple_of(8) - self.len;
        self.bytes(&[0; 8][..pad]);
        true
    }
}

/// A NUL-terminated name from a request's payload.
pub(crate) fn name(payload: &[u8]) -> &[u8] {
    payload.split(|&b| b == 0).next().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_have_the_kernels_sizes() {
        let mut buf = [0u8; 4096];
        let a = Attr { mode: libc::S_IFREG | 0o644, size: 1000, nlink: 1, ..Attr::default() };
        let sizes: Vec<usize> = [
            Out::new(&mut buf).entry(Some((2, &a))).len,
            Out::new(&mut buf).entry(None).len,
            Out::new(&mut buf).attr_out(2, &a).len,
            Out::new(&mut buf).open(FOPEN_KEEP_CACHE).len,
            Out::new(&mut buf).statfs(Usage::default()).len,
        ]
        .to_vec();
        assert_eq!(sizes, [128, 128, 104, 16, 80]);
        let mut out = Out::new(&mut buf);
        assert!(out.dirent(false, 3, b"abc", 2, &a));
        assert!(out.dirent(true, 4, b"longer-name", 2, &a));
        assert_eq!(out.len, 32 + 128 + 40);
        assert_eq!((u64_at(&buf, 0), u64_at(&buf, 8), u32_at(&buf, 16), u32_at(&buf, 20)), (3, 3, 3, 8));
        assert_eq!(&buf[24..27], b"abc");
    }

    #[test]
    fn a_full_buffer_takes_no_partial_entry() {
        let mut buf = [0u8; 40];
        let mut out = Out::new(&mut buf);
        assert!(out.dirent(false, 3, b"abc", 2, &Attr::default()));
        assert!(!out.dirent(false, 4, b"abc", 2, &Attr::default()));
        assert_eq!(out.len, 32);
        assert!(!out.overflowed());
    }

    #[test]
    fn what_does_not_fit_is_not_written() {
        let mut buf = [0u8; 100];
        let mut out = Out::new(&mut buf);
        out.u32(7).entry(None);
        assert!(out.overflowed());
        assert_eq!(out.len, 4 + 40);
        assert_eq!((u32_at(&buf, 98), u64_at(&buf, 96), u64_at(&buf, 200)), (0, 0, 0));
    }

    #[test]
    fn names_end_at_their_nul() {
        assert_eq!(name(b"libc.so.6\0"), b"libc.so.6");
        assert_eq!(name(b""), b"");
    }
}
