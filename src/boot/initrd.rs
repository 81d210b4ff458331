//! The mini initrd of `-f ext2`: a flat newc cpio holding our `/init` (this binary), the
//! kernel modules needed to reach the root disk (the original's pattern list, plus their
//! dependencies in load order from `modules.dep`, decompressed), and `/modules`, the load order.

use std::collections::HashSet;
use std::ffi::CString;
use std::fs;
use std::io::{BufWriter, Read, Write};
use std::path::Path;

use log::debug;

use super::kernel::ModulesDir;
use super::modules;
use crate::error::{Error, IoContext, Result};
use crate::util::{cpio, sys};

/// The ext2 appliance's: modules whose file names match one of these (the original's list)
/// are loaded at boot.
pub const EXT2: &[&str] = &[
    "ext2.ko*",
    "ext4.ko*",
    "virtio*.ko*",
    "libata*.ko*",
    "piix*.ko*",
    "sd_mod.ko*",
    "ata_piix.ko*",
    "crc*.ko*",
    "libcrc*.ko*",
    "ibmvscsic.ko*",
    "ibmvscsi.ko*",
    "libnvdimm.ko*",
    "nd_pmem.ko*",
    "nd_btt.ko*",
    "nfit.ko*",
];
const EXCLUDED: &[&str] = &["virtio-gpu.ko*", "virtio_gpu.ko*"];

/// `run --vm`'s: the PCI virtio transport, virtio-fs for the root, virtio-console for the
/// command's streams, overlayfs for `--writable` and 9p for `--bind` (with their
/// dependencies from `modules.dep`); nothing for disks.
pub const VM: &[&str] = &[
    "virtio.ko*",
    "virtio_ring.ko*",
    "virtio_pci*.ko*",
    "virtiofs.ko*",
    "fuse.ko*",
    "virtio_console.ko*",
    "overlay.ko*",
    "9p.ko*",
    "9pnet.ko*",
    "9pnet_virtio.ko*",
];

/// `modules.dep`: module path (relative to the modules directory) → its dependencies.
fn parse_modules_dep(text: &str) -> Vec<(String, Vec<String>)> {
    text.lines()
        .filter_map(|l| {
            let (m, deps) = l.split_once(':')?;
            Some((m.trim().to_string(), deps.split_whitespace().map(str::to_string).collect()))
        })
        .collect()
}

fn basename(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

fn matches(patterns: &[&str], name: &str) -> bool {
    let Ok(name) = CString::new(name) else { return false };
    patterns.iter().any(|p| CString::new(*p).is_ok_and(|p| sys::fnmatch(&p, &name, 0)))
}

/// The modules matching `patterns` to load, dependencies first, each once.
pub fn module_order(modules_dep: &str, patterns: &[&str]) -> Vec<String> {
    let deps = parse_modules_dep(modules_dep);
    let index: std::collections::HashMap<&str, &Vec<String>> = deps.iter().map(|(m, d)| (m.as_str(), d)).collect();
    let mut top: Vec<&str> = deps
        .iter()
        .map(|(m, _)| m.as_str())
        .filter(|m| matches(patterns, basename(m)) && !matches(EXCLUDED, basename(m)))
        .collect();
    top.sort_unstable();
    let mut seen = HashSet::new();
    let mut order = Vec::new();
    fn visit<'a>(
        m: &'a str,
        index: &std::collections::HashMap<&'a str, &'a Vec<String>>,
        seen: &mut HashSet<&'a str>,
        order: &mut Vec<String>,
    ) {
        if !seen.insert(m) {
            return;
        }
        if let Some(deps) = index.get(m) {
            for d in deps.iter() {
                visit(d, index, seen, order);
            }
        }
        order.push(m.to_string());
    }
    for m in top {
        visit(m, &index, &mut seen, &mut order);
    }
    order
}

/// A module's bytes (`rel` in the modules directory, read inside its root), decompressed, and
/// its name without the compression suffix.
pub fn read_module(modules: &ModulesDir, rel: &str) -> Result<(String, Vec<u8>)> {
    let path = modules.shown(rel);
    let raw = match modules.read(rel) {
        Ok(raw) => raw,
        Err(_) if modules.link_out(rel) => {
            let why = "is a symlink out of the sysroot (a sysroot is read as a chroot: point it at a module inside it)";
            return Err(Error::new(format!("{}: cannot read kernel module: it {why}", path.display())));
        }
        Err(e) => return Err(Error::io(&path, "cannot read kernel module", e)),
    };
    let name = basename(rel).to_string();
    let bad = |e: String| Error::new(format!("{}: corrupt compressed module: {e}", path.display()));
    if let Some(stem) = name.strip_suffix(".zst") {
        let mut out = Vec::new();
        ruzstd::decoding::StreamingDecoder::new(&raw[..])
            .map_err(|e| bad(e.to_string()))?
            .read_to_end(&mut out)
            .map_err(|e| bad(e.to_string()))?;
        Ok((stem.to_string(), out))
    } else if let Some(stem) = name.strip_suffix(".xz") {
        let mut out = Vec::new();
        lzma_rs::xz_decompress(&mut &raw[..], &mut out).map_err(|e| bad(format!("{e:?}")))?;
        Ok((stem.to_string(), out))
    } else if let Some(stem) = name.strip_suffix(".gz") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..]).read_to_end(&mut out).map_err(|e| bad(e.to_string()))?;
        Ok((stem.to_string(), out))
    } else {
        Ok((name, raw))
    }
}

