//! `mount --kernel`: the view in the kernel, with no daemon (issue 20). The manifest becomes an
//! EROFS image of its metadata (`output::erofs`: host files as overlayfs metacopy stubs that
//! redirect into the host root or the sysroot), cached per manifest in the user's private
//! cache directory, so a second mount of the same appliance writes nothing. The image is
//! mounted from its file (file-backed EROFS), then a read-only overlay takes it as its upper
//! lower layer and the root (`/` or the sysroot) as a data-only layer (`lowerdir=META::DATA`):
//! a read goes to the host file's own page cache, shared with the host and every other view.
//! The image's mount is detached as soon as the overlay holds it, so the overlay at the
//! mountpoint is the only mount to see, and `umount` of it frees everything.
//!
//! The kernel resolves a redirect component by component inside the data layer and follows
//! no symlink there: a host file swapped for a symlink reads as an error, never the target.

use std::collections::hash_map::DefaultHasher;
use std::fs;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};

use super::{mountpoint, MountOptions};
use crate::error::{Error, IoContext, Result};
use crate::inputs::cache::ImageCache;
use crate::manifest::Manifest;
use crate::output::{erofs, staging};
use crate::util::sys;
use crate::view::Record;

/// Why a kernel view was not mounted.
pub enum Refusal {
    /// This system or these options cannot have one (not root, `--trace`, a kernel feature
    /// missing): nothing was mounted, and the default serves the FUSE view instead.
    Unsupported(String),
    /// One was possible, but this mount failed (the mountpoint, the cache, the image).
    Failed(Error),
}

/// `mount --kernel`: the kernel view, or an error saying why not.
pub fn mount(opts: &MountOptions) -> Result<()> {
    try_mount(opts).map_err(|r| match r {
        Refusal::Unsupported(why) => Error::new(format!("{}: no kernel view: {why}", opts.mountpoint.display())),
        Refusal::Failed(e) => e,
    })
}

/// Mount the appliance of `opts` at its mountpoint as an overlay over an EROFS image.
pub fn try_mount(opts: &MountOptions) -> std::result::Result<(), Refusal> {
    if let Some(why) = unsupported_options(opts) {
        return Err(Refusal::Unsupported(why.into()));
    }
    let abs = mountpoint::check(&opts.mountpoint).map_err(Refusal::Failed)?;
    let manifest = super::resolve_manifest(opts).map_err(Refusal::Failed)?;
    let cache = ImageCache::open_default().ok_or_else(|| {
        Refusal::Failed(Error::new("mount --kernel: no private cache directory for the image (see -v)"))
    })?;
    let record = super::record_of(opts);
    let started = std::time::Instant::now();
    let image = cached_image(&cache, &manifest, &record).map_err(Refusal::Failed)?;
    log::debug!("mount --kernel: image found or made in {:?}", started.elapsed());
    remove_abandoned_layers(cache.dir());
    let meta = staging::create_unique(cache.dir(), "layer", 0o700).map_err(Refusal::Failed)?;
    let started = std::time::Instant::now();
    let mounted = mount_layers(&image, &meta, opts, &abs);
    log::debug!("mount --kernel: mounted in {:?}", started.elapsed());
    // The overlay holds the image's mount; ours of it is no longer needed (nor on failure).
    let _ = nix::mount::umount2(&meta, MntFlags::MNT_DETACH);
    let _ = fs::remove_dir(&meta);
    mounted
}

/// What in `opts` rules the kernel view out, whatever the kernel.
fn unsupported_options(opts: &MountOptions) -> Option<&'static str> {
    if !nix::unistd::geteuid().is_root() {
        return Some("it needs root (overlayfs metacopy reads trusted.* xattrs): run as root, or use the FUSE view");
    }
    if opts.trace.is_some() {
        return Some("--trace needs the FUSE view, which sees every use");
    }
    None
}

/// The image of `manifest` in `cache`, written there if it is not yet: named by a hash of
/// everything the image is made from (the tree, and which base images it stores bytes of:
/// each file's identity, as the decompressed-image cache names them, not its bytes).
fn cached_image(cache: &ImageCache, manifest: &Manifest, record: &Record) -> Result<PathBuf> {
    let mut h = DefaultHasher::new();
    hash_tree(manifest, &mut h)?;
    // The root carries the record (`user.supermin.*`), as a FUSE view's root does, minus the
    // daemon's pid: `materialize` and `inspect` read it from a kernel view too.
    let xattrs: Vec<(Vec<u8>, Vec<u8>)> = record
        .xattrs()
        .into_iter()
        .map(|(name, value)| (name.trim_start_matches("user.").as_bytes().to_vec(), value))
        .collect();
    xattrs.hash(&mut h);
    for image in &manifest.images {
        let m = fs::metadata(&image.path).at(&image.path, "cannot stat")?;
        image.path.hash(&mut h);
        crate::inputs::cache::hash_identity(&m, &mut h);
    }
    let name = format!("kernel-{:016x}.erofs", h.finish());
    if let Some(path) = cache.cached(&name) {
        log::info!("mount --kernel: {} (cached)", path.display());
        return Ok(path);
    }
    let path = cache.make(&name, |(file, tmp)| erofs::write_with(manifest, &xattrs, file, tmp))?;
    log::info!("mount --kernel: wrote {}", path.display());
    cache.trim();
    Ok(path)
}

