//! Writing a resolved appliance: the formats (`chroot`, `erofs`, `ext2`, `initramfs`, `tar`), each a writer
//! of the one [`Manifest`], and what every output shares: a staging directory swapped into
//! place atomically (`staging`) and the `--if-newer` fingerprint (`freshness`).

use std::path::Path;

use std::sync::Arc;

use crate::boot::modules::{self, Modules};
use crate::boot::{initrd, kernel::Kernel};
use crate::error::{Error, IoContext, Result};
use crate::host::HostFile;
use crate::manifest::{Content, Inode, Manifest, Meta, Node, S_IFREG};
use crate::resolve;
use crate::util::dirfd::Dir;
use staging::Shape;

mod chroot;
pub mod erofs;
mod ext2;
pub mod freshness;
mod initramfs;
pub mod staging;
pub mod tar;

/// Open a host file of the manifest for copying (`size` bytes, as resolved), through
/// [`HostFile::open`]. A file we may not read or that is gone is left out with a warning, as
/// the original's writers do (`cp` skips it); a file that changed into another one since the
/// resolve is an error, never another file's bytes.
pub(crate) fn open_host(file: &HostFile, size: u64) -> Result<Option<std::fs::File>> {
    match file.open(size) {
        Ok(f) => Ok(Some(f)),
        Err(e) if matches!(e.kind(), std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::NotFound) => {
            log::warn!("{}: {} (skipped)", file.path.display(), crate::error::strerror(&e));
            Ok(None)
        }
        Err(e) => Err(Error::io(&file.path, "cannot read", e)),
    }
}

/// The file type a directory entry records for an `st_mode`: the same codes in ext2's
/// `ext2_dir_entry_2` and EROFS's `erofs_dirent` (the kernel's `FT_*`).
pub(crate) fn dirent_type(mode: u32) -> u8 {
    match mode & crate::manifest::S_IFMT {
        0o100000 => 1,
        0o040000 => 2,
        0o020000 => 3,
        0o060000 => 4,
        0o010000 => 5,
        0o140000 => 6,
        0o120000 => 7,
        _ => 0,
    }
}

/// What `-f` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Chroot,
    /// The metadata image of a kernel view (overlayfs metacopy stubs over the host's files).
    Erofs,
    Ext2,
    Initramfs,
    Tar,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "chroot" | "fs" | "filesystem" => Some(Format::Chroot),
            "erofs" => Some(Format::Erofs),
            "ext2" => Some(Format::Ext2),
            "initramfs" => Some(Format::Initramfs),
            "tar" => Some(Format::Tar),
            _ => None,
        }
    }

    /// Files inside the output directory that a complete output has.
    pub fn output_files(self) -> &'static [&'static str] {
        self.shape().files
    }

    /// What a complete output looks like (to recognise one that may be replaced).
    pub fn shape(self) -> Shape {
        let (name, files): (_, &'static [&'static str]) = match self {
            Format::Chroot => ("chroot", &[]),
            Format::Erofs => ("erofs", &[erofs::FILE]),
            Format::Ext2 => ("ext2", &["kernel", "initrd", "root"]),
            Format::Initramfs => ("initramfs", &["kernel", "initrd"]),
            Format::Tar => ("tar", &[tar::FILE]),
        };
        Shape { name, files, optional: &[] }
    }

    /// Whether the format boots, and so needs a kernel.
    pub fn needs_kernel(self) -> bool {
        matches!(self, Format::Ext2 | Format::Initramfs)
    }
}

/// How a bootable output is made.
pub struct Boot<'a> {
    /// The kernel, which knows the root (`/` or the `--sysroot`) its modules are read in.
    pub kernel: &'a Kernel,
    pub copy_kernel: bool,
    /// `--size` of the ext2 image.
    pub size: Option<u64>,
    /// `--modules`, if given (else: the whole tree for ext2, as the original; the VM's set for
    /// initramfs, which must fit in the VM's memory).
    pub modules: Option<Modules>,
}

