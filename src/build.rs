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
use crate::{chroot, sys};

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
    match opts.format {
        Format::Chroot => {}
        Format::Ext2 | Format::Initramfs => {
            return Err(Error::new(format!(
                "build: -f {} is not implemented yet in this version (use -f chroot)",
                if opts.format == Format::Ext2 { "ext2" } else { "initramfs" }
            )))
        }
    }
    let pm = driver.open(&opts.root)?;
    let resolved = resolve_inputs(pm.as_ref(), &opts.inputs, &opts.root, opts.include_packagelist)?;
    let staging = Staging::new(&opts.out)?;
    chroot::write(&resolved.manifest, staging.path())?;
    freshness::record(staging.path(), &sources);
    staging.commit()
}
