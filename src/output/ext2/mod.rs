//! Our own ext2 writer: lays the manifest out as an ext2 image in one pass.
//!
//! The original runs `mke2fs` and then adds every file through libext2fs, one block at a time.
//! Here the whole layout (inode numbers, directory blocks, data and indirect blocks) is planned
//! in memory first (`layout`), so the image is written once (`write`): metadata with a few
//! `pwrite`s, file bytes with `copy_file_range` straight from the host files into their final
//! place. The image is sparse: only used blocks are written. `format` holds the on-disk
//! structures.
//!
//! The format is the classic one `mke2fs -t ext2` makes with 256-byte inodes: revision 1, 4 KiB
//! blocks, `filetype` and `sparse_super`/`large_file`, linear directories, direct and
//! indirect block maps, fast symlinks under 60 bytes. `e2fsck -fn` is the test oracle.

use std::fs;
use std::io;
use std::path::Path;

use log::debug;

use crate::error::Result;
use crate::manifest::{Manifest, Node, ROOT};

mod format;
mod layout;
mod write;

/// Write `manifest` as an ext2 image of `size` bytes (sparse) at `out`, with filesystem UUID
/// `uuid`. An appliance that does not fit is refused before anything is written.
pub fn write(manifest: &Manifest, (file, out): (std::fs::File, &Path), size: u64, uuid: [u8; 16]) -> Result<()> {
    let pruned;
    let manifest = match without_lost_found(manifest) {
        Some(m) => {
            pruned = m;
            &pruned
        }
        None => manifest,
    };
    let now = crate::util::now().clamp(0, i64::from(u32::MAX)) as u32;
    let plan = layout::plan(manifest, size, out, now)?;
    let free = write::write(manifest, &plan, (file, out), uuid, now)?;
    // No fsync: like the original, outputs are a cache that --if-newer rebuilds, and forcing
    // ~500 MB to disk would triple the build time. The rename is atomic for readers.
    debug!(
        "ext2: {} inodes, {} of {} blocks used, {} groups",
        plan.used_inodes,
        plan.geo.blocks - free,
        plan.geo.blocks,
        plan.geo.groups
    );
    Ok(())
}

/// The tree without its own `/lost+found` (a hostfiles `/*` on a host whose root has one, or a
/// base image of a filesystem's root): the image has its own, made by the writer, and two
/// entries of one name are a corrupt directory. Like the original, whose `mke2fs` made it
/// first. `None` when there is none.
fn without_lost_found(manifest: &Manifest) -> Option<Manifest> {
    manifest.children(ROOT)?.get(&b"lost+found"[..])?;
    log::warn!("ext2: the appliance's /lost+found is replaced by the image's own");
    let mut m = Manifest { inodes: manifest.inodes.clone(), images: manifest.images.clone() };
    if let Node::Dir(children) = &mut m.inodes[ROOT as usize].node {
        children.remove(&b"lost+found"[..]);
    }
    Some(m)
}

/// The filesystem's UUID (version 4 layout), which libguestfs passes as `root=UUID=`: random,
/// or with `SOURCE_DATE_EPOCH` set derived from the epoch and the tree (every path, mode,
/// owner, size and time), so that the same inputs give the same image.
pub fn uuid(manifest: &Manifest) -> [u8; 16] {
    let mut u = [0u8; 16];
    match crate::util::source_date_epoch() {
        Some(epoch) => u = tree_digest(manifest, epoch),
        None => {
            if fs::File::open("/dev/urandom").and_then(|mut f| io::Read::read_exact(&mut f, &mut u)).is_err() {
                let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos());
                u.copy_from_slice(&(t ^ (u128::from(std::process::id()) << 64)).to_le_bytes());
            }
        }
    }
    u[6] = (u[6] & 0x0f) | 0x40;
    u[8] = (u[8] & 0x3f) | 0x80;
    u
}

/// MD5 of the epoch and of every entry's path and metadata.
fn tree_digest(manifest: &Manifest, epoch: i64) -> [u8; 16] {
    use md5::{Digest, Md5};
    let mut h = Md5::new();
    h.update(epoch.to_le_bytes());
    manifest.walk(|path, ino| {
        let m = manifest.inode(ino).meta;
        h.update(path);
        h.update([0]);
        for v in [u64::from(m.mode), u64::from(m.uid), u64::from(m.gid), m.size, m.mtime as u64, m.rdev] {
            h.update(v.to_le_bytes());
        }
    });
    h.finalize().into()
}
