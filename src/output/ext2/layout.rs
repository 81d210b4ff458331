//! Planning an image in memory: geometry, inode numbers, directory blocks and where every
//! block goes, so that writing is one pass.

use std::collections::HashMap;
use std::path::Path;

use super::format::{
    device_i_block, dir_blocks, empty_dir_block, fast_symlink_i_block, pointer_block, DirEntry, BLOCKS_PER_GROUP, BS,
    FAST_SYMLINK_MAX, FIRST_INO, INODE_SIZE, LOST_FOUND_INO, PPB, ROOT_INO,
};
use crate::bail;
use crate::error::{Error, Result};
use crate::manifest::{os, Ino, Manifest, Meta, Node, ROOT, S_IFDIR};

#[derive(Clone)]
pub struct Geometry {
    pub blocks: u64,
    pub groups: u64,
    pub inodes_per_group: u64,
    pub gdt_blocks: u64,
    pub itable_blocks: u64,
}

impl Geometry {
    pub fn new(size: u64, inodes_needed: u64) -> Result<Geometry> {
        let mut blocks = size / BS;
        if blocks < 64 {
            bail!("--size {size}: too small for an ext2 filesystem");
        }
        let mut groups = blocks.div_ceil(BLOCKS_PER_GROUP);
        // One inode per 16 KiB, as mke2fs's default inode_ratio, but never fewer than we need.
        let wanted = (size / 16384).max(inodes_needed + inodes_needed / 8 + 64);
        let per_group = |groups: u64| wanted.div_ceil(groups).next_multiple_of(16).clamp(16, 8 * BS);
        let mut ipg = per_group(groups);
        if ipg * groups < inodes_needed {
            bail!("--size {size}: too small for {inodes_needed} files (use a larger --size)");
        }
        let gdt_blocks = (groups * 32).div_ceil(BS);
        let mut itable_blocks = ipg * INODE_SIZE / BS;
        // A last group too small to hold its own metadata is dropped, as mke2fs does.
        let last = blocks - (groups - 1) * BLOCKS_PER_GROUP;
        let overhead = 1 + gdt_blocks + 2 + itable_blocks;
        if groups > 1 && last < overhead + 16 {
            blocks -= last;
            groups -= 1;
            ipg = per_group(groups);
            itable_blocks = ipg * INODE_SIZE / BS;
        }
        Ok(Geometry { blocks, groups, inodes_per_group: ipg, gdt_blocks, itable_blocks })
    }

    pub fn group_start(&self, g: u64) -> u64 {
        g * BLOCKS_PER_GROUP
    }

    pub fn group_blocks(&self, g: u64) -> u64 {
        (self.blocks - self.group_start(g)).min(BLOCKS_PER_GROUP)
    }

    /// sparse_super: groups 0, 1 and powers of 3, 5 and 7 hold a superblock copy.
    pub fn has_super(&self, g: u64) -> bool {
        fn power_of(mut n: u64, b: u64) -> bool {
            while n > 1 && n.is_multiple_of(b) {
                n /= b;
            }
            n == 1
        }
        g == 0 || g == 1 || power_of(g, 3) || power_of(g, 5) || power_of(g, 7)
    }

    /// Block bitmap, inode bitmap, inode table (first block of each) of group `g`.
    pub fn group_meta(&self, g: u64) -> (u64, u64, u64) {
        let mut b = self.group_start(g);
        if self.has_super(g) {
            b += 1 + self.gdt_blocks;
        }
        (b, b + 1, b + 2)
    }

    pub fn first_data_block(&self, g: u64) -> u64 {
        self.group_meta(g).2 + self.itable_blocks
    }

    pub fn inodes(&self) -> u64 {
        self.inodes_per_group * self.groups
    }

    /// Blocks available for data in the whole filesystem.
    fn capacity(&self) -> u64 {
        (0..self.groups).map(|g| self.group_start(g) + self.group_blocks(g) - self.first_data_block(g)).sum()
    }
}

