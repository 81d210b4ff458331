//! `run --vm`'s boot files, made once per kernel and this binary and kept in the private
//! cache directory: a copy of the kernel (read through a descriptor opened inside its root,
//! as every sysroot file is: qemu, run as root, must not open a path a sysroot's owner can
//! point elsewhere) and the mini initrd, this binary as `/init` and the modules
//! [`crate::boot::initrd::VM`] names, decompressed, in load order.

use std::collections::hash_map::DefaultHasher;
use std::fs::File;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use crate::boot::initrd;
use crate::boot::kernel::Kernel;
use crate::error::{Error, IoContext, Result};
use crate::inputs::cache::ImageCache;

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
        crate::inputs::cache::hash_identity(&f.metadata().at(&kernel.path, "cannot stat")?, &mut h);
    }
    let name = format!("vm-{:016x}", h.finish());
    let (kernel_name, initrd_name) = (format!("{name}.kernel"), format!("{name}.initrd"));
    if let (Some(kernel_copy), Some(initrd)) = (cache.cached(&kernel_name), cache.cached(&initrd_name)) {
        log::info!("run --vm: the mini initrd {} (cached)", initrd.display());
        return Ok((kernel_copy, initrd));
    }
    require_virtiofs(kernel)?;
    let kernel_copy = cache.make(&kernel_name, |(mut file, _)| {
        std::io::copy(&mut image, &mut file).map(drop).at(&kernel.path, "cannot copy")
    })?;
    let initrd = cache.make(&initrd_name, |out| initrd::write(&kernel.modpath, initrd::VM, out))?;
    log::info!("run --vm: wrote the mini initrd {}", initrd.display());
    cache.trim();
    Ok((kernel_copy, initrd))
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
