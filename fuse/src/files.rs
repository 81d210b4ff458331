//! Opened host files.
//!
//! Reads that reach the daemon (no passthrough) need an open descriptor. Opening per read is
//! slow and keeping every file ever read open would exhaust descriptors on a large tree, so
//! descriptors live in a bounded LRU keyed by inode; a file evicted while still being read is
//! simply opened again.
//!
//! With passthrough the kernel reads the host file itself; it needs a backing id registered
//! on the FUSE connection, which must stay registered until the file is released, so those
//! live in a table keyed by file handle.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::num::NonZeroUsize;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use fuser::BackingId;
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
    backing: Mutex<HashMap<u64, (BackingId, Arc<File>)>>,
    next_fh: AtomicU64,
}

impl Files {
    pub(crate) fn new(passthrough: bool) -> Files {
        Files {
            lru: Mutex::new(LruCache::new(NonZeroUsize::new(MAX_OPEN).expect("nonzero"))),
            passthrough: AtomicBool::new(passthrough),
            backing: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
        }
    }

    /// The open descriptor of `ino`'s host file, opening it if it is not cached.
    pub(crate) fn get(&self, ino: Ino, path: &Path) -> io::Result<Arc<File>> {
        if let Some(f) = self.lru.lock().get(&ino) {
            return Ok(f.clone());
        }
        // Opened outside the lock: a slow open (cold disk) must not stall other readers.
        let file = Arc::new(open_noatime(path)?);
        self.lru.lock().put(ino, file.clone());
        Ok(file)
    }

    /// Read up to `size` bytes at `offset` (short only at end of file).
    pub(crate) fn read(&self, ino: Ino, path: &Path, offset: u64, size: usize, buf: &mut Vec<u8>) -> io::Result<()> {
        let file = self.get(ino, path)?;
        buf.clear();
        buf.resize(size, 0);
        let mut done = 0;
        while done < size {
            match file.read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        buf.truncate(done);
        Ok(())
    }

    pub(crate) fn passthrough(&self) -> bool {
        self.passthrough.load(Ordering::Relaxed)
    }

    pub(crate) fn disable_passthrough(&self, why: &io::Error) {
        if self.passthrough.swap(false, Ordering::Relaxed) {
            log::info!("FUSE passthrough refused by the kernel ({why}); reading host files through the daemon");
        }
    }

    /// Keep `id` registered until [`Files::release`] of its handle; `reply` sends the handle
    /// to the kernel while the table is locked, so a release racing the reply finds it.
    pub(crate) fn keep_backing(&self, id: BackingId, file: Arc<File>, reply: impl FnOnce(u64, &BackingId)) {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        let mut table = self.backing.lock();
        let (id, _) = table.entry(fh).or_insert((id, file));
        reply(fh, id);
    }

    pub(crate) fn release(&self, fh: u64) {
        if fh != 0 {
            self.backing.lock().remove(&fh);
        }
    }
}

/// Open read-only without updating the host file's access time when we may (owner or
/// root): serving the view should not write to the host disk.
fn open_noatime(path: &Path) -> io::Result<File> {
    let open = |flags| std::fs::OpenOptions::new().read(true).custom_flags(flags).open(path);
    match open(libc::O_NOATIME) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => open(0),
        r => r,
    }
}