/// Hands out data blocks in order, skipping each group's metadata.
pub struct Allocator<'g> {
    geo: &'g Geometry,
    group: u64,
    /// The next block to hand out (every block below it is in use).
    pub next: u64,
    used: u64,
}

impl<'g> Allocator<'g> {
    pub fn new(geo: &'g Geometry) -> Self {
        Allocator { geo, group: 0, next: 0, used: 0 }
    }

    fn alloc(&mut self) -> Result<u32> {
        loop {
            if self.group >= self.geo.groups {
                return Err(Error::new("no space"));
            }
            let end = self.geo.group_start(self.group) + self.geo.group_blocks(self.group);
            self.next = self.next.max(self.geo.first_data_block(self.group));
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

/// What goes into one ext2 inode.
pub struct Planned {
    /// Its ext2 inode number.
    pub no: u32,
    pub meta: Meta,
    pub links: u32,
    pub size: u64,
    /// Data blocks, in file order.
    pub data: Vec<u32>,
    /// Indirect blocks (single, double, triple) and their contents.
    pub indirect: Vec<(u32, Vec<u32>)>,
    /// The 15 `i_block` slots.
    pub i_block: [u32; 15],
}

impl Planned {
    fn new(no: u32, meta: Meta, links: u32, size: u64) -> Planned {
        Planned { no, meta, links, size, data: Vec::new(), indirect: Vec::new(), i_block: [0; 15] }
    }
}

/// How many indirect blocks a file of `n` data blocks needs.
pub fn indirect_count(n: u64) -> u64 {
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
pub fn allocate(p: &mut Planned, n: u64, alloc: &mut Allocator) -> Result<()> {
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

/// The whole image, planned.
pub struct Plan {
    pub geo: Geometry,
    /// Every inode but the reserved ones, lost+found included.
    pub inodes: Vec<Planned>,
    /// Metadata blocks (directories, indirect blocks, long symlinks): block and bytes.
    pub writes: Vec<(u32, Vec<u8>)>,
    /// Regular files: the manifest inode and its data blocks.
    pub copies: Vec<(Ino, Vec<u32>)>,
    /// Every data block below this one is in use.
    pub end: u64,
    /// Inodes 1..=used_inodes are in use.
    pub used_inodes: u64,
}

/// The manifest's reachable inodes numbered: root 2, lost+found 11, the rest from 12 in
/// tree order (a hard-linked inode once).
struct Numbering {
    number: HashMap<Ino, u32>,
    /// The non-root inodes in numbering order.
    order: Vec<Ino>,
}

impl Numbering {
    fn new(manifest: &Manifest) -> Numbering {
        let mut number = HashMap::from([(ROOT, ROOT_INO)]);
        let mut order = Vec::new();
        manifest.walk(|_, ino| {
            if let std::collections::hash_map::Entry::Vacant(v) = number.entry(ino) {
                v.insert(FIRST_INO + 1 + order.len() as u32);
                order.push(ino);
            }
        });
        Numbering { number, order }
    }

    /// The highest inode number in use.
    fn last(&self) -> u32 {
        FIRST_INO + self.order.len() as u32
    }

    /// Root first, then the rest in order.
    fn all(&self) -> impl Iterator<Item = Ino> + '_ {
        std::iter::once(ROOT).chain(self.order.iter().copied())
    }
}

pub fn plan(manifest: &Manifest, size: u64, out: &Path, now: u32) -> Result<Plan> {
    let numbering = Numbering::new(manifest);
    let geo = Geometry::new(size, u64::from(numbering.last()) + 1)?;
    check_links(manifest)?;
    let dirs = directory_blocks(manifest, &numbering);
    check_space(manifest, &numbering, &dirs, &geo, out)?;
    let mut alloc = Allocator::new(&geo);
    let mut plan = Plan {
        geo: geo.clone(),
        inodes: Vec::new(),
        writes: Vec::new(),
        copies: Vec::new(),
        end: 0,
        used_inodes: u64::from(numbering.last()),
    };
    for (ino, blocks) in dirs {
        let links = 2 + subdirectories(manifest, ino) + u32::from(ino == ROOT);
        let meta = manifest.inode(ino).meta;
        let mut p = Planned::new(numbering.number[&ino], meta, links, blocks.len() as u64 * BS);
        allocate(&mut p, blocks.len() as u64, &mut alloc)?;
        plan.writes.extend(p.data.iter().copied().zip(blocks));
        plan.inodes.push(p);
    }
    plan_lost_found(&mut plan, &mut alloc, now)?;
    let links = manifest.link_counts();
    for &ino in &numbering.order {
        let links = links[ino as usize];
        if let Some(p) = plan_non_dir(manifest, ino, numbering.number[&ino], links, &mut alloc, &mut plan)? {
            plan.inodes.push(p);
        }
    }
    for p in &plan.inodes {
        plan.writes.extend(p.indirect.iter().map(|(b, ptrs)| (*b, pointer_block(ptrs))));
    }
    plan.end = alloc.next;
    Ok(plan)
}

/// Every directory's blocks, root first: `.`, `..`, (lost+found in the root), its entries.
fn directory_blocks(manifest: &Manifest, numbering: &Numbering) -> Vec<(Ino, Vec<Vec<u8>>)> {
    let number = &numbering.number;
    let mut parent_of: HashMap<Ino, u32> = HashMap::new();
    let mut dirs = Vec::new();
    for ino in numbering.all() {
        let Some(children) = manifest.children(ino) else { continue };
        let parent = parent_of.get(&ino).copied().unwrap_or(ROOT_INO);
        let mut entries: Vec<DirEntry> = vec![(number[&ino], 2, b"."), (parent, 2, b"..")];
        if ino == ROOT {
            entries.push((LOST_FOUND_INO, 2, b"lost+found"));
        }
        for (name, child) in children {
            entries.push((number[child], crate::output::dirent_type(manifest.inode(*child).meta.mode), &name[..]));
            if manifest.children(*child).is_some() {
                parent_of.insert(*child, number[&ino]);
            }
        }
        dirs.push((ino, dir_blocks(&entries)));
    }
    dirs
}

fn subdirectories(manifest: &Manifest, dir: Ino) -> u32 {
    let children = manifest.children(dir).map(|c| c.values());
    children.into_iter().flatten().filter(|c| manifest.children(**c).is_some()).count() as u32
}

/// The most links an inode of the image may have: `EXT2_LINK_MAX` of the kernel's ext2
/// driver. ext4 reading an ext2 image allows 65,000, but the appliance's init mounts its root
/// as `ext2` first (`boot::init`), so a kernel built with the ext2 driver reads it with that
/// one, as do libguestfs and a loop mount by hand; and `i_links_count` is 16 bits, so what
/// is past 65,535 would wrap into a count that makes the kernel free a file still named.
const LINK_MAX: u32 = 32_000;

/// Refuse a file named more than [`LINK_MAX`] times, or a directory whose link count (2 and
/// one per subdirectory, whose `..` names it; one more for the root's lost+found) would
/// exceed it, naming the first path of that inode.
fn check_links(manifest: &Manifest) -> Result<()> {
    let names = manifest.link_counts();
    let mut over = None;
    manifest.walk(|path, ino| {
        let dir = manifest.children(ino).is_some();
        let links = if dir { 2 + subdirectories(manifest, ino) + u32::from(ino == ROOT) } else { names[ino as usize] };
        if links > LINK_MAX && over.is_none() {
            over = Some((path.to_vec(), dir, links));
        }
    });
    match over {
        None => Ok(()),
        Some((path, false, n)) => bail!(
            "{}: {n} hard links, more than the {LINK_MAX} an ext2 inode can hold (leave some out of the appliance)",
            os(&path).display()
        ),
        Some((path, true, n)) => bail!(
            "{}: {} subdirectories, more than the {} an ext2 directory can hold (leave some out of the appliance)",
            os(&path).display(),
            n - 2,
            LINK_MAX - 2
        ),
    }
}

/// Refuse, before writing anything, an appliance that does not fit or a file ext2 cannot hold.
fn check_space(
    manifest: &Manifest,
    numbering: &Numbering,
    dirs: &[(Ino, Vec<Vec<u8>>)],
    geo: &Geometry,
    out: &Path,
) -> Result<()> {
    let mut data_blocks: u64 = 4 + dirs.iter().map(|(_, b)| b.len() as u64).sum::<u64>(); // + lost+found
    for &ino in &numbering.order {
        let inode = manifest.inode(ino);
        match &inode.node {
            Node::File(_) => {
                let n = inode.meta.size.div_ceil(BS);
                // i_blocks counts 512-byte units in 32 bits (no huge_file feature): 2 TiB.
                if (n + indirect_count(n)) * (BS / 512) > u64::from(u32::MAX) {
                    bail!(
                        "{}: a file of {} bytes is larger than an ext2 file can be (2 TiB); leave it out of the appliance",
                        out.display(),
                        inode.meta.size
                    );
                }
                data_blocks += n + indirect_count(n);
            }
            Node::Symlink(t) if t.len() >= FAST_SYMLINK_MAX => data_blocks += 1,
            _ => {}
        }
    }
    let capacity = geo.capacity();
    if data_blocks > capacity {
        bail!(
            "{}: the appliance needs {} MiB but the filesystem has room for {} MiB: No space left on device (use a larger --size)",
            out.display(),
            (data_blocks * BS) >> 20,
            (capacity * BS) >> 20
        );
    }
    Ok(())
}

/// lost+found: "." and "..", then three empty blocks, like mke2fs.
fn plan_lost_found(plan: &mut Plan, alloc: &mut Allocator, now: u32) -> Result<()> {
    let meta = Meta { mode: S_IFDIR | 0o700, mtime: i64::from(now), ..Meta::default() };
    let mut lf = Planned::new(LOST_FOUND_INO, meta, 2, 4 * BS);
    allocate(&mut lf, 4, alloc)?;
    plan.writes.push((lf.data[0], dir_blocks(&[(LOST_FOUND_INO, 2, b"."), (ROOT_INO, 2, b"..")]).remove(0)));
    plan.writes.extend(lf.data[1..].iter().map(|b| (*b, empty_dir_block())));
    plan.inodes.push(lf);
    Ok(())
}

/// A file, symlink or special inode (`None` for a directory, planned with the others).
fn plan_non_dir(
    manifest: &Manifest,
    ino: Ino,
    no: u32,
    links: u32,
    alloc: &mut Allocator,
    plan: &mut Plan,
) -> Result<Option<Planned>> {
    let inode = manifest.inode(ino);
    let mut p = Planned::new(no, inode.meta, links, 0);
    match &inode.node {
        Node::Dir(_) => return Ok(None),
        Node::File(_) => {
            p.size = inode.meta.size;
            let blocks = p.size.div_ceil(BS);
            allocate(&mut p, blocks, alloc)?;
            plan.copies.push((ino, p.data.clone()));
        }
        Node::Symlink(target) if target.len() < FAST_SYMLINK_MAX => {
            p.size = target.len() as u64;
            p.i_block = fast_symlink_i_block(target);
        }
        Node::Symlink(target) => {
            p.size = target.len() as u64;
            p.data = vec![alloc.alloc()?];
            p.i_block[0] = p.data[0];
            let mut block = target.to_vec();
            block.resize(BS as usize, 0);
            plan.writes.push((p.data[0], block));
        }
        Node::Special => p.i_block = device_i_block(inode.meta.rdev),
    }
    Ok(Some(p))
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

    fn planned() -> Planned {
        Planned::new(12, Meta::default(), 1, 0)
    }

    /// Every block of a file with double-indirect blocks, in the order e2fsck and Linux walk
    /// it (each indirect block before what it maps), is the next block on disk.
    #[test]
    fn files_are_laid_out_in_walk_order() {
        let geo = Geometry::new(64 << 20, 100).unwrap();
        let mut alloc = Allocator::new(&geo);
        let n = 12 + PPB + PPB + 5;
        let mut p = planned();
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
            let mut alloc = Allocator::new(&geo);
            let mut p = planned();
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
}
