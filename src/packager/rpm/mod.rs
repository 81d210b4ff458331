//! The rpm backend, reading the sqlite rpm database directly (no librpm, no `rpm` process).
//!
//! rpm ≥ 4.16 keeps one row per installed package in `Packages(hnum, blob)`, the blob being
//! the package header; `header` decodes it, `db` finds and reads the database. The rules are the original's
//! (src/ph_rpm.ml): a name maps to the installed package of that name preferring `noarch`,
//! then the machine's architecture — and, where the original's tie-break is broken (it compares
//! a version with itself), the newest epoch:version-release, then database order; a name that
//! is no package is looked up as a capability or file path and accepted when exactly one
//! package provides it. Requires are followed through Provides (and file paths through the
//! installed file lists); several providers → the shortest name, then byte order. Config
//! files are those flagged `%config`, wherever they are.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

use log::{debug, info};

use super::api::{ConfigRecords, ConfigSource, Dep, PackageFile, PackageManager, PkgId, Reached};
use super::common;
use crate::error::{Error, Result};
use crate::host;
use crate::util::cpio;

mod db;
pub(crate) mod header;
pub(crate) mod rich;
pub(crate) mod version;

pub use db::{database_files, detected};
use header::{self as tag, Header};
use rich::Rich;
use version::vercmp;

/// rpm's own name for the machine's architecture (what `rpm --eval %_arch` says).
fn machine_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86" => "i686",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "powerpc64" => "ppc64",
        other => other,
    }
}

/// The root's architecture: the most common one of its packages (a foreign root may be of
/// another architecture than the build host); the build host's when all are `noarch`.
fn root_arch(packages: &[Package]) -> String {
    let mut count: HashMap<&str, usize> = HashMap::new();
    for p in packages.iter().filter(|p| p.arch != "noarch" && p.arch != "(none)") {
        *count.entry(p.arch.as_str()).or_default() += 1;
    }
    let best = count.into_iter().max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0)));
    best.map(|(a, _)| a.to_string()).unwrap_or_else(|| machine_arch().to_string())
}

struct Package {
    name: String,
    epoch: Option<u32>,
    version: String,
    release: String,
    arch: String,
    /// Requirement names, `rpmlib(...)` dropped.
    requires: Vec<String>,
    provides: Vec<String>,
    header: Header,
}

impl Package {
    fn evr(&self) -> String {
        match self.epoch {
            Some(e) => format!("{e}:{}-{}", self.version, self.release),
            None => format!("{}-{}", self.version, self.release),
        }
    }
}

pub struct Rpm {
    root: PathBuf,
    db: PathBuf,
    packages: Vec<Package>,
    /// Name → packages of that name, best first (arch preference, newest, database order).
    by_name: HashMap<String, Vec<PkgId>>,
    /// Capability → packages providing it.
    providers: HashMap<String, Vec<PkgId>>,
    /// File path → owning packages; built on the first file-path lookup (most closures need
    /// none, and it means decoding every file list).
    file_owners: OnceLock<HashMap<String, Vec<PkgId>>>,
    /// Local `.rpm` files named on the command line, per installed package (payload source
    /// for `--prepare`).
    local: Mutex<HashMap<PkgId, PathBuf>>,
}

impl Rpm {
    pub fn open(root: &Path) -> Result<Rpm> {
        let db = db::locate(root)?;
        let rows = db::read_blobs(&db)?;
        let mut rpm = Rpm {
            root: root.to_path_buf(),
            db: db.clone(),
            packages: Vec::with_capacity(rows.len()),
            by_name: HashMap::new(),
            providers: HashMap::new(),
            file_owners: OnceLock::new(),
            local: Mutex::new(HashMap::new()),
        };
        for (hnum, blob) in rows {
            let bad = |e: String| Error::new(format!("{}: package #{hnum}: corrupt header: {e}", db.display()));
            let header = Header::parse(blob).map_err(bad)?;
            let pkg = package_of_header(header).map_err(bad)?;
            let Some(pkg) = pkg else {
                debug!("{}: package #{hnum} has no name: skipped", db.display());
                continue;
            };
            let id = rpm.packages.len();
            rpm.by_name.entry(pkg.name.clone()).or_default().push(id);
            for p in pkg.provides.iter().chain(std::iter::once(&pkg.name)) {
                let list = rpm.providers.entry(p.clone()).or_default();
                if list.last() != Some(&id) {
                    list.push(id);
                }
            }
            rpm.packages.push(pkg);
        }
        let arch = root_arch(&rpm.packages);
        let weight = |a: &str| match a {
            "noarch" => 2,
            a if a == arch => 1,
            _ => 0,
        };
        let pkgs = &rpm.packages;
        for list in rpm.by_name.values_mut() {
            list.sort_by(|&a, &b| {
                let (pa, pb) = (&pkgs[a], &pkgs[b]);
                weight(&pb.arch).cmp(&weight(&pa.arch)).then_with(|| evr_cmp(pb, pa)).then(a.cmp(&b))
            });
        }
        for (name, list) in &rpm.by_name {
            if list.len() > 1 {
                let all: Vec<String> = list.iter().map(|&i| rpm.pretty_name(i)).collect();
                info!("rpm: {} is installed {} times ({}): using {}", name, list.len(), all.join(", "), all[0]);
            }
        }
        debug!("rpm: {} packages in {}", rpm.packages.len(), db.display());
        Ok(rpm)
    }

