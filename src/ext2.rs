//! Our own ext2 writer: lays the manifest out as an ext2 image in one pass.
//!
//! The original runs `mke2fs` and then adds every file through libext2fs, one block at a time.
//! Here the whole layout (inode numbers, directory blocks, data and indirect blocks) is planned
//! in memory first, so the image is written once: metadata with a few `pwrite`s, file bytes
//! with `copy_file_range` straight from the host files into their final place, on every core.
//! The image is sparse: only used blocks are written.
//!
//! The format is the classic one `mke2fs -t ext2` makes with 256-byte inodes: revision 1, 4 KiB
//! blocks, `filetype` and `sparse_super`/`large_file`, linear directories, direct and
//! indirect block maps, fast symlinks under 60 bytes. `e2fsck -fn` is the test oracle.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;

use log::{debug, warn};

use crate::error::{Error, IoContext, Result};
use crate::manifest::{Content, Ino, Manifest, Node, ROOT, S_IFDIR};
use crate::work;

const BS: u64 = 4096;
const INODE_SIZE: u64 = 256;
const BLOCKS_PER_GROUP: u64 = 8 * BS;
const FIRST_INO: u32 = 11;
const ROOT_INO: u32 = 2;
const LOST_FOUND_INO: u32 = 11;
/// Pointers per indirect block.
const PPB: u64 = BS / 4;

/// What goes into one ext2 inode.
struct Planned {
    ino: Ino,
    mode: u32,
    links: u32,
    size: u64,
    /// Data blocks, in file order.
    data: Vec<u32>,
    /// Indirect blocks (single, double, triple) and their contents.
    indirect: Vec<(u32, Vec<u32>)>,
    /// The 15 `i_block` slots.
    i_block: [u32; 15],
}

struct Geometry {
    blocks: u64,
    groups: u64,
    inodes_per_group: u64,
    gdt_blocks: u64,
    itable_blocks: u64,
}

impl Geometry {
    fn new(size: u64, inodes_needed: u64) -> Result<Geometry> {
        let mut blocks = size / BS;
        if blocks < 64 {
            return Err(Error::new(format!("--size {size}: too small for an ext2 filesystem")));
        }
        let mut groups = blocks.div_ceil(BLOCKS_PER_GROUP);
        // One inode per 16 KiB, as mke2fs's default inode_ratio, but never fewer than we need.
        let wanted = (size / 16384).max(inodes_needed + inodes_needed / 8 + 64);
        let mut ipg = wanted.div_ceil(groups).next_multiple_of(16).clamp(16, 8 * BS);
        if ipg * groups < inodes_needed {
            return Err(Error::new(format!("--size {size}: too small for {inodes_needed} files (use a larger --size)")));
        }
        let gdt_blocks = (groups * 32).div_ceil(BS);
        let mut itable_blocks = ipg * INODE_SIZE / BS;
        // A last group too small to hold its own metadata is dropped, as mke2fs does.
        let last = blocks - (groups - 1) * BS * 8;
        let overhead = 1 + gdt_blocks + 2 + itable_blocks;
        if groups > 1 && last < overhead + 16 {
            blocks -= last;
            groups -= 1;
            ipg = wanted.div_ceil(groups).next_multiple_of(16).clamp(16, 8 * BS);
            itable_blocks = ipg * INODE_SIZE / BS;
        }
        Ok(Geometry { blocks, groups, inodes_per_group: ipg, gdt_blocks, itable_blocks })
    }

    fn group_start(&self, g: u64) -> u64 {
        g * BLOCKS_PER_GROUP
    }

    fn group_blocks(&self, g: u64) -> u64 {
        (self.blocks - self.group_start(g)).min(BLOCKS_PER_GROUP)
    }

    fn has_super(&self, g: u64) -> bool {
        fn power_of(mut n: u64, b: u64) -> bool {
            while n > 1 && n % b == 0 {
                n /= b;
            }
            n == 1
        }
        g == 0 || g == 1 || power_of(g, 3) || power_of(g, 5) || power_of(g, 7)
    }

