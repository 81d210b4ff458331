//! The on-disk structures of ext2 revision 1 with 4 KiB blocks and 256-byte inodes, as typed
//! structs that encode themselves (little-endian, at the offsets `mke2fs` uses).

use crate::util::le::{put16, put32};

/// Block size.
pub const BS: u64 = 4096;
pub const INODE_SIZE: u64 = 256;
pub const BLOCKS_PER_GROUP: u64 = 8 * BS;
/// The first inode number not reserved by the format (lost+found takes it).
pub const FIRST_INO: u32 = 11;
pub const ROOT_INO: u32 = 2;
pub const LOST_FOUND_INO: u32 = 11;
/// Block pointers per indirect block.
pub const PPB: u64 = BS / 4;
/// Symlink targets shorter than this live in the inode itself ("fast" symlinks).
pub const FAST_SYMLINK_MAX: usize = 60;

/// One inode.
pub struct Inode {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime: u32,
    pub mtime_nsec: u32,
    /// When it entered this image.
    pub ctime: u32,
    pub links: u32,
    /// Data and indirect blocks.
    pub blocks: u64,
    pub i_block: [u32; 15],
}

impl Inode {
    pub fn to_bytes(&self) -> [u8; INODE_SIZE as usize] {
        let mut r = [0u8; INODE_SIZE as usize];
        put16(&mut r, 0, self.mode as u16);
        put16(&mut r, 2, self.uid as u16);
        put32(&mut r, 4, self.size as u32);
        put32(&mut r, 8, self.mtime); // atime
        put32(&mut r, 12, self.ctime);
        put32(&mut r, 16, self.mtime);
        put16(&mut r, 24, self.gid as u16);
        put16(&mut r, 26, self.links as u16);
        // i_blocks counts 512-byte units.
        put32(&mut r, 28, (self.blocks * (BS / 512)) as u32);
        for (i, b) in self.i_block.iter().enumerate() {
            put32(&mut r, 40 + i * 4, *b);
        }
        put32(&mut r, 108, (self.size >> 32) as u32);
        put16(&mut r, 120, (self.uid >> 16) as u16);
        put16(&mut r, 122, (self.gid >> 16) as u16);
        put16(&mut r, 128, 32); // i_extra_isize
        let ns = self.mtime_nsec << 2;
        put32(&mut r, 136, ns); // mtime_extra
        put32(&mut r, 140, ns); // atime_extra
        r
    }
}

/// The superblock (a copy in group 0 and in each sparse_super group).
pub struct Superblock {
    pub inodes: u32,
    pub blocks: u32,
    pub free_blocks: u32,
    pub free_inodes: u32,
    pub inodes_per_group: u32,
    /// The group this copy is in.
    pub group: u16,
    pub uuid: [u8; 16],
    pub now: u32,
}

impl Superblock {
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut s = vec![0u8; 1024];
        put32(&mut s, 0, self.inodes);
        put32(&mut s, 4, self.blocks);
        put32(&mut s, 8, self.blocks / 20); // 5% reserved for root, as mke2fs
        put32(&mut s, 12, self.free_blocks);
        put32(&mut s, 16, self.free_inodes);
        put32(&mut s, 20, 0); // first data block (4 KiB blocks)
        put32(&mut s, 24, 2); // log2(4096) - 10
        put32(&mut s, 28, 2);
        put32(&mut s, 32, BLOCKS_PER_GROUP as u32);
        put32(&mut s, 36, BLOCKS_PER_GROUP as u32);
        put32(&mut s, 40, self.inodes_per_group);
        put32(&mut s, 48, self.now); // wtime
        put16(&mut s, 54, 0xffff); // max mount count: -1, no forced checks
        put16(&mut s, 56, 0xef53);
        put16(&mut s, 58, 1); // clean
        put16(&mut s, 60, 1); // errors: continue
        put32(&mut s, 64, self.now); // lastcheck
        put32(&mut s, 76, 1); // revision 1 (dynamic)
        put32(&mut s, 84, FIRST_INO);
        put16(&mut s, 88, INODE_SIZE as u16);
        put16(&mut s, 90, self.group);
        put32(&mut s, 96, 0x2); // incompat: filetype
        put32(&mut s, 100, 0x1 | 0x2); // ro_compat: sparse_super, large_file
        s[104..120].copy_from_slice(&self.uuid);
        s[120..128].copy_from_slice(b"supermin");
        put32(&mut s, 264, self.now); // mkfs time
        put16(&mut s, 348, 32); // min_extra_isize
        put16(&mut s, 350, 32); // want_extra_isize
        s
    }
}

