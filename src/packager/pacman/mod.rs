//! The pacman backend, reading pacman's local database directly
//! (`/var/lib/pacman/local/<name>-<version>/{desc,files,mtree}`) instead of running
//! `pacman -Qi`, `pactree -u` and `pacman -Ql` per package as the original does.
//!
//! Rules (src/ph_pacman.ml): a name is an installed package; dependencies are `%DEPENDS%`
//! with version constraints dropped (the installed set is consistent), followed through
//! `%PROVIDES%` where no package has the name (several providers → the shortest name, then
//! byte order, as the rpm backend); a config file is a regular file under `/etc`.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use log::{debug, info};

use crate::error::{Error, IoContext, Result};
use crate::host;
use crate::util::escape::unescape_octal;
pub(crate) mod desc;

use super::api::{ConfigRecords, ConfigSource, Dep, PackageFile, PackageManager, PkgId, Reached};
use super::common;
use desc::{sections, strip_version};

const LOCAL: &str = "/var/lib/pacman/local";

/// The original's rule (os-release `ID=arch`, or `/etc/arch-release`; HEAD adds Artix), plus
/// a local database to read.
pub fn detected(root: &Path) -> bool {
    let id = host::os_release_id(root);
    (matches!(id.as_deref(), Some("arch") | Some("artix")) || host::is_file(root, "/etc/arch-release"))
        && host::stat(root, LOCAL).map(|m| m.is_dir()).unwrap_or(false)
}

/// pacman adds and removes a directory in `local/` for every package change, which changes
/// the directory's mtime. (The original looks at `sync/`, which changes on `-Sy`, not on
/// installs.)
pub fn database_files(root: &Path) -> Vec<PathBuf> {
    vec![host::path_follow(root, LOCAL)]
}

struct Package {
    name: String,
    /// `[epoch:]pkgver-pkgrel`.
    version: String,
    arch: String,
    depends: Vec<String>,
    /// The database directory of this package.
    dir: PathBuf,
}

pub struct Pacman {
    root: PathBuf,
    packages: Vec<Package>,
    by_name: HashMap<String, PkgId>,
    providers: HashMap<String, Vec<PkgId>>,
    /// Package files named on the command line (`--prepare x.pkg.tar.zst`).
    local: Mutex<HashMap<PkgId, PathBuf>>,
}

impl Pacman {
    pub fn open(root: &Path) -> Result<Pacman> {
        let local = host::path_follow(root, LOCAL);
        let entries = fs::read_dir(&local).at(&local, "cannot read the pacman database")?;
        let mut dirs: Vec<PathBuf> = entries
            .flatten()
            .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
            .map(|e| e.path())
            .collect();
        dirs.sort();
        let mut pm = Pacman {
            root: root.to_path_buf(),
            packages: Vec::new(),
            by_name: HashMap::new(),
            providers: HashMap::new(),
            local: Mutex::new(HashMap::new()),
        };
        let mut provides = Vec::new();
        for dir in dirs {
            let desc_path = dir.join("desc");
            let text = fs::read_to_string(&desc_path).at(&desc_path, "cannot read the pacman database")?;
            let s = sections(&text);
            let one = |k: &str| s.get(k).and_then(|v| v.first()).map(|x| x.to_string());
            let (Some(name), Some(version)) = (one("NAME"), one("VERSION")) else {
                return Err(Error::new(format!(
                    "{}: corrupt package entry: no %NAME% or %VERSION%",
                    desc_path.display()
                )));
            };
            let id = pm.packages.len();
            if pm.by_name.insert(name.clone(), id).is_some() {
                return Err(Error::new(format!(
                    "{}: {name} is recorded twice in the pacman database",
                    desc_path.display()
                )));
            }
            for p in s.get("PROVIDES").into_iter().flatten() {
                provides.push((strip_version(p).to_string(), id));
            }
            pm.packages.push(Package {
                name,
                version,
                arch: one("ARCH").unwrap_or_else(|| "any".into()),
                depends: s.get("DEPENDS").into_iter().flatten().map(|d| strip_version(d).to_string()).collect(),
                dir,
            });
        }
        for (virt, id) in provides {
            pm.providers.entry(virt).or_default().push(id);
        }
        let pkgs = &pm.packages;
        for list in pm.providers.values_mut() {
            list.sort_by(|&a, &b| {
                let (a, b) = (&pkgs[a].name, &pkgs[b].name);
                a.len().cmp(&b.len()).then(a.cmp(b))
            });
        }
        debug!("pacman: {} packages in {}", pm.packages.len(), local.display());
        Ok(pm)
    }

