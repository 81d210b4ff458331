//! The dpkg backend, reading dpkg's database files directly.
//!
//! The original spawns `dpkg-query` three times per run, and that is where most of its time goes.
//! We parse `/var/lib/dpkg/status`, `info/*.list`, `info/*.md5sums` and `diversions` ourselves
//! and reproduce its rules: a package is installed when its status word is `installed`; a name
//! maps to the package of the primary architecture or `all`; a config file is a regular file
//! under `/etc`. Where the original silently loses a dependency (first alternative not
//! installed, a virtual package, an `:any` qualifier), we pick an installed provider instead and
//! say so at `-v`.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use log::{debug, info, warn};

use crate::error::{Error, IoContext, Result};
use crate::host;
mod deb822;

use super::api::{ConfigRecords, ConfigSource, Dep, PackageFile, PackageManager, PkgId, Reached};
use super::common;
use deb822::{parse_depends, parse_paragraphs, strip_qualifier, Paragraph};

const ADMIN_DIR: &str = "var/lib/dpkg";

/// The original's detection rule: a Debian-like os-release ID, or `/etc/debian_version`.
pub fn detected(root: &Path) -> bool {
    if !host::is_file(root, "/var/lib/dpkg/status") {
        return false;
    }
    let id = host::os_release_id(root);
    matches!(id.as_deref(), Some("debian") | Some("ubuntu")) || host::is_file(root, "/etc/debian_version")
}

/// dpkg rewrites `status` on every install and removal.
pub fn database_files(root: &Path) -> Vec<PathBuf> {
    vec![host::path(root, &format!("/{ADMIN_DIR}/status"))]
}

struct Package {
    name: String,
    version: String,
    arch: String,
    /// Debian priority rank, lower is more essential (`required` = 0).
    priority: u8,
    /// `Depends` and `Pre-Depends`: groups of alternatives, qualifiers stripped.
    depends: Vec<Vec<String>>,
    /// Path → MD5 recorded for each conffile in the status file.
    conffiles: Vec<(String, String)>,
}

pub struct Dpkg {
    root: PathBuf,
    packages: Vec<Package>,
    by_name: HashMap<String, PkgId>,
    /// Virtual name → installed packages providing it.
    providers: HashMap<String, Vec<PkgId>>,
    /// Diverted path → where the diverted file really is.
    diversions: HashMap<String, String>,
}

impl Dpkg {
    pub fn open(root: &Path) -> Result<Dpkg> {
        let status_path = host::path(root, &format!("/{ADMIN_DIR}/status"));
        let status = fs::read_to_string(&status_path).at(&status_path, "cannot read the dpkg database")?;
        Ok(Dpkg::parse(root, &status, read_diversions(root)?))
    }

    /// The database of `root` from the text of its `status` file and its diversions.
    pub(crate) fn parse(root: &Path, status: &str, diversions: HashMap<String, String>) -> Dpkg {
        let paragraphs = parse_paragraphs(status);
        let arch = native_arch(&paragraphs);
        let mut dpkg = Dpkg {
            root: root.to_path_buf(),
            packages: Vec::new(),
            by_name: HashMap::new(),
            providers: HashMap::new(),
            diversions,
        };
        let mut provides = Vec::new();
        for p in &paragraphs {
            let Some(package) = installed_package(p, &arch) else { continue };
            if dpkg.by_name.contains_key(&package.name) {
                continue; // the first candidate wins, as in the original
            }
            let id = dpkg.packages.len();
            dpkg.by_name.insert(package.name.clone(), id);
            provides.extend(
                p.get("Provides")
                    .map(parse_depends)
                    .unwrap_or_default()
                    .into_iter()
                    .flatten()
                    .map(|v| (strip_qualifier(&v).to_string(), id)),
            );
            dpkg.packages.push(package);
        }
        for (virt, id) in provides {
            dpkg.providers.entry(virt).or_default().push(id);
        }
        for list in dpkg.providers.values_mut() {
            // Deterministic choice among several providers: the most essential priority (so
            // `awk` is mawk, as on a minimal Debian), then the shortest name, then byte order.
            list.sort_by_key(|&i| {
                let p = &dpkg.packages[i];
                (p.priority, p.name.len(), p.name.clone())
            });
        }
        dpkg
    }

