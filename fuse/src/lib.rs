//! A read-only FUSE filesystem over any immutable tree that implements [`View`].
//!
//! This crate knows nothing of supermin, packages or manifests: the tree's owner implements
//! [`View`] (names → inode numbers → attributes, link targets and where file bytes are), and
//! [`serve`] presents it at a mountpoint. Because the tree cannot change while mounted, every
//! answer is cached by the kernel for as long as it wants (entries, attributes, negative
//! lookups, symlinks, page cache), and file opens either never reach this process
//! (FUSE_NO_OPEN) or, when the owner asks for passthrough ([`Options::passthrough`]), hand
//! large host files to the kernel: so most work never reaches this process. The same tree
//! can also be a virtual machine's filesystem: [`serve_vhost_user`] is a virtio-fs device
//! for qemu's `vhost-user-fs-pci`, which the guest mounts with `mount -t virtiofs`.
//!
//! Modules: `core` (each request's answer), `fs` (fuser's handlers over `/dev/fuse`),
//! `uring` (the same answers over FUSE io_uring queues, one per CPU), `virtio` (the same
//! answers to a guest over virtio-fs and vhost-user; `virtio/frame.rs` is a request's bytes
//! to its reply's), `abi` (the FUSE messages' bytes) and `raw` (the answers to requests
//! carried as bytes), shared by `uring` and `virtio`, `files` (opened host files: a bounded
//! cache and passthrough handles), `session` (mount options, readiness, stop signals),
//! `demo` (a small in-memory tree for tests and examples) and `fuzzing` (the fuzz targets'
//! entry points). Checking a mountpoint, running in the background and unmounting are the
//! application's business. Syscalls go through `nix`; the only `unsafe` is queueing io_uring
//! commands (`uring/sys.rs`); guest memory is mapped and accessed by `vhost-user-backend`
//! and `virtio-queue`.

#![deny(unsafe_code)]

mod abi;
mod core;
#[doc(hidden)]
pub mod demo;
mod files;
mod fs;
#[doc(hidden)]
pub mod fuzzing;
mod raw;
mod session;
mod uring;
mod virtio;

use std::fs::File;
use std::io;
use std::os::unix::net::UnixListener;
use std::path::Path;

pub use core::PASSTHROUGH_MIN_SIZE;
pub use session::{serve, spawn, Background, Options, ServeError};

/// Serve `view` as a virtio-fs device over vhost-user (qemu's `vhost-user-fs-pci`) to the
/// one frontend that connects to `listener`, until that frontend disconnects (the VM ends);
/// then return. The caller binds `listener` (in a directory only it can use) before it
/// starts the VM, and may run this on a thread of its own. Of `opts`, only
/// [`Options::every_lookup`] applies: a guest has no use for the mount options, and no host
/// file can be handed to it (passthrough).
pub fn serve_vhost_user<V: View>(view: V, listener: UnixListener, opts: &Options) -> io::Result<()> {
    virtio::serve(view, listener, opts)
}

/// Inode numbers of a view; [`ROOT`] is the root directory. (The kernel's numbers are these
/// plus one, because FUSE reserves 0 and calls the root 1.)
pub type Ino = u64;
pub const ROOT: Ino = 0;

/// What `stat` says about an inode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Attr {
    /// Full `st_mode`: file type and permission bits.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime: i64,
    pub mtime_nsec: u32,
    pub rdev: u64,
    pub nlink: u32,
}

/// Where a regular file's bytes are.
pub enum Data<'a> {
    /// A host file, opened by [`View::open`] when it is first read (or opened, in
    /// passthrough); the path names it in messages.
    Host(&'a Path),
    /// Bytes in memory or in a mapping that lives as long as the view.
    Bytes(&'a [u8]),
}

/// An immutable tree. Every method is a pure read: it is called from several threads at once
/// and must not block for long (no package database, no decompression here).
pub trait View: Send + Sync + 'static {
    /// `None` for an inode number the view does not have.
    fn attr(&self, ino: Ino) -> Option<Attr>;
    /// The child `name` of directory `parent`.
    fn lookup(&self, parent: Ino, name: &[u8]) -> Option<Ino>;
    /// The parent of a directory (the root is its own parent), for `..`.
    fn parent(&self, dir: Ino) -> Ino;
    /// Call `f(name, ino)` for the children of `dir` in a stable order, starting at the
    /// `skip`-th; stop when `f` returns `false`. `None` when `dir` is not a directory.
    fn children(&self, dir: Ino, skip: usize, f: &mut dyn FnMut(&[u8], Ino) -> bool) -> Option<()>;
    fn readlink(&self, ino: Ino) -> Option<&[u8]>;
    fn data(&self, ino: Ino) -> Option<Data<'_>>;
    /// Open the host file of `ino` (a [`Data::Host`]) for reading, `size` bytes long in the
    /// view. The view decides how: a path that someone else can change must not lead to
    /// another file than the one the view was made of.
    fn open(&self, ino: Ino, size: u64) -> io::Result<File>;
    /// Extended attributes: the value of `name` on `ino`.
    fn xattr(&self, _ino: Ino, _name: &[u8]) -> Option<Vec<u8>> {
        None
    }
    /// Names of the extended attributes of `ino`.
    fn xattr_names(&self, _ino: Ino) -> Vec<Vec<u8>> {
        Vec::new()
    }
    /// What `df` shows as used: blocks of [`BLOCK_SIZE`] and inodes (none by default).
    fn usage(&self) -> Usage {
        Usage::default()
    }
}

/// The block size `statfs` reports, in which [`Usage::blocks`] counts.
pub const BLOCK_SIZE: u64 = 4096;

/// The size of a view, for `statfs` (`df`): all used, nothing free (it is read-only).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub blocks: u64,
    pub inodes: u64,
}

/// A shared view is a view: the owner can keep a handle on what it serves (to read what the
/// mount recorded once it ends).
impl<T: View> View for std::sync::Arc<T> {
    fn attr(&self, ino: Ino) -> Option<Attr> {
        (**self).attr(ino)
    }
    fn lookup(&self, parent: Ino, name: &[u8]) -> Option<Ino> {
        (**self).lookup(parent, name)
    }
    fn parent(&self, dir: Ino) -> Ino {
        (**self).parent(dir)
    }
    fn children(&self, dir: Ino, skip: usize, f: &mut dyn FnMut(&[u8], Ino) -> bool) -> Option<()> {
        (**self).children(dir, skip, f)
    }
    fn readlink(&self, ino: Ino) -> Option<&[u8]> {
        (**self).readlink(ino)
    }
    fn data(&self, ino: Ino) -> Option<Data<'_>> {
        (**self).data(ino)
    }
    fn open(&self, ino: Ino, size: u64) -> io::Result<File> {
        (**self).open(ino, size)
    }
    fn xattr(&self, ino: Ino, name: &[u8]) -> Option<Vec<u8>> {
        (**self).xattr(ino, name)
    }
    fn xattr_names(&self, ino: Ino) -> Vec<Vec<u8>> {
        (**self).xattr_names(ino)
    }
    fn usage(&self) -> Usage {
        (**self).usage()
    }
}
