//! From a supermin appliance to a [`Manifest`]: the one engine behind `--build`, `mount` and
//! `materialize`.
//!
//! The pipeline is the original's, step for step: packages → installed packages → dependency
//! closure → files, minus config files (they come from the base image), minus excludefiles
//! (`fnmatch` without `FNM_PATHNAME`: `*` crosses `/`), plus hostfiles (`glob`: `*` does not),
//! minus paths that do not exist, then "munged" (parents and symlink-target directories put
//! before what needs them) and replayed into the tree after the base images.

use std::collections::{HashMap, HashSet};
use std::ffi::{CStr, CString};
use std::fs::{self, Metadata};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

use log::{debug, info};

use crate::error::Result;
use crate::host;
use crate::inputs::Inputs;
use crate::manifest::{Content, Inode, Manifest, Meta, Node, S_IFLNK, S_IFREG};
use crate::packager::PackageManager;

pub struct Options<'a> {
    /// Root of the host (or sysroot) the packages are installed in.
    pub root: &'a Path,
    /// Add `/packagelist` (`--include-packagelist`).
    pub include_packagelist: bool,
    /// Owner and permissions of the appliance root before any base image changes them.
    pub root_meta: Meta,
}

/// What the appliance resolved to.
pub struct Resolved {
    pub manifest: Manifest,
    /// `name_version_arch` of every package in the closure, sorted.
    pub packages: Vec<String>,
}

/// One entry of the host file list: where it goes and where to read it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Listed {
    path: String,
    source: String,
}

pub fn resolve(inputs: &Inputs, pm: &dyn PackageManager, opts: &Options) -> Result<Resolved> {
    let mut manifest = Manifest::new(opts.root_meta);
    for image in &inputs.base_images {
        debug!("unpacking base image {}", image.path.display());
        manifest.add_tar(image.clone())?;
    }

    let roots = pm.resolve_names(&inputs.packages);
    let closure = pm.closure(&roots);
    let mut packages: Vec<String> = closure.iter().map(|&p| pm.pretty_name(p)).collect();
    packages.sort();
    info!("build: {} packages, including dependencies", packages.len());

    let files = pm.files(&closure)?;
    let mut listed: Vec<Listed> = files
        .iter()
        .filter(|f| !f.config)
        .map(|f| Listed { path: f.path.clone(), source: f.source_path().to_string() })
        .collect();
    info!("build: {} files", listed.len());

    if !inputs.excludes.is_empty() {
        let patterns: Vec<CString> = inputs.excludes.iter().filter_map(|p| CString::new(p.as_str()).ok()).collect();
        listed.retain(|f| {
            // One C string per path, not one per path and pattern.
            let Ok(path) = CString::new(f.path.as_str()) else { return true };
            let keep = !patterns.iter().any(|p| fnmatch_c(p, &path));
            if !keep {
                debug!("build: excluding {}", f.path);
            }
            keep
        });
        info!("build: {} files, after matching excludefiles", listed.len());
    }

    for pattern in &inputs.hostfiles {
        for path in host::glob(opts.root, pattern) {
            listed.push(Listed { source: path.clone(), path });
        }
    }

    let mut stats = StatCache::new(opts.root);
    stats.prefetch(listed.iter().map(|f| f.source.as_str()));
    listed.retain(|f| stats.lstat(&f.source).is_some() || stats.lstat(&f.path).is_some());
    info!("build: {} files, after removing unreadable files", listed.len());

    let listed = munge(listed, &mut stats);
    info!("build: {} files, after munging", listed.len());

    for f in &listed {
        let Some(st) = stats.lstat(&f.source).cloned() else { continue };
        let meta = Meta::from_host(&st);
        let path = f.path.as_bytes();
        let ft = st.file_type();
        let placed = if ft.is_dir() {
            manifest.mkdir(path, meta)
        } else if ft.is_symlink() {
            let Ok(target) = fs::read_link(host::path(opts.root, &f.source)) else { continue };
            let target = chroot_link_target(&f.source, target.as_os_str().as_bytes());
            let meta = Meta { size: target.len() as u64, mode: S_IFLNK | 0o777, ..meta };
            manifest.create(path, Inode { meta, node: Node::Symlink(target.into()) }, false).is_some()
        } else if ft.is_file() {
            let content = Content::Host(host::path(opts.root, &f.source));
            manifest.create(path, Inode { meta, node: Node::File(content) }, true).is_some()
        } else {
            manifest.create(path, Inode { meta, node: Node::Special }, true).is_some()
        };
        if !placed {
            debug!("build: {}: not placed (already there, or no parent directory)", f.path);
        }
    }

    if opts.include_packagelist {
        let mut text = packages.join("\n");
        text.push('\n');
        // The list describes the installed set: it is as new as the package database (or
        // SOURCE_DATE_EPOCH), so every build and view of the same state agrees on it.
        let mtime = std::env::var("SOURCE_DATE_EPOCH").ok().and_then(|v| v.trim().parse().ok()).unwrap_or_else(|| {
            pm.database_files().iter().filter_map(|f| fs::metadata(f).ok()).map(|m| m.mtime()).max().unwrap_or(opts.root_meta.mtime)
        });
        let meta = Meta {
            mode: S_IFREG | 0o644,
            uid: opts.root_meta.uid,
            gid: opts.root_meta.gid,
            size: text.len() as u64,
            mtime,
            ..Meta::default()
        };
        let node = Node::File(Content::Inline(Arc::new(text.into_bytes())));
        manifest.create(b"/packagelist", Inode { meta, node }, true);
    }
    Ok(Resolved { manifest, packages })
}

