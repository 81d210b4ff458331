//! The rpm backend, reading the sqlite rpm database directly (no librpm, no `rpm` process).
//!
//! rpm ≥ 4.16 keeps one row per installed package in `Packages(hnum, blob)`, the blob being
//! the package header; [`crate::rpmheader`] decodes it. The rules are the original's
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

use crate::error::{Error, Result};
use crate::host;
use crate::packager::{self, ConfigRecords, ConfigSource, PackageFile, PackageManager, PkgId};
use crate::rpmheader::{self as tag, Header};

/// Where rpm keeps its database, newest layout first (as the original looks for it).
const DB_LOCATIONS: &[&str] = &["/usr/lib/sysimage/rpm/rpmdb.sqlite", "/var/lib/rpm/rpmdb.sqlite"];
/// The Berkeley DB database of rpm < 4.16, which we cannot read.
const BDB_LOCATION: &str = "/var/lib/rpm/Packages";
/// rpm's own "ndb" format (openSUSE's default), which we cannot read either.
const NDB_LOCATION: &str = "/usr/lib/sysimage/rpm/Packages.db";

/// Each rpm driver of the original: os-release IDs and release files that identify it.
fn rules(system: &str) -> (&'static [&'static str], &'static [&'static str], bool) {
    // (IDs, release files, whether any ID starting with the first one matches)
    match system {
        "fedora" => (
            &["fedora", "rhel", "centos", "openEuler", "anolis", "kylin", "KylinSecOS", "uos"],
            &["/etc/redhat-release", "/etc/fedora-release", "/etc/openEuler-release", "/etc/anolis-release"],
            false,
        ),
        "opensuse" => (&["opensuse", "sled", "sles"], &["/etc/SuSE-release"], true),
        "mageia" => (&["mageia"], &["/etc/mageia-release"], false),
        "openmandriva" => (&["openmandriva"], &["/etc/openmandriva-release"], false),
        "ibm_powerkvm" => (&[], &["/etc/ibm_powerkvm-release"], false),
        _ => (&[], &[], false),
    }
}

/// The original's detection for rpm driver `system`, relative to `root`, plus an rpm database.
pub fn detected(root: &Path, system: &str) -> bool {
    let (ids, files, prefix) = rules(system);
    if ids.is_empty() && files.is_empty() {
        return false;
    }
    let id = host::os_release_id(root).unwrap_or_default();
    let by_id = ids.iter().any(|i| *i == id) || (prefix && !id.is_empty() && id.starts_with(ids[0]));
    (by_id || files.iter().any(|f| host::is_file(root, f))) && database_path(root).is_some()
}

fn database_path(root: &Path) -> Option<PathBuf> {
    DB_LOCATIONS
        .iter()
        .chain([&BDB_LOCATION, &NDB_LOCATION])
        .map(|p| host::path_follow(root, p))
        .find(|p| p.is_file())
}