/// Write the initrd for the kernel whose modules are in `modpath`: `modules.dep` and every
/// module it names are read inside the directory's root, and only by the relative paths
/// [`modules::check_dep`] lets through.
pub fn write(modpath: &ModulesDir, patterns: &[&str], (file, out): (fs::File, &Path)) -> Result<()> {
    let dep_path = modpath.shown("modules.dep");
    let dep = modpath.read("modules.dep").at(&dep_path, "cannot read")?;
    let dep = String::from_utf8_lossy(&dep);
    modules::check_dep(&dep, &dep_path)?;
    let order = module_order(&dep, patterns);
    debug!("initrd: {} modules", order.len());
    let init = fs::read("/proc/self/exe").at(Path::new("/proc/self/exe"), "cannot read our own binary for /init")?;

    let mut w = cpio::Writer::new(BufWriter::with_capacity(1 << 20, file));
    let werr = |e: std::io::Error| Error::io(out, "cannot write", e);
    let h = |name: &[u8], mode: u32| -> (Vec<u8>, u32) { (name.to_vec(), mode) };
    let (dot, mode) = h(b".", 0o040755);
    w.append(&cpio::Header { name: &dot, mode, uid: 0, gid: 0, nlink: 2, mtime: 0, rdev: 0 }, &[]).map_err(werr)?;
    let mut list = String::new();
    for m in &order {
        let (name, bytes) = read_module(modpath, m)?;
        let header =
            cpio::Header { name: name.as_bytes(), mode: 0o100644, uid: 0, gid: 0, nlink: 1, mtime: 0, rdev: 0 };
        w.append(&header, &bytes).map_err(werr)?;
        list.push_str(&name);
        list.push('\n');
    }
    w.append(&cpio::Header { name: b"init", mode: 0o100755, uid: 0, gid: 0, nlink: 1, mtime: 0, rdev: 0 }, &init)
        .map_err(werr)?;
    w.append(
        &cpio::Header { name: b"modules", mode: 0o100644, uid: 0, gid: 0, nlink: 1, mtime: 0, rdev: 0 },
        list.as_bytes(),
    )
    .map_err(werr)?;
    let mut buf = w.finish().map_err(werr)?;
    buf.flush().map_err(werr)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependencies_come_first_and_once() {
        let dep = "kernel/a/virtio_blk.ko: kernel/b/virtio_ring.ko kernel/b/virtio.ko\n\
                   kernel/b/virtio_ring.ko: kernel/b/virtio.ko\nkernel/b/virtio.ko:\n\
                   kernel/c/virtio-gpu.ko: kernel/b/virtio.ko\nkernel/d/unrelated.ko:\nbogus line\n";
        assert_eq!(
            module_order(dep, EXT2),
            vec!["kernel/b/virtio.ko", "kernel/b/virtio_ring.ko", "kernel/a/virtio_blk.ko"]
        );
    }

    #[test]
    fn compressed_modules_are_decompressed() {
        // Compress a real file with the real tools; decompressing must give it back.
        let dir = std::env::temp_dir().join(format!("supermin-ko-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let original: Vec<u8> = (0..200_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        for (tool, ext) in [("gzip", "gz"), ("xz", "xz"), ("zstd", "zst")] {
            let ko = dir.join("m.ko");
            fs::write(&ko, &original).unwrap();
            let status = std::process::Command::new(tool).arg("-f").arg("-q").arg(&ko).status().expect(tool);
            assert!(status.success(), "{tool}");
            let modules = ModulesDir::new(Path::new("/"), &dir.to_string_lossy());
            let (name, bytes) = read_module(&modules, &format!("m.ko.{ext}")).unwrap();
            assert_eq!(name, "m.ko");
            assert!(bytes == original, "{ext} round trip");
            fs::write(dir.join(format!("m.ko.{ext}")), b"garbage").unwrap();
            assert!(read_module(&modules, &format!("m.ko.{ext}")).is_err());
        }
        let _ = fs::remove_dir_all(&dir);
    }
}
