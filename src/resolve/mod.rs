//! From a supermin appliance to a [`Manifest`]: the one engine behind `--build`, `mount` and
//! `materialize`.
//!
//! The pipeline is the original's, step for step: packages → installed packages → dependency
//! closure → files, minus config files (they come from the base image), minus excludefiles
//! (`fnmatch` without `FNM_PATHNAME`: `*` crosses `/`), plus hostfiles (`glob`: `*` does not),
//! minus paths that do not exist, then "munged" (parents and symlink-target directories put
//! before what needs them) and replayed into the tree after the base images.

use std::collections::HashSet;
use std::ffi::CString;
use std::fs::{self, Metadata};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

use log::{debug, info};

use crate::bail;
use crate::error::{Error, Result};
use crate::host;
use crate::inputs::Inputs;
use crate::manifest::{Content, Ino, Inode, Manifest, Meta, Node, S_IFDIR, S_IFLNK, S_IFREG};
use crate::packager::{PackageFile, PackageManager, PkgId, Reached};
use crate::util::progress::Progress;
use crate::util::sys;

pub mod cache;
mod munge;

use munge::{munge, StatCache};

/// Which dependency closure to take (`--deps`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Deps {
    /// Every installed dependency, including those the original loses (a later alternative,
    /// a virtual package, an arch-qualified name, a boolean requirement).
    #[default]
    All,
    /// Exactly the original supermin's closure.
    Supermin,
}

/// How an appliance is resolved, besides its inputs and root: what every command that
/// resolves one accepts and a mount records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// Add `/packagelist` (`--include-packagelist`).
    pub include_packagelist: bool,
    pub deps: Deps,
}

pub struct Options<'a> {
    /// Root of the host (or sysroot) the packages are installed in.
    pub root: &'a Path,
    pub settings: Settings,
    /// Owner and permissions of the appliance root before any base image changes them.
    pub root_meta: Meta,
}

/// What the appliance resolved to.
pub struct Resolved {
    pub manifest: Manifest,
    /// `name_version_arch` of every package in the closure, sorted.
    pub packages: Vec<String>,
    /// The packages' files as their database names them, after excludefiles (config files,
    /// which come from the base image, left out): what an excludefiles line can remove.
    pub package_files: Vec<String>,
    /// The dependency closure, with why each package is in (for `inspect`).
    pub closure: Vec<Reached>,
    /// Per package of `closure`, in its order: its files, config files left out, before
    /// excludefiles (for `inspect`, which counts what each package brings and loses).
    pub files_by_package: Vec<Vec<PackageFile>>,
    /// The paths the hostfiles patterns matched, in order.
    pub hostfiles: Vec<String>,
    /// Each directory that took its metadata from a host directory, with that directory's
    /// path, in the order they were placed (a later one overrides an earlier one).
    pub host_dirs: Vec<(Ino, String)>,
}

/// One entry of the host file list: where it goes and where to read it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Listed {
    path: String,
    source: String,
}

/// Resolve `inputs` with an appliance root owned by the caller, of time `mtime` (unless a base
/// image sets it).
pub fn resolve_at(
    pm: &dyn PackageManager,
    inputs: &Inputs,
    root: &Path,
    settings: Settings,
    mtime: i64,
) -> Result<Resolved> {
    let root_meta = Meta { mode: 0o755, uid: sys::geteuid(), gid: sys::getegid(), mtime, ..Meta::default() };
    resolve(inputs, pm, &Options { root, settings, root_meta })
}

