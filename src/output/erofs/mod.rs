//! Our own EROFS writer: the appliance's *metadata* as an EROFS image, the kernel-side twin of
//! the FUSE view (composefs's design). Mounted (file-backed EROFS) and used as an overlayfs
//! lower layer over a data-only layer (`/` or the sysroot), it is the appliance read by the
//! kernel with no daemon:
//!
//! - a host file is an overlayfs *metacopy* stub: its real size but no data (one chunk, a
//!   hole), `trusted.overlay.metacopy` and `trusted.overlay.redirect` = its path in the data
//!   layer; no host byte is read to write the image;
//! - base-image members and bytes we made are stored as data, as are directories and symlink
//!   targets; every inode carries the mode, owner, time, device and link count the chroot
//!   build gives, and hard links share one inode.
//!
//! Not the `composefs` crate: see ARCHITECTURE.md. `layout` plans nids and blocks, `format`
//! is the on-disk structures, `write` writes the plan. `fsck.erofs` and the kernel are the
//! test oracles.

use std::fs::File;
use std::path::Path;

use crate::error::{IoContext, Result};
use crate::manifest::Manifest;
use crate::util::dirfd::Dir;

mod format;
mod layout;
mod write;

/// The image's name in the output directory.
pub const FILE: &str = "root.erofs";

/// Write `manifest` as an EROFS metadata image to `out` (`shown` in messages).
pub fn write(manifest: &Manifest, out: File, shown: &Path) -> Result<()> {
    write_with(manifest, &[], out, shown)
}

/// [`write()`], the root carrying `root_xattrs` (`user.` names without the prefix, and values):
/// a kernel view's record.
pub fn write_with(manifest: &Manifest, root_xattrs: &[(Vec<u8>, Vec<u8>)], out: File, shown: &Path) -> Result<()> {
    let plan = layout::plan(manifest, root_xattrs)?;
    write::write(manifest, &plan, &out, shown, super::ext2::uuid(manifest))?;
    log::debug!("erofs: {} inodes, {} blocks", plan.placed.len(), plan.blocks);
    Ok(())
}

/// `-f erofs`: the image as [`FILE`] in the output directory.
pub fn write_file(manifest: &Manifest, dir: &Dir) -> Result<()> {
    let path = dir.shown(Path::new(FILE));
    let file = dir.create_file(Path::new(FILE), 0o644, false).at(&path, "cannot create")?;
    write(manifest, file, &path)
}