    /// An installed package by name, or else an installed provider of that virtual name.
    fn find(&self, name: &str) -> Option<(PkgId, bool)> {
        if let Some(&id) = self.by_name.get(name) {
            return Some((id, false));
        }
        self.providers.get(name).and_then(|p| p.first()).map(|&id| (id, true))
    }

    fn list_file(&self, pkg: &Package, ext: &str) -> Option<PathBuf> {
        // Multi-Arch: same packages have `name:arch.list`; the rest `name.list`.
        let qualified = host::path(&self.root, &format!("/{ADMIN_DIR}/info/{}:{}.{ext}", pkg.name, pkg.arch));
        if qualified.exists() {
            return Some(qualified);
        }
        let plain = host::path(&self.root, &format!("/{ADMIN_DIR}/info/{}.{ext}", pkg.name));
        plain.exists().then_some(plain)
    }

    /// MD5 sums dpkg recorded for the package's files (conffiles and `md5sums`).
    fn recorded_md5s(&self, id: PkgId) -> HashMap<String, String> {
        let pkg = &self.packages[id];
        let mut sums: HashMap<String, String> = HashMap::new();
        if let Some(path) = self.list_file(pkg, "md5sums") {
            if let Ok(text) = fs::read_to_string(path) {
                sums.extend(parse_md5sums(&text));
            }
        }
        for (file, sum) in &pkg.conffiles {
            sums.insert(file.clone(), sum.clone());
        }
        sums
    }

    /// The `.deb` of exactly the installed version: apt's cache, else `apt-get download`.
    fn fetch_deb(&self, id: PkgId, tmpdir: &Path) -> Result<PathBuf> {
        let pkg = &self.packages[id];
        let file = format!("{}_{}_{}.deb", pkg.name, pkg.version.replace(':', "%3a"), pkg.arch);
        let cached = host::path(&self.root, "/var/cache/apt/archives").join(&file);
        if cached.is_file() {
            debug!("prepare: using cached {}", cached.display());
            return Ok(cached);
        }
        info!("prepare: downloading {}={}", pkg.name, pkg.version);
        if apt_download(&self.root, tmpdir, &format!("{}:{}={}", pkg.name, pkg.arch, pkg.version))? {
            let path = tmpdir.join(&file);
            if path.is_file() {
                return Ok(path);
            }
        }
        // The archive no longer has the installed version: take its candidate, as the
        // original always does, and say so.
        warn!(
            "prepare: {} {} is not downloadable any more; using the archive's current version of its config files",
            pkg.name, pkg.version
        );
        if apt_download(&self.root, tmpdir, &format!("{}:{}", pkg.name, pkg.arch))? {
            let prefix = format!("{}_", pkg.name);
            let suffix = format!("_{}.deb", pkg.arch);
            if let Some(found) = fs::read_dir(tmpdir).ok().into_iter().flatten().flatten().map(|e| e.path()).find(|p| {
                let n = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                n.starts_with(&prefix) && n.ends_with(&suffix)
            }) {
                return Ok(found);
            }
        }
        let hint = if self.root == Path::new("/") { "" } else { ", run `apt-get update` in the sysroot" };
        Err(Error::new(format!(
            "apt-get download {} failed: the pristine config files of {} cannot be fetched \
             (check the network and apt sources{hint}, or use --use-installed)",
            pkg.name, pkg.name
        )))
    }
}

/// `apt-get download SPEC` into `dir`; false when apt says no.
/// With `--sysroot`, apt runs with `Dir=ROOT`: the root's sources, lists and keys, so a
/// package comes from the root's distribution, never the build host's.
fn apt_download(root: &Path, dir: &Path, spec: &str) -> Result<bool> {
    let mut cmd = Command::new("apt-get");
    if root != Path::new("/") {
        cmd.arg("-o").arg(format!("Dir={}", root.display()));
    }
    let status = cmd
        .args(["download", "--quiet", "--quiet", spec])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| Error::new(format!("apt-get: cannot run: {e} (install apt, or use --use-installed)")))?;
    Ok(status.success())
}

