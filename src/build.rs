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
    // Refuse a bad output, and choose the kernel, before the long work (and before the freshness
    // check, so that the refusal does not depend on --if-newer).
    check_apart(&opts.inputs, &opts.out)?;
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
/// the inputs, building inside one would copy the input into itself (`slim`), and the next
/// build would read the output as an input. (`--force` does not change this.) Shared by
/// `--build`, `materialize` and `slim`, and called before anything is written. Inputs given as
/// files count as themselves: an output beside them in their directory is allowed.
///
/// Paths are compared by identity (device and inode), not by spelling, so `IN/.`, `IN/../IN`,
/// a relative path, a symlink to IN and a bind mount of IN are all IN.
pub fn check_apart(inputs: &[PathBuf], out: &Path) -> Result<()> {
    // `/` contains every input; what is wrong with it is more than that.
    if std::fs::canonicalize(out).is_ok_and(|p| p == Path::new("/")) {
        bail!("{}: refusing to replace the root directory (choose an output directory)", out.display());
    }
    let output = Place::of(out);
    for input in inputs {
        let place = Place::of(input);
        if place.own.is_empty() {
            continue; // it does not exist: reading it will say so
        }
        let relation = if output.own.iter().any(|id| place.own.contains(id)) {
            "is"
        } else if output.above.iter().any(|id| place.own.contains(id)) {
            "is inside"
        } else if place.above.iter().any(|id| output.own.contains(id)) {
            "contains"
        } else {
            continue;
        };
        // An input directory's sibling; for an input file, its directory's.
        let real = std::fs::canonicalize(input).unwrap_or_else(|_| input.clone());
        let suggested = if real.is_dir() { real.as_path() } else { real.parent().unwrap_or(&real) };
        bail!(
            "{}: the output {relation} the input {}: choose an output directory outside the inputs (e.g. -o {}.out)",
            out.display(),
            input.display(),
            suggested.display()
        );
    }
    Ok(())
}

/// A file's identity: its device and inode numbers.
type Id = (u64, u64);

/// Where a path is, as identities: what it names, and every directory it lies inside.
struct Place {
    /// The entry itself (a final symlink: the link, which is what an output would replace) and
    /// what it resolves to.
    own: Vec<Id>,
    /// Every directory above it, up to `/`: above the resolved path, and above the path as
    /// named (a symlink's own directory; for a path that does not exist yet, its first existing
    /// ancestor and what is above that).
    above: Vec<Id>,
}

impl Place {
    fn of(path: &Path) -> Place {
        use std::os::unix::fs::MetadataExt;
        let id = |m: std::fs::Metadata| (m.dev(), m.ino());
        let own = [std::fs::symlink_metadata(path), std::fs::metadata(path)].into_iter().flatten().map(id).collect();
        let mut above = Vec::new();
        let mut add = |dir: Option<&Path>| {
            above.extend(dir.into_iter().flat_map(Path::ancestors).filter_map(|a| std::fs::metadata(a).ok()).map(id))
        };
        if let Ok(real) = std::fs::canonicalize(path) {
            add(real.parent());
        }
        // `IN/..` names IN's parent, which is not inside IN: only a last component that is a
        // name is inside the path before it.
        if path.file_name().is_some() {
            let dot = |a: &Path| if a.as_os_str().is_empty() { PathBuf::from(".") } else { a.to_path_buf() };
            let existing = path.ancestors().skip(1).find_map(|a| std::fs::canonicalize(dot(a)).ok());
            add(existing.as_deref());
        }
        Place { own, above }
    }
}