/// Copy a host directory tree into the manifest at `target` (the kernel modules for `-f ext2`
/// and `initramfs`): missing parents of `target` are created with their host metadata, and
/// entries already there are replaced, as the original's ext2 writer does.
pub fn add_host_tree(manifest: &mut Manifest, root: &Path, host_dir: &Path, target: &str) -> Result<()> {
    // Parents first, e.g. /lib/modules, with the metadata of the host's own directory.
    let mut prefix = String::new();
    for comp in target.split('/').filter(|c| !c.is_empty()) {
        prefix.push('/');
        prefix.push_str(comp);
        if manifest.lookup(prefix.as_bytes(), true).is_none() {
            let meta = host::stat(root, &prefix).map(|m| Meta::from_host(&m)).unwrap_or(Meta { mode: crate::manifest::S_IFDIR | 0o755, ..Meta::default() });
            manifest.mkdir(prefix.as_bytes(), meta);
        }
    }
    let top = fs::symlink_metadata(host_dir).map_err(|e| crate::error::Error::io(host_dir, "cannot read", e))?;
    manifest.mkdir(target.as_bytes(), Meta::from_host(&top));
    let mut stack = vec![(host_dir.to_path_buf(), target.to_string())];
    while let Some((dir, at)) = stack.pop() {
        let rd = fs::read_dir(&dir).map_err(|e| crate::error::Error::io(&dir, "cannot list", e))?;
        for e in rd {
            let e = e.map_err(|e| crate::error::Error::io(&dir, "cannot list", e))?;
            let host = e.path();
            let st = fs::symlink_metadata(&host).map_err(|e| crate::error::Error::io(&host, "cannot stat", e))?;
            let path = format!("{}/{}", at, e.file_name().to_string_lossy());
            let meta = Meta::from_host(&st);
            if st.is_dir() {
                manifest.mkdir(path.as_bytes(), meta);
                stack.push((host, path));
            } else if st.file_type().is_symlink() {
                let target = fs::read_link(&host).map_err(|e| crate::error::Error::io(&host, "cannot read link", e))?;
                let target = target.as_os_str().as_bytes().to_vec();
                let meta = Meta { size: target.len() as u64, ..meta };
                manifest.create(path.as_bytes(), Inode { meta, node: Node::Symlink(target.into()) }, true);
            } else if st.is_file() {
                manifest.create(path.as_bytes(), Inode { meta, node: Node::File(Content::Host(host)) }, true);
            } else {
                manifest.create(path.as_bytes(), Inode { meta, node: Node::Special }, true);
            }
        }
    }
    Ok(())
}

/// The original chroot writer's rewrite of absolute link targets: one `../` for each `/` of the
/// link's path after the first character, then the target unchanged
/// (`/etc/localtime -> /usr/share/zoneinfo/UTC` becomes `..//usr/share/zoneinfo/UTC`), so the
/// link works both inside and outside a chroot.
fn chroot_link_target(path: &str, target: &[u8]) -> Vec<u8> {
    if !target.starts_with(b"/") {
        return target.to_vec();
    }
    let depth = path.bytes().skip(1).filter(|&b| b == b'/').count();
    let mut out = b"../".repeat(depth);
    out.extend_from_slice(target);
    out
}

/// lstat results, each path asked once (the pipeline asks about most paths several times).
struct StatCache<'a> {
    root: &'a Path,
    lstat: HashMap<String, Option<Metadata>>,
}

impl<'a> StatCache<'a> {
    fn new(root: &'a Path) -> Self {
        StatCache { root, lstat: HashMap::new() }
    }

    fn lstat(&mut self, path: &str) -> Option<&Metadata> {
        let root = self.root;
        self.lstat.entry(path.to_string()).or_insert_with(|| host::lstat(root, path).ok()).as_ref()
    }