    fn best(&self, name: &str) -> Option<PkgId> {
        self.by_name.get(name).and_then(|l| l.first()).copied()
    }

    /// Names of the installed packages providing capability or file `req`, sorted, unique.
    fn provider_names(&self, req: &str) -> Vec<&str> {
        let mut names: BTreeSet<&str> = BTreeSet::new();
        if let Some(list) = self.providers.get(req) {
            names.extend(list.iter().map(|&i| self.packages[i].name.as_str()));
        }
        if req.starts_with('/') {
            if let Some(list) = self.owners().get(req) {
                names.extend(list.iter().map(|&i| self.packages[i].name.as_str()));
            }
        }
        names.into_iter().collect()
    }

    fn owners(&self) -> &HashMap<String, Vec<PkgId>> {
        self.file_owners.get_or_init(|| {
            let mut map: HashMap<String, Vec<PkgId>> = HashMap::new();
            for (id, p) in self.packages.iter().enumerate() {
                // A corrupt file list was reported... it is reported again by files(); here it
                // only means the package owns no path for lookups.
                for (path, _, _) in p.header.files().unwrap_or_default() {
                    map.entry(path).or_default().push(id);
                }
            }
            map
        })
    }

    /// The original's "best provider": several → shortest name, then byte order.
    fn provider(&self, req: &str) -> Option<&str> {
        let mut names = self.provider_names(req);
        if names.len() > 1 {
            names.sort_by(|a, b| a.len().cmp(&b.len()).then(a.cmp(b)));
            debug!("rpm: requirement {req}: providers {}: picked {}", names.join(" "), names[0]);
        }
        names.first().copied()
    }

    /// A name, a `name-[epoch:]version-release[.arch]` label, or a capability/file with one
    /// provider.
    fn find(&self, s: &str) -> Option<PkgId> {
        if let Some(id) = self.best(s) {
            return Some(id);
        }
        if let Some(id) = self.by_label(s) {
            return Some(id);
        }
        let names = self.provider_names(s);
        match names.as_slice() {
            [one] => {
                info!("rpm: {s} is provided by {one}");
                self.best(one)
            }
            [] => None,
            many => {
                // The original refuses to guess here (unlike for requirements).
                info!("rpm: {s} is provided by several packages ({}): ignored", many.join(" "));
                None
            }
        }
    }

    fn by_label(&self, s: &str) -> Option<PkgId> {
        self.packages.iter().position(|p| {
            let vr = format!("{}-{}-{}", p.name, p.version, p.release);
            let evr = format!("{}-{}", p.name, p.evr());
            [
                format!("{}-{}", p.name, p.version),
                vr.clone(),
                format!("{vr}.{}", p.arch),
                evr.clone(),
                format!("{evr}.{}", p.arch),
            ]
            .iter()
            .any(|l| l == s)
        })
    }

    /// A `.rpm` named on the command line: the installed package it is a build of.
    fn local_package(&self, file: &Path) -> Option<PkgId> {
        let h = match fs::read(file).map_err(|e| e.to_string()).and_then(|b| Header::parse_package(b).map(|x| x.0)) {
            Ok(h) => h,
            Err(e) => {
                log::warn!("{}: {e}: ignored", file.display());
                return None;
            }
        };
        let local = package_of_header(h).ok().flatten()?;
        let id = self.by_name.get(&local.name)?.iter().copied().find(|&i| {
            let p = &self.packages[i];
            p.epoch.unwrap_or(0) == local.epoch.unwrap_or(0)
                && p.version == local.version
                && p.release == local.release
                && p.arch == local.arch
        });
        match id {
            Some(id) => {
                self.local.lock().unwrap_or_else(|e| e.into_inner()).insert(id, file.to_path_buf());
                Some(id)
            }
            None => {
                info!("{}: {}-{} is not the installed version: ignored", file.display(), local.name, local.evr());
                None
            }
        }
    }

