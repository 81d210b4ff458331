//! Atomic replacement of an output directory.
//!
//! Everything is built in a sibling `OUT.<random>` directory; on success it is swapped with the
//! old output in one `renameat2(RENAME_EXCHANGE)` (so readers see either the old or the new tree,
//! never nothing, unlike the original's two renames) and the old tree is deleted in the
//! background. On failure the temporary directory is removed and the previous output is left
//! exactly as it was.
//!
//! Only an output may be replaced: an existing `-o` must be empty, carry the marker every
//! output of ours carries (`user.supermin.output`, or the older `user.supermin.builder` /
//! `user.supermin.fingerprint`), or have exactly the shape of an output of this format (the
//! original's ext2 `kernel`, `initrd`, `root` trio, so libguestfs's cache keeps working).
//! Anything else (a user's files, a symlink, a regular file) needs `--force`; `/` never.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::fcntl::{RenameFlags, AT_FDCWD};

use crate::bail;
use crate::error::{strerror, Error, IoContext, Result};
use crate::util::dirfd::{self, Dir};
use crate::util::{newfile, sys};

pub struct Staging {
    tmp: PathBuf,
    /// `tmp`, opened once: everything inside is made through it (its parent may be someone
    /// else's, who can move `tmp` away and put a symlink there).
    dir: Dir,
    out: PathBuf,
    replace: Replace,
    committed: bool,
}

/// What a complete output of one format holds, to recognise an earlier one (ours or the
/// original's) that may be replaced.
#[derive(Clone, Copy)]
pub struct Shape {
    /// Shown in messages and stored in the marker.
    pub name: &'static str,
    /// Entries a complete output has; none means the shape is not recognisable (a chroot).
    pub files: &'static [&'static str],
    /// Entries it may have besides.
    pub optional: &'static [&'static str],
}

/// Which existing `-o` may be replaced.
#[derive(Clone, Copy)]
pub struct Replace {
    pub shape: Shape,
    /// `--force`: whatever is there.
    pub force: bool,
}

impl Staging {
    /// A temporary sibling of `out` to build in, once `out` is known to be replaceable.
    pub fn new(out: &Path, replace: Replace) -> Result<Staging> {
        let out = strip_one_trailing_slash(out);
        check_replaceable(&out, replace)?;
        let name = out
            .file_name()
            .ok_or_else(|| Error::new(format!("{}: not a usable output directory name", out.display())))?;
        let parent = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !parent.is_dir() {
            return Err(Error::new(format!(
                "{}: the parent directory of the output does not exist (create it first)",
                out.display()
            )));
        }
        remove_abandoned(&parent, &name.to_string_lossy());
        let tmp = create_marked(&parent, &name.to_string_lossy())?;
        let dir = match Dir::open_own(&tmp) {
            Ok(dir) => dir,
            Err(e) => bail!("{}: cannot use the temporary directory just made: {}", tmp.display(), strerror(&e)),
        };
        Ok(Staging { tmp, dir, out, replace, committed: false })
    }

    /// Where to build, for messages and markers.
    pub fn path(&self) -> &Path {
        &self.tmp
    }

    /// Where to build: the directory itself.
    pub fn dir(&self) -> &Dir {
        &self.dir
    }

    /// Put the new output in place of the old one (checked again: it may have changed while
    /// we built).
    pub fn commit(mut self) -> Result<()> {
        check_replaceable(&self.out, self.replace)?;
        if let Err(e) = sys::set_xattr(&self.tmp, OUTPUT_XATTR, self.replace.shape.name.as_bytes()) {
            log::debug!("{}: cannot mark it as an output ({e}); its shape will have to tell", self.out.display());
        }
        if fs::symlink_metadata(&self.out).is_ok() {
            // The previous output becomes our temporary: mark it so before the swap, so that
            // if we are killed before deleting it, the next build does.
            let _ = sys::set_xattr(&self.out, STAGING_XATTR, std::process::id().to_string().as_bytes());
            sys::exchange(&self.tmp, &self.out).at(&self.out, "cannot replace the output")?;
            let _ = sys::remove_xattr(&self.out, STAGING_XATTR);
            // `self.tmp` now holds the previous output: delete it without making the user wait.
            let spawned = Command::new("rm")
                .arg("-rf")
                .arg("--")
                .arg(&self.tmp)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
            if spawned.is_err() {
                remove_tree(&self.tmp);
            }
        } else {
            fs::rename(&self.tmp, &self.out).at(&self.out, "cannot move the output into place")?;
            let _ = sys::remove_xattr(&self.out, STAGING_XATTR);
        }
        self.committed = true;
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            remove_tree(&self.tmp);
        }
    }
}