    /// lstat `paths` on every core up front: one syscall per file is the largest cost of
    /// resolving (it decides how soon `mount` is ready), and the passes that follow are
    /// sequential. Results are what [`StatCache::lstat`] would have cached.
    fn prefetch<'p>(&mut self, paths: impl Iterator<Item = &'p str>) {
        let paths: Vec<&str> = paths.filter(|p| !self.lstat.contains_key(*p)).collect();
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(8);
        if threads < 2 || paths.len() < 1024 {
            return;
        }
        let root = self.root;
        let chunks: Vec<Vec<(String, Option<Metadata>)>> = std::thread::scope(|s| {
            let workers: Vec<_> = paths
                .chunks(paths.len().div_ceil(threads))
                .map(|chunk| s.spawn(move || chunk.iter().map(|p| (p.to_string(), host::lstat(root, p).ok())).collect::<Vec<_>>()))
                .collect();
            workers.into_iter().filter_map(|w| w.join().ok()).collect()
        });
        self.lstat.reserve(paths.len());
        for chunk in chunks {
            self.lstat.extend(chunk);
        }
    }

    /// `stat` (following a final symlink) says directory.
    fn is_dir(&mut self, path: &str) -> bool {
        match self.lstat(path).map(|m| m.file_type()) {
            Some(t) if t.is_dir() => true,
            Some(t) if t.is_symlink() => host::stat(self.root, path).map(|m| m.is_dir()).unwrap_or(false),
            _ => false,
        }
    }

    fn is_symlink(&mut self, path: &str) -> bool {
        self.lstat(path).map(|m| m.file_type().is_symlink()).unwrap_or(false)
    }
}

fn dirname(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

/// Order the list so that every entry's parent directory, and every symlinked directory's
/// target, comes before it, inserting the missing ones (see the original's `munge`).
fn munge(mut files: Vec<Listed>, stats: &mut StatCache) -> Vec<Listed> {
    files.sort();
    let mut seen: HashSet<String> = HashSet::new();
    let mut out = Vec::with_capacity(files.len() + files.len() / 8);
    // A stack with the next entry on top; entries that need something first are pushed back
    // under what they need.
    let mut stack: Vec<Listed> = files.into_iter().rev().collect();
    let dir_entry = |p: &str| Listed { path: p.to_string(), source: p.to_string() };
    while let Some(f) = stack.pop() {
        if f.path == "/" {
            seen.insert(f.path);
            continue;
        }
        let is_dir = stats.is_dir(&f.path);
        if is_dir && seen.contains(&f.path) {
            out.push(f);
        } else if is_dir && stats.is_symlink(&f.path) {
            seen.insert(f.path.clone());
            let target = link_target_dir(stats.root, &f.path);
            if seen.contains(&target) {
                out.push(f);
            } else {
                stack.push(f);
                stack.push(dir_entry(&target));
            }
        } else {
            if is_dir {
                seen.insert(f.path.clone());
            }
            let parent = dirname(&f.path);
            if seen.contains(parent) {
                out.push(f);
            } else {
                let parent = dir_entry(parent);
                stack.push(f);
                stack.push(parent);
            }
        }
    }
    out
}

/// Absolute path a symlink to a directory points at (relative targets made absolute with
/// `realpath`, inside the root; one trailing slash removed).
fn link_target_dir(root: &Path, path: &str) -> String {
    let target = fs::read_link(host::path(root, path)).map(|t| t.to_string_lossy().into_owned()).unwrap_or_default();
    let mut target = if target.starts_with('/') {
        target
    } else {
        host::realpath(root, &format!("{}/{}", dirname(path).trim_end_matches('/'), target))
    };
    if target.len() >= 2 && target.ends_with('/') {
        target.pop();
    }
    target
}

#[cfg(test)]
fn fnmatch(pattern: &CStr, path: &str) -> bool {
    let Ok(path) = CString::new(path) else { return false };
    fnmatch_c(pattern, &path)
}

fn fnmatch_c(pattern: &CStr, path: &CStr) -> bool {
    // SAFETY: both are valid NUL-terminated strings.
    unsafe { libc::fnmatch(pattern.as_ptr(), path.as_ptr(), libc::FNM_NOESCAPE) == 0 }
}

/// Modification time of a host path in nanoseconds, for freshness checks.
pub fn mtime_ns(m: &Metadata) -> i128 {
    m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_links_become_chroot_relative() {
        assert_eq!(chroot_link_target("/etc/localtime", b"/usr/share/zoneinfo/Etc/UTC"), b"..//usr/share/zoneinfo/Etc/UTC");
        assert_eq!(chroot_link_target("/lib64", b"/usr/lib64"), b"/usr/lib64");
        assert_eq!(chroot_link_target("/a/b/c", b"x"), b"x");
        assert_eq!(chroot_link_target("/a/b/c", b"/x"), b"../..//x");
    }

    #[test]
    fn fnmatch_star_crosses_slashes_and_glob_does_not() {
        let p = CString::new("/usr/share/doc/*").unwrap();
        assert!(fnmatch(&p, "/usr/share/doc/bash/README"));
        assert!(!fnmatch(&p, "/usr/share/doc"));
        assert!(host::glob(Path::new("/"), "/etc/*").iter().all(|m| m.matches('/').count() == 2));
        assert!(host::glob(Path::new("/"), "/nonexistent-*").is_empty());
    }

    #[test]
    fn dirname_like_ocaml() {
        assert_eq!(dirname("/usr/bin"), "/usr");
        assert_eq!(dirname("/usr"), "/");
    }
}