    /// The package file of exactly the installed build: given on the command line, else in a
    /// package manager's cache inside the root.
    fn package_file(&self, id: PkgId) -> Option<PathBuf> {
        if let Some(p) = self.local.lock().unwrap_or_else(|e| e.into_inner()).get(&id) {
            return Some(p.clone());
        }
        let p = &self.packages[id];
        let file = format!("{}-{}-{}.{}.rpm", p.name, p.version, p.release, p.arch);
        for cache in [
            "/var/cache/dnf",
            "/var/cache/libdnf5",
            "/var/cache/yum",
            "/var/cache/zypp/packages",
            "/var/cache/urpmi/rpms",
        ] {
            if let Some(found) = find_file(&host::path_follow(&self.root, cache), &file, 4) {
                return Some(found);
            }
        }
        None
    }
}

fn find_file(dir: &Path, name: &str, depth: u32) -> Option<PathBuf> {
    let direct = dir.join(name);
    if direct.is_file() {
        return Some(direct);
    }
    if depth == 0 {
        return None;
    }
    let mut subdirs: Vec<PathBuf> = fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .map(|e| e.path())
        .collect();
    subdirs.sort();
    subdirs.into_iter().find_map(|d| find_file(&d, name, depth - 1))
}

fn package_of_header(header: Header) -> std::result::Result<Option<Package>, String> {
    let Some(name) = header.string(tag::NAME)? else { return Ok(None) };
    let requires = header.strings(tag::REQUIRENAME)?;
    let flags = header.ints(tag::REQUIREFLAGS)?;
    let requires = requires
        .into_iter()
        .enumerate()
        .filter(|(i, r)| flags.get(*i).copied().unwrap_or(0) & tag::SENSE_RPMLIB == 0 && !r.starts_with("rpmlib("))
        .map(|(_, r)| r)
        .collect();
    Ok(Some(Package {
        name,
        epoch: header.int(tag::EPOCH)?,
        version: header.string(tag::VERSION)?.unwrap_or_default(),
        release: header.string(tag::RELEASE)?.unwrap_or_default(),
        arch: header.string(tag::ARCH)?.unwrap_or_else(|| "(none)".into()),
        requires,
        provides: header.strings(tag::PROVIDENAME)?,
        header,
    }))
}

impl PackageManager for Rpm {
    fn resolve_names(&self, names: &[String]) -> Vec<PkgId> {
        common::resolve_each(names, |name| {
            if name.ends_with(".rpm") && Path::new(name).is_file() {
                self.local_package(Path::new(name))
            } else {
                self.find(name)
            }
        })
    }

    fn closure(&self, roots: &[PkgId]) -> Vec<Reached> {
        // By name, as the original: each name stands for its best installed package.
        let mut memo: HashMap<String, Option<PkgId>> = HashMap::new();
        common::reachable(roots, |id| {
            let mut deps = Vec::new();
            let mut reqs: Vec<&str> = Vec::new();
            let mut from_rich: Vec<String> = Vec::new();
            for req in &self.packages[id].requires {
                if !req.starts_with('(') {
                    reqs.push(req);
                    continue;
                }
                // A boolean dependency (the original drops these: whatprovides finds nothing).
                match Rich::parse(req) {
                    Ok(rich) => {
                        let before = from_rich.len();
                        rich.wants(&|c: &str| !self.provider_names(c).is_empty(), &mut from_rich);
                        debug!("{}: {req} → {}", self.packages[id].name, from_rich[before..].join(" "));
                    }
                    Err(e) => debug!("{}: {req}: {e}: ignored", self.packages[id].name),
                }
            }
            let plain = reqs.len();
            reqs.extend(from_rich.iter().map(String::as_str));
            for (i, req) in reqs.into_iter().enumerate() {
                let dep = *memo.entry(req.to_string()).or_insert_with(|| self.provider(req).and_then(|n| self.best(n)));
                match dep {
                    Some(dep) => deps.push(Dep { pkg: dep, original: i < plain }),
                    None => debug!("{}: requirement {} not installed", self.packages[id].name, req),
                }
            }
            deps
        })
    }

    fn files(&self, pkgs: &[PkgId]) -> Result<Vec<PackageFile>> {
        // Path → config (if any owner marks it %config).
        let mut all: BTreeMap<String, bool> = BTreeMap::new();
        for &id in pkgs {
            let p = &self.packages[id];
            let files = p.header.files().map_err(|e| {
                Error::new(format!("{}: {}: corrupt file list: {e}", self.db.display(), self.pretty_name(id)))
            })?;
            for (path, flags, _) in files {
                if flags & tag::FILE_GHOST != 0 && host::lstat(&self.root, &path).is_err() {
                    debug!("{}: %ghost {path} absent: skipped", p.name);
                    continue;
                }
                *all.entry(path).or_insert(false) |= flags & tag::FILE_CONFIG != 0;
            }
        }
        Ok(all.into_iter().map(|(path, config)| PackageFile { path, source: None, config }).collect())
    }