/// One block group's descriptor.
pub struct GroupDesc {
    pub block_bitmap: u32,
    pub inode_bitmap: u32,
    pub inode_table: u32,
    pub free_blocks: u16,
    pub free_inodes: u16,
    pub dirs: u16,
}

impl GroupDesc {
    pub const SIZE: usize = 32;

    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut d = [0u8; Self::SIZE];
        put32(&mut d, 0, self.block_bitmap);
        put32(&mut d, 4, self.inode_bitmap);
        put32(&mut d, 8, self.inode_table);
        put16(&mut d, 12, self.free_blocks);
        put16(&mut d, 14, self.free_inodes);
        put16(&mut d, 16, self.dirs);
        d
    }
}

/// One directory entry: inode number, file type code, name.
pub type DirEntry<'a> = (u32, u8, &'a [u8]);

/// Pack directory entries into blocks (each entry 8 bytes + name, 4-aligned; the last entry of
/// a block stretches to its end).
pub fn dir_blocks(entries: &[DirEntry]) -> Vec<Vec<u8>> {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    let mut cur: Vec<u8> = Vec::with_capacity(BS as usize);
    let mut last_at = 0usize;
    for &(ino, ft, name) in entries {
        let len = (8 + name.len()).next_multiple_of(4);
        if cur.len() + len > BS as usize {
            stretch(&mut cur, last_at);
            blocks.push(std::mem::take(&mut cur));
        }
        last_at = cur.len();
        cur.extend_from_slice(&ino.to_le_bytes());
        cur.extend_from_slice(&(len as u16).to_le_bytes());
        cur.push(name.len() as u8);
        cur.push(ft);
        cur.extend_from_slice(name);
        cur.resize(last_at + len, 0);
    }
    stretch(&mut cur, last_at);
    blocks.push(cur);
    blocks
}

fn stretch(block: &mut Vec<u8>, last_at: usize) {
    let rec_len = BS as usize - last_at;
    block[last_at + 4..last_at + 6].copy_from_slice(&(rec_len as u16).to_le_bytes());
    block.resize(BS as usize, 0);
}

/// An empty directory block (for lost+found's spare blocks).
pub fn empty_dir_block() -> Vec<u8> {
    let mut b = vec![0u8; BS as usize];
    b[4..6].copy_from_slice(&(BS as u16).to_le_bytes());
    b
}

/// An indirect block: the block numbers it maps.
pub fn pointer_block(ptrs: &[u32]) -> Vec<u8> {
    let mut block = vec![0u8; BS as usize];
    for (i, v) in ptrs.iter().enumerate() {
        put32(&mut block, i * 4, *v);
    }
    block
}

/// Where a device inode keeps its number: the old 8:8 encoding when it fits, else the new one.
pub fn device_i_block(rdev: u64) -> [u32; 15] {
    let mut i_block = [0u32; 15];
    let (maj, min) = (libc::major(rdev), libc::minor(rdev));
    if maj < 256 && min < 256 {
        i_block[0] = (maj << 8) | min;
    } else {
        i_block[1] = (min & 0xff) | (maj << 8) | ((min & !0xff) << 12);
    }
    i_block
}

/// A fast symlink's target, stored in the block-pointer slots.
pub fn fast_symlink_i_block(target: &[u8]) -> [u32; 15] {
    let mut raw = [0u8; FAST_SYMLINK_MAX];
    raw[..target.len()].copy_from_slice(target);
    let mut i_block = [0u32; 15];
    for (slot, chunk) in i_block.iter_mut().zip(raw.chunks(4)) {
        *slot = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
    }
    i_block
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_blocks_fill_exactly() {
        let names: Vec<Vec<u8>> = (0..500).map(|i| format!("file-number-{i}").into_bytes()).collect();
        let entries: Vec<DirEntry> = names.iter().enumerate().map(|(i, n)| (i as u32 + 12, 1, &n[..])).collect();
        for block in dir_blocks(&entries) {
            assert_eq!(block.len(), BS as usize);
            let mut off = 0;
            while off < BS as usize {
                let rec = u16::from_le_bytes([block[off + 4], block[off + 5]]) as usize;
                assert!(rec >= 8 && rec.is_multiple_of(4));
                off += rec;
            }
            assert_eq!(off, BS as usize);
        }
    }

    #[test]
    fn devices_and_fast_symlinks() {
        assert_eq!(device_i_block(libc::makedev(8, 1))[0], 0x801);
        let big = device_i_block(libc::makedev(259, 300));
        assert_eq!((big[0], big[1]), (0, (300 & 0xff) | (259 << 8) | ((300 & !0xff) << 12)));
        assert_eq!(fast_symlink_i_block(b"abcde")[..2], [u32::from_le_bytes(*b"abcd"), u32::from(b'e')]);
    }
}
