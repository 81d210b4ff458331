//! The resolved appliance: an in-memory tree of inodes that every output is written from.
//!
//! Building it replays what the original does to its output directory (unpack the base
//! images, then create each listed host file in order, following symlinks already in the
//! tree) but against this tree instead of a real directory. Because symlinks are resolved
//! inside the tree, nothing can escape it: an absolute link target means the appliance root,
//! and `..` stops at the root, as in a chroot.
//!
//! Inodes are never freed while building (a replaced entry just becomes unreachable), so an
//! [`Ino`] stays valid for the manifest's whole life; writers walk from [`ROOT`].

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::host::HostFile;
use crate::inputs::BaseImage;
use crate::util::pathwalk::{self, components, End, Entry};

mod tar;

pub type Ino = u32;
pub const ROOT: Ino = 0;

pub const S_IFMT: u32 = 0o170000;
pub const S_IFDIR: u32 = 0o040000;
pub const S_IFREG: u32 = 0o100000;
pub const S_IFLNK: u32 = 0o120000;

/// What `stat` would say, minus what the output decides (inode number, link count, blocks).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// Full `st_mode`: type and permission bits.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime: i64,
    pub mtime_nsec: u32,
    pub rdev: u64,
}

impl Meta {
    pub fn from_host(m: &std::fs::Metadata) -> Meta {
        Meta {
            mode: m.mode(),
            uid: m.uid(),
            gid: m.gid(),
            size: m.size(),
            mtime: m.mtime(),
            mtime_nsec: m.mtime_nsec() as u32,
            rdev: m.rdev(),
        }
    }

    pub fn file_type(&self) -> u32 {
        self.mode & S_IFMT
    }
}