    /// Block bitmap, inode bitmap, inode table (first block of each) of group `g`.
    fn group_meta(&self, g: u64) -> (u64, u64, u64) {
        let mut b = self.group_start(g);
        if self.has_super(g) {
            b += 1 + self.gdt_blocks;
        }
        (b, b + 1, b + 2)
    }

    fn first_data_block(&self, g: u64) -> u64 {
        self.group_meta(g).2 + self.itable_blocks
    }

    fn inodes(&self) -> u64 {
        self.inodes_per_group * self.groups
    }
}

/// Hands out data blocks in order, skipping each group's metadata.
struct Allocator<'g> {
    geo: &'g Geometry,
    group: u64,
    next: u64,
    used: u64,
}

impl Allocator<'_> {
    fn alloc(&mut self) -> Result<u32> {
        loop {
            if self.group >= self.geo.groups {
                return Err(Error::new("no space"));
            }
            let end = self.geo.group_start(self.group) + self.geo.group_blocks(self.group);
            if self.next < self.geo.first_data_block(self.group) {
                self.next = self.geo.first_data_block(self.group);
            }
            if self.next < end {
                self.next += 1;
                self.used += 1;
                return Ok((self.next - 1) as u32);
            }
            self.group += 1;
        }
    }

    fn alloc_n(&mut self, n: u64) -> Result<Vec<u32>> {
        (0..n).map(|_| self.alloc()).collect()
    }
}

/// How many indirect blocks a file of `n` data blocks needs.
fn indirect_count(n: u64) -> u64 {
    let mut rest = n.saturating_sub(12);
    let mut count = 0;
    if rest > 0 {
        count += 1;
        rest = rest.saturating_sub(PPB);
    }
    if rest > 0 {
        let l2 = rest.min(PPB * PPB);
        count += 1 + l2.div_ceil(PPB);
        rest -= l2;
    }
    if rest > 0 {
        let l3 = rest.div_ceil(PPB);
        count += 1 + l3.div_ceil(PPB) + l3;
    }
    count
}

/// Allocate `n` data blocks for `p` with the indirect blocks that map them, filling
/// `i_block`. Blocks are taken in the order a reader walks them, each indirect block just
/// before the data it maps (as Linux's ext2 allocator lays files out), so a file is one
/// contiguous run wherever group metadata does not interrupt it.
fn allocate(p: &mut Planned, n: u64, alloc: &mut Allocator) -> Result<()> {
    let mut left = n;
    let direct = left.min(12);
    p.data = alloc.alloc_n(direct)?;
    p.i_block[..direct as usize].copy_from_slice(&p.data);
    left -= direct;
    if left > 0 {
        p.i_block[12] = single(p, &mut left, alloc)?;
    }
    if left > 0 {
        p.i_block[13] = double(p, &mut left, alloc)?;
    }
    if left > 0 {
        let tind = alloc.alloc()?;
        let mut children = Vec::new();
        while left > 0 {
            children.push(double(p, &mut left, alloc)?);
        }
        p.indirect.push((tind, children));
        p.i_block[14] = tind;
    }
    Ok(())
}

/// An indirect block and up to [`PPB`] of the `left` data blocks after it.
fn single(p: &mut Planned, left: &mut u64, alloc: &mut Allocator) -> Result<u32> {
    let ind = alloc.alloc()?;
    let blocks = alloc.alloc_n((*left).min(PPB))?;
    *left -= blocks.len() as u64;
    p.data.extend_from_slice(&blocks);
    p.indirect.push((ind, blocks));
    Ok(ind)
}

/// A double-indirect block and up to [`PPB`] single ones after it.
fn double(p: &mut Planned, left: &mut u64, alloc: &mut Allocator) -> Result<u32> {
    let dind = alloc.alloc()?;
    let mut children = Vec::new();
    while *left > 0 && (children.len() as u64) < PPB {
        children.push(single(p, left, alloc)?);
    }
    p.indirect.push((dind, children));
    Ok(dind)
}

