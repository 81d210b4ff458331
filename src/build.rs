//! `--build`: lock, freshness check, resolve, write, swap into place.

use std::path::{Path, PathBuf};

use log::info;
use supermin_fuse::cache::ImageCache;

use crate::error::{Error, Result};
use crate::freshness::{self, Sources};
use crate::inputs::Inputs;
use crate::manifest::Meta;
use crate::outdir::Staging;
use crate::packager::{Driver, PackageManager};
use crate::resolve::{self, Resolved};
use crate::error::IoContext;
use crate::{chroot, ext2, initramfs, initrd, kernel, sys};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Chroot,
    Ext2,
    Initramfs,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "chroot" | "fs" | "filesystem" => Some(Format::Chroot),
            "ext2" => Some(Format::Ext2),
            "initramfs" => Some(Format::Initramfs),
            _ => None,
        }
    }

    /// Files inside the output directory that a complete output has.
    fn output_files(self) -> &'static [&'static str] {
        match self {
            Format::Chroot => &[],
            Format::Ext2 => &["kernel", "initrd", "root"],
            Format::Initramfs => &["kernel", "initrd"],
        }
    }
}

pub struct Options {
    pub inputs: Vec<PathBuf>,
    pub out: PathBuf,
    pub format: Format,
    pub if_newer: bool,
    pub include_packagelist: bool,
    pub copy_kernel: bool,
    pub host_cpu: String,
    pub size: Option<u64>,
    pub root: PathBuf,
}

impl Options {
    /// Everything besides inputs and the package database that changes the output.
    fn settings(&self) -> String {
        let env: Vec<String> = ["SUPERMIN_KERNEL", "SUPERMIN_KERNEL_VERSION", "SUPERMIN_MODULES"]
            .iter()
            .map(|k| format!("{k}={}", std::env::var(k).unwrap_or_default()))
            .collect();
        format!(
            "{:?} packagelist={} copy_kernel={} cpu={} size={:?} root={} {}",
            self.format,
            self.include_packagelist,
            self.copy_kernel,
            self.host_cpu,
            self.size,
            self.root.display(),
            env.join(" ")
        )
    }
}

/// Read the inputs and resolve them to a manifest (shared with `mount` and `materialize`).
pub fn resolve_inputs(pm: &dyn PackageManager, inputs: &[PathBuf], root: &Path, include_packagelist: bool) -> Result<Resolved> {
    resolve_inputs_cached(pm, inputs, root, include_packagelist, None)
}

/// [`resolve_inputs`] with base images kept in `cache` (mapped) instead of the heap: for a
/// mount, which holds them for its whole life.
pub fn resolve_inputs_cached(
    pm: &dyn PackageManager,
    inputs: &[PathBuf],
    root: &Path,
    include_packagelist: bool,
    cache: Option<&ImageCache>,
) -> Result<Resolved> {
    if inputs.is_empty() {
        return Err(Error::new("build: no input supermin appliance specified"));
    }
    let inputs = Inputs::read_cached(inputs, cache)?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let root_meta = Meta { mode: 0o755, uid: sys::geteuid(), gid: sys::getegid(), mtime: now, ..Meta::default() };
    resolve::resolve(&inputs, pm, &resolve::Options { root, include_packagelist, root_meta })
}

pub fn build(driver: Driver, opts: &Options) -> Result<()> {
    let database = driver.database_files(&opts.root);
    let sources = Sources {
        inputs: &opts.inputs,
        database: &database,
        settings: opts.settings(),
        output_files: opts.format.output_files(),
    };
    if opts.if_newer && freshness::is_fresh(&opts.out, &sources) {
        info!("if-newer: output does not need rebuilding");
        return Ok(());
    }
    // Choose the kernel before the long work, so a missing one fails fast.
    let kernel = match opts.format {
        Format::Chroot => None,
        Format::Ext2 | Format::Initramfs => Some(kernel::find(&opts.root, &opts.host_cpu)?),
    };
    let started = std::time::Instant::now();
    let pm = driver.open(&opts.root)?;
    let resolved = resolve_inputs(pm.as_ref(), &opts.inputs, &opts.root, opts.include_packagelist)?;
    info!("resolved the appliance in {} ms", started.elapsed().as_millis());
    let staging = Staging::new(&opts.out)?;
    let out = staging.path();
    match (opts.format, kernel) {
        (Format::Chroot, _) => chroot::write(&resolved.manifest, out)?,
        (Format::Ext2, Some(k)) => {
            let mut manifest = resolved.manifest;
            resolve::add_host_tree(&mut manifest, &opts.root, &k.modpath, &format!("/lib/modules/{}", k.version))?;
            install_kernel(&k, &out.join("kernel"), opts.copy_kernel)?;
            // The initrd is small and independent of the image: make it meanwhile.
            let initrd = out.join("initrd");
            std::thread::scope(|s| {
                let mini = s.spawn(|| initrd::write(&k.modpath, &initrd));
                let image = ext2::write(&manifest, &out.join("root"), opts.size.unwrap_or(DEFAULT_SIZE), ext2::random_uuid());
                image.and(mini.join().unwrap_or_else(|_| Err(Error::new("initrd: internal error"))))
            })?;
        }
        (Format::Initramfs, Some(k)) => {
            let mut manifest = resolved.manifest;
            resolve::add_host_tree(&mut manifest, &opts.root, &k.modpath, &format!("/lib/modules/{}", k.version))?;
            install_kernel(&k, &out.join("kernel"), opts.copy_kernel)?;
            initramfs::write(&manifest, &out.join("initrd"))?;
        }
        _ => unreachable!("kernel chosen above for bootable formats"),
    }
    info!("wrote the output in {} ms", started.elapsed().as_millis());
    freshness::record(out, &sources);
    staging.commit()
}

/// The original's default `--size`: 4 GiB (sparse).
const DEFAULT_SIZE: u64 = 4 << 30;

/// `kernel`: a symlink to the host's kernel, or with `--copy-kernel` a copy (with a fresh
/// mtime, unlike 5.2.2's `cp -p`, so `--if-newer` sees it as new).
fn install_kernel(k: &kernel::Kernel, dest: &Path, copy: bool) -> Result<()> {
    if copy {
        std::fs::copy(&k.path, dest).map(|_| ()).at(&k.path, "cannot copy the kernel")
    } else {
        std::os::unix::fs::symlink(&k.path, dest).at(dest, "cannot create the kernel symlink")
    }
}