/// Where a regular file's bytes are.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Content {
    /// A host file, read when the output is written (or the view is read), through
    /// [`HostFile::open`]: never by its path alone.
    Host(HostFile),
    /// A member of base image number `image`, at `offset` in the uncompressed tar.
    Tar { image: u32, offset: u64 },
    /// Bytes made by the tool itself (e.g. `/packagelist`).
    Inline(Arc<Vec<u8>>),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Node {
    Dir(BTreeMap<Box<[u8]>, Ino>),
    File(Content),
    Symlink(Box<[u8]>),
    /// Character or block device, fifo or socket: everything is in [`Meta`].
    Special,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Inode {
    pub meta: Meta,
    pub node: Node,
}

pub struct Manifest {
    pub inodes: Vec<Inode>,
    pub images: Vec<BaseImage>,
}

impl Manifest {
    /// An empty tree whose root has `root_meta`.
    pub fn new(root_meta: Meta) -> Manifest {
        Manifest {
            inodes: vec![Inode {
                meta: Meta { mode: S_IFDIR | (root_meta.mode & 0o7777), ..root_meta },
                node: Node::Dir(BTreeMap::new()),
            }],
            images: Vec::new(),
        }
    }

    pub fn inode(&self, ino: Ino) -> &Inode {
        &self.inodes[ino as usize]
    }

    pub fn children(&self, ino: Ino) -> Option<&BTreeMap<Box<[u8]>, Ino>> {
        match &self.inodes[ino as usize].node {
            Node::Dir(c) => Some(c),
            _ => None,
        }
    }

    fn push(&mut self, inode: Inode) -> Ino {
        self.inodes.push(inode);
        (self.inodes.len() - 1) as Ino
    }

    /// Resolve `path` inside the tree, following symlinks in every component (and in the last
    /// one when `follow_last`). `None` if a component is missing or not a directory.
    pub fn lookup(&self, path: &[u8], follow_last: bool) -> Option<Ino> {
        match pathwalk::resolve(self, path, follow_last) {
            End::Found(nodes) => nodes.last().copied(),
            End::Missing { .. } | End::TooManyLinks => None,
        }
    }

    /// The directory that would hold `path`, and the last component's name.
    fn parent_of<'p>(&self, path: &'p [u8]) -> Option<(Ino, &'p [u8])> {
        let trimmed = trim_trailing_slashes(path);
        let (parent, name) = match trimmed.iter().rposition(|&b| b == b'/') {
            Some(i) => (&trimmed[..i], &trimmed[i + 1..]),
            None => (&b""[..], trimmed),
        };
        if name.is_empty() || name == b"." || name == b".." {
            return None;
        }
        let dir = self.lookup(parent, true)?;
        self.children(dir)?;
        Some((dir, name))
    }

    fn entry(&self, dir: Ino, name: &[u8]) -> Option<Ino> {
        self.children(dir)?.get(name).copied()
    }

    fn link(&mut self, dir: Ino, name: &[u8], ino: Ino) {
        if let Node::Dir(c) = &mut self.inodes[dir as usize].node {
            c.insert(Box::from(name), ino);
        }
    }

    /// Create a directory, or (when one is there) give it `meta`'s owner and permissions.
    /// Returns false if the parent is missing or a non-directory is in the way.
    pub fn mkdir(&mut self, path: &[u8], meta: Meta) -> bool {
        let meta = Meta { mode: S_IFDIR | (meta.mode & 0o7777), size: 0, rdev: 0, ..meta };
        if trim_trailing_slashes(path).is_empty() || components(path).next().is_none() {
            self.inodes[ROOT as usize].meta = meta;
            return true;
        }
        let Some((dir, name)) = self.parent_of(path) else { return false };
        match self.entry(dir, name) {
            None => {
                let ino = self.push(Inode { meta, node: Node::Dir(BTreeMap::new()) });
                self.link(dir, name, ino);
                true
            }
            Some(existing) => {
                // Like mkdir + chmod/chown on the path: a symlink to a directory is followed.
                let target = match self.inode(existing).node {
                    Node::Symlink(_) => self.lookup(path, true),
                    _ => Some(existing),
                };
                match target {
                    Some(t) if matches!(self.inode(t).node, Node::Dir(_)) => {
                        self.inodes[t as usize].meta = meta;
                        true
                    }
                    _ => false,
                }
            }
        }
    }

    /// Create a non-directory at `path`, replacing any non-directory there (`replace`) or
    /// only when nothing is there. Returns the new inode, or `None` when it could not be placed.
    pub fn create(&mut self, path: &[u8], inode: Inode, replace: bool) -> Option<Ino> {
        let (dir, name) = self.parent_of(path)?;
        if let Some(existing) = self.entry(dir, name) {
            if !replace || matches!(self.inode(existing).node, Node::Dir(_)) {
                return None;
            }
        }
        let ino = self.push(inode);
        self.link(dir, name, ino);
        Some(ino)
    }

    /// Add a second name for an existing inode (a tar hard link).
    pub fn hard_link(&mut self, path: &[u8], ino: Ino) -> bool {
        let Some((dir, name)) = self.parent_of(path) else { return false };
        if let Some(existing) = self.entry(dir, name) {
            if matches!(self.inode(existing).node, Node::Dir(_)) {
                return false;
            }
        }
        self.link(dir, name, ino);
        true
    }

    /// Create every missing directory on the way to `path` (as `tar` does for members whose
    /// parents are not in the archive).
    pub fn mkdir_parents(&mut self, path: &[u8], meta: Meta) {
        let trimmed = trim_trailing_slashes(path);
        let mut end = 0;
        while let Some(i) = trimmed[end..].iter().position(|&b| b == b'/') {
            let prefix = &trimmed[..end + i];
            end += i + 1;
            if prefix.is_empty() || self.lookup(prefix, true).is_some() {
                continue;
            }
            self.mkdir(prefix, meta);
        }
    }

    /// Bytes of a regular file whose content is in memory (tar member or inline).
    pub fn memory_content<'a>(&'a self, content: &'a Content, size: u64) -> Option<&'a [u8]> {
        match content {
            Content::Tar { image, offset } => {
                let tar = (*self.images[*image as usize].tar).as_ref();
                let start = *offset as usize;
                tar.get(start..start.checked_add(size as usize)?)
            }
            Content::Inline(bytes) => Some(&bytes[..]),
            Content::Host(_) => None,
        }
    }

    /// Walk the reachable tree in pre-order, calling `f(path, ino)`. Paths are absolute.
    pub fn walk(&self, mut f: impl FnMut(&[u8], Ino)) {
        let mut path = Vec::new();
        f(b"/", ROOT);
        self.walk_dir(ROOT, &mut path, &mut f);
    }

    fn walk_dir(&self, dir: Ino, path: &mut Vec<u8>, f: &mut impl FnMut(&[u8], Ino)) {
        let Some(children) = self.children(dir) else { return };
        for (name, &ino) in children {
            let len = path.len();
            path.push(b'/');
            path.extend_from_slice(name);
            f(path, ino);
            self.walk_dir(ino, path, f);
            path.truncate(len);
        }
    }

    /// Set every modification time later than `epoch` to `epoch` (`SOURCE_DATE_EPOCH`, as GNU
    /// tar's `--clamp-mtime`): host directories that change all the time (`/var/tmp`) then
    /// do not change the output.
    pub fn clamp_mtimes(&mut self, epoch: i64) {
        for inode in &mut self.inodes {
            if inode.meta.mtime > epoch || (inode.meta.mtime == epoch && inode.meta.mtime_nsec > 0) {
                inode.meta.mtime = epoch;
                inode.meta.mtime_nsec = 0;
            }
        }
    }

    /// How many directory entries name each inode (for hard-link counts).
    pub fn link_counts(&self) -> Vec<u32> {
        let mut counts = vec![0u32; self.inodes.len()];
        self.walk(|_, ino| counts[ino as usize] += 1);
        counts
    }
}

