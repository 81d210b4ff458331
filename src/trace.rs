//! Traces: which paths of a mounted view a workload used (`mount --trace FILE`), for `slim`.
//!
//! While tracing, the view marks each inode the first time the kernel asks about it: `stat`
//! when it is looked up by name (every use of a path starts with that, since a traced mount
//! does not hand out attributes with listings), `read` when its bytes or link target are read
//! or it is listed. The kernel's caches hide repeated uses, which is fine: one is enough.
//!
//! The file, written atomically when the mount ends, is text: a header line, then one line
//! per used path, `read PATH` or `stat PATH`, sorted. In a path, a backslash, a newline, any
//! other control character and any byte that is not part of valid UTF-8 is written as `\ooo`
//! (three octal digits), as `/proc/self/mountinfo` writes unusual bytes; everything else is
//! as it is. A hard-linked file is listed under each of its names.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};

use crate::bail;
use crate::error::{IoContext, Result};
use crate::manifest::{Ino, Manifest};
use crate::util::escape::unescape_octal;
use crate::util::newfile;

/// The first line of a trace file.
pub const HEADER: &str = "# supermin trace 1: one used path per line, \"read PATH\" or \"stat PATH\", \\ooo escapes";

/// How an inode was used, in increasing order.
pub const STAT: u8 = 1;
pub const READ: u8 = 2;

/// Per inode of a view: how it was used so far.
pub struct Uses(Vec<AtomicU8>);

impl Uses {
    pub fn new(inodes: usize) -> Uses {
        Uses((0..inodes).map(|_| AtomicU8::new(0)).collect())
    }

    /// Called on every request about `ino`: a plain load once it is marked, so repeated
    /// reads do not keep writing the shared counter.
    pub fn mark(&self, ino: Ino, how: u8) {
        if let Some(u) = self.0.get(ino as usize) {
            if u.load(Ordering::Relaxed) < how {
                u.fetch_max(how, Ordering::Relaxed);
            }
        }
    }

    fn get(&self, ino: Ino) -> u8 {
        self.0.get(ino as usize).map_or(0, |u| u.load(Ordering::Relaxed))
    }

    /// Write the trace of `manifest` to `out` (a new file of a random name beside it, then
    /// renamed: the daemon is often root and `out`'s directory someone else's, see
    /// [`newfile`]). Returns how many paths were read and how many only looked up.
    pub fn write(&self, manifest: &Manifest, out: &Path) -> Result<(usize, usize)> {
        let mut lines: Vec<(u8, Vec<u8>)> = Vec::new();
        manifest.walk(|path, ino| match self.get(ino) {
            0 => {}
            how => lines.push((how, path.to_vec())),
        });
        let mut text = format!("{HEADER}\n").into_bytes();
        for (how, path) in &lines {
            text.extend_from_slice(if *how == READ { b"read " } else { b"stat " });
            text.extend_from_slice(escape(path).as_bytes());
            text.push(b'\n');
        }
        newfile::replace(out, &text, 0o666).at(out, "cannot write the trace")?;
        let read = lines.iter().filter(|(how, _)| *how == READ).count();
        Ok((read, lines.len() - read))
    }
}

/// `path` with the trace file's escapes.
pub fn escape(path: &[u8]) -> String {
    let mut out = String::with_capacity(path.len());
    for chunk in path.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' || c.is_control() {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("\\{b:03o}"));
                }
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\{b:03o}"));
        }
    }
    out
}

/// The paths of the trace files `traces`, merged (read or only looked up alike).
pub fn read(traces: &[impl AsRef<Path>]) -> Result<BTreeSet<Vec<u8>>> {
    let mut paths = BTreeSet::new();
    for trace in traces {
        let trace = trace.as_ref();
        let text = fs::read(trace).at(trace, "cannot read the trace")?;
        let mut lines = text.split(|&b| b == b'\n').filter(|l| !l.is_empty());
        if lines.next() != Some(HEADER.as_bytes()) {
            bail!("{}: not a trace of supermin mount --trace (its first line is not {HEADER:?})", trace.display());
        }
        for (i, line) in lines.enumerate() {
            let path = line.strip_prefix(b"read ").or_else(|| line.strip_prefix(b"stat "));
            match path {
                Some(p) if p.starts_with(b"/") => paths.insert(unescape_octal(p)),
                _ => bail!("{}: line {}: not \"read PATH\" or \"stat PATH\"", trace.display(), i + 2),
            };
        }
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_paths_survive_the_round_trip() {
        let odd: &[&[u8]] = &[b"/plain/\xc3\xa9t\xc3\xa9", b"/new\nline", b"/back\\slash", b"/bad\xff\xfe", b"/tab\t"];
        for p in odd {
            let e = escape(p);
            assert!(!e.contains('\n') && e.is_ascii() != p.starts_with(b"/plain"), "{e}");
            assert_eq!(&unescape_octal(e.as_bytes())[..], *p);
        }
        assert_eq!(escape(b"/a b"), "/a b");
    }
}
