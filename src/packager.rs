//! The package-manager seam: everything `prepare` and `build` need from dpkg (or, later, rpm and
//! pacman) goes through the [`PackageManager`] trait, so the rest of the tool never knows which
//! database it is reading.

use std::collections::{BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// An installed package, as an index into the backend's own table.
pub type PkgId = usize;

/// One path owned by a package.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PackageFile {
    /// Where the file appears in the appliance (absolute).
    pub path: String,
    /// Where to read it on the host when different from `path` (a dpkg diversion).
    pub source: Option<String>,
    /// Config files come from the base image that `--prepare` wrote, not from the host.
    pub config: bool,
}

impl PackageFile {
    pub fn source_path(&self) -> &str {
        self.source.as_deref().unwrap_or(&self.path)
    }
}

/// Where a pristine config file's bytes come from during `--prepare`.
pub enum ConfigSource {
    /// The host copy is the pristine one (checksum matches), or `--use-installed` asked for it.
    Host(PathBuf),
    /// Extracted from the package archive.
    Bytes { data: Vec<u8>, mode: u32, mtime: u64 },
}

/// The dpkg and pacman rule for config files (the original's): a regular file under `/etc`.
pub fn is_etc_config(root: &Path, path: &str) -> bool {
    path.starts_with("/etc/") && crate::host::lstat(root, path).map(|m| m.is_file()).unwrap_or(false)
}

/// The installed packages `names` stand for, sorted and each once, as `find` resolves a name;
/// names that resolve to nothing are ignored with a note, as in the original.
pub fn resolve_each(names: &[String], mut find: impl FnMut(&str) -> Option<PkgId>) -> Vec<PkgId> {
    let mut out = BTreeSet::new();
    for name in names {
        match find(name) {
            Some(id) => {
                out.insert(id);
            }
            None => log::info!("package {name} is not installed: ignored"),
        }
    }
    out.into_iter().collect()
}

/// Every package reachable from `roots` through `deps` (a package's installed direct
/// dependencies, as the backend resolves them), roots included, sorted: the breadth-first
/// walk every backend's `closure` is.
pub fn reachable(roots: &[PkgId], mut deps: impl FnMut(PkgId) -> Vec<PkgId>) -> Vec<PkgId> {
    let mut seen: BTreeSet<PkgId> = roots.iter().copied().collect();
    let mut queue: VecDeque<PkgId> = roots.iter().copied().collect();
    while let Some(id) = queue.pop_front() {
        for dep in deps(id) {
            if seen.insert(dep) {
                queue.push_back(dep);
            }
        }
    }
    seen.into_iter().collect()
}

/// What a backend tells [`config_sources`] about one package's config files (every
/// [`PackageManager`] is one).
pub trait ConfigRecords {
    /// The package's files among `wanted`, each with the checksum its database recorded for
    /// the pristine file (`None` when it recorded none).
    fn recorded<'a>(&self, pkg: PkgId, wanted: &BTreeSet<&'a str>) -> Result<Vec<(&'a str, Option<String>)>>;
    /// The checksum of a host file, computed the way `recorded` ones were for `pkg`.
    fn checksum(&self, pkg: PkgId, host: &Path) -> Option<String>;
    /// The named files from the package's archive (found, or fetched into `tmpdir`).
    fn extract(&self, pkg: PkgId, paths: &[&str], tmpdir: &Path) -> Result<Vec<(String, ConfigSource)>>;
}

/// `owned` paired with the checksums `sums()` returns for them (path → hex), for
/// [`ConfigRecords::recorded`]; `sums` is read only when there is something to look up.
pub fn with_checksums(
    owned: Vec<&str>,
    sums: impl FnOnce() -> std::collections::HashMap<String, String>,
) -> Vec<(&str, Option<String>)> {
    if owned.is_empty() {
        return Vec::new();
    }
    let sums = sums();
    owned.into_iter().map(|p| (p, sums.get(p).cloned())).collect()
}

