//! The on-disk structures of EROFS that this writer uses, as typed structs that encode
//! themselves little-endian at the offsets of the kernel's `fs/erofs/erofs_fs.h` (described in
//! `Documentation/filesystems/erofs.rst`): the superblock, the 64-byte extended inode (64-bit
//! size, nanosecond mtime, 32-bit owners), the in-inode xattr body and directory entries.
//! Nothing compressed, no shared xattrs, no extra devices: the kernel needs no more to read it.

use crate::util::le::{put16, put32, put64};

/// Block size, and its log2 (the superblock's `blkszbits`).
pub const BS: u64 = 4096;
pub const BLKSZBITS: u8 = 12;
/// Where the superblock is (room for a boot sector before it, as in the kernel).
pub const SUPER_OFFSET: u64 = 1024;
pub const MAGIC: u32 = 0xE0F5_E1E2;
/// Inodes are addressed by `nid`: their offset in the metadata area in units of this.
pub const SLOT: u64 = 32;
pub const INODE_SIZE: u64 = 64;
/// A directory entry; names follow the entries of their block.
pub const DIRENT_SIZE: u64 = 12;
/// `feature_incompat`: some inodes are chunk-based.
pub const INCOMPAT_CHUNKED_FILE: u32 = 0x4;
/// A block address that means "no block": a chunk of zeros (a hole).
pub const NULL_ADDR: u32 = u32::MAX;
/// The xattr name index of the `trusted.` prefix.
pub const XATTR_TRUSTED: u8 = 4;
/// The xattr name index of the `user.` prefix.
pub const XATTR_USER: u8 = 1;
/// The in-inode xattr body header (`erofs_xattr_ibody_header`), before the entries.
pub const XATTR_IBODY_HEADER: u64 = 12;
/// `erofs_xattr_entry` without its name and value.
pub const XATTR_ENTRY_HEADER: u64 = 4;

/// How an inode's data is laid out (`i_format` bits 1-3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Whole blocks from `raw_blkaddr` on.
    FlatPlain = 0,
    /// Whole blocks from `raw_blkaddr`, the last partial block right after the inode.
    FlatInline = 2,
    /// A table of chunk block addresses after the inode (ours: one chunk, a hole).
    ChunkBased = 4,
}

/// `erofs_super_block` (128 bytes at [`SUPER_OFFSET`]).
pub struct Superblock {
    pub root_nid: u16,
    pub inos: u64,
    pub build_time: u64,
    /// Blocks in the image.
    pub blocks: u32,
    /// The block where nid 0 is.
    pub meta_blkaddr: u32,
    pub uuid: [u8; 16],
    pub feature_incompat: u32,
}

impl Superblock {
    pub fn to_bytes(&self) -> [u8; 128] {
        let mut s = [0u8; 128];
        put32(&mut s, 0, MAGIC);
        // 4: checksum, 8: feature_compat (none: no checksum to keep).
        s[12] = BLKSZBITS;
        put16(&mut s, 14, self.root_nid);
        put64(&mut s, 16, self.inos);
        put64(&mut s, 24, self.build_time);
        put32(&mut s, 36, self.blocks);
        put32(&mut s, 40, self.meta_blkaddr);
        // 44: xattr_blkaddr (no shared xattrs).
        s[48..64].copy_from_slice(&self.uuid);
        s[64..72].copy_from_slice(b"supermin");
        put32(&mut s, 80, self.feature_incompat);
        s
    }
}

/// `erofs_inode_extended` (64 bytes).
pub struct Inode {
    pub layout: Layout,
    /// `i_xattr_icount`: see [`xattr_icount`].
    pub xattr_icount: u16,
    pub mode: u16,
    pub size: u64,
    /// `i_u`: the first block (flat layouts), the device (`new_encode_dev`), or the chunk
    /// format (chunk-based).
    pub u: u32,
    pub ino: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub mtime_nsec: u32,
    pub nlink: u32,
}

impl Inode {
    pub fn to_bytes(&self) -> [u8; INODE_SIZE as usize] {
        let mut r = [0u8; INODE_SIZE as usize];
        // Bit 0: the extended inode; bits 1-3: the data layout.
        put16(&mut r, 0, 1 | ((self.layout as u16) << 1));
        put16(&mut r, 2, self.xattr_icount);
        put16(&mut r, 4, self.mode);
        put64(&mut r, 8, self.size);
        put32(&mut r, 16, self.u);
        put32(&mut r, 20, self.ino);
        put32(&mut r, 24, self.uid);
        put32(&mut r, 28, self.gid);
        put64(&mut r, 32, self.mtime as u64);
        put32(&mut r, 40, self.mtime_nsec);
        put32(&mut r, 44, self.nlink);
        r
    }
}

/// The kernel's device number encoding (`new_encode_dev`) of a user-space `dev_t`.
pub fn encode_dev(rdev: u64) -> u32 {
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));
    (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)
}

/// The chunk format (`i_u`) of a file of `size` bytes held in one chunk: 4-byte block
/// addresses (no index entries), chunks of `BS << bits` bytes.
pub fn one_chunk_format(size: u64) -> u16 {
    let blocks = size.div_ceil(BS).max(1);
    // ceil(log2(blocks)), at most 31 (a 5-bit field): a single chunk up to 8 TiB.
    (64 - (blocks - 1).leading_zeros()).min(31) as u16
}