/// On a directory being built: the builder's pid (also left on the finished output).
const OWNER_XATTR: &str = "user.supermin.builder";
/// On a temporary sibling while a build of pid VALUE needs it: the directory being built, and
/// the previous output from just before it is swapped out until it is deleted.
const STAGING_XATTR: &str = "user.supermin.staging";
/// On every finished output: its format.
const OUTPUT_XATTR: &str = "user.supermin.output";
/// Any of these says a directory is an output of ours (the fingerprint is `--if-newer`'s).
const MARKERS: [&str; 3] = [OUTPUT_XATTR, OWNER_XATTR, "user.supermin.fingerprint"];

/// Refuse to replace `out` unless it is absent, empty, an earlier output, or `--force` says
/// so (never `/`).
fn check_replaceable(out: &Path, replace: Replace) -> Result<()> {
    let shown = out.display();
    let meta = match fs::symlink_metadata(out) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(out, "cannot use as output", e)),
        Ok(m) => m,
    };
    if fs::canonicalize(out).is_ok_and(|p| p == Path::new("/")) {
        bail!("{shown}: refusing to replace the root directory (choose an output directory)");
    }
    let refusal = if meta.file_type().is_symlink() {
        "is a symbolic link (give the directory itself, or pass --force to replace the link)"
    } else if !meta.is_dir() {
        "exists and is not a directory (remove it, or pass --force to replace it)"
    } else if is_output(out, replace.shape)? {
        return Ok(());
    } else {
        "is not empty and not an earlier output of supermin: refusing to delete what is in it (choose another \
         directory, or pass --force to replace it)"
    };
    if !replace.force {
        bail!("{shown}: {refusal}");
    }
    log::warn!("{shown}: replacing it as --force says, though it {}", refusal.split(" (").next().unwrap_or(refusal));
    Ok(())
}

/// `dir` is empty, marked as an output of ours, or has exactly `shape`'s entries.
fn is_output(dir: &Path, shape: Shape) -> Result<bool> {
    let names: Vec<String> = fs::read_dir(dir)
        .at(dir, "cannot list the output directory")?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<std::io::Result<_>>()
        .at(dir, "cannot list the output directory")?;
    if names.is_empty() || MARKERS.iter().any(|m| sys::get_xattr(dir, m).is_ok()) {
        return Ok(true);
    }
    let known = |n: &String| shape.files.contains(&n.as_str()) || shape.optional.contains(&n.as_str());
    let complete = shape.files.iter().all(|f| names.iter().any(|n| n == f));
    Ok(!shape.files.is_empty() && complete && names.iter().all(known))
}

/// `parent/prefix.<random>`, private while it is built (the writers give it its mode when
/// they finish), marked as ours and alive so that a later run can tell an abandoned one (a
/// killed build). It is made and marked as `.prefix.PID.<random>`, then renamed: a build
/// killed before the marks leaves an empty directory whose name says whose it was.
fn create_marked(parent: &Path, prefix: &str) -> Result<PathBuf> {
    let pid = std::process::id().to_string();
    let hidden = create_unique(parent, &format!(".{prefix}.{pid}"), 0o700)?;
    let _ = sys::set_xattr(&hidden, OWNER_XATTR, pid.as_bytes());
    let _ = sys::set_xattr(&hidden, STAGING_XATTR, pid.as_bytes());
    let renamed = unique_name(parent, prefix, |tmp| {
        nix::fcntl::renameat2(AT_FDCWD, &hidden, AT_FDCWD, tmp, RenameFlags::RENAME_NOREPLACE).map_err(Into::into)
    });
    if renamed.is_err() {
        let _ = fs::remove_dir(&hidden);
    }
    renamed
}

/// An empty `.prefix.PID.<random>` of ours whose process is gone: a build killed between
/// making its temporary directory and marking it ([`create_marked`]).
fn remove_unmarked(parent: &Path, name: &str, prefix: &str) {
    let Some(rest) = name.strip_prefix('.').and_then(|n| n.strip_prefix(prefix)).and_then(|n| n.strip_prefix('.'))
    else {
        return;
    };
    let Some((pid, suffix)) = rest.split_once('.') else { return };
    let (Ok(pid), 8) = (pid.parse::<u32>(), suffix.len()) else { return };
    let path = parent.join(name);
    let ours = fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir() && m.uid() == sys::geteuid());
    if ours && !sys::process_running(pid) && fs::remove_dir(&path).is_ok() {
        log::info!("removed {}, left by a build that was killed", path.display());
    }
}