    fn find(&self, name: &str) -> Option<(PkgId, bool)> {
        if let Some(&id) = self.by_name.get(name) {
            return Some((id, false));
        }
        self.providers.get(name).and_then(|l| l.first()).map(|&id| (id, true))
    }

    fn file_list(&self, id: PkgId) -> Result<(Vec<String>, Vec<String>)> {
        let path = self.packages[id].dir.join("files");
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), Vec::new())),
            Err(e) => return Err(Error::io(&path, "cannot read the pacman file list", e)),
        };
        Ok(parse_file_list(&text))
    }

    /// MD5 sums recorded in the package's (gzipped) `mtree`, for every regular file.
    fn mtree_md5s(&self, id: PkgId) -> HashMap<String, String> {
        let path = self.packages[id].dir.join("mtree");
        let mut text = String::new();
        let Ok(file) = fs::File::open(&path) else { return HashMap::new() };
        if flate2::read::GzDecoder::new(file).read_to_string(&mut text).is_err() {
            debug!("{}: unreadable mtree", path.display());
            return HashMap::new();
        }
        parse_mtree(&text)
    }

    /// The package file of exactly the installed version: given on the command line, else in
    /// pacman's cache inside the root.
    fn package_file(&self, id: PkgId) -> Option<PathBuf> {
        if let Some(p) = self.local.lock().unwrap_or_else(|e| e.into_inner()).get(&id) {
            return Some(p.clone());
        }
        let p = &self.packages[id];
        let cache = host::path_follow(&self.root, "/var/cache/pacman/pkg");
        let prefix = format!("{}-{}-{}.pkg.tar", p.name, p.version, p.arch);
        let mut names: Vec<PathBuf> = fs::read_dir(&cache)
            .ok()?
            .flatten()
            .filter(|e| {
                e.file_name().to_string_lossy().starts_with(&prefix)
                    && !e.file_name().to_string_lossy().ends_with(".sig")
            })
            .map(|e| e.path())
            .collect();
        names.sort();
        names.into_iter().next()
    }

    /// `name-version-arch.pkg.tar.*` named on the command line.
    fn local_package(&self, file: &Path) -> Option<PkgId> {
        let base = file.file_name()?.to_string_lossy().into_owned();
        let stem = &base[..base.find(".pkg.tar")?];
        let found = self.packages.iter().position(|p| stem == format!("{}-{}-{}", p.name, p.version, p.arch));
        match found {
            Some(id) => {
                self.local.lock().unwrap_or_else(|e| e.into_inner()).insert(id, file.to_path_buf());
                Some(id)
            }
            None => {
                info!("{}: not the installed version of any package: ignored", file.display());
                None
            }
        }
    }
}

/// A `files` file: its `%FILES%` (absolute, as `pacman -Ql` spells them) and `%BACKUP%` paths.
pub(crate) fn parse_file_list(text: &str) -> (Vec<String>, Vec<String>) {
    let s = sections(text);
    let files = s
        .get("FILES")
        .into_iter()
        .flatten()
        .map(|f| {
            // `-Ql` spelling: absolute, without a directory's trailing slash.
            let f = f.trim_end_matches('/');
            format!("/{f}")
        })
        .filter(|f| f != "/")
        .collect();
    let backup =
        s.get("BACKUP").into_iter().flatten().filter_map(|l| l.split('\t').next()).map(|f| format!("/{f}")).collect();
    (files, backup)
}

