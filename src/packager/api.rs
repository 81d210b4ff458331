//! What a package backend answers: the [`PackageManager`] trait and the types it speaks.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::host::HostFile;

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

/// One direct dependency, as a backend resolved it.
#[derive(Clone, Copy, Debug)]
pub struct Dep {
    pub pkg: PkgId,
    /// The original supermin resolves this edge too; it drops the others (a later alternative,
    /// a virtual package or an arch-qualified name in dpkg, a boolean requirement in rpm).
    pub original: bool,
}

/// A package of a dependency closure, and why it is there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reached {
    pub pkg: PkgId,
    /// The package whose dependency pulled it in first (`None`: named in `packages`).
    pub via: Option<PkgId>,
    /// The original supermin's closure has it too.
    pub original: bool,
}

/// Where a pristine config file's bytes come from during `--prepare`.
pub enum ConfigSource {
    /// The host copy is the pristine one (checksum matches), or `--use-installed` asked for it:
    /// the file found then (`size` bytes), read through `HostFile::open`, never its path.
    Host { file: HostFile, size: u64 },
    /// Extracted from the package archive.
    Bytes { data: Vec<u8>, mode: u32, mtime: u64 },
}

/// What a backend tells [`super::config_sources`] about one package's config files (every
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

/// A backend; what `--prepare` needs for config files is its `ConfigRecords` side.
pub trait PackageManager: ConfigRecords {
    /// Map names given by the user to installed packages; names that are not installed are
    /// dropped (and logged), as in the original.
    fn resolve_names(&self, names: &[String]) -> Vec<PkgId>;

    /// The dependency closure of `roots`, sorted by id, each package once, with why it is in.
    fn closure(&self, roots: &[PkgId]) -> Vec<Reached>;

    /// Every file of the given packages, sorted by path, each path once.
    fn files(&self, pkgs: &[PkgId]) -> Result<Vec<PackageFile>>;

    /// The bare name (what `--prepare` writes to `packages`).
    fn package_name(&self, pkg: PkgId) -> &str;

    /// The command that installs packages named after it (advice in error messages).
    fn install_command(&self) -> &'static str;

    /// `name_version_arch` and the like, for `--include-packagelist`.
    fn pretty_name(&self, pkg: PkgId) -> String;

    /// The database files (what [`super::Driver::database_files`] names), for times derived from
    /// the installed set.
    fn database_files(&self) -> Vec<PathBuf>;
}
