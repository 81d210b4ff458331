//! The original's *munge*: order the file list so that every entry's parent directory, and
//! every symlinked directory's target, comes before it; and the lstat cache it decides with.

use std::collections::{HashMap, HashSet};
use std::fs::{self, Metadata};
use std::path::Path;

use super::Listed;
use crate::host;
use crate::util::work;

/// lstat results, each path asked once (the pipeline asks about most paths several times).
pub struct StatCache<'a> {
    root: &'a Path,
    lstat: HashMap<String, Option<Metadata>>,
}

impl<'a> StatCache<'a> {
    pub fn new(root: &'a Path) -> Self {
        StatCache { root, lstat: HashMap::new() }
    }

    pub fn lstat(&mut self, path: &str) -> Option<&Metadata> {
        let root = self.root;
        self.lstat.entry(path.to_string()).or_insert_with(|| host::lstat(root, path).ok()).as_ref()
    }

    /// lstat `paths` on every core up front: one syscall per file is the largest cost of
    /// resolving (it decides how soon `mount` is ready), and the passes that follow are
    /// sequential. Results are what [`StatCache::lstat`] would have cached.
    pub fn prefetch<'p>(&mut self, paths: impl Iterator<Item = &'p str>) {
        let paths: Vec<&str> = paths.filter(|p| !self.lstat.contains_key(*p)).collect();
        let threads = work::cores();
        if threads < 2 || paths.len() < 1024 {
            return;
        }
        let root = self.root;
        let found = work::map(&paths, threads, |p| host::lstat(root, p).ok());
        self.lstat.reserve(paths.len());
        self.lstat.extend(paths.iter().map(|p| p.to_string()).zip(found));
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
pub fn munge(mut files: Vec<Listed>, stats: &mut StatCache) -> Vec<Listed> {
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
mod tests {
    use super::*;

    #[test]
    fn dirname_like_ocaml() {
        assert_eq!(dirname("/usr/bin"), "/usr");
        assert_eq!(dirname("/usr"), "/");
    }
}
