//! Writing a plan: the metadata area (inodes, xattrs, inline tails, chunk tables) is built in
//! memory and written once; whole data blocks (directories, file bytes, long symlinks) are
//! written where the plan put them. Host files contribute no byte, only their path.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::error::{IoContext, Result};
use crate::manifest::Manifest;

use super::format::{self, Layout, Superblock, BS, DIRENT_SIZE, INCOMPAT_CHUNKED_FILE, INODE_SIZE, SLOT, SUPER_OFFSET};
use super::layout::{block_bytes, Data, DirBlock, Placed, Plan, META_BLKADDR};

pub fn write(manifest: &Manifest, plan: &Plan, out: &File, shown: &Path, uuid: [u8; 16]) -> Result<()> {
    let mut meta = vec![0u8; (plan.meta_blocks * BS) as usize];
    for (i, p) in plan.placed.iter().enumerate() {
        let at = (p.nid * SLOT) as usize;
        let record = record(manifest, plan, p, i as u32 + 1);
        meta[at..at + record.len()].copy_from_slice(&record);
        write_blocks(manifest, plan, p, out).at(shown, "cannot write")?;
    }
    out.write_all_at(&meta, META_BLKADDR * BS).at(shown, "cannot write")?;
    let sb = Superblock {
        root_nid: plan.placed[0].nid as u16,
        inos: plan.placed.len() as u64,
        build_time: 0,
        blocks: plan.blocks as u32,
        meta_blkaddr: META_BLKADDR as u32,
        uuid,
        feature_incompat: if plan.chunked { INCOMPAT_CHUNKED_FILE } else { 0 },
    };
    out.write_all_at(&sb.to_bytes(), SUPER_OFFSET).at(shown, "cannot write")?;
    out.set_len(plan.blocks * BS).at(shown, "cannot write")
}

/// An inode's record: the inode, its xattrs, its inline tail or chunk table.
fn record(manifest: &Manifest, plan: &Plan, p: &Placed, ino: u32) -> Vec<u8> {
    let m = &manifest.inode(p.ino).meta;
    let xattrs = p.xattrs();
    let u = match (&p.data, p.layout) {
        (_, Layout::ChunkBased) => u32::from(format::one_chunk_format(p.size)),
        (Data::None, _) if m.rdev != 0 => format::encode_dev(m.rdev),
        _ => p.blkaddr,
    };
    let inode = format::Inode {
        layout: p.layout,
        xattr_icount: format::xattr_icount(format::xattr_size(&xattrs)),
        mode: m.mode as u16,
        size: p.size,
        u,
        ino,
        uid: m.uid,
        gid: m.gid,
        mtime: m.mtime,
        mtime_nsec: m.mtime_nsec,
        nlink: p.nlink,
    };
    let mut r = Vec::with_capacity(INODE_SIZE as usize + 64);
    r.extend_from_slice(&inode.to_bytes());
    if !xattrs.is_empty() {
        r.extend_from_slice(&format::xattr_bytes(&xattrs));
    }
    match p.layout {
        // One chunk, no block: the file reads as zeros here; overlayfs reads the data layer.
        Layout::ChunkBased => r.extend_from_slice(&format::NULL_ADDR.to_le_bytes()),
        Layout::FlatInline => {
            let tail = (p.size % BS) as usize;
            match &p.data {
                Data::Bytes(b) => r.extend_from_slice(&b[b.len() - tail..]),
                Data::Dir(blocks) => {
                    r.extend_from_slice(&dir_block(manifest, plan, blocks.last().expect("a block"))[..tail])
                }
                Data::None | Data::Stub(_) => {}
            }
        }
        Layout::FlatPlain => {}
    }
    r
}

/// An inode's whole data blocks.
fn write_blocks(manifest: &Manifest, plan: &Plan, p: &Placed, out: &File) -> std::io::Result<()> {
    let n = p.full_blocks();
    if n == 0 {
        return Ok(());
    }
    let at = u64::from(p.blkaddr) * BS;
    match &p.data {
        Data::Bytes(b) => out.write_all_at(&b[..(n * BS).min(b.len() as u64) as usize], at),
        Data::Dir(blocks) => {
            for (i, block) in blocks.iter().take(n as usize).enumerate() {
                out.write_all_at(&dir_block(manifest, plan, block), at + i as u64 * BS)?;
            }
            Ok(())
        }
        Data::None | Data::Stub(_) => Ok(()),
    }
}

/// A directory block: the dirents, then the names, then zeros to the block's end.
fn dir_block(manifest: &Manifest, plan: &Plan, block: &DirBlock) -> Vec<u8> {
    let mut b = Vec::with_capacity(BS as usize);
    let mut nameoff = DIRENT_SIZE * block.len() as u64;
    for (name, ino) in block {
        let nid = plan.nid[*ino as usize];
        let ft = crate::output::dirent_type(manifest.inode(*ino).meta.mode);
        b.extend_from_slice(&format::dirent(nid, nameoff as u16, ft));
        nameoff += name.len() as u64;
    }
    for (name, _) in block {
        b.extend_from_slice(name);
    }
    debug_assert_eq!(b.len() as u64, block_bytes(block));
    b.resize(BS as usize, 0);
    b
}
