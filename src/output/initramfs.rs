//! `-f initramfs`: the whole appliance as one compressed newc cpio that the kernel unpacks
//! into its root filesystem and runs `/init` from, with no disk at all.
//!
//! The kernel accepts an initramfs made of several compressed cpio archives one after the
//! other, so the tree (in pre-order: directories before their contents) is cut into segments
//! of similar size that are compressed on every core and concatenated in order: with zstd when
//! the kernel's configuration says it can unpack that (`CONFIG_RD_ZSTD`), else with gzip.
//!
//! The kernel unpacks the archive into a tmpfs that may use half the RAM it sees, while it
//! still holds the compressed archive: an appliance too large for the VM fails to boot with
//! "Initramfs unpacking failed: write error". So the build estimates the memory the VM needs
//! ([`memory_needed`]) and warns when it is more than [`WARN_ABOVE`].

use std::fs;
use std::io::Write;
use std::path::Path;

use log::{debug, info, warn};

use crate::error::{Error, IoContext, Result};
use crate::manifest::{Content, Ino, Manifest, Node, ROOT};
use crate::util::progress::Progress;
use crate::util::{cpio, work};

/// About how many compressed segments the archive is cut into (enough to keep every core busy).
const SEGMENTS: u64 = 16;

/// zstd's level: its default, which compresses as fast as gzip's fastest level, and 20-30%
/// smaller (measured on kernel modules and binaries; level 1 is twice as fast and 8% larger).
const ZSTD_LEVEL: i32 = 3;

/// The memory estimate above which the build warns (a VM of 512 MiB is a common default).
pub const WARN_ABOVE: u64 = 512 << 20;

/// How the segments are compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Zstd,
}

impl Compression {
    /// What the kernel whose configuration is `config` can unpack (`None`: no configuration
    /// found): zstd when `CONFIG_RD_ZSTD=y`, else gzip, which every kernel has unless its
    /// configuration says otherwise. (`CONFIG_RD_XZ` is not used: there is no pure-Rust xz
    /// encoder that compresses, and xz unpacks several times slower than zstd.)
    pub fn for_kernel(config: Option<&str>) -> Compression {
        let set = |option: &str| config.is_some_and(|c| c.lines().any(|l| l.trim_end() == format!("{option}=y")));
        if set("CONFIG_RD_ZSTD") {
            return Compression::Zstd;
        }
        if config.is_some() && !set("CONFIG_RD_GZIP") {
            warn!("the kernel's configuration has neither CONFIG_RD_ZSTD nor CONFIG_RD_GZIP: it may not unpack the initramfs (written with gzip)");
        }
        Compression::Gzip
    }
}

/// What the kernel needs to know of the kernel that will unpack the archive.
pub struct Target {
    pub compression: Compression,
    /// The memory the kernel itself occupies while booting (`Kernel::memory`).
    pub kernel_memory: u64,
    /// Whether the whole modules tree is in (`--modules all`): the warning then says what
    /// leaving it out would save.
    pub all_modules: bool,
}

/// The memory a VM needs to unpack an initramfs of `compressed` bytes holding `unpacked`
/// bytes of files (in whole pages), with a kernel occupying `kernel` bytes. With no `root=` on
/// its command line the kernel unpacks into a tmpfs limited to half of the RAM it manages,
/// which is the VM's memory less the kernel, the compressed archive (held until it is
/// unpacked), the page structures (1/64 of the memory) and [`SLACK`].
pub fn memory_needed(unpacked: u64, compressed: u64, kernel: u64) -> u64 {
    let reserved = kernel + compressed + SLACK;
    (2 * unpacked + reserved) * 64 / 63
}

/// What else the kernel reserves before unpacking (firmware tables, per-CPU areas, slabs).
const SLACK: u64 = 8 << 20;

pub fn write(manifest: &Manifest, (mut file, out): (fs::File, &Path), to: &Target) -> Result<()> {
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
    let compression = to.compression;
    let compressed = work::map(&segments, threads, |entries| segment(manifest, entries, out, compression, &progress));
    let mut size = 0;
    for bytes in compressed {
        let bytes = bytes?;
        file.write_all(&bytes).at(out, "cannot write")?;
        size += bytes.len() as u64;
    }
    check_memory(manifest, &entries, size, to);
    Ok(())
}

