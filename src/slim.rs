//! `supermin slim`: from an appliance and traces of workloads run in its view, a new supermin
//! appliance that leaves out every package file no trace used.
//!
//! The new appliance is the old one's inputs, copied, plus one more excludefiles list naming
//! each unused non-directory package file (directories are kept), escaped so that `fnmatch`
//! matches it literally; symlinks to directories count as directories. Excludefiles only ever
//! apply to package files, so base images and
//! hostfiles come through whole, and the original supermin builds the result too. A path
//! counts as used when a trace looked it up or read it (the slim appliance keeps files that
//! were only `stat`ed: a program that tests for a file and finds it gone may behave
//! differently), or when it matches a `--keep` pattern.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ffi::CString;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::build;
use crate::error::{Error, IoContext, Result};
use crate::manifest::{Ino, Manifest, Node, ROOT};
use crate::output::staging::{Replace, Shape, Staging};
use crate::packager::Driver;
use crate::trace;
use crate::util::{newfile, sys};

pub struct Options {
    pub inputs: Vec<PathBuf>,
    pub traces: Vec<PathBuf>,
    /// `--keep GLOB`: package files to keep whether used or not (`fnmatch`, `*` crosses `/`).
    pub keep: Vec<String>,
    pub out: PathBuf,
    pub root: PathBuf,
    pub force: bool,
}

/// The name of the excludefiles list `slim` adds.
const EXCLUDES: &str = "zz-slim-excludefiles";

/// What `slim` writes: a supermin appliance, recognised as ours by its marker.
const SHAPE: Shape = Shape { name: "supermin.d", files: &["packages"], optional: &[] };

/// Entries and bytes of an appliance.
#[derive(Clone, Copy, Default)]
struct Size {
    entries: u64,
    /// Entries that are not directories.
    files: u64,
    bytes: u64,
}

pub fn slim(driver: Driver, opts: &Options) -> Result<()> {
    // The output is built beside `-o` and the inputs copied into it: inside an input that
    // copies the input into itself, and replacing one deletes it. Refused before any work.
    build::check_apart(&opts.inputs, &opts.out)?;
    let used = trace::read(&opts.traces)?;
    let pm = driver.open(&opts.root)?;
    let resolved = build::resolve_inputs(pm.as_ref(), &opts.inputs, &opts.root, Default::default(), None)?;
    let manifest = &resolved.manifest;
    let used: HashSet<Ino> = used.iter().filter_map(|p| manifest.lookup(p, false)).collect();
    let keep = patterns(&opts.keep)?;
    // Only --keep patterns need each inode's name in the tree.
    let names = if keep.is_empty() { HashMap::new() } else { first_names(manifest) };
    let mut unused: BTreeSet<&str> = BTreeSet::new();
    let mut dropped: HashSet<(Ino, Vec<u8>)> = HashSet::new();
    for path in &resolved.package_files {
        let Some((dir, name, ino)) = entry(manifest, path.as_bytes()) else { continue };
        let kept = used.contains(&ino)
            || matches(&keep, path.as_bytes())
            || names.get(&ino).is_some_and(|n| matches(&keep, n))
            || is_directory(manifest, path.as_bytes());
        if !kept && !path.contains('\n') {
            unused.insert(path);
            dropped.insert((dir, name));
        }
    }
    let staging = Staging::new(&opts.out, Replace { shape: SHAPE, force: opts.force })?;
    copy_inputs(&opts.inputs, staging.path())?;
    write_excludes(&staging.path().join(EXCLUDES), &unused)?;
    staging.commit()?;
    report(opts, size(manifest, &HashSet::new()), size(manifest, &dropped), unused.len());
    Ok(())
}

/// A directory, or a symlink to one: kept, because the tree's shape depends on it (the
/// original puts a symlinked directory's target in the appliance because of the link).
fn is_directory(manifest: &Manifest, path: &[u8]) -> bool {
    manifest.lookup(path, true).is_some_and(|ino| matches!(manifest.inode(ino).node, Node::Dir(_)))
}

/// The `--keep` patterns as C strings for `fnmatch`.
fn patterns(globs: &[String]) -> Result<Vec<CString>> {
    let bad = |g: &String| Error::usage(format!("--keep {g:?}: a pattern cannot hold a NUL byte"));
    globs.iter().map(|g| CString::new(g.as_str()).map_err(|_| bad(g))).collect()
}

fn matches(patterns: &[CString], path: &[u8]) -> bool {
    let Ok(path) = CString::new(path) else { return false };
    patterns.iter().any(|p| sys::fnmatch(p, &path, libc::FNM_NOESCAPE))
}

/// Each inode's first path in the tree.
fn first_names(manifest: &Manifest) -> HashMap<Ino, Vec<u8>> {
    let mut names = HashMap::new();
    manifest.walk(|path, ino| {
        names.entry(ino).or_insert_with(|| path.to_vec());
    });
    names
}