/// The original's default `--size`: 4 GiB (sparse).
const DEFAULT_SIZE: u64 = 4 << 30;

/// Write `manifest` in `format` into the (empty, staging) directory `out`; `boot` is required
/// for the bootable formats.
pub fn write(format: Format, manifest: Manifest, out: &Dir, boot: Option<Boot>) -> Result<()> {
    write_format(format, manifest, out, boot)?;
    if format != Format::Chroot {
        // A chroot's root takes the appliance root's mode; the files of the others are in a
        // plain directory.
        out.set_mode(0o755).at(out.path(), "cannot set permissions")?;
    }
    Ok(())
}

fn write_format(format: Format, mut manifest: Manifest, out: &Dir, boot: Option<Boot>) -> Result<()> {
    let boot = match (format, boot) {
        (Format::Chroot, _) => return chroot::write(&manifest, out),
        (Format::Tar, _) => return tar::write_file(&manifest, out),
        (Format::Erofs, _) => return erofs::write_file(&manifest, out),
        (_, Some(boot)) => boot,
        (_, None) => return Err(Error::new(format!("{format:?} output needs a kernel"))),
    };
    let k = boot.kernel;
    let default = if format == Format::Initramfs { Modules::Vm } else { Modules::All };
    let which = boot.modules.unwrap_or(default);
    add_modules(&mut manifest, &boot, which)?;
    k.install(out, "kernel", boot.copy_kernel)?;
    let initrd = out.shown(Path::new("initrd"));
    let initrd = (create(out, "initrd", false)?, initrd.as_path());
    if format == Format::Initramfs {
        let config = k.config();
        let compression = initramfs::Compression::for_kernel(config.as_deref());
        let all_modules = which == Modules::All;
        let target = initramfs::Target { compression, kernel_memory: k.memory(), all_modules };
        return initramfs::write(&manifest, initrd, &target);
    }
    let root = out.shown(Path::new("root"));
    let root = (create(out, "root", true)?, root.as_path());
    // The initrd is small and independent of the image: make it meanwhile.
    std::thread::scope(|s| {
        let mini = s.spawn(|| initrd::write(&k.modpath, initrd::EXT2, initrd));
        let image = ext2::write(&manifest, root, boot.size.unwrap_or(DEFAULT_SIZE), ext2::uuid(&manifest));
        image.and(mini.join().unwrap_or_else(|_| Err(Error::new("initrd: internal error"))))
    })
}

/// The new file `name` of the output (readable too with `read`), mode 0644.
fn create(out: &Dir, name: &str, read: bool) -> Result<std::fs::File> {
    out.create_file(Path::new(name), 0o644, read).at(&out.shown(Path::new(name)), "cannot create")
}

/// Add the kernel's modules directory at `/lib/modules/VERSION`: all of it, or the modules
/// `which` keeps with their metadata rewritten.
fn add_modules(manifest: &mut Manifest, boot: &Boot, which: Modules) -> Result<()> {
    let k = boot.kernel;
    let target = format!("/lib/modules/{}", k.version);
    // The directory is read inside its own root: the sysroot, or the build host for
    // SUPERMIN_MODULES.
    let (root, dir) = (k.modpath.root(), k.modpath.inside());
    if which == Modules::All {
        return resolve::add_host_tree(manifest, root, dir, &target, &|_| true);
    }
    let selection = modules::select(&k.modpath, modules::VM_MODULES)?;
    resolve::add_host_tree(manifest, root, dir, &target, &|rel| selection.keeps(rel))?;
    for (name, bytes) in selection.files {
        let path = format!("{target}/{name}");
        // The host file's owner, mode and time; the new size.
        let meta = manifest
            .lookup(path.as_bytes(), false)
            .map_or(Meta { mode: S_IFREG | 0o644, ..Meta::default() }, |ino| manifest.inode(ino).meta);
        let meta = Meta { size: bytes.len() as u64, ..meta };
        manifest.create(path.as_bytes(), Inode { meta, node: Node::File(Content::Inline(Arc::new(bytes))) }, true);
    }
    Ok(())
}
