//! Opened host files.
//!
//! Reads that reach the daemon (no passthrough) need an open descriptor. Opening per read is
//! slow and keeping every file ever read open would exhaust descriptors on a large tree, so
//! descriptors live in a bounded LRU keyed by inode; a file evicted while still being read is
//! simply opened again.
//!
//! With passthrough the kernel reads the host file itself; it needs a backing id registered
//! on the FUSE connection, which must stay registered until the file is released, so those
//! live in a table keyed by inode.
//!
//! The tree is immutable but host files are not: a host file deleted, truncated, replaced or
//! rewritten under the mount must never be served as a mix of its old and new bytes (the
//! kernel keeps the pages it already has). So the first open of a host file records what it
//! is ([`Stamp`]: device, inode, size, mtime), and must have the size the view gives it; every
//! later open and every read (checked after reading) must find the same file, or answers EIO.
//! A file deleted while the daemon holds it open keeps being served: its bytes are intact.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::num::NonZeroUsize;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use fuser::{BackingId, FileHandle, FopenFlags, ReplyOpen};
use lru::LruCache;
use parking_lot::Mutex;

use crate::Ino;

/// Enough for every file a busy program has open at once, far below the usual 1024 limit.
const MAX_OPEN: usize = 256;

pub(crate) struct Files {
    lru: Mutex<LruCache<Ino, Arc<File>>>,
    /// Cleared the first time the kernel refuses a backing file (no privilege, old kernel,
    /// stacked filesystem): from then on every host file is read through the daemon.
    passthrough: AtomicBool,
    /// Per inode in passthrough: its backing file.
    backing: Mutex<HashMap<Ino, Backing>>,
    /// Per inode: its host file as first opened.
    stamps: Mutex<HashMap<Ino, Stamp>>,
}

/// What a host file is: a change of any of these means its bytes may have changed.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
}

impl Stamp {
    fn of(file: &File) -> io::Result<Stamp> {
        let m = file.metadata()?;
        Ok(Stamp { dev: m.dev(), ino: m.ino(), size: m.size(), mtime: (m.mtime(), m.mtime_nsec()) })
    }
}

/// A backing id registered with the kernel, the file it names, and how many opens use it.
struct Backing {
    id: BackingRef,
    /// Held so the kernel's backing file stays the one registered.
    _file: Arc<File>,
    opens: usize,
}

/// How a backing id was registered: through a fuser reply (`/dev/fuse`), or by the io_uring
/// transport, which closes it itself.
enum BackingRef {
    Fuser(BackingId),
    Raw(RawBacking),
}

/// A backing id registered without a fuser reply; `close` ends it when dropped.
pub(crate) struct RawBacking {
    pub(crate) id: u32,
    pub(crate) close: Box<dyn Fn(u32) + Send + Sync>,
}

impl Drop for RawBacking {
    fn drop(&mut self) {
        (self.close)(self.id)
    }
}

impl Files {
    pub(crate) fn new(passthrough: bool) -> Files {
        Files {
            lru: Mutex::new(LruCache::new(NonZeroUsize::new(MAX_OPEN).expect("nonzero"))),
            passthrough: AtomicBool::new(passthrough),
            backing: Mutex::new(HashMap::new()),
            stamps: Mutex::new(HashMap::new()),
        }
    }

    /// The open descriptor of `ino`'s host file (`len` bytes long in the view), opened by
    /// `open` if it is not cached; EIO if it is not the file first opened for `ino`.
    pub(crate) fn get(&self, ino: Ino, (path, len): (&Path, u64), open: Opener) -> io::Result<Arc<File>> {
        if let Some(f) = self.lru.lock().get(&ino) {
            return Ok(f.clone());
        }
        // Opened outside the lock: a slow open (cold disk) must not stall other readers.
        let file = Arc::new(open(ino, len).map_err(|e| refused(path, e))?);
        let now = Stamp::of(&file)?;
        let mut stamps = self.stamps.lock();
        let first = *stamps.entry(ino).or_insert(now);
        if first != now || now.size != len {
            if first == now {
                stamps.remove(&ino); // never served: a later open may find the right size
            }
            return Err(changed(path));
        }
        drop(stamps);
        self.lru.lock().put(ino, file.clone());
        Ok(file)
    }