/// The database file, and its write-ahead log: rpm's sqlite database is in WAL mode, so an
/// install may change only `rpmdb.sqlite-wal` until sqlite checkpoints.
pub fn database_files(root: &Path) -> Vec<PathBuf> {
    let Some(db) = database_path(root) else { return Vec::new() };
    let mut wal = db.clone().into_os_string();
    wal.push("-wal");
    vec![db, PathBuf::from(wal)]
}

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
        let db = DB_LOCATIONS
            .iter()
            .map(|p| host::path_follow(root, p))
            .find(|p| p.is_file());
        let Some(db) = db else {
            let ndb = host::path_follow(root, NDB_LOCATION);
            if ndb.is_file() {
                return Err(Error::new(format!(
                    "{}: this rpm database is in the ndb format (openSUSE), which supermin-rs cannot read \
                     (convert it with `rpmdb --rebuilddb --define '_db_backend sqlite'`)",
                    ndb.display()
                )));
            }
            let bdb = host::path_follow(root, BDB_LOCATION);
            if bdb.is_file() {
                return Err(Error::new(format!(
                    "{}: this rpm database is in the old Berkeley DB format, which supermin-rs cannot \
                     read (convert it with `rpmdb --rebuilddb` from rpm >= 4.16, which writes rpmdb.sqlite)",
                    bdb.display()
                )));
            }
            return Err(Error::new(format!(
                "{}: no rpm database (looked for {} and {})",
                root.display(),
                DB_LOCATIONS.join(", "),
                BDB_LOCATION
            )));
        };
        let rows = read_blobs(&db)?;
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

    /// Whether some installed package satisfies a boolean dependency (versions ignored: the
    /// installed set is consistent).
    fn satisfied(&self, r: &Rich) -> bool {
        match r {
            Rich::Atom(a) => !self.provider_names(a).is_empty(),
            Rich::And(a, b) => self.satisfied(a) && self.satisfied(b),
            Rich::Or(a, b) => self.satisfied(a) || self.satisfied(b),
            Rich::Without(a, _) => self.satisfied(a),
            Rich::If(a, c, e) => match (self.satisfied(c), e) {
                (true, _) => self.satisfied(a),
                (false, Some(e)) => self.satisfied(e),
                (false, None) => true,
            },
            Rich::Unless(a, c, e) => match (self.satisfied(c), e) {
                (false, _) => self.satisfied(a),
                (true, Some(e)) => self.satisfied(e),
                (true, None) => true,
            },
        }
    }

    /// The capabilities a boolean dependency asks for, given what is installed: both sides of
    /// `and`/`with`, the first satisfiable side of `or`, a conditional's branch.
    fn wants(&self, r: &Rich, out: &mut Vec<String>) {
        match r {
            Rich::Atom(a) => out.push(a.clone()),
            Rich::And(a, b) => {
                self.wants(a, out);
                self.wants(b, out);
            }
            Rich::Or(a, b) => {
                if self.satisfied(a) {
                    self.wants(a, out)
                } else if self.satisfied(b) {
                    self.wants(b, out)
                }
            }
            Rich::Without(a, _) => self.wants(a, out),
            Rich::If(a, c, e) => {
                if self.satisfied(c) {
                    self.wants(a, out)
                } else if let Some(e) = e {
                    self.wants(e, out)
                }
            }
            Rich::Unless(a, c, e) => {
                if !self.satisfied(c) {
                    self.wants(a, out)
                } else if let Some(e) = e {
                    self.wants(e, out)
                }
            }
        }
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
            [format!("{}-{}", p.name, p.version), vr.clone(), format!("{vr}.{}", p.arch), evr.clone(), format!("{evr}.{}", p.arch)]
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
        for cache in ["/var/cache/dnf", "/var/cache/libdnf5", "/var/cache/yum", "/var/cache/zypp/packages", "/var/cache/urpmi/rpms"] {
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

/// Every row of `Packages`, read-only. A database whose WAL cannot be opened read-only (a
/// read-only root) is read as immutable.
fn read_blobs(db: &Path) -> Result<Vec<(i64, Vec<u8>)>> {
    use rusqlite::{Connection, OpenFlags};
    let err = |e: rusqlite::Error| Error::new(format!("{}: cannot read the rpm database: {e}", db.display()));
    let query = |conn: &Connection| -> rusqlite::Result<Vec<(i64, Vec<u8>)>> {
        let mut stmt = conn.prepare("SELECT hnum, blob FROM Packages ORDER BY hnum")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))?;
        rows.collect()
    };
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let first = Connection::open_with_flags(db, flags).and_then(|c| query(&c));
    match first {
        Ok(rows) => Ok(rows),
        Err(e @ rusqlite::Error::SqliteFailure(..)) if is_locking_problem(&e) => {
            debug!("{}: {e}: reading it as immutable", db.display());
            let uri = format!("file:{}?immutable=1", uri_escape(&db.to_string_lossy()));
            let c = Connection::open_with_flags(uri, flags | OpenFlags::SQLITE_OPEN_URI).map_err(err)?;
            query(&c).map_err(err)
        }
        Err(e) => Err(err(e)),
    }
}

fn is_locking_problem(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode::*;
    matches!(e.sqlite_error_code(), Some(CannotOpen) | Some(ReadOnly) | Some(DatabaseBusy) | Some(DatabaseLocked))
}

fn uri_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'%' | b'?' | b'#' => format!("%{b:02x}"),
            _ => (b as char).to_string(),
        })
        .collect()
}