pub fn resolve(inputs: &Inputs, pm: &dyn PackageManager, opts: &Options) -> Result<Resolved> {
    let mut manifest = Manifest::new(opts.root_meta);
    for image in &inputs.base_images {
        debug!("unpacking base image {}", image.path.display());
        manifest.add_tar(image.clone())?;
    }
    let mut closure = pm.closure(&pm.resolve_names(&inputs.packages));
    if opts.settings.deps == Deps::Supermin {
        closure.retain(|r| r.original);
    }
    let ids: Vec<PkgId> = closure.iter().map(|r| r.pkg).collect();
    let mut packages: Vec<String> = ids.iter().map(|&p| pm.pretty_name(p)).collect();
    packages.sort();
    info!("build: {} packages, including dependencies", packages.len());

    let progress = Progress::items("resolve: packages", closure.len() as u64);
    let files_by_package = closure.iter().map(|r| package_files(pm, r.pkg, &progress)).collect::<Result<Vec<_>>>()?;
    drop(progress);
    let mut listed = merge(&files_by_package);
    exclude(&mut listed, &inputs.excludes);
    let package_files = listed.iter().map(|f| f.path.clone()).collect();
    let hostfiles: Vec<String> = inputs.hostfiles.iter().flat_map(|p| host::glob(opts.root, p)).collect();
    listed.extend(hostfiles.iter().map(|path| Listed { source: path.clone(), path: path.clone() }));
    let mut stats = StatCache::new(opts.root);
    stats.prefetch(listed.iter().map(|f| f.source.as_str()));
    listed.retain(|f| stats.lstat(&f.source).is_some() || stats.lstat(&f.path).is_some());
    info!("build: {} files, after removing unreadable files", listed.len());
    let listed = munge(listed, &mut stats);
    info!("build: {} files, after munging", listed.len());
    let mut host_dirs = Vec::new();
    for f in &listed {
        if let Some(st) = stats.lstat(&f.source).cloned() {
            if let Some(dir) = place(&mut manifest, opts.root, f, &st)? {
                host_dirs.push((dir, f.source.clone()));
            }
        }
    }
    if opts.settings.include_packagelist {
        add_packagelist(&mut manifest, pm, &packages, &opts.root_meta);
    }
    clamp_to_epoch(&mut manifest);
    Ok(Resolved { manifest, packages, package_files, closure, files_by_package, hostfiles, host_dirs })
}

/// A package's files, config files left out (they come from the base image).
fn package_files(pm: &dyn PackageManager, pkg: PkgId, progress: &Progress) -> Result<Vec<PackageFile>> {
    let files = pm.files(&[pkg])?.into_iter().filter(|f| !f.config).collect();
    progress.inc(1);
    Ok(files)
}

/// Every package's files, sorted by path, each path once (a directory is in many packages).
fn merge(files_by_package: &[Vec<PackageFile>]) -> Vec<Listed> {
    let mut listed: Vec<Listed> = files_by_package
        .iter()
        .flatten()
        .map(|f| Listed { path: f.path.clone(), source: f.source_path().to_string() })
        .collect();
    listed.sort_unstable();
    listed.dedup_by(|a, b| a.path == b.path);
    info!("build: {} files", listed.len());
    listed
}

/// The excludefiles patterns, ready to match paths (`fnmatch` without `FNM_PATHNAME`).
pub struct Excludes<'a> {
    /// Patterns without `*`, `?` or `[` match only themselves (FNM_NOESCAPE, no other flags):
    /// they are looked up in a set, so a long list of paths (what `slim` writes) costs one
    /// lookup per file instead of one fnmatch per file and path.
    literal: HashSet<&'a str>,
    wild: Vec<CString>,
}