fn file_type_code(mode: u32) -> u8 {
    match mode & 0o170000 {
        0o100000 => 1,
        0o040000 => 2,
        0o020000 => 3,
        0o060000 => 4,
        0o010000 => 5,
        0o140000 => 6,
        0o120000 => 7,
        _ => 0,
    }
}

/// Pack directory entries into blocks (each entry 8 bytes + name, 4-aligned; the last entry of
/// a block stretches to its end).
fn dir_blocks(entries: &[(u32, u8, &[u8])]) -> Vec<Vec<u8>> {
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
fn empty_dir_block() -> Vec<u8> {
    let mut b = vec![0u8; BS as usize];
    b[4..6].copy_from_slice(&(BS as u16).to_le_bytes());
    b
}

/// Blocks needed by the manifest, to check `--size` before writing anything.
pub fn write(manifest: &Manifest, out: &Path, size: u64, uuid: [u8; 16]) -> Result<()> {
    // 1. Number the reachable inodes: root 2, lost+found 11, the rest from 12 in tree order.
    let mut number: HashMap<Ino, u32> = HashMap::new();
    let mut order: Vec<Ino> = Vec::new();
    let links = manifest.link_counts();
    number.insert(ROOT, ROOT_INO);
    let mut next = FIRST_INO + 1;
    manifest.walk(|_, ino| {
        if ino != ROOT && !number.contains_key(&ino) {
            number.insert(ino, next);
            order.push(ino);
            next += 1;
        }
    });
    let inodes_needed = next as u64;

    // 2. Geometry and the space check.
    let geo = Geometry::new(size, inodes_needed)?;
    let mut data_blocks: u64 = 4; // lost+found
    let mut dirs: Vec<(Ino, Vec<Vec<u8>>)> = Vec::new();
    for &ino in std::iter::once(&ROOT).chain(order.iter()) {
        if let Some(children) = manifest.children(ino) {
            let parent_no = number[&ino]; // ".." is fixed below for non-root dirs
            let mut entries: Vec<(u32, u8, &[u8])> = vec![(number[&ino], 2, b"."), (parent_no, 2, b"..")];
            if ino == ROOT {
                entries.push((LOST_FOUND_INO, 2, b"lost+found"));
            }
            for (name, child) in children {
                entries.push((number[child], file_type_code(manifest.inode(*child).meta.mode), &name[..]));
            }
            let blocks = dir_blocks(&entries);
            data_blocks += blocks.len() as u64;
            dirs.push((ino, blocks));
        }
    }
    // Fix ".." of every directory: the parent's number.
    let mut parent_of: HashMap<Ino, u32> = HashMap::new();
    for &ino in std::iter::once(&ROOT).chain(order.iter()) {
        if let Some(children) = manifest.children(ino) {
            for child in children.values() {
                if manifest.children(*child).is_some() {
                    parent_of.insert(*child, number[&ino]);
                }
            }
        }
    }
    for (ino, blocks) in dirs.iter_mut() {
        let parent = parent_of.get(ino).copied().unwrap_or(ROOT_INO);
        // ".." is the second entry of the first block, at offset 12.
        blocks[0][12..16].copy_from_slice(&parent.to_le_bytes());
    }
    for &ino in &order {
        let inode = manifest.inode(ino);
        match &inode.node {
            Node::File(_) => {
                let n = inode.meta.size.div_ceil(BS);
                // i_blocks counts 512-byte units in 32 bits (no huge_file feature): 2 TiB.
                if (n + indirect_count(n)) * (BS / 512) > u64::from(u32::MAX) {
                    return Err(Error::new(format!(
                        "{}: a file of {} bytes is larger than an ext2 file can be (2 TiB); leave it out of the appliance",
                        out.display(),
                        inode.meta.size
                    )));
                }
                data_blocks += n + indirect_count(n);
            }
            Node::Symlink(t) if t.len() >= 60 => data_blocks += 1,
            _ => {}
        }
    }
    let capacity: u64 = (0..geo.groups).map(|g| geo.group_start(g) + geo.group_blocks(g) - geo.first_data_block(g)).sum();
    if data_blocks > capacity {
        return Err(Error::new(format!(
            "{}: the appliance needs {} MiB but the filesystem has room for {} MiB: No space left on device (use a larger --size)",
            out.display(),
            (data_blocks * BS) >> 20,
            (capacity * BS) >> 20
        )));
    }

    // 3. Allocate blocks and plan every inode.
    let mut alloc = Allocator { geo: &geo, group: 0, next: 0, used: 0 };
    let mut writes: Vec<(u32, Vec<u8>)> = Vec::new();
    let mut planned: Vec<Planned> = Vec::new();
    let new = |ino: Ino, mode: u32, links: u32, size: u64| Planned { ino, mode, links, size, data: vec![], indirect: vec![], i_block: [0; 15] };

    let mut dir_link_counts: HashMap<Ino, u32> = HashMap::new();
    for (ino, _) in &dirs {
        let subdirs = manifest.children(*ino).unwrap().values().filter(|c| manifest.children(**c).is_some()).count() as u32;
        dir_link_counts.insert(*ino, 2 + subdirs + u32::from(*ino == ROOT));
    }
    for (ino, blocks) in dirs {
        let mode = manifest.inode(ino).meta.mode;
        let mut p = new(ino, mode, dir_link_counts[&ino], blocks.len() as u64 * BS);
        allocate(&mut p, blocks.len() as u64, &mut alloc)?;
        for (b, content) in p.data.iter().zip(blocks) {
            writes.push((*b, content));
        }
        planned.push(p);
    }
    // lost+found: "." and "..", then three empty blocks, like mke2fs.
    let mut lf = new(ROOT, S_IFDIR | 0o700, 2, 4 * BS);
    allocate(&mut lf, 4, &mut alloc)?;
    let lf_first = dir_blocks(&[(LOST_FOUND_INO, 2, b"."), (ROOT_INO, 2, b"..")]).remove(0);
    writes.push((lf.data[0], lf_first));
    for b in &lf.data[1..] {
        writes.push((*b, empty_dir_block()));
    }

    let mut copies: Vec<(Ino, Vec<u32>)> = Vec::new();
    for &ino in &order {
        let inode = manifest.inode(ino);
        let links = links[ino as usize];
        let mut p = new(ino, inode.meta.mode, links, 0);
        match &inode.node {
            Node::Dir(_) => continue,
            Node::File(_) => {
                p.size = inode.meta.size;
                let n = p.size.div_ceil(BS);
                allocate(&mut p, n, &mut alloc)?;
                copies.push((ino, p.data.clone()));
            }
            Node::Symlink(target) => {
                p.size = target.len() as u64;
                if target.len() < 60 {
                    let mut raw = [0u8; 60];
                    raw[..target.len()].copy_from_slice(target);
                    for (i, chunk) in raw.chunks(4).enumerate() {
                        p.i_block[i] = u32::from_le_bytes(chunk.try_into().unwrap());
                    }
                } else {
                    p.data = vec![alloc.alloc()?];
                    p.i_block[0] = p.data[0];
                    let mut block = target.to_vec();
                    block.resize(BS as usize, 0);
                    writes.push((p.data[0], block));
                }
            }
            Node::Special => {
                let rdev = inode.meta.rdev;
                let (maj, min) = (libc::major(rdev), libc::minor(rdev));
                if maj < 256 && min < 256 {
                    p.i_block[0] = (maj << 8) | min;
                } else {
                    p.i_block[1] = (min & 0xff) | (maj << 8) | ((min & !0xff) << 12);
                }
            }
        }
        planned.push(p);
    }
    for p in planned.iter().chain(std::iter::once(&lf)) {
        for (b, ptrs) in &p.indirect {
            let mut block = vec![0u8; BS as usize];
            for (i, v) in ptrs.iter().enumerate() {
                block[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes());
            }
            writes.push((*b, block));
        }
    }

    // 4. Write: metadata, then file contents in parallel.
    let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(out).at(out, "cannot create")?;
    file.set_len(geo.blocks * BS).at(out, "cannot size the image")?;
    let werr = |e: io::Error| Error::io(out, "cannot write", e);

    let mut itables: Vec<Vec<u8>> = vec![Vec::new(); geo.groups as usize];
    let mut used_inodes = vec![0u64; geo.groups as usize];
    let mut used_dirs = vec![0u64; geo.groups as usize];
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) as u32;
    let mut put_inode = |no: u32, raw: [u8; 256], is_dir: bool| {
        let idx = (no - 1) as u64;
        let g = (idx / geo.inodes_per_group) as usize;
        let off = ((idx % geo.inodes_per_group) * INODE_SIZE) as usize;
        let t = &mut itables[g];
        if t.len() < off + 256 {
            t.resize(off + 256, 0);
        }
        t[off..off + 256].copy_from_slice(&raw);
        used_inodes[g] = used_inodes[g].max(idx % geo.inodes_per_group + 1);
        if is_dir {
            used_dirs[g] += 1;
        }
    };
    for p in &planned {
        let meta = &manifest.inode(p.ino).meta;
        let no = if p.ino == ROOT { ROOT_INO } else { number[&p.ino] };
        let m = if p.ino == ROOT { crate::manifest::Meta { mode: p.mode, ..*meta } } else { *meta };
        put_inode(no, inode_bytes(p, &m, now), p.mode & 0o170000 == S_IFDIR);
    }
    let lf_meta = crate::manifest::Meta { mode: S_IFDIR | 0o700, mtime: now as i64, ..Default::default() };
    put_inode(LOST_FOUND_INO, inode_bytes(&lf, &lf_meta, now), true);

    for (b, content) in &writes {
        file.write_all_at(content, *b as u64 * BS).map_err(werr)?;
    }
    copy_contents(manifest, &file, &copies, out)?;

    // Bitmaps, inode tables, group descriptors, superblocks.
    let total_inodes = geo.inodes();
    let used_inode_count = inodes_needed - 1; // inodes 1..next-1 are in use
    let mut gdt = vec![0u8; (geo.gdt_blocks * BS) as usize];
    let mut free_blocks_total = 0u64;
    let mut free_inodes_total = 0u64;
    let last_used = alloc.next; // data blocks are allocated in increasing order
    for g in 0..geo.groups {
        let (bb, ib, it) = geo.group_meta(g);
        let start = geo.group_start(g);
        let gblocks = geo.group_blocks(g);
        // Block bitmap: metadata + allocated data (everything below the allocation cursor).
        let mut bitmap = vec![0u8; BS as usize];
        let used_end = (geo.first_data_block(g) - start).max(last_used.saturating_sub(start).min(gblocks));
        let mut used = 0u64;
        for i in 0..BLOCKS_PER_GROUP {
            if i < used_end || i >= gblocks {
                bitmap[(i / 8) as usize] |= 1 << (i % 8);
                if i < gblocks {
                    used += 1;
                }
            }
        }
        file.write_all_at(&bitmap, bb * BS).map_err(werr)?;
        // Inode bitmap: the reserved inodes, then what we used.
        let mut ibitmap = vec![0u8; BS as usize];
        let first = g * geo.inodes_per_group;
        let mut iused = 0u64;
        for i in 0..(BS * 8) {
            let no = first + i + 1;
            let in_use = i < geo.inodes_per_group && no <= used_inode_count;
            if in_use || i >= geo.inodes_per_group {
                ibitmap[(i / 8) as usize] |= 1 << (i % 8);
                if in_use {
                    iused += 1;
                }
            }
        }
        file.write_all_at(&ibitmap, ib * BS).map_err(werr)?;
        if !itables[g as usize].is_empty() {
            file.write_all_at(&itables[g as usize], it * BS).map_err(werr)?;
        }
        let free_b = gblocks - used;
        let free_i = geo.inodes_per_group - iused;
        free_blocks_total += free_b;
        free_inodes_total += free_i;
        let d = &mut gdt[(g * 32) as usize..(g * 32 + 32) as usize];
        d[0..4].copy_from_slice(&(bb as u32).to_le_bytes());
        d[4..8].copy_from_slice(&(ib as u32).to_le_bytes());
        d[8..12].copy_from_slice(&(it as u32).to_le_bytes());
        d[12..14].copy_from_slice(&(free_b as u16).to_le_bytes());
        d[14..16].copy_from_slice(&(free_i as u16).to_le_bytes());
        d[16..18].copy_from_slice(&(used_dirs[g as usize] as u16).to_le_bytes());
    }
    for g in (0..geo.groups).filter(|&g| geo.has_super(g)) {
        let sb = superblock(&geo, g, total_inodes, free_blocks_total, free_inodes_total, uuid, now);
        let at = if g == 0 { 1024 } else { geo.group_start(g) * BS };
        file.write_all_at(&sb, at).map_err(werr)?;
        file.write_all_at(&gdt, (geo.group_start(g) + 1) * BS).map_err(werr)?;
    }
    // No fsync: like the original, outputs are a cache that --if-newer rebuilds, and forcing
    // ~500 MB to disk would triple the build time. The rename is atomic for readers.
    debug!(
        "ext2: {} inodes, {} of {} blocks used, {} groups",
        used_inode_count,
        geo.blocks - free_blocks_total,
        geo.blocks,
        geo.groups
    );
    Ok(())
}