    fn install_command(&self) -> &'static str {
        "dnf install"
    }

    fn package_name(&self, pkg: PkgId) -> &str {
        &self.packages[pkg].name
    }

    fn pretty_name(&self, pkg: PkgId) -> String {
        let p = &self.packages[pkg];
        format!("{}-{}.{}", p.name, p.evr(), p.arch)
    }

    fn database_files(&self) -> Vec<PathBuf> {
        database_files(&self.root)
    }
}

/// rpm records a digest per file in the header, with the package's digest algorithm;
/// pristine copies come from the `.rpm` (given on the command line or in the package cache).
impl ConfigRecords for Rpm {
    fn recorded<'a>(&self, id: PkgId, wanted: &BTreeSet<&'a str>) -> Result<Vec<(&'a str, Option<String>)>> {
        let p = &self.packages[id];
        let files = p.header.files().map_err(|e| Error::new(format!("{}: {}: {e}", self.db.display(), p.name)))?;
        Ok(files
            .into_iter()
            .filter_map(|(path, _, digest)| wanted.get(path.as_str()).map(|&w| (w, Some(digest))))
            .collect())
    }

    fn checksum(&self, id: PkgId, host: &Path) -> Option<String> {
        let algo = self.packages[id].header.int(tag::FILEDIGESTALGO).ok().flatten().unwrap_or(1);
        file_digest(host, algo)
    }

    fn extract(&self, id: PkgId, paths: &[&str], _tmpdir: &Path) -> Result<Vec<(String, ConfigSource)>> {
        let Some(file) = self.package_file(id) else {
            return Err(Error::new(format!(
                "{}: config file {} differs from its recorded digest (or cannot be read) and {}.rpm is not in the package cache: \
                 give the .rpm file on the command line, or use --use-installed",
                self.pretty_name(id),
                paths[0],
                self.pretty_name(id)
            )));
        };
        debug!("{}: {} config file(s) from {}", self.packages[id].name, paths.len(), file.display());
        extract_from_rpm(&file, paths)
    }
}

/// Hex digest of a host file with rpm's digest algorithm number (PGP hash ids).
fn file_digest(path: &Path, algo: u32) -> Option<String> {
    use sha2::Digest;
    let data = fs::read(path).ok()?;
    let bytes: Vec<u8> = match algo {
        1 => md5::Md5::digest(&data).to_vec(),
        8 => sha2::Sha256::digest(&data).to_vec(),
        9 => sha2::Sha384::digest(&data).to_vec(),
        10 => sha2::Sha512::digest(&data).to_vec(),
        11 => sha2::Sha224::digest(&data).to_vec(),
        _ => return None,
    };
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The named files from a `.rpm`'s payload, via `rpm2cpio` (it knows every compressor rpm
/// uses) and our newc reader.
fn extract_from_rpm(file: &Path, paths: &[&str]) -> Result<Vec<(String, ConfigSource)>> {
    let mut child =
        Command::new("rpm2cpio").arg(file).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().map_err(|e| {
            Error::new(format!(
                "rpm2cpio: cannot run: {e} (install it with scripts/install-deps.sh, or use --use-installed)"
            ))
        })?;
    let mut archive = Vec::new();
    let read = child.stdout.take().expect("piped").read_to_end(&mut archive);
    let status = child.wait().map_err(|e| Error::new(format!("rpm2cpio: {e}")))?;
    if read.is_err() || !status.success() {
        return Err(Error::new(format!("{}: rpm2cpio failed: corrupt package?", file.display())));
    }
    let wanted: BTreeSet<&str> = paths.iter().copied().collect();
    let mut out = Vec::new();
    for member in cpio::read(&archive).map_err(|e| Error::new(format!("{}: payload: {e}", file.display())))? {
        let path = format!("/{}", member.name.trim_start_matches("./").trim_start_matches('/'));
        if wanted.contains(path.as_str()) && member.mode & 0o170000 == 0o100000 {
            out.push((
                path,
                ConfigSource::Bytes { data: member.data.to_vec(), mode: member.mode, mtime: member.mtime },
            ));
        }
    }
    Ok(out)
}

fn evr_cmp(a: &Package, b: &Package) -> Ordering {
    a.epoch
        .unwrap_or(0)
        .cmp(&b.epoch.unwrap_or(0))
        .then_with(|| vercmp(&a.version, &b.version))
        .then_with(|| vercmp(&a.release, &b.release))
}