/// The directory entry `path` names in the tree (its parent's symlinks followed, not its
/// own): the directory, the name, the inode.
fn entry(manifest: &Manifest, path: &[u8]) -> Option<(Ino, Vec<u8>, Ino)> {
    let cut = path.iter().rposition(|&b| b == b'/')?;
    let dir = manifest.lookup(&path[..cut], true)?;
    let name = path[cut + 1..].to_vec();
    let ino = *manifest.children(dir)?.get(&name[..])?;
    Some((dir, name, ino))
}

/// Entries and bytes of the tree without the `dropped` entries (and what only they reach).
fn size(manifest: &Manifest, dropped: &HashSet<(Ino, Vec<u8>)>) -> Size {
    let mut size = Size { entries: 1, files: 0, bytes: 0 };
    let mut seen = HashSet::new();
    let mut stack = vec![ROOT];
    while let Some(dir) = stack.pop() {
        for (name, &ino) in manifest.children(dir).into_iter().flatten() {
            if dropped.contains(&(dir, name.to_vec())) {
                continue;
            }
            size.entries += 1;
            match &manifest.inode(ino).node {
                Node::Dir(_) => stack.push(ino),
                Node::File(_) if seen.insert(ino) => size.bytes += manifest.inode(ino).meta.size,
                _ => {}
            }
            size.files += u64::from(!matches!(manifest.inode(ino).node, Node::Dir(_)));
        }
    }
    size
}

/// The inputs, copied into `out`: one directory's contents as they are; several inputs each
/// under a numbered name, so that they are read in the same order.
fn copy_inputs(inputs: &[PathBuf], out: &Path) -> Result<()> {
    if let [one] = inputs {
        if one.is_dir() {
            return copy_dir(one, out);
        }
    }
    for (i, input) in inputs.iter().enumerate() {
        let name = input.file_name().map_or("input".into(), |n| n.to_string_lossy().into_owned());
        let dest = out.join(format!("{:03}-{name}", i + 1));
        if input.is_dir() {
            fs::create_dir(&dest).at(&dest, "cannot create")?;
            copy_dir(input, &dest)?;
        } else {
            newfile::copy(input, &dest).at(&dest, "cannot copy")?;
        }
    }
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    for e in fs::read_dir(from).at(from, "cannot list")? {
        let src = e.at(from, "cannot list")?.path();
        let dest = to.join(src.file_name().unwrap_or_default());
        if src.is_dir() {
            fs::create_dir(&dest).at(&dest, "cannot create")?;
            copy_dir(&src, &dest)?;
        } else {
            newfile::copy(&src, &dest).at(&dest, "cannot copy")?;
        }
    }
    Ok(())
}

/// One `-PATH` line per path, each `*`, `?` and `[` in brackets so that it stands for itself
/// (supermin matches with `FNM_NOESCAPE`: a backslash would not escape it).
fn write_excludes(file: &Path, paths: &BTreeSet<&str>) -> Result<()> {
    let mut text = String::new();
    for path in paths {
        text.push('-');
        for c in path.chars() {
            match c {
                '*' | '?' | '[' => text.extend(['[', c, ']']),
                c => text.push(c),
            }
        }
        text.push('\n');
    }
    // An empty file would be ignored anyway; one that says nothing is excluded is clearer.
    newfile::create(file, 0o666).and_then(|mut f| f.write_all(text.as_bytes())).at(file, "cannot write")
}

fn report(opts: &Options, before: Size, after: Size, unused: usize) {
    let ratio = |a: u64, b: u64| a as f64 / b.max(1) as f64;
    println!(
        "slim: {} → {} files ({:.1}x fewer; {} → {} entries with directories), {} → {} MB ({:.1}x fewer bytes); \
         {unused} package files left out",
        before.files,
        after.files,
        ratio(before.files, after.files),
        before.entries,
        after.entries,
        before.bytes / 1_000_000,
        after.bytes / 1_000_000,
        ratio(before.bytes, after.bytes),
    );
    println!(
        "slim: wrote {}; a workload that uses a file no trace saw will fail there: trace it too, or --keep the \
         path, and compare with `supermin --build -f chroot` of both",
        opts.out.display()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excludes_match_literally() {
        let dir = std::env::temp_dir().join(format!("supermin-slim-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let file = dir.join("x");
        let odd = "/usr/share/a*b?c[d]e\\f";
        write_excludes(&file, &BTreeSet::from([odd])).unwrap();
        let line = fs::read_to_string(&file).unwrap();
        let pattern = CString::new(line.trim_end().strip_prefix('-').unwrap()).unwrap();
        assert!(matches(std::slice::from_ref(&pattern), odd.as_bytes()));
        assert!(!matches(&[pattern], b"/usr/share/aXbYc[d]e\\f"));
        fs::remove_dir_all(&dir).unwrap();
    }
}