impl<'a> Excludes<'a> {
    pub fn new(patterns: &'a [String]) -> Excludes<'a> {
        let (wild, literal): (Vec<&String>, Vec<&String>) =
            patterns.iter().filter(|p| !p.contains('\0')).partition(|p| p.contains(['*', '?', '[']));
        Excludes {
            literal: literal.into_iter().map(String::as_str).collect(),
            wild: wild.into_iter().filter_map(|p| CString::new(p.as_str()).ok()).collect(),
        }
    }

    pub fn matches(&self, path: &str) -> bool {
        if self.literal.contains(path) {
            return true;
        }
        let Ok(path) = CString::new(path) else { return false };
        self.wild.iter().any(|p| sys::fnmatch(p, &path, libc::FNM_NOESCAPE))
    }
}

/// Drop the paths an excludefiles pattern matches.
fn exclude(listed: &mut Vec<Listed>, patterns: &[String]) {
    if patterns.is_empty() {
        return;
    }
    let excludes = Excludes::new(patterns);
    listed.retain(|f| {
        let keep = !excludes.matches(&f.path);
        if !keep {
            debug!("build: excluding {}", f.path);
        }
        keep
    });
    info!("build: {} files, after matching excludefiles", listed.len());
}

/// Put host file `f` (whose lstat is `st`) into the tree, as the original's writer creates it
/// in its output directory. Returns the directory given `st`'s metadata, if `f` is one.
fn place(manifest: &mut Manifest, root: &Path, f: &Listed, st: &Metadata) -> Result<Option<Ino>> {
    let meta = Meta::from_host(st);
    let path = f.path.as_bytes();
    let ft = st.file_type();
    if ft.is_dir() {
        let placed = manifest.mkdir(path, meta).then(|| manifest.lookup(path, true)).flatten();
        if placed.is_none() {
            debug!("build: {}: not placed (not a directory, or no parent directory)", f.path);
        }
        return Ok(placed);
    }
    let placed = if ft.is_symlink() {
        let host = host::path(root, &f.source);
        let target = match fs::read_link(&host) {
            Ok(target) => target,
            // Someone made it something else since its lstat: never guess which it is.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                bail!("{}: changed since the appliance was resolved (a symlink, now not): build again", host.display())
            }
            Err(_) => return Ok(None),
        };
        let target = chroot_link_target(&f.source, target.as_os_str().as_bytes());
        let meta = Meta { size: target.len() as u64, mode: S_IFLNK | 0o777, ..meta };
        manifest.create(path, Inode { meta, node: Node::Symlink(target.into()) }, false).is_some()
    } else if ft.is_file() {
        let content = Content::Host(host::HostFile::new(root, &f.source, st));
        manifest.create(path, Inode { meta, node: Node::File(content) }, true).is_some()
    } else {
        manifest.create(path, Inode { meta, node: Node::Special }, true).is_some()
    };
    if !placed {
        debug!("build: {}: not placed (already there, or no parent directory)", f.path);
    }
    Ok(None)
}

/// `/packagelist` (`--include-packagelist`): every package of the closure, one per line.
fn add_packagelist(manifest: &mut Manifest, pm: &dyn PackageManager, packages: &[String], root_meta: &Meta) {
    let mut text = packages.join("\n");
    text.push('\n');
    // The list describes the installed set: it is as new as the package database (or
    // SOURCE_DATE_EPOCH), so every build and view of the same state agrees on it.
    let mtime = crate::util::source_date_epoch().unwrap_or_else(|| {
        let newest = pm.database_files().iter().filter_map(|f| fs::metadata(f).ok()).map(|m| m.mtime()).max();
        newest.unwrap_or(root_meta.mtime)
    });
    let meta = Meta {
        mode: S_IFREG | 0o644,
        uid: root_meta.uid,
        gid: root_meta.gid,
        size: text.len() as u64,
        mtime,
        ..Meta::default()
    };
    let node = Node::File(Content::Inline(Arc::new(text.into_bytes())));
    manifest.create(b"/packagelist", Inode { meta, node }, true);
}