/// An in-inode extended attribute: `PREFIX.NAME` = `value`, the prefix given by its index
/// ([`XATTR_TRUSTED`] or [`XATTR_USER`]).
pub struct Xattr<'a> {
    pub index: u8,
    pub name: &'a [u8],
    pub value: &'a [u8],
}

/// The size in bytes of the xattr body holding `xattrs` (0 for none).
pub fn xattr_size(xattrs: &[Xattr]) -> u64 {
    if xattrs.is_empty() {
        return 0;
    }
    let entries: u64 = xattrs
        .iter()
        .map(|x| (XATTR_ENTRY_HEADER + x.name.len() as u64 + x.value.len() as u64).next_multiple_of(4))
        .sum();
    XATTR_IBODY_HEADER + entries
}

/// `i_xattr_icount` for a body of `size` bytes: the kernel reads `12 + 4 * (icount - 1)`.
pub fn xattr_icount(size: u64) -> u16 {
    if size == 0 {
        0
    } else {
        ((size - XATTR_IBODY_HEADER) / 4 + 1) as u16
    }
}

/// The xattr body: the header (no shared xattrs, no name filter), then each entry padded to 4.
pub fn xattr_bytes(xattrs: &[Xattr]) -> Vec<u8> {
    let mut b = vec![0u8; XATTR_IBODY_HEADER as usize];
    for x in xattrs {
        b.push(x.name.len() as u8);
        b.push(x.index);
        b.extend_from_slice(&(x.value.len() as u16).to_le_bytes());
        b.extend_from_slice(x.name);
        b.extend_from_slice(x.value);
        b.resize(b.len().next_multiple_of(4), 0);
    }
    b
}

/// `erofs_dirent`: the inode, where its name starts in the block, the file type.
pub fn dirent(nid: u64, nameoff: u16, file_type: u8) -> [u8; DIRENT_SIZE as usize] {
    let mut d = [0u8; DIRENT_SIZE as usize];
    put64(&mut d, 0, nid);
    put16(&mut d, 8, nameoff);
    d[10] = file_type;
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn superblock_offsets() {
        let sb = Superblock {
            root_nid: 0x1234,
            inos: 7,
            build_time: 9,
            blocks: 3,
            meta_blkaddr: 1,
            uuid: [0xaa; 16],
            feature_incompat: INCOMPAT_CHUNKED_FILE,
        };
        let b = sb.to_bytes();
        // erofs.rst / erofs_fs.h: magic, blkszbits at 12, root_nid at 14, inos at 16,
        // blocks at 36, meta_blkaddr at 40, uuid at 48, feature_incompat at 80.
        assert_eq!(b[0..4], [0xe2, 0xe1, 0xf5, 0xe0]);
        assert_eq!((b[12], b[14], b[15], b[16], b[36], b[40], b[48], b[80]), (12, 0x34, 0x12, 7, 3, 1, 0xaa, 4));
    }

    #[test]
    fn extended_inode_offsets() {
        let i = Inode {
            layout: Layout::ChunkBased,
            xattr_icount: 5,
            mode: 0o100644,
            size: 1 << 33,
            u: 0x22,
            ino: 3,
            uid: 70000,
            gid: 80000,
            mtime: -1,
            mtime_nsec: 999,
            nlink: 2,
        };
        let b = i.to_bytes();
        assert_eq!(u16::from_le_bytes([b[0], b[1]]), 1 | (4 << 1));
        assert_eq!(u16::from_le_bytes([b[2], b[3]]), 5);
        assert_eq!(u16::from_le_bytes([b[4], b[5]]), 0o100644);
        assert_eq!(u64::from_le_bytes(b[8..16].try_into().unwrap()), 1 << 33);
        assert_eq!(u32::from_le_bytes(b[24..28].try_into().unwrap()), 70000);
        assert_eq!(u32::from_le_bytes(b[28..32].try_into().unwrap()), 80000);
        assert_eq!(i64::from_le_bytes(b[32..40].try_into().unwrap()), -1);
        assert_eq!(u32::from_le_bytes(b[40..44].try_into().unwrap()), 999);
        assert_eq!(u32::from_le_bytes(b[44..48].try_into().unwrap()), 2);
    }

    #[test]
    fn xattrs_and_chunks() {
        let x = [
            Xattr { index: XATTR_TRUSTED, name: b"overlay.metacopy", value: b"" },
            Xattr { index: XATTR_TRUSTED, name: b"overlay.redirect", value: b"/a" },
        ];
        let body = xattr_bytes(&x);
        assert_eq!(body.len() as u64, xattr_size(&x));
        // 12 + (4 + 16) + (4 + 16 + 2, padded to 24).
        assert_eq!(body.len(), 56);
        assert_eq!(xattr_icount(56), 12);
        assert_eq!(&body[12..16], &[16, 4, 0, 0]);
        assert_eq!(one_chunk_format(1), 0);
        assert_eq!(one_chunk_format(4096), 0);
        assert_eq!(one_chunk_format(4097), 1);
        assert_eq!(one_chunk_format(1 << 20), 8);
        assert_eq!(one_chunk_format(BS << 31), 31);
        assert_eq!(encode_dev(libc::makedev(8, 1)), 0x801);
        assert_eq!(dirent(5, 24, 2)[8..11], [24, 0, 2]);
    }
}