impl PackageManager for Dpkg {
    fn resolve_names(&self, names: &[String]) -> Vec<PkgId> {
        common::resolve_each(names, |name| {
            let (id, provider) = self.find(strip_qualifier(name))?;
            if provider {
                info!("package {name} is virtual: using its provider {}", self.packages[id].name);
            }
            Some(id)
        })
    }

    fn closure(&self, roots: &[PkgId]) -> Vec<Reached> {
        common::reachable(roots, |id| {
            let mut deps = Vec::new();
            for group in &self.packages[id].depends {
                let chosen =
                    group.iter().enumerate().find_map(|(i, alt)| self.find(strip_qualifier(alt)).map(|f| (i, f)));
                match chosen {
                    Some((i, (dep, provider))) => {
                        // The original keeps the first alternative, by its exact name only.
                        let original = i == 0 && !provider && !group[0].contains(':');
                        if !original {
                            info!(
                                "{}: dependency {} resolved to {} (the original supermin drops it)",
                                self.packages[id].name,
                                group.join(" | "),
                                self.packages[dep].name
                            );
                        }
                        deps.push(Dep { pkg: dep, original });
                    }
                    None => debug!("{}: dependency {} not installed", self.packages[id].name, group.join(" | ")),
                }
            }
            deps
        })
    }

    fn files(&self, pkgs: &[PkgId]) -> Result<Vec<PackageFile>> {
        let mut paths: Vec<String> = Vec::new();
        for &id in pkgs {
            let pkg = &self.packages[id];
            let Some(list) = self.list_file(pkg, "list") else {
                debug!("{}: no file list", pkg.name);
                continue;
            };
            let text = fs::read_to_string(&list).at(&list, "cannot read dpkg file list")?;
            paths.extend(list_paths(&text).map(str::to_string));
        }
        paths.sort_unstable();
        paths.dedup();
        Ok(paths
            .into_iter()
            .map(|path| {
                let source = self
                    .diversions
                    .get(&path)
                    .filter(|to| host::lstat(&self.root, to).map(|m| m.is_file()).unwrap_or(false))
                    .cloned();
                let config = common::is_etc_config(&self.root, &path);
                PackageFile { path, source, config }
            })
            .collect())
    }

    fn install_command(&self) -> &'static str {
        "apt-get install"
    }

    fn package_name(&self, pkg: PkgId) -> &str {
        &self.packages[pkg].name
    }

    fn pretty_name(&self, pkg: PkgId) -> String {
        let p = &self.packages[pkg];
        format!("{}_{}_{}", p.name, p.version, p.arch)
    }

    fn database_files(&self) -> Vec<PathBuf> {
        database_files(&self.root)
    }
}

/// dpkg records an MD5 per file (`info/PKG.md5sums`); pristine copies come from the `.deb`.
impl ConfigRecords for Dpkg {
    fn recorded<'a>(&self, id: PkgId, wanted: &BTreeSet<&'a str>) -> Result<Vec<(&'a str, Option<String>)>> {
        let Some(list) = self.list_file(&self.packages[id], "list") else { return Ok(Vec::new()) };
        let text = fs::read_to_string(&list).at(&list, "cannot read dpkg file list")?;
        let owned = text.lines().filter_map(|l| wanted.get(l).copied()).collect();
        Ok(common::with_checksums(owned, || self.recorded_md5s(id)))
    }

    fn checksum(&self, _id: PkgId, host: &Path) -> Option<String> {
        common::md5_file(host)
    }

    fn extract(&self, id: PkgId, paths: &[&str], tmpdir: &Path) -> Result<Vec<(String, ConfigSource)>> {
        debug!("{}: {} config file(s) differ from their recorded MD5 on the host", self.packages[id].name, paths.len());
        extract_from_deb(&self.fetch_deb(id, tmpdir)?, paths)
    }
}