impl PackageManager for Rpm {
    fn name(&self) -> &'static str {
        "rpm"
    }

    fn resolve_names(&self, names: &[String]) -> Vec<PkgId> {
        packager::resolve_each(names, |name| {
            if name.ends_with(".rpm") && Path::new(name).is_file() {
                self.local_package(Path::new(name))
            } else {
                self.find(name)
            }
        })
    }

    fn closure(&self, roots: &[PkgId]) -> Vec<PkgId> {
        // By name, as the original: each name stands for its best installed package.
        let mut memo: HashMap<String, Option<PkgId>> = HashMap::new();
        packager::reachable(roots, |id| {
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
                        self.wants(&rich, &mut from_rich);
                        debug!("{}: {req} → {}", self.packages[id].name, from_rich[before..].join(" "));
                    }
                    Err(e) => debug!("{}: {req}: {e}: ignored", self.packages[id].name),
                }
            }
            reqs.extend(from_rich.iter().map(String::as_str));
            for req in reqs {
                let dep = *memo.entry(req.to_string()).or_insert_with(|| self.provider(req).and_then(|n| self.best(n)));
                match dep {
                    Some(dep) => deps.push(dep),
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
            let files = p
                .header
                .files()
                .map_err(|e| Error::new(format!("{}: {}: corrupt file list: {e}", self.db.display(), self.pretty_name(id))))?;
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
        Ok(files.into_iter().filter_map(|(path, _, digest)| wanted.get(path.as_str()).map(|&w| (w, Some(digest)))).collect())
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
    let mut child = Command::new("rpm2cpio")
        .arg(file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::new(format!("rpm2cpio: cannot run: {e} (install it with scripts/install-deps.sh, or use --use-installed)")))?;
    let mut cpio = Vec::new();
    let read = child.stdout.take().expect("piped").read_to_end(&mut cpio);
    let status = child.wait().map_err(|e| Error::new(format!("rpm2cpio: {e}")))?;
    if read.is_err() || !status.success() {
        return Err(Error::new(format!("{}: rpm2cpio failed: corrupt package?", file.display())));
    }
    let wanted: BTreeSet<&str> = paths.iter().copied().collect();
    let mut out = Vec::new();
    for member in read_newc(&cpio).map_err(|e| Error::new(format!("{}: payload: {e}", file.display())))? {
        let path = format!("/{}", member.name.trim_start_matches("./").trim_start_matches('/'));
        if wanted.contains(path.as_str()) && member.mode & 0o170000 == 0o100000 {
            out.push((path, ConfigSource::Bytes { data: member.data.to_vec(), mode: member.mode, mtime: member.mtime }));
        }
    }
    Ok(out)
}

pub struct CpioMember<'a> {
    pub name: String,
    pub mode: u32,
    pub mtime: u64,
    pub data: &'a [u8],
}

/// A `newc` (070701) cpio archive, as rpm2cpio writes.
pub fn read_newc(mut b: &[u8]) -> std::result::Result<Vec<CpioMember<'_>>, String> {
    let mut out = Vec::new();
    let pad4 = |n: usize| (4 - n % 4) % 4;
    loop {
        if b.len() < 110 || &b[..6] != b"070701" {
            return Err("not a newc cpio archive, or truncated".into());
        }
        let field = |i: usize| -> std::result::Result<usize, String> {
            let s = std::str::from_utf8(&b[6 + i * 8..14 + i * 8]).map_err(|_| "bad header")?;
            usize::from_str_radix(s, 16).map_err(|_| "bad header".to_string())
        };
        let (mode, mtime, size, namesize) = (field(1)?, field(5)?, field(6)?, field(11)?);
        let name_end = 110 + namesize;
        let data_start = name_end + pad4(name_end);
        let data_end = data_start.checked_add(size).ok_or("bad size")?;
        if namesize == 0 || b.len() < data_end {
            return Err("truncated archive".into());
        }
        let name = String::from_utf8_lossy(&b[110..name_end - 1]).into_owned();
        if name == "TRAILER!!!" {
            return Ok(out);
        }
        out.push(CpioMember { name, mode: mode as u32, mtime: mtime as u64, data: &b[data_start..data_end] });
        let next = (data_end + pad4(data_end)).min(b.len());
        b = &b[next..];
    }
}

