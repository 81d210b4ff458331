//! Where everything goes, planned before a byte is written: each reachable inode once (hard
//! links share it), its data layout, its `nid` (its place in the metadata area) and its data
//! blocks after that area.
//!
//! An inode's record is the inode, its xattrs, then its inline tail or chunk table. A record
//! that fits in a block never crosses a block boundary (the kernel refuses an inline tail that
//! does, and reads the rest in one piece). The root is placed first: the superblock holds its
//! nid in 16 bits.

use crate::error::{Error, Result};
use crate::manifest::{Content, Ino, Manifest, Node, ROOT, S_IFDIR};

use super::format::{self, Layout, Xattr, BS, DIRENT_SIZE, INODE_SIZE, SLOT};

/// One directory block's entries, sorted by name (`.` and `..` among them): name, inode.
pub type DirBlock<'a> = Vec<(&'a [u8], Ino)>;

/// What an inode's data is.
pub enum Data<'a> {
    /// Devices, fifos, sockets, empty files.
    None,
    /// File bytes (a tar member or bytes we made) or a symlink's target.
    Bytes(&'a [u8]),
    /// A directory's blocks (the last one may be the inline tail).
    Dir(Vec<DirBlock<'a>>),
    /// A host file: an overlayfs metacopy stub, its bytes at this path of the data layer.
    Stub(Vec<u8>),
}

/// One inode as it will be written.
pub struct Placed<'a> {
    pub ino: Ino,
    pub nid: u64,
    pub layout: Layout,
    /// `i_size`: the file's, the target's length, the directory's bytes.
    pub size: u64,
    /// The first of its data blocks ([`format::NULL_ADDR`] when it has none).
    pub blkaddr: u32,
    pub nlink: u32,
    pub data: Data<'a>,
    /// `user.` xattrs (names without the prefix): the root's record, for a kernel view.
    pub user: &'a [(Vec<u8>, Vec<u8>)],
}

impl Placed<'_> {
    /// Its xattrs: a stub's overlayfs ones, the root's record.
    pub fn xattrs(&self) -> Vec<Xattr<'_>> {
        let user = self.user.iter().map(|(name, value)| Xattr { index: format::XATTR_USER, name, value });
        match &self.data {
            Data::Stub(redirect) => vec![
                Xattr { index: format::XATTR_TRUSTED, name: b"overlay.metacopy", value: b"" },
                Xattr { index: format::XATTR_TRUSTED, name: b"overlay.redirect", value: redirect },
            ],
            _ => user.collect(),
        }
    }

    /// Bytes in whole data blocks; the rest (if inline) follows the inode.
    pub fn full_blocks(&self) -> u64 {
        match self.layout {
            Layout::FlatPlain => self.size.div_ceil(BS),
            Layout::FlatInline => self.size / BS,
            Layout::ChunkBased => 0,
        }
    }

    /// The record's size in the metadata area.
    fn record(&self) -> u64 {
        let after = match self.layout {
            Layout::FlatInline => self.size % BS,
            Layout::ChunkBased => 4,
            Layout::FlatPlain => 0,
        };
        INODE_SIZE + format::xattr_size(&self.xattrs()) + after
    }
}

pub struct Plan<'a> {
    pub placed: Vec<Placed<'a>>,
    /// Each manifest inode's nid (reachable ones only).
    pub nid: Vec<u64>,
    /// The metadata area starts at block 1 (block 0 holds the superblock).
    pub meta_blocks: u64,
    pub blocks: u64,
    pub chunked: bool,
}

/// The largest stub: one chunk of `BS << 31` bytes (the chunk format's 5-bit field), the one
/// chunk we write.
const MAX_STUB: u64 = BS << 31;

/// The block where the metadata area starts (nid 0).
pub const META_BLKADDR: u64 = 1;

/// The plan of `manifest`'s image; the root carries `root_xattrs` (`user.` names, no prefix).
pub fn plan<'a>(manifest: &'a Manifest, root_xattrs: &'a [(Vec<u8>, Vec<u8>)]) -> Result<Plan<'a>> {
    let links = manifest.link_counts();
    let mut placed = Vec::new();
    let mut seen = vec![false; manifest.inodes.len()];
    // Pre-order from the root, each directory's parent known when it is reached.
    let mut stack = vec![(ROOT, ROOT)];
    while let Some((ino, parent)) = stack.pop() {
        if std::mem::replace(&mut seen[ino as usize], true) {
            continue;
        }
        let mut p = place(manifest, ino, parent, links[ino as usize])?;
        if ino == ROOT {
            p.user = root_xattrs;
            p.layout = layout_of(&p);
        }
        if let Some(children) = manifest.children(ino) {
            stack.extend(children.values().rev().map(|&c| (c, ino)));
        }
        placed.push(p);
    }
    let mut nid = vec![u64::MAX; manifest.inodes.len()];
    let mut pos = 0u64;
    for p in &mut placed {
        let record = p.record();
        pos = pos.next_multiple_of(SLOT);
        if record <= BS && pos % BS + record > BS {
            pos = pos.next_multiple_of(BS);
        }
        p.nid = pos / SLOT;
        nid[p.ino as usize] = p.nid;
        pos += record;
    }
    let meta_blocks = pos.div_ceil(BS).max(1);
    let mut next = META_BLKADDR + meta_blocks;
    for p in &mut placed {
        let n = p.full_blocks();
        if n > 0 {
            p.blkaddr = u32::try_from(next).map_err(|_| Error::new("erofs: the image would exceed 16 TiB"))?;
            next += n;
        }
    }
    let chunked = placed.iter().any(|p| p.layout == Layout::ChunkBased);
    Ok(Plan { placed, nid, meta_blocks, blocks: next, chunked })
}

