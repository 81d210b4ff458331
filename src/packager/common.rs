//! Rules every backend shares: name lookup, the dependency walk, config files for
//! `--prepare`, checksums, reading members from a package tool's tar stream.

use std::collections::{btree_map, BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::Path;

use super::api::{ConfigRecords, ConfigSource, Dep, PackageFile, PkgId, Reached};
use crate::error::{Error, Result};
use crate::host;

/// The dpkg and pacman rule for config files (the original's): a regular file under `/etc`.
pub fn is_etc_config(root: &Path, path: &str) -> bool {
    path.starts_with("/etc/") && host::lstat(root, path).map(|m| m.is_file()).unwrap_or(false)
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
/// dependencies, as the backend resolves them), roots included, sorted by id: the
/// breadth-first walk every backend's `closure` is. The walk follows the original's edges
/// first and the others after, so a package is [`Reached::original`] exactly when the
/// original's closure has it too, and `via` is a shortest path back to a root.
pub fn reachable(roots: &[PkgId], mut deps: impl FnMut(PkgId) -> Vec<Dep>) -> Vec<Reached> {
    let mut found: BTreeMap<PkgId, Reached> =
        roots.iter().map(|&pkg| (pkg, Reached { pkg, via: None, original: true })).collect();
    let mut edges: HashMap<PkgId, Vec<Dep>> = HashMap::new();
    for original_only in [true, false] {
        let mut queue: VecDeque<PkgId> = found.keys().copied().collect();
        while let Some(id) = queue.pop_front() {
            let out = edges.entry(id).or_insert_with(|| deps(id));
            for dep in out.iter().filter(|d| d.original || !original_only) {
                if let btree_map::Entry::Vacant(slot) = found.entry(dep.pkg) {
                    slot.insert(Reached { pkg: dep.pkg, via: Some(id), original: original_only });
                    queue.push_back(dep.pkg);
                }
            }
        }
    }
    found.into_values().collect()
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
    let not_regular = |p: &str| host::lstat(root, p).is_ok_and(|m| !m.is_file());
    let wanted: BTreeSet<&str> = configs.iter().map(|f| f.path.as_str()).filter(|p| !not_regular(p)).collect();
    let mut out = Vec::new();
    if use_installed {
        out.extend(wanted.into_iter().filter_map(|p| Some((p.to_string(), host_copy(root, p)?))));
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
                    out.extend(host_copy(root, path).map(|source| (path.to_string(), source)));
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

/// The host's regular file `p` as a config file's source (none when it is missing or is not a
/// regular file).
fn host_copy(root: &Path, p: &str) -> Option<ConfigSource> {
    let m = host::lstat(root, p).ok().filter(|m| m.is_file())?;
    Some(ConfigSource::Host { file: host::HostFile::new(root, p, &m), size: m.len() })
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