/// The tree as [`pathwalk`] walks it: a name in a directory, symlinks with their targets.
impl pathwalk::Tree for Manifest {
    type Node = Ino;

    fn root(&self) -> Ino {
        ROOT
    }

    fn entry(&self, dir: &Ino, name: &[u8]) -> Entry<Ino> {
        let Some(&child) = self.children(*dir).and_then(|c| c.get(name)) else { return Entry::Missing };
        match &self.inode(child).node {
            Node::Symlink(target) => Entry::Symlink(child, target.to_vec()),
            _ => Entry::Node(child),
        }
    }
}

fn trim_trailing_slashes(path: &[u8]) -> &[u8] {
    let mut end = path.len();
    while end > 0 && path[end - 1] == b'/' {
        end -= 1;
    }
    &path[..end]
}

pub fn os(path: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> Meta {
        Meta { mode: S_IFDIR | 0o755, ..Meta::default() }
    }
    fn link(target: &str) -> Inode {
        Inode { meta: Meta { mode: S_IFLNK | 0o777, ..Meta::default() }, node: Node::Symlink(target.as_bytes().into()) }
    }
    fn file() -> Inode {
        Inode {
            meta: Meta { mode: S_IFREG | 0o644, ..Meta::default() },
            node: Node::File(Content::Inline(Arc::new(vec![]))),
        }
    }

    #[test]
    fn symlinks_resolve_inside_the_tree() {
        let mut m = Manifest::new(dir());
        assert!(m.mkdir(b"/usr", dir()));
        assert!(m.mkdir(b"/usr/bin", dir()));
        m.create(b"/bin", link("usr/bin"), false).unwrap();
        m.create(b"/etc", link("/../../../usr"), false).unwrap();
        let f = m.create(b"/bin/sh", file(), true).unwrap();
        assert_eq!(m.lookup(b"/usr/bin/sh", false), Some(f));
        // An absolute target, and `..` past the root, stay inside the appliance.
        assert_eq!(m.lookup(b"/etc/bin/sh", false), Some(f));
        m.create(b"/loop", link("/loop"), false).unwrap();
        assert_eq!(m.lookup(b"/loop/x", false), None);
    }

    #[test]
    fn existing_directories_win_over_files_and_links() {
        let mut m = Manifest::new(dir());
        assert!(m.mkdir(b"/etc", dir()));
        assert!(m.create(b"/etc", file(), true).is_none());
        assert!(m.create(b"/nope/x", file(), true).is_none());
        // A symlink is only created where nothing is.
        m.create(b"/a", file(), true).unwrap();
        assert!(m.create(b"/a", link("x"), false).is_none());
    }
}