/// The pristine content of each config file, for `--prepare` (every backend's rule, the
/// original's): with `--use-installed` the host copy as it is; otherwise, package by
/// package, the host copy where its checksum equals the recorded one and the package
/// archive's copy for the rest, so an archive is opened only for a package with a modified
/// (or missing) config file. Only regular files go into the base image: a config entry that
/// is a symlink or directory on the host is left out (reading a link could leave the root).
/// The result is sorted by path.
pub fn config_sources(
    root: &Path,
    pkgs: &[PkgId],
    configs: &[PackageFile],
    use_installed: bool,
    tmpdir: &Path,
    records: &dyn ConfigRecords,
) -> Result<Vec<(String, ConfigSource)>> {
    use crate::host;
    let not_regular = |p: &str| host::lstat(root, p).is_ok_and(|m| !m.is_file());
    let wanted: BTreeSet<&str> = configs.iter().map(|f| f.path.as_str()).filter(|p| !not_regular(p)).collect();
    let mut out = Vec::new();
    if use_installed {
        let present = wanted.into_iter().filter(|p| host::lstat(root, p).is_ok());
        out.extend(present.map(|p| (p.to_string(), ConfigSource::Host(host::path(root, p)))));
        return Ok(out);
    }
    // A file owned by several packages is judged by the first.
    let mut done: BTreeSet<&str> = BTreeSet::new();
    for &pkg in pkgs {
        let mut need = Vec::new();
        for (path, sum) in records.recorded(pkg, &wanted)? {
            if !done.insert(path) {
                continue;
            }
            let host_path = host::path(root, path);
            match sum {
                Some(sum) if !sum.is_empty() && records.checksum(pkg, &host_path).as_deref() == Some(sum.as_str()) => {
                    out.push((path.to_string(), ConfigSource::Host(host_path)));
                }
                _ => need.push(path),
            }
        }
        if !need.is_empty() {
            out.extend(records.extract(pkg, &need, tmpdir)?);
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// MD5 of a file as lowercase hex (dpkg and pacman record config files' sums this way).
pub fn md5_file(path: &Path) -> Option<String> {
    use md5::{Digest, Md5};
    let data = std::fs::read(path).ok()?;
    Some(Md5::digest(&data).iter().map(|b| format!("{b:02x}")).collect())
}

/// The regular-file members named in `paths` (absolute, `./` prefix optional in the archive)
/// of the tar stream a package tool writes to `child`'s stdout, sorted by path. The caller
/// waits for `child` and judges its exit status.
pub fn members_from_tar_stream(
    child: &mut std::process::Child,
    package: &Path,
    paths: &[&str],
) -> Result<Vec<(String, ConfigSource)>> {
    use std::io::Read;
    let wanted: std::collections::BTreeSet<&str> = paths.iter().copied().collect();
    let mut out = std::collections::BTreeMap::new();
    let stdout = child.stdout.take().expect("stdout piped");
    let mut archive = tar::Archive::new(stdout);
    let entries = archive.entries().map_err(|e| Error::new(format!("{}: {e}", package.display())))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| Error::new(format!("{}: corrupt package: {e}", package.display())))?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let path = format!("/{}", name.trim_start_matches("./"));
        if !wanted.contains(path.as_str()) || entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let mode = entry.header().mode().unwrap_or(0o644);
        let mtime = entry.header().mtime().unwrap_or(0);
        let mut data = Vec::new();
        entry.read_to_end(&mut data).map_err(|e| Error::new(format!("{}: {e}", package.display())))?;
        out.insert(path, ConfigSource::Bytes { data, mode, mtime });
    }
    Ok(out.into_iter().collect())
}

/// A backend; what `--prepare` needs for config files is its [`ConfigRecords`] side.
pub trait PackageManager: ConfigRecords {
    /// `dpkg`, `rpm`, `pacman`.
    fn name(&self) -> &'static str;

    /// Map names given by the user to installed packages; names that are not installed are
    /// dropped (and logged), as in the original.
    fn resolve_names(&self, names: &[String]) -> Vec<PkgId>;

    /// The dependency closure of `roots`, sorted, each package once.
    fn closure(&self, roots: &[PkgId]) -> Vec<PkgId>;

    /// Every file of the given packages, sorted by path, each path once.
    fn files(&self, pkgs: &[PkgId]) -> Result<Vec<PackageFile>>;

    /// The bare name (what `--prepare` writes to `packages`).
    fn package_name(&self, pkg: PkgId) -> &str;

    /// `name_version_arch` and the like, for `--include-packagelist`.
    fn pretty_name(&self, pkg: PkgId) -> String;

    /// The database files (what [`Driver::database_files`] names), for times derived from
    /// the installed set.
    fn database_files(&self) -> Vec<PathBuf>;
}

/// The package managers we can drive, in the order the original lists its drivers.
pub const DRIVERS: &[(&str, &str)] = &[
    ("arch", "pacman"),
    ("debian", "dpkg"),
    ("openmandriva", "rpm"),
    ("mageia", "rpm"),
    ("opensuse", "rpm"),
    ("ibm_powerkvm", "rpm"),
    ("fedora", "rpm"),
];

/// The package manager of the host rooted at `root`, detected but not yet opened: opening
/// reads the whole database, which `--if-newer` must not pay for when there is nothing to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    Dpkg,
    Rpm,
    Pacman,
}

