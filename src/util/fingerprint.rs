//! Fingerprints of what an output is made from: every input file and directory recursively
//! (identity, size and mtime), the package database files, and settings as text. `--if-newer`
//! and the resolved-manifest cache key on them.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// FNV-1a, 64 bit: a stable, dependency-free hash for a fingerprint that only has to change
/// when its inputs change.
pub struct Fnv(pub u64);

impl Fnv {
    pub fn new() -> Fnv {
        Fnv(0xcbf29ce484222325)
    }
    pub fn bytes(&mut self, b: &[u8]) {
        for &x in b {
            self.0 ^= x as u64;
            self.0 = self.0.wrapping_mul(0x100000001b3);
        }
        // Field separator so that ("ab","c") and ("a","bc") differ.
        self.0 ^= 0xff;
        self.0 = self.0.wrapping_mul(0x100000001b3);
    }
    pub fn num(&mut self, n: i128) {
        self.bytes(&n.to_le_bytes());
    }
}

fn stat_into(h: &mut Fnv, path: &Path, follow: bool) {
    h.bytes(path.as_os_str().as_encoded_bytes());
    let meta = if follow { fs::metadata(path) } else { fs::symlink_metadata(path) };
    match meta {
        Ok(m) => {
            h.num(m.ino() as i128);
            h.num(m.size() as i128);
            h.num(m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128);
        }
        Err(_) => h.num(-1),
    }
}

fn walk_into(h: &mut Fnv, path: &Path) {
    stat_into(h, path, true);
    if path.is_dir() {
        let mut names: Vec<_> = match fs::read_dir(path) {
            Ok(rd) => rd.flatten().map(|e| e.file_name()).collect(),
            Err(_) => return,
        };
        names.sort();
        for n in names {
            walk_into(h, &path.join(n));
        }
    }
}

/// The version, settings, inputs (recursively) and database files, hashed: what an output
/// and a cached resolve are made from.
pub fn sources_hash(inputs: &[PathBuf], database: &[PathBuf], settings: &str) -> u64 {
    sources_into(&mut Fnv::new(), inputs, database, settings).0
}

pub fn sources_into<'h>(h: &'h mut Fnv, inputs: &[PathBuf], database: &[PathBuf], settings: &str) -> &'h mut Fnv {
    h.bytes(env!("CARGO_PKG_VERSION").as_bytes());
    h.bytes(settings.as_bytes());
    for p in inputs {
        walk_into(h, p);
    }
    for p in database {
        stat_into(h, p, true);
    }
    h
}
