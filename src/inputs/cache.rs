//! Decompressed images as mapped cache files.
//!
//! A mount serves base-image members for as long as it lives; keeping the decompressed tar in
//! the daemon's heap would cost its full size in RSS, and re-reading the gzip stream per read
//! would be slow. Instead each image is decompressed once into a cache file, keyed by the
//! source's path, identity, size and mtime (so a changed image gets a new entry), and mapped:
//! the kernel pages it in on demand and can drop it under pressure. Later mounts of the same
//! image skip decompression altogether.
//!
//! The cache directory is private to the user (0700, owned by them, not a symlink), because a
//! mapped file truncated by someone else would crash the daemon with SIGBUS.

use std::collections::hash_map::DefaultHasher;
use std::fs::{self, File};
use std::hash::{Hash, Hasher};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::util::{newfile, sys};

/// How many bytes of entries the cache keeps ([`ImageCache::trim`]).
pub const CAPACITY: u64 = 2 << 30;

/// A mapped, read-only cache file.
pub struct Image(Mmap);

impl Image {
    /// Let go of this process's resident pages of the mapping; they stay in the page cache
    /// and come back on the next access. Indexing an image reads every member header, which
    /// maps nearly all of it in: for a base image of 100k small files that was 100 MB of the
    /// daemon's RSS, though only the members actually read need to be there.
    pub fn release_pages(&self) {
        if let Err(e) = sys::drop_pages(&self.0) {
            log::debug!("madvise(DONTNEED) on a cached image: {e}");
        }
    }
}

impl AsRef<[u8]> for Image {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Where decompressed base images are kept between mounts.
#[derive(Clone)]
pub struct ImageCache {
    dir: PathBuf,
}

impl ImageCache {
    /// `$XDG_CACHE_HOME/supermin-rs`, else `/var/tmp/supermin-rs-cache-UID`; `None` (with a
    /// log line) when it cannot be made private, and callers then keep images in memory.
    pub fn open_default() -> Option<ImageCache> {
        let uid = sys::geteuid();
        let dir = match std::env::var_os("XDG_CACHE_HOME") {
            Some(d) if !d.is_empty() && Path::new(&d).is_absolute() => PathBuf::from(d).join("supermin-rs"),
            _ => PathBuf::from(format!("/var/tmp/supermin-rs-cache-{uid}")),
        };
        match ImageCache::open(&dir) {
            Ok(c) => Some(c),
            Err(e) => {
                log::warn!("{}: image cache unusable ({e}); keeping images in memory", dir.display());
                None
            }
        }
    }

    pub fn open(dir: &Path) -> io::Result<ImageCache> {
        if let Some(parent) = dir.parent() {
            fs::create_dir_all(parent)?;
        }
        match fs::DirBuilder::new().mode(0o700).create(dir) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
        let m = fs::symlink_metadata(dir)?;
        if !m.is_dir() || m.uid() != sys::geteuid() || m.mode() & 0o077 != 0 {
            return Err(io::Error::other("not a private directory owned by this user"));
        }
        Ok(ImageCache { dir: dir.to_path_buf() })
    }

    /// The cache's directory (private to the user).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn entry(&self, source: &Path, m: &fs::Metadata) -> PathBuf {
        let mut h = DefaultHasher::new();
        source.as_os_str().as_bytes().hash(&mut h);
        hash_identity(m, &mut h);
        self.dir.join(format!("{:016x}.tar", h.finish()))
    }

