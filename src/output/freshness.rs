//! `--if-newer`: decide whether an output needs rebuilding.
//!
//! After each build we store a fingerprint of everything the output was made from in an
//! extended attribute of the output directory: every input file and directory, *recursively*
//! (the original only looks at the arguments themselves, so editing a file inside a supermin.d
//! went unnoticed), the package database files, the options and environment that change the
//! result, and the identity of each output file. The next `--if-newer` run recomputes it: equal
//! means nothing changed. Output files are identified by inode and size, not mtime, because
//! libguestfs touches them after every build.
//!
//! Where there is no fingerprint (an output made by the original, or a filesystem without user
//! xattrs) we fall back to the original's rule: rebuild unless every input is older than every
//! output.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use log::debug;

use crate::util::fingerprint::{sources_into, Fnv};
use crate::util::sys;

const XATTR: &str = "user.supermin.fingerprint";

/// What a build is made from.
pub struct Sources<'a> {
    pub inputs: &'a [PathBuf],
    pub database: &'a [PathBuf],
    /// Options and environment that change the output, as text.
    pub settings: String,
    /// Files inside the output directory that must exist (e.g. `kernel`, `initrd`, `root`).
    pub output_files: &'a [&'a str],
}

fn fingerprint(out: &Path, s: &Sources) -> String {
    let mut h = Fnv::new();
    sources_into(&mut h, s.inputs, s.database, &s.settings);
    for f in s.output_files {
        let p = out.join(f);
        // Identity, not times: inode and size of the file itself (a symlink is not followed).
        h.bytes(f.as_bytes());
        match fs::symlink_metadata(&p) {
            Ok(m) => {
                h.num(m.ino() as i128);
                h.num(m.size() as i128);
            }
            Err(_) => h.num(-1),
        }
    }
    format!("{:016x}", h.0)
}

/// Record the fingerprint on a freshly built output (before it is moved into place: the
/// extended attribute and the inode numbers survive the rename).
pub fn record(out_tmp: &Path, s: &Sources) {
    // Output files are hashed by relative name and inode, both of which the rename keeps.
    let fp = fingerprint(out_tmp, s);
    if let Err(e) = sys::set_xattr(out_tmp, XATTR, fp.as_bytes()) {
        debug!("if-newer: cannot store fingerprint on {}: {}", out_tmp.display(), e);
    }
}

/// True when `out` is up to date.
pub fn is_fresh(out: &Path, s: &Sources) -> bool {
    if fs::symlink_metadata(out).is_err() {
        return false;
    }
    if s.output_files.iter().any(|f| fs::symlink_metadata(out.join(f)).is_err()) {
        debug!("if-newer: an output file is missing");
        return false;
    }
    match sys::get_xattr(out, XATTR) {
        Ok(stored) => {
            let now = fingerprint(out, s);
            let fresh = stored == now.as_bytes();
            if !fresh {
                debug!("if-newer: inputs, package database or outputs changed");
            }
            fresh
        }
        Err(_) => mtime_rule(out, s),
    }
}

/// The original's rule: every input (here recursively) and database file strictly older than
/// every output.
fn mtime_rule(out: &Path, s: &Sources) -> bool {
    fn mtime(p: &Path) -> Option<i128> {
        fs::symlink_metadata(p).ok().map(|m| m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128)
    }
    let mut outputs = vec![out.to_path_buf()];
    outputs.extend(s.output_files.iter().map(|f| out.join(f)));
    let Some(oldest_output) =
        outputs.iter().map(|p| mtime(p)).collect::<Option<Vec<_>>>().and_then(|v| v.into_iter().min())
    else {
        return false;
    };
    let mut newest_input = i128::MIN;
    let mut stack: Vec<PathBuf> = s.inputs.iter().chain(s.database).cloned().collect();
    while let Some(p) = stack.pop() {
        let Some(t) = mtime(&p) else { return false };
        newest_input = newest_input.max(t);
        if p.is_dir() {
            if let Ok(rd) = fs::read_dir(&p) {
                stack.extend(rd.flatten().map(|e| e.path()));
            }
        }
    }
    newest_input < oldest_output
}
