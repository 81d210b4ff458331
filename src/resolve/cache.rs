//! The resolved-manifest cache: a mount or build of an appliance resolved before skips the
//! resolve.
//!
//! Resolving libguestfs's appliance (parse the package database, walk the dependencies, read
//! every file list, match excludefiles, lstat every file, munge) is most of the time a mount
//! takes. After resolving, `mount` and `--build` store the manifest together with every answer the host
//! gave the resolve ([`crate::host::journal_take`]: each lstat, stat, realpath and hostfiles glob,
//! hashed). An entry is found by a key over what `--if-newer` looks at (this binary, the
//! inputs recursively, the package database files, root, package manager and settings), and
//! used only when the host still gives every recorded answer: asking again is one lstat per
//! file, on every core, against the dozens of syscalls and the parsing a resolve costs. So an
//! entry is invalidated by any change to the inputs, the database, the options, or to any
//! host file, directory or symlink the resolve looked at (its type, permissions, owner, size,
//! mtime or inode), a new match of a hostfiles pattern, or a path that appeared where the
//! resolve found none. Then the appliance is resolved and the entry replaced. A directory
//! that differs only in time and size (entries came and went inside it, as in `/tmp`) is no
//! miss: the tree's directories that took its metadata take its new time.
//!
//! Entries live in the image cache's private directory ([`ImageCache`]) as
//! `KEY.manifest`, written to a temporary name and renamed; an unreadable or foreign entry
//! is a miss.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::host::{self, Answer, Recheck};
use crate::inputs::cache::{self, ImageCache};
use crate::inputs::{BaseImage, Inputs};
use crate::manifest::{Ino, Inode, Manifest, Node, ROOT};
use crate::packager::Driver;
use crate::resolve::Settings;
use crate::util::work;
use crate::util::{fingerprint, newfile};

/// Bumped whenever [`Stored`] or the manifest types change shape.
const FORMAT: u32 = 2;

/// One cache entry, as read.
#[derive(Deserialize)]
struct Stored {
    format: u32,
    key: String,
    /// The time the resolve gave the root (unless a base image set it): replaced by now.
    resolved_at: i64,
    inodes: Vec<Inode>,
    /// The base images' paths, in the order `Content::Tar` numbers them.
    images: Vec<PathBuf>,
    answers: Vec<Answer>,
    host_dirs: Vec<(Ino, String)>,
}

/// One cache entry, as written: [`Stored`] borrowing the manifest.
#[derive(Serialize)]
struct StoredRef<'a> {
    format: u32,
    key: &'a str,
    resolved_at: i64,
    inodes: &'a [Inode],
    images: Vec<&'a Path>,
    answers: &'a [Answer],
    host_dirs: &'a [(Ino, String)],
}

/// Where a resolve of some sources is remembered.
pub struct Entry {
    cache: ImageCache,
    path: PathBuf,
    key: String,
}

impl Entry {
    /// The entry for `inputs` resolved under `root` with `settings` (every option and
    /// environment variable that changes the result, as text) against `database`.
    pub fn new(cache: &ImageCache, inputs: &[PathBuf], database: &[PathBuf], settings: &str) -> Entry {
        let exe = fs::metadata("/proc/self/exe").map(|m| (m.ino(), m.size(), m.mtime(), m.mtime_nsec()));
        let settings = format!("{settings} exe={exe:?} format={FORMAT}");
        let key = format!("{:016x}", fingerprint::sources_hash(inputs, database, &settings));
        Entry { cache: cache.clone(), path: cache.dir().join(format!("{key}.manifest")), key }
    }

    /// The cached manifest, if there is one and the host still answers as it did.
    pub fn load(&self, root: &Path, images: &[BaseImage]) -> Option<Manifest> {
        let bytes = fs::read(&self.path).ok()?;
        let stored: Stored = match postcard::from_bytes(&bytes) {
            Ok(s) => s,
            Err(e) => {
                log::debug!("{}: unreadable cache entry ({e})", self.path.display());
                return None;
            }
        };
        if stored.format != FORMAT || stored.key != self.key || !consistent(&stored.inodes, images) {
            return None;
        }
        if stored.images.len() != images.len() || stored.images.iter().zip(images).any(|(p, i)| *p != i.path) {
            return None;
        }
        let started = std::time::Instant::now();
        let now = work::map(&stored.answers, work::cores(), |a| a.recheck(root));
        log::debug!("{} host answers checked in {} ms", stored.answers.len(), started.elapsed().as_millis());
        if let Some(i) = now.iter().position(|&r| r == Recheck::Changed) {
            log::info!("cached resolve is stale: {:?} changed", stored.answers[i].question);
            return None;
        }
        if let Ok(f) = fs::File::options().append(true).open(&self.path) {
            cache::touch(&f);
        }
        let mut manifest = Manifest { inodes: stored.inodes, images: images.to_vec() };
        if manifest.inodes[ROOT as usize].meta.mtime == stored.resolved_at {
            manifest.inodes[ROOT as usize].meta.mtime = crate::util::now();
        }
        refresh_dir_times(&mut manifest, &stored.answers, &now, &stored.host_dirs);
        Some(manifest)
    }

