//! `run --vm`'s mini initrd, made once per kernel and this binary and kept in the private
//! cache directory: this binary as `/init` and the modules [`crate::boot::initrd::VM`] names,
//! decompressed, in load order.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use crate::boot::initrd;
use crate::boot::kernel::Kernel;
use crate::error::{Error, IoContext, Result};
use crate::inputs::cache::ImageCache;
use crate::util::newfile;

/// The initrd for `kernel`, from the cache or written there.
pub fn cached(kernel: &Kernel) -> Result<PathBuf> {
    let cache = ImageCache::open_default()
        .ok_or_else(|| Error::new("run --vm: no private cache directory for the initrd (see -v)"))?;
    let mut h = DefaultHasher::new();
    kernel.version.hash(&mut h);
    kernel.modpath.shown("modules.dep").hash(&mut h);
    for f in ["/proc/self/exe".into(), kernel.modpath.shown("modules.dep")] {
        let m = std::fs::metadata(&f).at(&f, "cannot stat")?;
        (m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec()).hash(&mut h);
    }
    let path = cache.dir().join(format!("vm-initrd-{:016x}.cpio", h.finish()));
    if let Ok(f) = std::fs::OpenOptions::new().append(true).open(&path) {
        crate::inputs::cache::touch(&f);
        log::info!("run --vm: the mini initrd {} (cached)", path.display());
        return Ok(path);
    }
    require_virtiofs(kernel)?;
    let tmp = cache.dir().join(format!(".vm-initrd.{}", newfile::random_suffix()));
    let file = newfile::create(&tmp, 0o600).at(&tmp, "cannot create")?;
    let written = initrd::write(&kernel.modpath, initrd::VM, (file, &tmp))
        .and_then(|()| std::fs::rename(&tmp, &path).at(&path, "cannot rename"));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    log::info!("run --vm: wrote the mini initrd {}", path.display());
    cache.trim();
    Ok(path)
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