/// Pull the named files out of a `.deb` via `dpkg-deb --fsys-tarfile` (which knows every
/// compression a `.deb` can use). Files the package does not ship are skipped, as in the
/// original.
fn extract_from_deb(deb: &Path, paths: &[&str]) -> Result<Vec<(String, ConfigSource)>> {
    let mut child = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(deb)
        .stdout(Stdio::piped())
        .spawn()
        .at(deb, "cannot run dpkg-deb")?;
    let out = common::members_from_tar_stream(&mut child, deb, paths)?;
    let status = child.wait().at(deb, "dpkg-deb")?;
    if !status.success() {
        return Err(Error::new(format!("{}: dpkg-deb --fsys-tarfile failed", deb.display())));
    }
    Ok(out)
}

/// The package a status paragraph describes, when it is installed for architecture `arch` (or
/// `all`).
fn installed_package(p: &Paragraph, arch: &str) -> Option<Package> {
    let installed = p.get("Status").and_then(|s| s.split(' ').nth(2)) == Some("installed");
    let pkg_arch = p.get("Architecture").unwrap_or("");
    if !installed || !(pkg_arch == arch || pkg_arch == "all") {
        return None;
    }
    let mut depends = Vec::new();
    for field in ["Pre-Depends", "Depends"] {
        depends.extend(p.get(field).map(parse_depends).unwrap_or_default());
    }
    let conffiles = p.get("Conffiles").unwrap_or("").lines().filter_map(|l| {
        let mut w = l.split_whitespace();
        Some((w.next()?.to_string(), w.next()?.to_string()))
    });
    Some(Package {
        name: p.get("Package")?.to_string(),
        version: p.get("Version").unwrap_or("").to_string(),
        arch: pkg_arch.to_string(),
        priority: priority_rank(p.get("Priority")),
        depends,
        conffiles: conffiles.collect(),
    })
}

/// `/var/lib/dpkg/diversions`: records of three lines (from, to, package); local diversions
/// (package `:`) are ignored, as `dpkg-divert --list` output parsing in the original does.
fn read_diversions(root: &Path) -> Result<HashMap<String, String>> {
    let path = host::path(root, &format!("/{ADMIN_DIR}/diversions"));
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(e) => return Err(Error::io(&path, "cannot read", e)),
    };
    Ok(parse_diversions(&text))
}

/// The diversions file's records (from → to), local ones left out.
pub(crate) fn parse_diversions(text: &str) -> HashMap<String, String> {
    let lines: Vec<&str> = text.lines().collect();
    lines.chunks_exact(3).filter(|r| r[2] != ":").map(|r| (r[0].to_string(), r[1].to_string())).collect()
}

/// The paths of an `info/PKG.list` file (dpkg's `/.` left out).
pub(crate) fn list_paths(text: &str) -> impl Iterator<Item = &str> {
    text.lines().filter(|l| l.starts_with('/') && *l != "/.")
}

/// An `info/PKG.md5sums` file: `SUM  path` lines (path relative to the root) → (`/path`, SUM).
pub(crate) fn parse_md5sums(text: &str) -> impl Iterator<Item = (String, String)> + '_ {
    text.lines().filter_map(|line| line.split_once("  ").map(|(sum, file)| (format!("/{file}"), sum.to_string())))
}

fn priority_rank(p: Option<&str>) -> u8 {
    match p {
        Some("required") => 0,
        Some("important") => 1,
        Some("standard") => 2,
        Some("optional") => 3,
        _ => 4,
    }
}

/// dpkg's own architecture is the primary one (what `dpkg --print-architecture` prints).
fn native_arch(paragraphs: &[Paragraph]) -> String {
    paragraphs
        .iter()
        .find(|p| p.get("Package") == Some("dpkg"))
        .and_then(|p| p.get("Architecture"))
        .map(str::to_string)
        .unwrap_or_else(|| {
            match std::env::consts::ARCH {
                "x86_64" => "amd64",
                "aarch64" => "arm64",
                "x86" => "i386",
                "powerpc64" => "ppc64el",
                other => other,
            }
            .to_string()
        })
}