fn inode_bytes(p: &Planned, meta: &crate::manifest::Meta, now: u32) -> [u8; 256] {
    let mut r = [0u8; 256];
    let put16 = |r: &mut [u8; 256], o: usize, v: u16| r[o..o + 2].copy_from_slice(&v.to_le_bytes());
    let put32 = |r: &mut [u8; 256], o: usize, v: u32| r[o..o + 4].copy_from_slice(&v.to_le_bytes());
    let mtime = meta.mtime.clamp(0, u32::MAX as i64) as u32;
    put16(&mut r, 0, p.mode as u16);
    put16(&mut r, 2, meta.uid as u16);
    put32(&mut r, 4, p.size as u32);
    put32(&mut r, 8, mtime); // atime
    put32(&mut r, 12, now.max(mtime)); // ctime: when it entered this image
    put32(&mut r, 16, mtime);
    put16(&mut r, 24, meta.gid as u16);
    put16(&mut r, 26, p.links as u16);
    let blocks = (p.data.len() + p.indirect.len()) as u64 * (BS / 512);
    put32(&mut r, 28, blocks as u32);
    for (i, b) in p.i_block.iter().enumerate() {
        put32(&mut r, 40 + i * 4, *b);
    }
    put32(&mut r, 108, (p.size >> 32) as u32);
    put16(&mut r, 120, (meta.uid >> 16) as u16);
    put16(&mut r, 122, (meta.gid >> 16) as u16);
    put16(&mut r, 128, 32); // i_extra_isize
    let ns = meta.mtime_nsec << 2;
    put32(&mut r, 136, ns); // mtime_extra
    put32(&mut r, 140, ns); // atime_extra
    r
}