/// A (decompressed) `mtree`: the MD5 recorded for every file that has one, by absolute path.
pub(crate) fn parse_mtree(text: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for line in text.lines().filter(|l| l.starts_with("./")) {
        let mut words = line.split(' ');
        let Some(name) = words.next() else { continue };
        if let Some(md5) = words.find_map(|w| w.strip_prefix("md5digest=")) {
            out.insert(
                format!("/{}", String::from_utf8_lossy(&unescape_octal(&name.as_bytes()[2..]))),
                md5.to_string(),
            );
        }
    }
    out
}

impl PackageManager for Pacman {
    fn resolve_names(&self, names: &[String]) -> Vec<PkgId> {
        common::resolve_each(names, |name| {
            if name.contains(".pkg.tar") && Path::new(name).is_file() {
                return self.local_package(Path::new(name));
            }
            let (id, provider) = self.find(name)?;
            if provider {
                info!("package {name} is virtual: using its provider {}", self.packages[id].name);
            }
            Some(id)
        })
    }

    fn closure(&self, roots: &[PkgId]) -> Vec<Reached> {
        common::reachable(roots, |id| {
            let mut deps = Vec::new();
            for dep in &self.packages[id].depends {
                match self.find(dep) {
                    Some((d, _)) => deps.push(Dep { pkg: d, original: true }),
                    None => debug!("{}: dependency {dep} not installed", self.packages[id].name),
                }
            }
            deps
        })
    }

    fn files(&self, pkgs: &[PkgId]) -> Result<Vec<PackageFile>> {
        let mut paths = BTreeSet::new();
        for &id in pkgs {
            paths.extend(self.file_list(id)?.0);
        }
        Ok(paths
            .into_iter()
            .map(|path| {
                let config = common::is_etc_config(&self.root, &path);
                PackageFile { path, source: None, config }
            })
            .collect())
    }

    fn install_command(&self) -> &'static str {
        "pacman -S"
    }

    fn package_name(&self, pkg: PkgId) -> &str {
        &self.packages[pkg].name
    }

    fn pretty_name(&self, pkg: PkgId) -> String {
        let p = &self.packages[pkg];
        format!("{}-{}.{}", p.name, p.version, p.arch)
    }

    fn database_files(&self) -> Vec<PathBuf> {
        database_files(&self.root)
    }
}

/// pacman records an MD5 per file in the package's mtree; pristine copies come from the
/// package file in pacman's cache.
impl ConfigRecords for Pacman {
    fn recorded<'a>(&self, id: PkgId, wanted: &BTreeSet<&'a str>) -> Result<Vec<(&'a str, Option<String>)>> {
        let (files, _) = self.file_list(id)?;
        let owned = files.iter().filter_map(|f| wanted.get(f.as_str()).copied()).collect();
        Ok(common::with_checksums(owned, || self.mtree_md5s(id)))
    }

    fn checksum(&self, _id: PkgId, host: &Path) -> Option<String> {
        common::md5_file(host)
    }

    fn extract(&self, id: PkgId, paths: &[&str], _tmpdir: &Path) -> Result<Vec<(String, ConfigSource)>> {
        let Some(file) = self.package_file(id) else {
            return Err(Error::new(format!(
                "{}: config file {} differs from its recorded MD5 (or cannot be read) and the package file is not in \
                 /var/cache/pacman/pkg: give the package file on the command line, or use --use-installed",
                self.pretty_name(id),
                paths[0]
            )));
        };
        extract_from_package(&file, paths)
    }
}

/// The named files of a `.pkg.tar.*` (zstd, xz or gzip): `bsdtar` rewrites it as a plain
/// tar stream, read with the tar crate.
fn extract_from_package(file: &Path, paths: &[&str]) -> Result<Vec<(String, ConfigSource)>> {
    let mut child = Command::new("bsdtar")
        .args(["-c", "-f", "-", "--format", "pax"])
        .arg(format!("@{}", file.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| Error::new(format!("bsdtar: cannot run: {e} (install libarchive-tools with scripts/install-deps.sh, or use --use-installed)")))?;
    let out = common::members_from_tar_stream(&mut child, file, paths)?;
    let status = child.wait().map_err(|e| Error::new(format!("bsdtar: {e}")))?;
    if !status.success() {
        return Err(Error::new(format!("{}: bsdtar cannot read this package", file.display())));
    }
    Ok(out)
}
