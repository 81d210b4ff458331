//! Access to the host (or, later, a `--sysroot` tree): every host path the tool reads goes
//! through here, so a different root is one parameter, not a search-and-replace.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The host path for absolute path `p` under `root`.
pub fn path(root: &Path, p: &str) -> PathBuf {
    if root == Path::new("/") {
        PathBuf::from(p)
    } else {
        root.join(p.trim_start_matches('/'))
    }
}

pub fn lstat(root: &Path, p: &str) -> io::Result<fs::Metadata> {
    fs::symlink_metadata(path(root, p))
}

/// `ID=` of `/etc/os-release` (or `/usr/lib/os-release`), unquoted.
pub fn os_release_id(root: &Path) -> Option<String> {
    let text = fs::read_to_string(path(root, "/etc/os-release"))
        .or_else(|_| fs::read_to_string(path(root, "/usr/lib/os-release")))
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("ID="))
        .map(|v| v.trim().trim_matches('"').trim_matches('\'').to_string())
}