/// The plan of inode `ino` (its nid and blocks come later).
fn place(manifest: &Manifest, ino: Ino, parent: Ino, nlink: u32) -> Result<Placed<'_>> {
    let inode = manifest.inode(ino);
    let meta = &inode.meta;
    let (data, size) = match &inode.node {
        Node::Dir(children) => {
            let mut entries: Vec<(&[u8], Ino)> = children.iter().map(|(n, &c)| (&n[..], c)).collect();
            entries.push((b".", ino));
            entries.push((b"..", parent));
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            let blocks = dir_blocks(entries);
            let size = (blocks.len() as u64 - 1) * BS + block_bytes(blocks.last().map_or(&[][..], |b| b));
            (Data::Dir(blocks), size)
        }
        Node::Symlink(target) => (Data::Bytes(target), target.len() as u64),
        Node::Special => (Data::None, 0),
        Node::File(Content::Host(file)) if meta.size > MAX_STUB => {
            return Err(Error::new(format!("erofs: {}: larger than 8 TiB, one chunk's most", file.path.display())))
        }
        Node::File(Content::Host(file)) if meta.size > 0 => (Data::Stub(file.path_in_root()), meta.size),
        Node::File(Content::Host(_)) => (Data::None, 0),
        Node::File(content) => {
            let bytes = manifest
                .memory_content(content, meta.size)
                .ok_or_else(|| Error::new(format!("erofs: inode {ino}: its bytes are missing from the base image")))?;
            (Data::Bytes(bytes), bytes.len() as u64)
        }
    };
    let nlink = match &inode.node {
        Node::Dir(children) => {
            2 + children.values().filter(|&&c| manifest.inode(c).meta.mode & 0o170000 == S_IFDIR).count() as u32
        }
        _ => nlink,
    };
    let mut p =
        Placed { ino, nid: 0, layout: Layout::FlatPlain, size, blkaddr: format::NULL_ADDR, nlink, data, user: &[] };
    p.layout = layout_of(&p);
    Ok(p)
}

/// How `p`'s data is laid out: a stub in a chunk, a tail inline when it fits with the inode
/// and its xattrs in one block.
fn layout_of(p: &Placed) -> Layout {
    match p.data {
        Data::Stub(_) => Layout::ChunkBased,
        _ if p.size.is_multiple_of(BS) => Layout::FlatPlain,
        _ if INODE_SIZE + format::xattr_size(&p.xattrs()) + p.size % BS <= BS => Layout::FlatInline,
        _ => Layout::FlatPlain,
    }
}

/// The bytes a directory block's entries take: their dirents, then their names.
pub fn block_bytes(entries: &[(&[u8], Ino)]) -> u64 {
    entries.iter().map(|(n, _)| DIRENT_SIZE + n.len() as u64).sum()
}

/// Sorted entries cut into blocks, as many in each as fit.
fn dir_blocks(entries: Vec<(&[u8], Ino)>) -> Vec<DirBlock<'_>> {
    let mut blocks = vec![Vec::new()];
    let mut used = 0;
    for e in entries {
        let need = DIRENT_SIZE + e.0.len() as u64;
        if used + need > BS {
            blocks.push(Vec::new());
            used = 0;
        }
        used += need;
        blocks.last_mut().expect("one block at least").push(e);
    }
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_blocks_hold_what_fits() {
        let names: Vec<Vec<u8>> = (0..1000).map(|i| format!("name-{i:05}").into_bytes()).collect();
        let entries: Vec<(&[u8], Ino)> = names.iter().map(|n| (&n[..], 1)).collect();
        let blocks = dir_blocks(entries);
        // 22 bytes an entry: 186 in a block.
        assert_eq!(blocks.iter().map(Vec::len).collect::<Vec<_>>()[..2], [186, 186]);
        assert_eq!(blocks.iter().map(Vec::len).sum::<usize>(), 1000);
        assert!(blocks.iter().all(|b| block_bytes(b) <= BS));
    }
}