fn superblock(geo: &Geometry, group: u64, inodes: u64, free_blocks: u64, free_inodes: u64, uuid: [u8; 16], now: u32) -> Vec<u8> {
    let mut s = vec![0u8; 1024];
    let put16 = |s: &mut Vec<u8>, o: usize, v: u16| s[o..o + 2].copy_from_slice(&v.to_le_bytes());
    let put32 = |s: &mut Vec<u8>, o: usize, v: u32| s[o..o + 4].copy_from_slice(&v.to_le_bytes());
    put32(&mut s, 0, inodes as u32);
    put32(&mut s, 4, geo.blocks as u32);
    put32(&mut s, 8, (geo.blocks / 20) as u32); // 5% reserved for root, as mke2fs
    put32(&mut s, 12, free_blocks as u32);
    put32(&mut s, 16, free_inodes as u32);
    put32(&mut s, 20, 0); // first data block (4 KiB blocks)
    put32(&mut s, 24, 2); // log2(4096) - 10
    put32(&mut s, 28, 2);
    put32(&mut s, 32, BLOCKS_PER_GROUP as u32);
    put32(&mut s, 36, BLOCKS_PER_GROUP as u32);
    put32(&mut s, 40, geo.inodes_per_group as u32);
    put32(&mut s, 48, now); // wtime
    put16(&mut s, 54, 0xffff); // max mount count: -1, no forced checks
    put16(&mut s, 56, 0xef53);
    put16(&mut s, 58, 1); // clean
    put16(&mut s, 60, 1); // errors: continue
    put32(&mut s, 64, now); // lastcheck
    put32(&mut s, 76, 1); // revision 1 (dynamic)
    put32(&mut s, 84, FIRST_INO);
    put16(&mut s, 88, INODE_SIZE as u16);
    put16(&mut s, 90, group as u16);
    put32(&mut s, 96, 0x2); // incompat: filetype
    put32(&mut s, 100, 0x1 | 0x2); // ro_compat: sparse_super, large_file
    s[104..120].copy_from_slice(&uuid);
    s[120..120 + 8].copy_from_slice(b"supermin");
    put32(&mut s, 264, now); // mkfs time
    put16(&mut s, 348, 32); // min_extra_isize
    put16(&mut s, 350, 32); // want_extra_isize
    s
}