impl Driver {
    /// `--packager NAME`: the backend chosen by the user, for roots whose release files lie.
    pub fn from_name(name: &str) -> Result<Driver> {
        match name {
            "dpkg" => Ok(Driver::Dpkg),
            "rpm" => Ok(Driver::Rpm),
            "pacman" => Ok(Driver::Pacman),
            _ => Err(Error::usage(format!("--packager: unknown package manager '{name}' (dpkg, rpm or pacman)"))),
        }
    }

    /// The first detected driver of [`DRIVERS`], in the original's order.
    pub fn detect(root: &Path) -> Result<Driver> {
        for (system, packager) in DRIVERS {
            if detected(root, system) {
                return Driver::from_name(packager);
            }
        }
        let place = if root == Path::new("/") { "this system".to_string() } else { root.display().to_string() };
        Err(Error::new(format!(
            "could not detect the package manager used by {place} (no known os-release ID or release \
             file with its package database): use --packager dpkg|rpm|pacman"
        )))
    }

    /// Files whose modification means the installed set changed (for `--if-newer`).
    pub fn database_files(self, root: &Path) -> Vec<PathBuf> {
        match self {
            Driver::Dpkg => crate::dpkg::database_files(root),
            Driver::Rpm => crate::rpm::database_files(root),
            Driver::Pacman => crate::pacman::database_files(root),
        }
    }

    pub fn open(self, root: &Path) -> Result<Box<dyn PackageManager>> {
        match self {
            Driver::Dpkg => Ok(Box::new(crate::dpkg::Dpkg::open(root)?)),
            Driver::Rpm => Ok(Box::new(crate::rpm::Rpm::open(root)?)),
            Driver::Pacman => Ok(Box::new(crate::pacman::Pacman::open(root)?)),
        }
    }
}

/// Whether the driver `system` of [`DRIVERS`] is detected in `root`, for `--list-drivers` and
/// [`Driver::detect`]. The original also requires its helper tools (dnf, zypper, pactree…)
/// on the build host; we read the databases ourselves, so we require the database instead.
pub fn detected(root: &Path, system: &str) -> bool {
    match system {
        "debian" => crate::dpkg::detected(root),
        "arch" => crate::pacman::detected(root),
        _ => crate::rpm::detected(root, system),
    }
}

// Hook for the ext2 output (kernel and modules): like every other host path they must be read
// with `host::path(root, …)`, so `--sysroot` builds a bootable appliance from the root's kernel.
