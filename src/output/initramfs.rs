//! `-f initramfs`: the whole appliance as one compressed newc cpio that the kernel unpacks
//! into its root filesystem and runs `/init` from, with no disk at all.
//!
//! The kernel accepts an initramfs made of several compressed cpio archives one after the
//! other, so the tree (in pre-order: directories before their contents) is cut into segments
//! of similar size that are gzip-compressed on every core and concatenated in order.

use std::fs;
use std::io::Write;
use std::path::Path;

use log::{debug, warn};

use crate::error::{Error, IoContext, Result};
use crate::manifest::{Content, Ino, Manifest, Node, ROOT};
use crate::util::progress::Progress;
use crate::util::{cpio, work};

/// About how many compressed segments the archive is cut into (enough to keep every core busy).
const SEGMENTS: u64 = 16;

pub fn write(manifest: &Manifest, out: &Path) -> Result<()> {
    if manifest.lookup(b"/init", true).is_none() {
        warn!("the appliance has no /init: the kernel will find nothing to run (add one with a base image)");
    }
    let mut entries: Vec<(Vec<u8>, Ino)> = Vec::new();
    manifest.walk(|path, ino| {
        let name = match &path[1..] {
            _ if ino == ROOT => b".".to_vec(),
            // The name that ends an archive: a file of that name is written as `./` it.
            b"TRAILER!!!" => b"./TRAILER!!!".to_vec(),
            name => name.to_vec(),
        };
        entries.push((name, ino));
    });

    // Cut into segments of about equal size.
    let total: u64 = entries.iter().map(|(_, ino)| manifest.inode(*ino).meta.size + 512).sum();
    let threads = work::cores();
    // A fixed number of segments, not one per core: the same inputs give the same bytes on
    // any machine.
    let target = (total / SEGMENTS).max(4 << 20);
    let mut segments: Vec<&[(Vec<u8>, Ino)]> = Vec::new();
    let (mut start, mut acc) = (0usize, 0u64);
    for (i, (_, ino)) in entries.iter().enumerate() {
        acc += manifest.inode(*ino).meta.size + 512;
        if acc >= target {
            segments.push(&entries[start..=i]);
            start = i + 1;
            acc = 0;
        }
    }
    if start < entries.len() {
        segments.push(&entries[start..]);
    }
    debug!("initramfs: {} entries in {} segments", entries.len(), segments.len());

    let files: Vec<u64> = entries
        .iter()
        .map(|(_, ino)| manifest.inode(*ino))
        .filter(|inode| matches!(inode.node, Node::File(_)))
        .map(|inode| inode.meta.size)
        .collect();
    let progress = Progress::files("initramfs: files", files.len() as u64, files.iter().sum());
    let compressed = work::map(&segments, threads, |entries| segment(manifest, entries, out, &progress));
    let mut file = fs::File::create(out).at(out, "cannot create")?;
    for bytes in compressed {
        let bytes = bytes?;
        file.write_all(&bytes).at(out, "cannot write")?;
    }
    Ok(())
}

fn segment(manifest: &Manifest, entries: &[(Vec<u8>, Ino)], out: &Path, progress: &Progress) -> Result<Vec<u8>> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut w = cpio::Writer::new(gz);
    let werr = |e: std::io::Error| Error::io(out, "cannot write", e);
    for (name, ino) in entries {
        let inode = manifest.inode(*ino);
        let m = &inode.meta;
        let owned;
        let data: &[u8] = match &inode.node {
            Node::File(Content::Host(src)) => {
                // No more than the size resolved: a /proc file says 0 and may never end.
                owned = match fs::File::open(src).and_then(|f| read_at_most(f, m.size)) {
                    Ok(d) => d,
                    Err(e) => {
                        warn!("{}: {} (left empty in the initramfs)", src.display(), e);
                        Vec::new()
                    }
                };
                &owned
            }
            Node::File(c) => manifest
                .memory_content(c, m.size)
                .ok_or_else(|| Error::new(format!("{}: tar member is truncated", String::from_utf8_lossy(name))))?,
            Node::Symlink(t) => t,
            Node::Dir(_) | Node::Special => &[],
        };
        // Hard links are written as separate files: the kernel matches links within one
        // archive only, and segments are separate archives.
        let nlink = if matches!(inode.node, Node::Dir(_)) { 2 } else { 1 };
        let h = cpio::Header {
            name,
            mode: m.mode,
            uid: m.uid,
            gid: m.gid,
            nlink,
            mtime: m.mtime.clamp(0, u32::MAX as i64) as u32,
            rdev: m.rdev,
        };
        w.append(&h, data).map_err(werr)?;
        if matches!(inode.node, Node::File(_)) {
            progress.inc(m.size);
        }
    }
    w.finish().map_err(werr)?.finish().map_err(werr)
}

/// Up to `size` bytes of `f`.
fn read_at_most(f: fs::File, size: u64) -> std::io::Result<Vec<u8>> {
    let mut data = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(f, size), &mut data)?;
    Ok(data)
}