/// Delete `prefix.<random>` siblings left by builds that were killed: only directories we
/// marked, whose builder process no longer exists (and empty unmarked ones, see
/// [`remove_unmarked`]).
fn remove_abandoned(parent: &Path, prefix: &str) {
    let Ok(rd) = fs::read_dir(parent) else { return };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        remove_unmarked(parent, &name, prefix);
        let Some(suffix) = name.strip_prefix(prefix).and_then(|s| s.strip_prefix('.')) else { continue };
        if suffix.len() != 8 || !suffix.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) {
            continue;
        }
        let path = e.path();
        let pid_in =
            |name| sys::get_xattr(&path, name).ok().and_then(|v| String::from_utf8(v).ok()?.parse::<u32>().ok());
        // A temporary of ours; or, from builds before the staging mark, one marked by its
        // builder that never became an output (a finished output may have such a name).
        let pid = match pid_in(STAGING_XATTR) {
            Some(pid) => pid,
            None if sys::get_xattr(&path, OUTPUT_XATTR).is_ok() => continue,
            None => match pid_in(OWNER_XATTR) {
                Some(pid) => pid,
                None => continue,
            },
        };
        if !sys::process_running(pid) {
            log::info!("removing {}, left by a build that was killed", path.display());
            remove_tree(&path);
        }
    }
}

/// Create `parent/prefix.<random>` with `mode`, failing if the name is taken.
pub fn create_unique(parent: &Path, prefix: &str, mode: u32) -> Result<PathBuf> {
    unique_name(parent, prefix, |path| fs::DirBuilder::new().mode(mode).create(path))
}

/// `make` a directory at `parent/prefix.<random>`, another name each time it is taken.
fn unique_name(parent: &Path, prefix: &str, mut make: impl FnMut(&Path) -> std::io::Result<()>) -> Result<PathBuf> {
    for _ in 0..100 {
        let path = parent.join(format!("{prefix}.{}", newfile::random_suffix()));
        match make(&path) {
            Ok(()) => return Ok(path),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io(&path, "cannot create temporary directory", e)),
        }
    }
    Err(Error::new(format!("{}: cannot pick a temporary directory name", parent.display())))
}

/// `rm -rf` that also copes with directories we made read-only.
pub fn remove_tree(path: &Path) {
    if fs::remove_dir_all(path).is_ok() || fs::symlink_metadata(path).is_err() {
        return;
    }
    dirfd::make_writable(path);
    let _ = fs::remove_dir_all(path);
}

/// The original strips exactly one trailing `/` from `-o`.
fn strip_one_trailing_slash(p: &Path) -> PathBuf {
    let s = p.to_string_lossy();
    match s.strip_suffix('/') {
        Some(t) if !t.is_empty() => PathBuf::from(t),
        _ => p.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A build killed between making its temporary directory and marking it leaves an empty
    /// `.NAME.PID.<random>`: the next build removes it when that process is gone, and leaves
    /// a live builder's, and anything not empty, alone.
    #[test]
    fn unmarked_temporaries_of_killed_builds_are_removed() {
        let parent = std::env::temp_dir().join(format!("supermin-staging-{}", std::process::id()));
        fs::create_dir_all(&parent).unwrap();
        let dead = parent.join(".out.4000000.abcdefgh");
        let alive = parent.join(format!(".out.{}.abcdefgh", std::process::id()));
        let full = parent.join(".out.4000001.abcdefgh");
        for d in [&dead, &alive, &full] {
            fs::create_dir_all(d).unwrap();
        }
        fs::write(full.join("f"), b"").unwrap();
        remove_abandoned(&parent, "out");
        assert!(!dead.exists() && alive.exists() && full.exists());
        let made = create_marked(&parent, "out").unwrap();
        assert!(made.file_name().unwrap().to_string_lossy().starts_with("out."));
        assert!(sys::get_xattr(&made, STAGING_XATTR).is_ok());
        fs::remove_dir_all(&parent).unwrap();
    }
}
