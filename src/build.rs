//! `--build` (and `materialize`): lock-free freshness check, kernel choice, resolve, write
//! into a staging directory, record the fingerprint, swap into place.

use std::path::{Path, PathBuf};

use log::info;

use crate::bail;
use crate::boot::kernel;
use crate::boot::modules::Modules;
use crate::error::Result;
use crate::inputs::{cache::ImageCache, Inputs};
use crate::output::freshness::{self, Sources};
use crate::output::staging::{Replace, Staging};
use crate::output::{self, Boot, Format};
use crate::packager::{Driver, PackageManager};
use crate::resolve::{self, Resolved, Settings};

pub struct Options {
    pub inputs: Vec<PathBuf>,
    pub out: PathBuf,
    pub format: Format,
    pub if_newer: bool,
    pub settings: Settings,
    pub copy_kernel: bool,
    pub host_cpu: String,
    pub size: Option<u64>,
    pub root: PathBuf,
    /// `--force`: replace `out` even when it is not an earlier output.
    pub force: bool,
    /// `--modules`, if given.
    pub modules: Option<Modules>,
}

impl Options {
    /// Everything besides inputs and the package database that changes the output.
    fn settings(&self) -> String {
        let env: Vec<String> = ["SUPERMIN_KERNEL", "SUPERMIN_KERNEL_VERSION", "SUPERMIN_MODULES"]
            .iter()
            .map(|k| format!("{k}={}", std::env::var(k).unwrap_or_default()))
            .collect();
        format!(
            "{:?} {:?} copy_kernel={} cpu={} size={:?} modules={:?} root={} {}",
            self.format,
            self.settings,
            self.copy_kernel,
            self.host_cpu,
            self.size,
            self.modules,
            self.root.display(),
            env.join(" ")
        )
    }
}

/// Read the inputs and resolve them to a manifest (shared with `mount`, which passes a
/// `cache` so that base images are mapped from disk instead of kept in the heap).
pub fn resolve_inputs(
    pm: &dyn PackageManager,
    inputs: &[PathBuf],
    root: &Path,
    settings: Settings,
    cache: Option<&ImageCache>,
) -> Result<Resolved> {
    resolve_read(pm, &Inputs::read(inputs, cache)?, root, settings)
}

/// [`resolve_inputs`] for inputs already read.
pub fn resolve_read(pm: &dyn PackageManager, inputs: &Inputs, root: &Path, settings: Settings) -> Result<Resolved> {
    resolve::resolve_at(pm, inputs, root, settings, crate::util::now())
}

pub fn build(driver: Driver, opts: &Options) -> Result<()> {
    if opts.out == Path::new("-") {
        return build_to_stdout(driver, opts);
    }
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
    // Refuse a bad output, and choose the kernel, before the long work.
    check_apart(&opts.inputs, &opts.out)?;
    let staging = Staging::new(&opts.out, Replace { shape: opts.format.shape(), force: opts.force })?;
    let kernel = match opts.format.needs_kernel() {
        true => Some(kernel::find(&opts.root, &opts.host_cpu)?),
        false => None,
    };
    let started = std::time::Instant::now();
    let manifest = resolve::cache::resolve(driver, &opts.inputs, &opts.root, opts.settings)?;
    info!("resolved the appliance in {} ms", started.elapsed().as_millis());
    let boot = kernel.as_ref().map(|kernel| Boot {
        kernel,
        root: &opts.root,
        copy_kernel: opts.copy_kernel,
        size: opts.size,
        modules: opts.modules,
    });
    output::write(opts.format, manifest, staging.dir(), boot)?;
    info!("wrote the output in {} ms", started.elapsed().as_millis());
    freshness::record(staging.path(), &sources);
    staging.commit()
}

/// `-f tar -o -`: the archive on standard output (no staging, nothing to replace, nothing to
/// keep fresh).
fn build_to_stdout(driver: Driver, opts: &Options) -> Result<()> {
    if opts.format != Format::Tar {
        bail!("-o -: only -f tar can be written to standard output");
    }
    let pm = driver.open(&opts.root)?;
    let resolved = resolve_inputs(pm.as_ref(), &opts.inputs, &opts.root, opts.settings, None)?;
    output::tar::write(&resolved.manifest, std::io::stdout().lock(), Path::new("standard output"))
}

/// Refuse an output that is an input, holds one or lies inside one: replacing it would delete
/// the inputs, or the next build would read the output as an input. (`--force` does not
/// change this.)
fn check_apart(inputs: &[PathBuf], out: &Path) -> Result<()> {
    // The output as it will be replaced: a final symlink is the link, not its target.
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let Some(out_abs) = out.file_name().and_then(|name| Some(std::fs::canonicalize(parent).ok()?.join(name))) else {
        return Ok(()); // no usable name or parent: the staging directory says so
    };
    for input in inputs {
        let Ok(input_abs) = std::fs::canonicalize(input) else { continue }; // reading it will say why
        let relation = if out_abs == input_abs {
            "is"
        } else if input_abs.starts_with(&out_abs) {
            "contains"
        } else if out_abs.starts_with(&input_abs) {
            "is inside"
        } else {
            continue;
        };
        bail!(
            "{}: the output {relation} the input {}: choose an output directory outside the inputs (e.g. -o {}.out)",
            out.display(),
            input.display(),
            input_abs.display()
        );
    }
    Ok(())
}