    /// Read up to `buf.len()` bytes at `offset` into `buf`; returns how many were read (fewer
    /// only at end of file). `len` is the file's size in the view.
    pub(crate) fn read(
        &self,
        ino: Ino,
        (path, len): (&Path, u64),
        open: Opener,
        (offset, buf): (u64, &mut [u8]),
    ) -> io::Result<usize> {
        let file = self.get(ino, (path, len), open)?;
        // The view's length bounds the read: no second pread to find the end of the file.
        let size = buf.len().min(len.saturating_sub(offset) as usize);
        let mut done = 0;
        while done < size {
            match file.read_at(&mut buf[done..size], offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        // Checked after reading: a change that began before the read ended changed the mtime.
        if self.stamps.lock().get(&ino).copied() != Some(Stamp::of(&file)?) {
            return Err(changed(path));
        }
        Ok(done)
    }

    pub(crate) fn passthrough(&self) -> bool {
        self.passthrough.load(Ordering::Relaxed)
    }

    pub(crate) fn disable_passthrough(&self, why: &io::Error) {
        if self.passthrough.swap(false, Ordering::Relaxed) {
            log::info!("FUSE passthrough refused by the kernel ({why}); reading host files through the daemon");
        }
    }

    /// Answer an open of `ino` with passthrough to `file`. The kernel requires every open of
    /// an inode that is open in passthrough mode to name the *same* backing file (another one
    /// is EIO for the caller: a second program mapping libc.so.6 would fail), so there is one
    /// backing id per inode, counted by its opens and dropped at the last release. On failure
    /// the reply is handed back for a plain open.
    pub(crate) fn open_passthrough(
        &self,
        ino: Ino,
        file: Arc<File>,
        reply: ReplyOpen,
    ) -> Result<(), (ReplyOpen, io::Error)> {
        // Held while replying, so a release racing this open finds the count it must lower.
        let mut table = self.backing.lock();
        let entry = match backing_entry(&mut table, ino, file, |f| reply.open_backing(f).map(BackingRef::Fuser)) {
            Ok(entry) => entry,
            Err(e) => return Err((reply, e)),
        };
        let BackingRef::Fuser(id) = &entry.id else {
            return Err((reply, io::Error::other("backing file registered over io_uring")));
        };
        entry.opens += 1;
        reply.opened_passthrough(FileHandle(ino + 1), FopenFlags::FOPEN_NOFLUSH, id);
        Ok(())
    }

    /// [`Files::open_passthrough`] for the io_uring transport: the backing id to answer with
    /// (its file handle is `ino + 1`), registered by `register` at the inode's first open.
    pub(crate) fn open_passthrough_raw(
        &self,
        ino: Ino,
        file: Arc<File>,
        register: impl FnOnce(&File) -> io::Result<RawBacking>,
    ) -> io::Result<u32> {
        let mut table = self.backing.lock();
        let entry = backing_entry(&mut table, ino, file, |f| register(f).map(BackingRef::Raw))?;
        let BackingRef::Raw(raw) = &entry.id else {
            return Err(io::Error::other("backing file registered over /dev/fuse"));
        };
        entry.opens += 1;
        Ok(raw.id)
    }

    /// A file handle from [`Files::open_passthrough`] or [`Files::open_passthrough_raw`]
    /// (non-zero) was released.
    pub(crate) fn release(&self, fh: u64) {
        let Some(ino) = fh.checked_sub(1) else { return };
        let mut table = self.backing.lock();
        if let Entry::Occupied(mut e) = table.entry(ino) {
            e.get_mut().opens -= 1;
            if e.get().opens == 0 {
                e.remove();
            }
        }
    }
}

/// The backing file of `ino` in `table`, registered by `register` at the inode's first open.
fn backing_entry(
    table: &mut HashMap<Ino, Backing>,
    ino: Ino,
    file: Arc<File>,
    register: impl FnOnce(&File) -> io::Result<BackingRef>,
) -> io::Result<&mut Backing> {
    Ok(match table.entry(ino) {
        Entry::Occupied(e) => e.into_mut(),
        Entry::Vacant(v) => v.insert(Backing { id: register(&file)?, _file: file, opens: 0 }),
    })
}

/// A host file that is no longer the one the view serves.
fn changed(path: &Path) -> io::Error {
    log::info!("{}: changed since the view first read it; answering EIO", path.display());
    io::Error::from_raw_os_error(libc::EIO)
}

/// How the view opens a host file: [`crate::View::open`].
pub(crate) type Opener<'a> = &'a dyn Fn(Ino, u64) -> io::Result<File>;

/// The view would not open a host file: a file that changed into another since the view was
/// made is EIO (said at info level), any other error is what it is.
fn refused(path: &Path, e: io::Error) -> io::Error {
    if e.raw_os_error().is_some() {
        return e;
    }
    log::info!("{}: {e}; answering EIO", path.display());
    io::Error::from_raw_os_error(libc::EIO)
}