/// Hash the tree as the image would hold it, except directories' times and sizes: a view
/// shows the times its image was made with, as a build's directories show when it was built.
/// Else every mount after a file came or went in `/tmp` (whose time the appliance's `/tmp`
/// takes) would write a new image; what a directory holds is in the hash all the same.
fn hash_tree(manifest: &Manifest, h: &mut DefaultHasher) -> Result<()> {
    struct HashOut<'a>(&'a mut DefaultHasher);
    impl std::io::Write for HashOut<'_> {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.write(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut out = HashOut(h);
    for inode in &manifest.inodes {
        let mut meta = inode.meta;
        if meta.file_type() == crate::manifest::S_IFDIR {
            (meta.mtime, meta.mtime_nsec, meta.size) = (0, 0, 0);
        }
        out = postcard::to_io(&(meta, &inode.node), out).map_err(|e| Error::new(format!("mount --kernel: {e}")))?;
    }
    Ok(())
}

/// Detach and remove `layer.*` directories a killed `mount --kernel` left in the cache (one
/// lives a millisecond: those older than a minute are no one's).
fn remove_abandoned_layers(dir: &Path) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    let old = |m: &fs::Metadata| m.modified().ok().and_then(|t| t.elapsed().ok()).is_some_and(|a| a.as_secs() > 60);
    for e in rd.flatten() {
        let is_layer = e.file_name().to_string_lossy().starts_with("layer.");
        if is_layer && e.metadata().is_ok_and(|m| m.is_dir() && old(&m)) {
            let _ = nix::mount::umount2(&e.path(), MntFlags::MNT_DETACH);
            let _ = fs::remove_dir(e.path());
        }
    }
}

/// Mount `image` at `meta`, then the overlay of it over the data layer at `mp`.
fn mount_layers(image: &Path, meta: &Path, opts: &MountOptions, mp: &Path) -> std::result::Result<(), Refusal> {
    mount_image(image, meta)?;
    let data = fs::canonicalize(&opts.root).at(&opts.root, "cannot resolve").map_err(Refusal::Failed)?;
    let options = format!("lowerdir={}::{},metacopy=on,redirect_dir=follow", escape(meta), escape(&data));
    let mut flags = MsFlags::MS_RDONLY;
    if !opts.suid {
        flags |= MsFlags::MS_NOSUID;
    }
    if !opts.dev {
        flags |= MsFlags::MS_NODEV;
    }
    match nix::mount::mount(Some("supermin"), mp, Some("overlay"), flags, Some(options.as_str())) {
        Ok(()) => Ok(()),
        Err(Errno::EINVAL | Errno::ENODEV) => Err(Refusal::Unsupported(format!(
            "this kernel ({}) has no overlayfs with data-only lower layers (Linux 6.5 or later)",
            kernel_release()
        ))),
        Err(e) => {
            Err(Refusal::Failed(Error::new(format!("{}: cannot mount the overlay: {e}", opts.mountpoint.display()))))
        }
    }
}

/// Mount the EROFS `image` read-only at `meta`: from the file itself where the kernel can
/// (Linux 6.12+ with EROFS_FS_BACKED_BY_FILE), else through a loop device with autoclear
/// (also when `SUPERMIN_EROFS_LOOP=1`, which tests that path on newer kernels).
fn mount_image(image: &Path, meta: &Path) -> std::result::Result<(), Refusal> {
    let ro = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    let forced_loop = std::env::var_os("SUPERMIN_EROFS_LOOP").is_some_and(|v| v == "1");
    let from_file = if forced_loop {
        Err(Errno::ENOTBLK)
    } else {
        nix::mount::mount(Some(image), meta, Some("erofs"), ro, None::<&str>)
    };
    let failed =
        |e: String| Refusal::Failed(Error::new(format!("{}: cannot mount the view's image: {e}", image.display())));
    match from_file {
        Ok(()) => return Ok(()),
        Err(Errno::ENODEV) => {
            return Err(Refusal::Unsupported(format!("this kernel ({}) has no EROFS", kernel_release())))
        }
        Err(Errno::ENOTBLK) => {}
        Err(e) => return Err(failed(e.to_string())),
    }
    let file = fs::File::open(image).map_err(|e| failed(e.to_string()))?;
    let (dev, path) = sys::attach_loop(&file).map_err(|e| {
        Refusal::Unsupported(format!(
            "this kernel ({}) cannot mount an EROFS image from a file (Linux 6.12+), and no loop device: {e}",
            kernel_release()
        ))
    })?;
    log::info!("mount --kernel: the image through {}", path.display());
    let mounted = nix::mount::mount(Some(&path), meta, Some("erofs"), ro, None::<&str>);
    // The mount now holds the device; closing ours lets autoclear detach it at the unmount.
    drop(dev);
    mounted.map_err(|e| failed(format!("through {}: {e}", path.display())))
}

/// A path in overlayfs's mount options: `,`, `:` and `\` escaped with a backslash.
fn escape(path: &Path) -> String {
    let mut out = String::new();
    for c in path.to_string_lossy().chars() {
        if matches!(c, ',' | ':' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn kernel_release() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease").map(|r| r.trim().to_string()).unwrap_or_default()
}