/// Copy a host directory tree into the manifest at `target` (the kernel modules for `-f ext2`
/// and `initramfs`): missing parents of `target` are created with their host metadata, and
/// entries already there are replaced, as the original's ext2 writer does. Only the files
/// (non-directories) whose path relative to `host_dir` `keep` accepts are added.
///
/// `host_dir` is a path inside `root` (a sysroot's owner made it): it is resolved inside the
/// root first, then every directory is opened with no symlink on the way and listed through
/// its descriptor, so the walk never lists a directory of the build host; its files become
/// [`host::HostFile`]s, whose open refuses the same.
pub fn add_host_tree(
    manifest: &mut Manifest,
    root: &Path,
    host_dir: &str,
    target: &str,
    keep: &dyn Fn(&str) -> bool,
) -> Result<()> {
    // Parents first, e.g. /lib/modules, with the metadata of the host's own directory.
    let mut prefix = String::new();
    for comp in target.split('/').filter(|c| !c.is_empty()) {
        prefix.push('/');
        prefix.push_str(comp);
        if manifest.lookup(prefix.as_bytes(), true).is_none() {
            let meta = host::stat(root, &prefix)
                .map(|m| Meta::from_host(&m))
                .unwrap_or(Meta { mode: S_IFDIR | 0o755, ..Meta::default() });
            manifest.mkdir(prefix.as_bytes(), meta);
        }
    }
    let top = host::realpath(root, host_dir);
    let shown = |inside: &str| root.join(inside.trim_start_matches('/'));
    let top_meta = host::HostDir::open(root, &top)
        .and_then(|d| d.metadata())
        .map_err(|e| Error::io(&shown(&top), "cannot read", e))?;
    manifest.mkdir(target.as_bytes(), Meta::from_host(&top_meta));
    let mut stack = vec![(top, target.to_string())];
    while let Some((inside, at)) = stack.pop() {
        let mut dir = host::HostDir::open(root, &inside).map_err(|e| Error::io(&shown(&inside), "cannot list", e))?;
        let entries = dir.entries().map_err(|e| Error::io(&shown(&inside), "cannot list", e))?;
        for (name, st) in entries {
            let child = format!("{}/{}", inside.trim_end_matches('/'), name.to_string_lossy());
            let path = format!("{}/{}", at, name.to_string_lossy());
            if !st.is_dir() && !keep(&path[target.len() + 1..]) {
                continue;
            }
            let meta = Meta::from_host(&st);
            if st.is_dir() {
                manifest.mkdir(path.as_bytes(), meta);
                stack.push((child, path));
            } else if st.file_type().is_symlink() {
                let target = dir.read_link(&name).map_err(|e| Error::io(&shown(&child), "cannot read link", e))?;
                let target = target.as_bytes().to_vec();
                let meta = Meta { size: target.len() as u64, ..meta };
                manifest.create(path.as_bytes(), Inode { meta, node: Node::Symlink(target.into()) }, true);
            } else if st.is_file() {
                let file = host::HostFile::found(root, &shown(&child), &st);
                manifest.create(path.as_bytes(), Inode { meta, node: Node::File(Content::Host(file)) }, true);
            } else {
                manifest.create(path.as_bytes(), Inode { meta, node: Node::Special }, true);
            }
        }
    }
    clamp_to_epoch(manifest);
    Ok(())
}

/// With `SOURCE_DATE_EPOCH`, no time in the tree is later than it (see `Manifest::clamp_mtimes`):
/// applied wherever the resolve stage finishes adding host entries.
fn clamp_to_epoch(manifest: &mut Manifest) {
    if let Some(epoch) = crate::util::source_date_epoch() {
        manifest.clamp_mtimes(epoch);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_links_become_chroot_relative() {
        assert_eq!(
            chroot_link_target("/etc/localtime", b"/usr/share/zoneinfo/Etc/UTC"),
            b"..//usr/share/zoneinfo/Etc/UTC"
        );
        assert_eq!(chroot_link_target("/lib64", b"/usr/lib64"), b"/usr/lib64");
        assert_eq!(chroot_link_target("/a/b/c", b"x"), b"x");
        assert_eq!(chroot_link_target("/a/b/c", b"/x"), b"../..//x");
    }

    #[test]
    fn excludefiles_stars_cross_slashes() {
        let listed = |paths: &[&str]| -> Vec<Listed> {
            paths.iter().map(|p| Listed { path: p.to_string(), source: p.to_string() }).collect()
        };
        let mut files = listed(&["/usr/share/doc", "/usr/share/doc/bash/README", "/usr/bin/bash"]);
        exclude(&mut files, &["/usr/share/doc/*".to_string()]);
        assert_eq!(files, listed(&["/usr/share/doc", "/usr/bin/bash"]));
        // Literal patterns match exactly their path, as fnmatch would.
        let mut files = listed(&["/usr/bin/bash", "/usr/bin/bashbug", "/usr/bin/[", "/usr/bin/a"]);
        exclude(&mut files, &["/usr/bin/bash".into(), "/usr/bin/[[]".into(), "/usr/bin".into()]);
        assert_eq!(files, listed(&["/usr/bin/bashbug", "/usr/bin/a"]));
    }
}
