//! `run --vm`'s boot files, made once per kernel and this binary and kept in the private
//! cache directory: a copy of the kernel (read through a descriptor opened inside its root,
//! as every sysroot file is: qemu, run as root, must not open a path a sysroot's owner can
//! point elsewhere) and the mini initrd, this binary as `/init` and the modules
//! [`crate::boot::initrd::VM`] names, decompressed, in load order.

use std::collections::hash_map::DefaultHasher;
use std::fs::File;
use std::hash::{Hash, Hasher};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::boot::initrd;
use crate::boot::kernel::Kernel;
use crate::error::{Error, IoContext, Result};
use crate::inputs::cache::ImageCache;
use crate::util::newfile;

/// The kernel and initrd qemu boots for `kernel`, from the cache or written there.
pub fn cached(kernel: &Kernel) -> Result<(PathBuf, PathBuf)> {
    let cache = ImageCache::open_default()
        .ok_or_else(|| Error::new("run --vm: no private cache directory for the kernel and initrd (see -v)"))?;
    let mut image = kernel.open().map_err(|e| Error::io(&kernel.path, "cannot read the kernel", e))?;
    let dep = kernel
        .modpath
        .open("modules.dep")
        .map_err(|e| Error::io(&kernel.modpath.shown("modules.dep"), "cannot read", e))?;
    let mut h = DefaultHasher::new();
    kernel.version.hash(&mut h);
    for f in [&File::open("/proc/self/exe").at(Path::new("/proc/self/exe"), "cannot read")?, &image, &dep] {
        let m = f.metadata().at(&kernel.path, "cannot stat")?;
        (m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec()).hash(&mut h);
    }
    let name = format!("vm-{:016x}", h.finish());
    let (kernel_copy, initrd) =
        (cache.dir().join(format!("{name}.kernel")), cache.dir().join(format!("{name}.initrd")));
    let touched = |p: &Path| std::fs::OpenOptions::new().append(true).open(p).map(|f| crate::inputs::cache::touch(&f));
    if touched(&kernel_copy).is_ok() && touched(&initrd).is_ok() {
        log::info!("run --vm: the mini initrd {} (cached)", initrd.display());
        return Ok((kernel_copy, initrd));
    }
    require_virtiofs(kernel)?;
    make(&kernel_copy, |(mut file, _)| std::io::copy(&mut image, &mut file).map(drop).at(&kernel.path, "cannot copy"))?;
    make(&initrd, |out| initrd::write(&kernel.modpath, initrd::VM, out))?;
    log::info!("run --vm: wrote the mini initrd {}", initrd.display());
    cache.trim();
    Ok((kernel_copy, initrd))
}

/// Write `path` by `write` under a temporary name, then rename it into place.
fn make(path: &Path, write: impl FnOnce((File, &Path)) -> Result<()>) -> Result<()> {
    let tmp = path.with_file_name(format!(".vm.{}", newfile::random_suffix()));
    let file = newfile::create(&tmp, 0o600).at(&tmp, "cannot create")?;
    let written = write((file, &tmp)).and_then(|()| std::fs::rename(&tmp, path).at(path, "cannot rename"));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// An error unless `kernel` has virtio-fs, as a module (`modules.dep`) or built in
/// (`modules.builtin`): without it the guest could not mount its root.
fn require_virtiofs(kernel: &Kernel) -> Result<()> {
    let listed = |file: &str| {
        kernel.modpath.read(file).is_ok_and(|text| {
            String::from_utf8_lossy(&text)
                .lines()
                .any(|l| l.split(':').next().is_some_and(|m| m.contains("/virtiofs.ko")))
        })
    };
    if listed("modules.dep") || listed("modules.builtin") {
        return Ok(());
    }
    Err(Error::new(format!(
        "run --vm: the kernel {} ({}) has no virtio-fs (CONFIG_VIRTIO_FS): install a kernel with it, or pass --kernel",
        kernel.path.display(),
        kernel.version
    )))
}