/// Estimate the memory the VM needs, and warn when it is more than [`WARN_ABOVE`].
fn check_memory(manifest: &Manifest, entries: &[(Vec<u8>, Ino)], compressed: u64, to: &Target) {
    let kernel = to.kernel_memory;
    const PAGE: u64 = 4096;
    // tmpfs stores each file (and each symlink too long for the inode) in whole pages.
    let unpacked: u64 = entries
        .iter()
        .map(|(_, ino)| manifest.inode(*ino))
        .filter(|inode| {
            matches!(inode.node, Node::File(_)) || matches!(inode.node, Node::Symlink(_)) && inode.meta.size > 127
        })
        .map(|inode| inode.meta.size.div_ceil(PAGE) * PAGE)
        .sum();
    let needed = memory_needed(unpacked, compressed, kernel);
    let mib = |b: u64| b.div_ceil(1 << 20);
    info!(
        "initramfs: {} MiB compressed, {} MiB unpacked, kernel {} MiB: the VM needs about {} MiB",
        mib(compressed),
        mib(unpacked),
        mib(kernel),
        mib(needed)
    );
    if needed > WARN_ABOVE {
        // Rounded up to 64 MiB, as one would pass it to -m.
        let m = mib(needed).div_ceil(64) * 64;
        let hint = if to.all_modules { " (--modules vm would leave out the hardware drivers)" } else { "" };
        warn!(
            "the initramfs needs a VM of at least {m} MiB (qemu -m {m}): {} MiB of files unpack into a tmpfs \
             limited to half the RAM, next to the {} MiB archive{hint}",
            mib(unpacked),
            mib(compressed)
        );
    }
}

/// A compressing writer of one segment.
enum Encoder {
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

impl Encoder {
    fn new(compression: Compression) -> std::io::Result<Encoder> {
        Ok(match compression {
            Compression::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast())),
            Compression::Zstd => Encoder::Zstd(zstd::stream::write::Encoder::new(Vec::new(), ZSTD_LEVEL)?),
        })
    }

    fn finish(self) -> std::io::Result<Vec<u8>> {
        match self {
            Encoder::Gzip(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
        }
    }
}

impl Write for Encoder {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Encoder::Gzip(e) => e.write(buf),
            Encoder::Zstd(e) => e.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Encoder::Gzip(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
        }
    }
}

fn segment(
    manifest: &Manifest,
    entries: &[(Vec<u8>, Ino)],
    out: &Path,
    compression: Compression,
    progress: &Progress,
) -> Result<Vec<u8>> {
    let werr = |e: std::io::Error| Error::io(out, "cannot write", e);
    let mut w = cpio::Writer::new(Encoder::new(compression).map_err(werr)?);
    for (name, ino) in entries {
        let inode = manifest.inode(*ino);
        let m = &inode.meta;
        let owned;
        let data: &[u8] = match &inode.node {
            Node::File(Content::Host(src)) => {
                // No more than the size resolved: a /proc file says 0 and may never end.
                // Left empty when it cannot be read.
                owned = match crate::output::open_host(src, m.size)? {
                    Some(f) => read_at_most(f, m.size).at(&src.path, "cannot read")?,
                    None => Vec::new(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compressor_is_what_the_kernel_can_unpack() {
        let debian = "CONFIG_RD_GZIP=y\nCONFIG_RD_BZIP2=y\nCONFIG_RD_XZ=y\nCONFIG_RD_ZSTD=y\n";
        assert_eq!(Compression::for_kernel(Some(debian)), Compression::Zstd);
        let old = "CONFIG_RD_GZIP=y\n# CONFIG_RD_ZSTD is not set\nCONFIG_RD_XZ=y\n";
        assert_eq!(Compression::for_kernel(Some(old)), Compression::Gzip);
        // Modules are not enough: the kernel unpacks before it loads any.
        assert_eq!(Compression::for_kernel(Some("CONFIG_RD_ZSTD=m\nCONFIG_RD_GZIP=y\n")), Compression::Gzip);
        assert_eq!(Compression::for_kernel(Some("CONFIG_RD_ZSTD_X=y\n")), Compression::Gzip);
        assert_eq!(Compression::for_kernel(None), Compression::Gzip);
        assert_eq!(Compression::for_kernel(Some("")), Compression::Gzip);
    }

    #[test]
    fn the_estimate_counts_the_tmpfs_half_and_what_is_held() {
        let mib = 1 << 20;
        // 400 MiB of files need 800 MiB of RAM for the tmpfs, plus the archive and the kernel.
        let m = memory_needed(400 * mib, 100 * mib, 40 * mib);
        assert!(m > 950 * mib && m < 1000 * mib, "{}", m / mib);
        assert!(memory_needed(100 * mib, 30 * mib, 40 * mib) < WARN_ABOVE);
    }
}