    /// Remember `manifest`, resolved at `resolved_at` with the host giving `answers`, its
    /// directories `host_dirs` having their host directory's metadata.
    pub fn store(&self, manifest: &Manifest, resolved_at: i64, answers: &[Answer], host_dirs: &[(Ino, String)]) {
        let stored = StoredRef {
            format: FORMAT,
            key: &self.key,
            resolved_at,
            inodes: &manifest.inodes,
            images: manifest.images.iter().map(|i| i.path.as_path()).collect(),
            answers,
            host_dirs,
        };
        if let Err(e) = postcard::to_stdvec(&stored).map_err(std::io::Error::other).and_then(|b| self.write(&b)) {
            log::debug!("{}: cannot store the resolved appliance ({e})", self.path.display());
        }
        self.cache.trim();
    }

    fn write(&self, bytes: &[u8]) -> std::io::Result<()> {
        newfile::replace(&self.path, bytes, 0o600)
    }
}

/// Entries came or went in some host directories since the resolve (`/tmp`, `/var/tmp`): the
/// directories of the tree that took their metadata from them get their new time, as a
/// resolve now would give them (clamped to `SOURCE_DATE_EPOCH`). Nothing else of the tree
/// depends on a directory's time: what its entries are is asked separately (a hostfiles
/// glob, each listed path's own lstat).
fn refresh_dir_times(manifest: &mut Manifest, answers: &[Answer], now: &[Recheck], host_dirs: &[(Ino, String)]) {
    let mut times = std::collections::HashMap::new();
    for (a, r) in answers.iter().zip(now) {
        if let (host::Question::Lstat(p), Recheck::DirTime(s, ns)) = (&a.question, r) {
            times.insert(p.as_str(), (*s, *ns));
        }
    }
    if times.is_empty() {
        return;
    }
    // A directory placed twice has the metadata of the last placement: only its source counts.
    let last: std::collections::HashMap<Ino, &str> = host_dirs.iter().map(|(i, s)| (*i, s.as_str())).collect();
    let mut refreshed = 0;
    for (ino, source) in last {
        let inode = manifest.inodes.get_mut(ino as usize).filter(|i| matches!(i.node, Node::Dir(_)));
        if let (Some(&(s, ns)), Some(inode)) = (times.get(source), inode) {
            (inode.meta.mtime, inode.meta.mtime_nsec) = (s, ns);
            refreshed += 1;
        }
    }
    if let Some(epoch) = crate::util::source_date_epoch() {
        manifest.clamp_mtimes(epoch);
    }
    log::info!("cached resolve: {} host directories changed only in time, {refreshed} refreshed", times.len());
}

/// Whether `inodes` is a tree the writers and the view can walk: a directory at the root, and
/// every child and base-image member pointing at something that exists (an entry that decodes
/// but was damaged on disk must be a miss, not a panic).
fn consistent(inodes: &[Inode], images: &[BaseImage]) -> bool {
    use crate::manifest::{Content, Node};
    let n = inodes.len();
    let member_fits = |image: u32, offset: u64, size: u64| {
        let len = images.get(image as usize).map_or(0, |i| (*i.tar).as_ref().len() as u64);
        offset.checked_add(size).is_some_and(|end| end <= len)
    };
    matches!(inodes.get(ROOT as usize).map(|i| &i.node), Some(Node::Dir(_)))
        && inodes.iter().all(|inode| match &inode.node {
            Node::Dir(children) => children.values().all(|&c| (c as usize) < n && c != ROOT),
            Node::File(Content::Tar { image, offset }) => member_fits(*image, *offset, inode.meta.size),
            _ => true,
        })
}