/// An rpm boolean ("rich") dependency, e.g. `(a >= 1 or (b if c else d))`.
#[derive(Debug, PartialEq)]
pub enum Rich {
    Atom(String),
    And(Box<Rich>, Box<Rich>),
    Or(Box<Rich>, Box<Rich>),
    /// `with` is treated as `and` (the same package must provide both; close enough for a
    /// closure), `without` as its left side.
    Without(Box<Rich>, Box<Rich>),
    If(Box<Rich>, Box<Rich>, Option<Box<Rich>>),
    Unless(Box<Rich>, Box<Rich>, Option<Box<Rich>>),
}

impl Rich {
    pub fn parse(s: &str) -> std::result::Result<Rich, String> {
        let spaced = s.replace('(', " ( ").replace(')', " ) ");
        let tokens: Vec<&str> = spaced.split_whitespace().collect();
        let mut pos = 0;
        let r = Rich::operand(&tokens, &mut pos, 0)?;
        if pos != tokens.len() {
            return Err(format!("unexpected {:?}", tokens[pos]));
        }
        Ok(r)
    }

    fn operand(t: &[&str], pos: &mut usize, depth: u32) -> std::result::Result<Rich, String> {
        if depth > 64 {
            return Err("nested too deeply".into());
        }
        let tok = *t.get(*pos).ok_or("unexpected end")?;
        *pos += 1;
        if tok != "(" {
            if tok == ")" || is_keyword(tok) {
                return Err(format!("unexpected {tok:?}"));
            }
            // `name [op version]`: versions are not checked (the installed set is consistent).
            if matches!(t.get(*pos), Some(&("<" | ">" | "=" | "<=" | ">=" | "==" | "!="))) {
                *pos += 2;
                if *pos > t.len() {
                    return Err("missing version".into());
                }
            }
            return Ok(Rich::Atom(tok.to_string()));
        }
        let mut left = Rich::operand(t, pos, depth + 1)?;
        loop {
            let op = *t.get(*pos).ok_or("missing ')'")?;
            *pos += 1;
            if op == ")" {
                return Ok(left);
            }
            let right = Box::new(Rich::operand(t, pos, depth + 1)?);
            let l = Box::new(left);
            left = match op {
                "and" | "with" => Rich::And(l, right),
                "or" => Rich::Or(l, right),
                "without" => Rich::Without(l, right),
                "if" | "unless" => {
                    let other = if t.get(*pos) == Some(&"else") {
                        *pos += 1;
                        Some(Box::new(Rich::operand(t, pos, depth + 1)?))
                    } else {
                        None
                    };
                    if op == "if" {
                        Rich::If(l, right, other)
                    } else {
                        Rich::Unless(l, right, other)
                    }
                }
                other => return Err(format!("unknown operator {other:?}")),
            };
        }
    }
}

fn is_keyword(t: &str) -> bool {
    matches!(t, "and" | "or" | "if" | "unless" | "else" | "with" | "without")
}

/// rpm's version comparison (`rpmvercmp`): alternating runs of digits (numeric) and letters
/// (byte order), separators ignored, a digit run newer than a letter run, `~` older than
/// anything (even the end), `^` newer than the end but older than anything else.
pub fn vercmp(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let (mut x, mut y) = (a.as_bytes(), b.as_bytes());
    let skip = |s: &mut &[u8]| {
        while let Some(&c) = s.first() {
            if c.is_ascii_alphanumeric() || c == b'~' || c == b'^' {
                break;
            }
            *s = &s[1..];
        }
    };
    loop {
        skip(&mut x);
        skip(&mut y);
        let (cx, cy) = (x.first().copied(), y.first().copied());
        if cx == Some(b'~') || cy == Some(b'~') {
            if cx != Some(b'~') {
                return Ordering::Greater;
            }
            if cy != Some(b'~') {
                return Ordering::Less;
            }
            x = &x[1..];
            y = &y[1..];
            continue;
        }
        if cx == Some(b'^') || cy == Some(b'^') {
            if cx.is_none() {
                return Ordering::Less;
            }
            if cy.is_none() {
                return Ordering::Greater;
            }
            if cx != Some(b'^') {
                return Ordering::Greater;
            }
            if cy != Some(b'^') {
                return Ordering::Less;
            }
            x = &x[1..];
            y = &y[1..];
            continue;
        }
        let (Some(c), Some(_)) = (cx, cy) else { break };
        let numeric = c.is_ascii_digit();
        let run = |s: &[u8]| {
            s.iter().position(|&c| if numeric { !c.is_ascii_digit() } else { !c.is_ascii_alphabetic() }).unwrap_or(s.len())
        };
        let (nx, ny) = (run(x), run(y));
        let (sx, sy) = (&x[..nx], &y[..ny]);
        if ny == 0 {
            // Different kinds of run: numeric is newer.
            return if numeric { Ordering::Greater } else { Ordering::Less };
        }
        let ord = if numeric {
            let tx = trim_zeros(sx);
            let ty = trim_zeros(sy);
            tx.len().cmp(&ty.len()).then_with(|| tx.cmp(ty))
        } else {
            sx.cmp(sy)
        };
        if ord != Ordering::Equal {
            return ord;
        }
        x = &x[nx..];
        y = &y[ny..];
    }
    match (x.is_empty(), y.is_empty()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        _ => Ordering::Greater,
    }
}