    /// The entry `name`, marked used, if the cache has it (a regular file, not a symlink).
    pub fn cached(&self, name: &str) -> Option<PathBuf> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.dir.join(name);
        let f = fs::OpenOptions::new().append(true).custom_flags(libc::O_NOFOLLOW).open(&path).ok()?;
        touch(&f);
        Some(path)
    }

    /// Make the entry `name` by `write` (given the new file and its path): written under a
    /// temporary name and renamed, so no reader sees it half-written; nothing is left when
    /// `write` fails. The caller trims the cache once it has made what it needed.
    pub fn make(
        &self,
        name: &str,
        write: impl FnOnce((File, &Path)) -> crate::error::Result<()>,
    ) -> crate::error::Result<PathBuf> {
        use crate::error::IoContext;
        let (path, tmp) = (self.dir.join(name), self.dir.join(format!(".{name}.{}", newfile::random_suffix())));
        let file = newfile::create(&tmp, 0o600).at(&tmp, "cannot create")?;
        let written = write((file, &tmp)).and_then(|()| fs::rename(&tmp, &path).at(&path, "cannot rename"));
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written.map(|()| path)
    }

    /// The cached decompressed form of `source` (whose metadata is `m`), if there is one.
    pub fn get(&self, source: &Path, m: &fs::Metadata) -> Option<Image> {
        let file = File::open(self.entry(source, m)).ok()?;
        touch(&file);
        map(&file).ok()
    }

    /// Remove the least recently used entries until the cache holds at most [`CAPACITY`]
    /// bytes (a mount that maps a removed image keeps its mapping).
    pub fn trim(&self) {
        let Ok(rd) = fs::read_dir(&self.dir) else { return };
        let mut entries: Vec<(std::time::SystemTime, u64, PathBuf)> = rd
            .flatten()
            .filter_map(|e| {
                let m = e.metadata().ok().filter(|m| m.is_file())?;
                Some((m.modified().ok()?, m.len(), e.path()))
            })
            .collect();
        let mut total: u64 = entries.iter().map(|e| e.1).sum();
        entries.sort();
        for (_, len, path) in entries {
            if total <= CAPACITY {
                break;
            }
            if fs::remove_file(&path).is_ok() {
                log::debug!("{}: removed from the cache (least recently used)", path.display());
                total -= len;
            }
        }
    }

    /// Store `bytes` as the decompressed form of `source` and map it. Written to a temporary
    /// name and renamed, so a concurrent mount never maps a half-written entry.
    pub fn put(&self, source: &Path, m: &fs::Metadata, bytes: &[u8]) -> io::Result<Image> {
        let dest = self.entry(source, m);
        newfile::replace(&dest, bytes, 0o600)?;
        self.trim();
        map(&File::open(&dest)?)
    }
}

/// Which file `m` describes, and its version: what a cache key takes from a file it is made
/// from (its bytes are not read).
pub fn hash_identity(m: &fs::Metadata, h: &mut impl Hasher) {
    (m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec(), m.ctime(), m.ctime_nsec()).hash(h);
}

/// Mark an entry used now: [`ImageCache::trim`] removes the least recently used first.
pub fn touch(file: &File) {
    let _ = file.set_modified(std::time::SystemTime::now());
}

fn map(file: &File) -> io::Result<Image> {
    if file.metadata()?.len() == 0 {
        // mmap of length 0 fails; an empty tar would not have been cached anyway.
        return Err(io::Error::other("empty cache entry"));
    }
    // The file lives in a private directory and is never modified after the rename that
    // published it (see the module comment), as mapping it requires.
    sys::map_private_file(file).map(Image)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The resident size of the mapping that starts at `addr`, from /proc/self/smaps.
    fn resident_kib(addr: usize) -> u64 {
        let smaps = fs::read_to_string("/proc/self/smaps").unwrap();
        let mut lines = smaps.lines().skip_while(|l| !l.starts_with(&format!("{addr:x}-")));
        assert!(lines.next().is_some(), "mapping not found");
        let rss = lines.find(|l| l.starts_with("Rss:")).unwrap();
        rss.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// A fresh scratch directory with a cache in it and a source file holding `source`.
    fn scratch(name: &str, source: &[u8]) -> (PathBuf, ImageCache, PathBuf) {
        let base = std::env::temp_dir().join(format!("supermin-fuse-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let cache = ImageCache::open(&base.join("c")).unwrap();
        let src = base.join("image.gz");
        fs::write(&src, source).unwrap();
        (base, cache, src)
    }

    #[test]
    fn released_pages_leave_the_process_but_not_the_bytes() {
        let (base, cache, src) = scratch("release-test", b"x");
        let bytes: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 251) as u8).collect();
        let image = cache.put(&src, &fs::metadata(&src).unwrap(), &bytes).unwrap();
        let addr = image.as_ref().as_ptr() as usize;
        let sum: u64 = image.as_ref().iter().step_by(4096).map(|&b| u64::from(b)).sum();
        assert!(sum > 0 && resident_kib(addr) >= 1000, "{} KiB resident after touching every page", resident_kib(addr));
        image.release_pages();
        assert_eq!(resident_kib(addr), 0);
        assert!(image.as_ref() == &bytes[..], "the bytes changed");
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn put_then_get_and_changed_source_misses() {
        let (base, cache, src) = scratch("cache-test", b"compressed");
        let m = fs::metadata(&src).unwrap();
        assert!(cache.get(&src, &m).is_none());
        assert_eq!(cache.put(&src, &m, b"tar bytes").unwrap().as_ref(), b"tar bytes");
        assert_eq!(cache.get(&src, &m).unwrap().as_ref(), b"tar bytes");
        fs::write(&src, b"compressed, but different").unwrap();
        assert!(cache.get(&src, &fs::metadata(&src).unwrap()).is_none());
        fs::remove_dir_all(&base).unwrap();
    }
}