/// The manifest of the inputs at `paths` under `root`, their base images mapped from the image
/// cache: from the resolved-manifest cache when it has it and the host still answers the
/// same, else resolved and stored.
pub fn resolve(driver: Driver, paths: &[PathBuf], root: &Path, settings: Settings) -> Result<Manifest> {
    let images = ImageCache::open_default();
    let read = Inputs::read(paths, images.as_ref())?;
    let text = format!("{settings:?} {driver:?} root={} epoch={:?}", root.display(), crate::util::source_date_epoch());
    let entry = images.as_ref().map(|c| Entry::new(c, paths, &driver.database_files(root), &text));
    if let Some(manifest) = entry.as_ref().and_then(|e| e.load(root, &read.base_images)) {
        log::info!("the appliance as resolved before (cached)");
        return Ok(manifest);
    }
    let pm = driver.open(root)?;
    let at = crate::util::now();
    host::journal_start();
    let resolved = super::resolve_at(pm.as_ref(), &read, root, settings, at);
    let answers = host::journal_take();
    let resolved = resolved?;
    if let Some(entry) = entry {
        entry.store(&resolved.manifest, at, &answers, &resolved.host_dirs);
    }
    Ok(resolved.manifest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Content, Meta, Node, S_IFDIR, S_IFREG};
    use std::collections::BTreeMap;
    use std::sync::Arc;

    fn tree(child: u32, member: (u64, u64)) -> Vec<Inode> {
        let dir = Node::Dir(BTreeMap::from([(Box::from(&b"f"[..]), child)]));
        let file = Node::File(Content::Tar { image: 0, offset: member.0 });
        vec![
            Inode { meta: Meta { mode: S_IFDIR | 0o755, ..Meta::default() }, node: dir },
            Inode { meta: Meta { mode: S_IFREG | 0o644, size: member.1, ..Meta::default() }, node: file },
        ]
    }

    /// The root holding directory 1 (mtime 5) and file 2 (mtime 5), with the host's answers
    /// for `/x` (a directory whose entries changed: time 100), `/y` and `/z` (unchanged).
    fn refreshed(host_dirs: &[(Ino, &str)]) -> (i64, i64) {
        let meta = |mode| Meta { mode, mtime: 5, ..Meta::default() };
        let root = Node::Dir(BTreeMap::from([(Box::from(&b"d"[..]), 1), (Box::from(&b"f"[..]), 2)]));
        let inodes = vec![
            Inode { meta: meta(S_IFDIR | 0o755), node: root },
            Inode { meta: meta(S_IFDIR | 0o755), node: Node::Dir(BTreeMap::new()) },
            Inode { meta: meta(S_IFREG | 0o644), node: Node::File(Content::Host(crate::host::HostFile::named("/f"))) },
        ];
        let mut m = Manifest { inodes, images: vec![] };
        let lstat = |p: &str| Answer { question: host::Question::Lstat(p.into()), hash: 0, dir: Some(0) };
        let answers = [lstat("/x"), lstat("/y"), lstat("/z")];
        let now = [Recheck::DirTime(100, 0), Recheck::Same, Recheck::Same];
        let dirs: Vec<(Ino, String)> = host_dirs.iter().map(|(i, p)| (*i, p.to_string())).collect();
        refresh_dir_times(&mut m, &answers, &now, &dirs);
        (m.inodes[1].meta.mtime, m.inodes[2].meta.mtime)
    }

    #[test]
    fn a_directory_takes_the_new_time_of_its_last_source_only() {
        assert_eq!(refreshed(&[(1, "/x")]), (100, 5));
        assert_eq!(refreshed(&[(1, "/y"), (1, "/x")]), (100, 5), "placed from /x last");
        assert_eq!(refreshed(&[(1, "/x"), (1, "/y")]), (5, 5), "placed from /y last, unchanged");
        assert_eq!(refreshed(&[(2, "/x")]), (5, 5), "a damaged entry naming a file");
        assert_eq!(refreshed(&[(9, "/x")]), (5, 5), "a damaged entry naming no inode");
    }

    #[test]
    fn a_damaged_entry_is_refused_not_walked() {
        let image = BaseImage { path: "base.tar".into(), tar: Arc::new(vec![0u8; 1024]) };
        let images = [image];
        assert!(consistent(&tree(1, (512, 512)), &images));
        assert!(!consistent(&tree(7, (512, 512)), &images), "a child past the end");
        assert!(!consistent(&tree(0, (512, 512)), &images), "the root as a child");
        assert!(!consistent(&tree(1, (512, 513)), &images), "a member past the image");
        assert!(!consistent(&tree(1, (u64::MAX, 2)), &images), "an offset that overflows");
        assert!(!consistent(&tree(1, (0, 1)), &[]), "a member of a missing image");
        assert!(!consistent(&tree(1, (0, 1))[1..], &images), "no root directory");
    }
}