fn trim_zeros(s: &[u8]) -> &[u8] {
    let n = s.iter().position(|&c| c != b'0').unwrap_or(s.len());
    &s[n..]
}

fn evr_cmp(a: &Package, b: &Package) -> Ordering {
    a.epoch
        .unwrap_or(0)
        .cmp(&b.epoch.unwrap_or(0))
        .then_with(|| vercmp(&a.version, &b.version))
        .then_with(|| vercmp(&a.release, &b.release))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpm_version_order() {
        use Ordering::*;
        for (a, b, o) in [
            ("1.0", "1.0", Equal),
            ("1.0", "2.0", Less),
            ("2.0.1", "2.0", Greater),
            ("1.10", "1.9", Greater),
            ("1.0a", "1.0", Greater),
            ("1.0", "1.0a", Less),
            ("a", "1", Less),
            ("1", "a", Greater),
            ("1.0~rc1", "1.0", Less),
            ("1.0~rc1", "1.0~rc2", Less),
            ("1.0^git1", "1.0", Greater),
            ("1.0^git1", "1.0.1", Less),
            ("010", "10", Equal),
            ("1_0", "1.0", Equal),
            ("fc38", "fc39", Less),
        ] {
            assert_eq!(vercmp(a, b), o, "{a} vs {b}");
        }
    }

    #[test]
    fn rich_dependencies_parse() {
        use Rich::*;
        let a = |s: &str| Box::new(Atom(s.into()));
        assert_eq!(Rich::parse("(a >= 1.0 or b)").unwrap(), Or(a("a"), a("b")));
        assert_eq!(Rich::parse("(a or b or c)").unwrap(), Or(Box::new(Or(a("a"), a("b"))), a("c")));
        assert_eq!(Rich::parse("(a if (b and c) else d)").unwrap(), If(a("a"), Box::new(And(a("b"), a("c"))), Some(a("d"))));
        assert_eq!(Rich::parse("(a unless b)").unwrap(), Unless(a("a"), a("b"), None));
        for bad in ["(a or", "(a xor b)", "(or b)", "(a))", "()", "(a >=)", &"(".repeat(100)] {
            assert!(Rich::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn newc_reader() {
        let mut a = Vec::new();
        let mut add = |name: &str, mode: u32, data: &[u8]| {
            let namesize = name.len() + 1;
            a.extend_from_slice(
                format!("070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}", 1, mode, 0, 0, 1, 42, data.len(), 0, 0, 0, 0, namesize, 0)
                    .as_bytes(),
            );
            a.extend_from_slice(name.as_bytes());
            a.push(0);
            while a.len() % 4 != 0 {
                a.push(0);
            }
            a.extend_from_slice(data);
            while a.len() % 4 != 0 {
                a.push(0);
            }
        };
        add("./etc/x.conf", 0o100644, b"hello");
        add("TRAILER!!!", 0, b"");
        let m = read_newc(&a).unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!((m[0].name.as_str(), m[0].mode, m[0].mtime, m[0].data), ("./etc/x.conf", 0o100644, 42, &b"hello"[..]));
        for cut in 0..a.len() - 1 {
            assert!(read_newc(&a[..cut]).is_err() || cut >= a.len());
        }
    }
}
