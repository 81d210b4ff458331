//! Writing a resolved appliance: the formats (`chroot`, `ext2`, `initramfs`, `tar`), each a writer
//! of the one [`Manifest`], and what every output shares: a staging directory swapped into
//! place atomically (`staging`) and the `--if-newer` fingerprint (`freshness`).

use std::path::Path;

use crate::boot::{initrd, kernel::Kernel};
use crate::error::{Error, Result};
use crate::manifest::Manifest;
use crate::resolve;
use staging::Shape;

mod chroot;
mod ext2;
pub mod freshness;
mod initramfs;
pub mod staging;
pub mod tar;

/// What `-f` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Chroot,
    Ext2,
    Initramfs,
    Tar,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "chroot" | "fs" | "filesystem" => Some(Format::Chroot),
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
    pub kernel: &'a Kernel,
    /// `/`, or the `--sysroot` the kernel's modules are read from.
    pub root: &'a Path,
    pub copy_kernel: bool,
    /// `--size` of the ext2 image.
    pub size: Option<u64>,
}

/// The original's default `--size`: 4 GiB (sparse).
const DEFAULT_SIZE: u64 = 4 << 30;

/// Write `manifest` in `format` into the (empty, staging) directory `out`; `boot` is required
/// for the bootable formats.
pub fn write(format: Format, mut manifest: Manifest, out: &Path, boot: Option<Boot>) -> Result<()> {
    let boot = match (format, boot) {
        (Format::Chroot, _) => return chroot::write(&manifest, out),
        (Format::Tar, _) => return tar::write_file(&manifest, out),
        (_, Some(boot)) => boot,
        (_, None) => return Err(Error::new(format!("{format:?} output needs a kernel"))),
    };
    let k = boot.kernel;
    resolve::add_host_tree(&mut manifest, boot.root, &k.modpath, &format!("/lib/modules/{}", k.version))?;
    k.install(&out.join("kernel"), boot.copy_kernel)?;
    if format == Format::Initramfs {
        return initramfs::write(&manifest, &out.join("initrd"));
    }
    // The initrd is small and independent of the image: make it meanwhile.
    let initrd = out.join("initrd");
    std::thread::scope(|s| {
        let mini = s.spawn(|| initrd::write(&k.modpath, &initrd));
        let image = ext2::write(&manifest, &out.join("root"), boot.size.unwrap_or(DEFAULT_SIZE), ext2::uuid(&manifest));
        image.and(mini.join().unwrap_or_else(|_| Err(Error::new("initrd: internal error"))))
    })
}