/// Copy every regular file's bytes to its blocks. One writer: every write into the image
/// takes the image inode's lock, so a second thread only spins on it (measured: more system
/// time, no gain).
fn copy_contents(manifest: &Manifest, image: &File, copies: &[(Ino, Vec<u32>)], out: &Path) -> Result<()> {
    work::for_each(copies, 1, |(ino, blocks)| copy_one(manifest, image, *ino, blocks, out))
}

/// Runs of consecutive blocks: (first block, count, offset in the file).
fn runs(blocks: &[u32]) -> Vec<(u64, u64, u64)> {
    let mut out: Vec<(u64, u64, u64)> = Vec::new();
    for (i, &b) in blocks.iter().enumerate() {
        match out.last_mut() {
            Some((start, n, _)) if *start + *n == b as u64 => *n += 1,
            _ => out.push((b as u64, 1, i as u64 * BS)),
        }
    }
    out
}

fn copy_one(manifest: &Manifest, image: &File, ino: Ino, blocks: &[u32], out: &Path) -> Result<()> {
    let inode = manifest.inode(ino);
    let size = inode.meta.size;
    let Node::File(content) = &inode.node else { return Ok(()) };
    match content {
        Content::Host(src) => {
            let f = match File::open(src) {
                Ok(f) => f,
                Err(e) => {
                    warn!("{}: {} (left empty in the image)", src.display(), e);
                    return Ok(());
                }
            };
            for (start, n, offset) in runs(blocks) {
                let len = (n * BS).min(size - offset);
                let mut done = 0u64;
                while done < len {
                    let mut off_in = (offset + done) as i64;
                    let mut off_out = (start * BS + done) as i64;
                    // SAFETY: valid descriptors and offset pointers.
                    let r = unsafe {
                        libc::copy_file_range(f.as_raw_fd(), &mut off_in, image.as_raw_fd(), &mut off_out, (len - done) as usize, 0)
                    };
                    if r < 0 {
                        let e = io::Error::last_os_error();
                        return Err(if e.raw_os_error() == Some(libc::ENOSPC) {
                            Error::io(out, "cannot write", e)
                        } else {
                            Error::new(format!("copying {} into {}: {}", src.display(), out.display(), e))
                        });
                    }
                    if r == 0 {
                        warn!("{}: shorter than when the appliance was resolved", src.display());
                        return Ok(());
                    }
                    done += r as u64;
                }
            }
        }
        _ => {
            let bytes = manifest
                .memory_content(content, size)
                .ok_or_else(|| Error::new(format!("{}: tar member is truncated", out.display())))?;
            for (start, n, offset) in runs(blocks) {
                let end = (offset + n * BS).min(size);
                image.write_all_at(&bytes[offset as usize..end as usize], start * BS).at(out, "cannot write")?;
            }
        }
    }
    Ok(())
}

/// A random UUID (version 4) for the filesystem, which libguestfs passes as `root=UUID=`.
pub fn random_uuid() -> [u8; 16] {
    let mut u = [0u8; 16];
    if fs::File::open("/dev/urandom").and_then(|mut f| io::Read::read_exact(&mut f, &mut u)).is_err() {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(1);
        u.copy_from_slice(&(t ^ ((std::process::id() as u128) << 64)).to_le_bytes());
    }
    u[6] = (u[6] & 0x0f) | 0x40;
    u[8] = (u[8] & 0x3f) | 0x80;
    u
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indirect_block_counts() {
        assert_eq!(indirect_count(12), 0);
        assert_eq!(indirect_count(13), 1);
        assert_eq!(indirect_count(12 + 1024), 1);
        assert_eq!(indirect_count(12 + 1025), 3);
        assert_eq!(indirect_count(12 + 1024 + 1024 * 1024), 1 + 1 + 1024);
    }

    /// Every block of a file with double-indirect blocks, in the order e2fsck and Linux walk
    /// it (each indirect block before what it maps), is the next block on disk.
    #[test]
    fn files_are_laid_out_in_walk_order() {
        let geo = Geometry::new(64 << 20, 100).unwrap();
        let mut alloc = Allocator { geo: &geo, group: 0, next: 0, used: 0 };
        let n = 12 + PPB + PPB + 5;
        let mut p = Planned { ino: 0, mode: 0, links: 1, size: n * BS, data: vec![], indirect: vec![], i_block: [0; 15] };
        allocate(&mut p, n, &mut alloc).unwrap();
        assert_eq!(p.data.len() as u64, n);
        assert_eq!(p.indirect.len() as u64, indirect_count(n));
        let maps: HashMap<u32, &Vec<u32>> = p.indirect.iter().map(|(b, m)| (*b, m)).collect();
        fn walk(b: u32, depth: u32, maps: &HashMap<u32, &Vec<u32>>, out: &mut Vec<u32>) {
            out.push(b);
            if depth > 0 {
                for &c in maps[&b] {
                    walk(c, depth - 1, maps, out);
                }
            }
        }
        let mut order = p.i_block[..12].to_vec();
        walk(p.i_block[12], 1, &maps, &mut order);
        walk(p.i_block[13], 2, &maps, &mut order);
        assert_eq!(p.i_block[14], 0);
        assert!(order.windows(2).all(|w| w[1] == w[0] + 1), "not contiguous: {:?}", &order[..20]);
        assert_eq!(order.len() as u64, n + indirect_count(n));
        // The space check counts indirect blocks with `indirect_count`: it must agree.
        for n in [0, 1, 12, 13, 12 + PPB, 12 + PPB + 1, 12 + 3 * PPB + 7] {
            let mut alloc = Allocator { geo: &geo, group: 0, next: 0, used: 0 };
            let mut p = Planned { ino: 0, mode: 0, links: 1, size: 0, data: vec![], indirect: vec![], i_block: [0; 15] };
            allocate(&mut p, n, &mut alloc).unwrap();
            assert_eq!((p.data.len() as u64, alloc.used), (n, n + indirect_count(n)), "{n} blocks");
        }
    }

    #[test]
    fn sparse_super_groups() {
        let g = Geometry::new(4 << 30, 100).unwrap();
        let with: Vec<u64> = (0..g.groups).filter(|&x| g.has_super(x)).collect();
        assert_eq!(with, vec![0, 1, 3, 5, 7, 9, 25, 27]);
    }

    #[test]
    fn directory_blocks_fill_exactly() {
        let names: Vec<Vec<u8>> = (0..500).map(|i| format!("file-number-{i}").into_bytes()).collect();
        let entries: Vec<(u32, u8, &[u8])> = names.iter().enumerate().map(|(i, n)| (i as u32 + 12, 1, &n[..])).collect();
        for block in dir_blocks(&entries) {
            assert_eq!(block.len(), BS as usize);
            let mut off = 0;
            while off < BS as usize {
                let rec = u16::from_le_bytes([block[off + 4], block[off + 5]]) as usize;
                assert!(rec >= 8 && rec % 4 == 0);
                off += rec;
            }
            assert_eq!(off, BS as usize);
        }
    }
}
