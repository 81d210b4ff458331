//! The manifest as a [`supermin_fuse::View`]: what `supermin mount` serves.
//!
//! The view is the manifest itself plus the two things a filesystem needs that a writer does
//! not: each directory's parent (for `..`) and link counts. Both come from one walk of the
//! reachable tree; unreachable inodes (replaced entries) stay invisible because the kernel
//! only learns inode numbers from lookups and listings, which start at the root.
//!
//! The mount root also carries the mount's *record* as `user.supermin.*` extended attributes
//! (inputs, options, daemon pid), so `supermin materialize MOUNTPOINT` can build exactly what
//! is mounted and `supermin umount` can wait for the daemon to finish. Anyone can write such
//! xattrs on their own directory: readers believe them only where
//! `mount::mountpoint::our_mount` finds a live mount of ours.

use std::path::PathBuf;

use supermin_fuse::{Attr, Data, Usage, View, BLOCK_SIZE, PASSTHROUGH_MIN_SIZE};

use crate::manifest::{Content, Ino, Manifest, Node, ROOT};
use crate::resolve::{Deps, Settings};
use crate::trace::{Uses, READ, STAT};

/// Extended attribute names on the mount root.
pub const XATTR_INPUTS: &str = "user.supermin.inputs";
pub const XATTR_OPTIONS: &str = "user.supermin.options";
pub const XATTR_SYSROOT: &str = "user.supermin.sysroot";
pub const XATTR_PID: &str = "user.supermin.pid";

/// What was mounted: enough to resolve the same appliance again.
pub struct Record {
    /// Absolute paths of the inputs.
    pub inputs: Vec<PathBuf>,
    pub settings: Settings,
    /// `--sysroot` (absolute), `None` for `/`.
    pub sysroot: Option<PathBuf>,
    /// `--packager`, when given.
    pub packager: Option<String>,
}

impl Record {
    /// The record as the view root's xattrs (the daemon's pid aside).
    pub fn xattrs(&self) -> Vec<(&'static str, Vec<u8>)> {
        let mut xattrs = vec![(XATTR_INPUTS, self.encode_inputs()), (XATTR_OPTIONS, self.encode_options())];
        if let Some(root) = &self.sysroot {
            xattrs.push((XATTR_SYSROOT, root.as_os_str().as_encoded_bytes().to_vec()));
        }
        xattrs
    }

    /// Inputs as stored in the xattr: NUL-separated absolute paths.
    pub fn encode_inputs(&self) -> Vec<u8> {
        use std::os::unix::ffi::OsStrExt;
        let parts: Vec<&[u8]> = self.inputs.iter().map(|p| p.as_os_str().as_bytes()).collect();
        parts.join(&0u8)
    }

    /// Options as stored in their xattr: space-separated words.
    pub fn encode_options(&self) -> Vec<u8> {
        let mut words: Vec<String> = Vec::new();
        if self.settings.include_packagelist {
            words.push("include-packagelist".into());
        }
        if self.settings.deps == Deps::Supermin {
            words.push("deps=supermin".into());
        }
        if let Some(p) = &self.packager {
            words.push(format!("packager={p}"));
        }
        words.join(" ").into_bytes()
    }

    pub fn decode(inputs: &[u8], options: &[u8], sysroot: Option<&[u8]>) -> Record {
        use std::os::unix::ffi::OsStrExt;
        let words: Vec<&[u8]> = options.split(|&b| b == b' ').collect();
        Record {
            sysroot: sysroot.filter(|s| !s.is_empty()).map(|s| PathBuf::from(std::ffi::OsStr::from_bytes(s))),
            packager: words
                .iter()
                .find_map(|w| w.strip_prefix(b"packager="))
                .map(|p| String::from_utf8_lossy(p).into_owned()),
            inputs: inputs
                .split(|&b| b == 0)
                .filter(|p| !p.is_empty())
                .map(|p| PathBuf::from(std::ffi::OsStr::from_bytes(p)))
                .collect(),
            settings: Settings {
                include_packagelist: words.iter().any(|o| *o == b"include-packagelist"),
                deps: if words.iter().any(|o| *o == b"deps=supermin") { Deps::Supermin } else { Deps::All },
            },
        }
    }
}

pub struct ManifestView {
    manifest: Manifest,
    /// Per inode: names for non-directories; 2 + subdirectories for directories (as ext4).
    nlink: Vec<u32>,
    parent: Vec<Ino>,
    xattrs: Vec<(&'static str, Vec<u8>)>,
    /// Regular files reachable by name (a hard link counts once per name).
    files: u64,
    /// Bytes in reachable host files large enough for passthrough.
    large_host_bytes: u64,
    usage: Usage,
    /// With `mount --trace`: how each inode was used.
    uses: Option<Uses>,
}

/// See [`ManifestView::passthrough_pays`].
const PASSTHROUGH_BYTES_PER_FILE: u64 = 256 << 10;

impl ManifestView {
    pub fn new(manifest: Manifest, record: &Record) -> ManifestView {
        let n = manifest.inodes.len();
        let mut nlink = vec![0u32; n];
        let mut parent: Vec<Ino> = vec![ROOT; n];
        nlink[ROOT as usize] = 2;
        let (mut files, mut large_host_bytes) = (0, 0);
        // The root, then each inode when first reached (hard links count once).
        let mut usage = Usage { blocks: 0, inodes: 1 };
        let mut stack = vec![ROOT];
        while let Some(dir) = stack.pop() {
            let Some(children) = manifest.children(dir) else { continue };
            for &child in children.values() {
                if matches!(manifest.inode(child).node, Node::Dir(_)) {
                    usage.inodes += 1;
                    nlink[dir as usize] += 1;
                    nlink[child as usize] = 2;
                    parent[child as usize] = dir;
                    stack.push(child);
                } else {
                    nlink[child as usize] += 1;
                    let inode = manifest.inode(child);
                    if nlink[child as usize] == 1 {
                        usage.inodes += 1;
                        if matches!(inode.node, Node::File(_)) {
                            usage.blocks += inode.meta.size.div_ceil(BLOCK_SIZE);
                        }
                    }
                    if let Node::File(content) = &inode.node {
                        files += 1;
                        if matches!(content, Content::Host(_)) && inode.meta.size >= PASSTHROUGH_MIN_SIZE {
                            large_host_bytes = u64::saturating_add(large_host_bytes, inode.meta.size);
                        }
                    }
                }
            }
        }
        let mut xattrs = record.xattrs();
        xattrs.push((XATTR_PID, std::process::id().to_string().into_bytes()));
        ManifestView { manifest, nlink, parent, xattrs, files, large_host_bytes, usage, uses: None }
    }

    /// Whether this view is better served with FUSE passthrough, which the kernel grants per
    /// connection, not per file. With it, large host files are read by the kernel at native
    /// speed, but every open of every file becomes a round trip to the daemon (15-20 µs each
    /// on the 2-core VM we measure on). Without it, opens never reach the daemon, but large
    /// files are read through it and then cached in 4 KiB pages (0.6x native cold, 0.7x warm
    /// there). Reading every file once costs one round trip per file one way and the large
    /// files' bytes the other; they break even at 70 KiB (cold) to 430 KiB (warm) of large
    /// host file per file, so passthrough is chosen from 256 KiB per file: a tree of a few
    /// big images, not an appliance of thousands of small files (libguestfs's: 26 KiB).
    pub fn passthrough_pays(&self) -> bool {
        self.large_host_bytes >= self.files.max(1).saturating_mul(PASSTHROUGH_BYTES_PER_FILE)
    }

    /// What [`ManifestView::passthrough_pays`] decides from: regular files, and bytes in
    /// large host files.
    pub fn file_stats(&self) -> (u64, u64) {
        (self.files, self.large_host_bytes)
    }

    /// Whether the appliance has an `/init` of its own (what `run --vm` runs by default).
    pub fn has_init(&self) -> bool {
        self.manifest.children(ROOT).is_some_and(|c| c.contains_key(&b"init"[..]))
    }

    /// Record from now on which paths are used (see [`crate::trace`]).
    pub fn trace(&mut self) {
        let uses = Uses::new(self.manifest.inodes.len());
        uses.mark(ROOT, READ);
        self.uses = Some(uses);
    }

    /// Write what was used to the trace file `out`; returns (paths read, paths only looked up).
    pub fn write_trace(&self, out: &std::path::Path) -> crate::error::Result<(usize, usize)> {
        match &self.uses {
            Some(uses) => uses.write(&self.manifest, out),
            None => Ok((0, 0)),
        }
    }

    fn mark(&self, ino: Ino, how: u8) {
        if let Some(uses) = &self.uses {
            uses.mark(ino, how);
        }
    }

    fn get(&self, ino: u64) -> Option<(Ino, &crate::manifest::Inode)> {
        let i = Ino::try_from(ino).ok()?;
        self.manifest.inodes.get(i as usize).map(|inode| (i, inode))
    }
}

impl View for ManifestView {
    fn attr(&self, ino: u64) -> Option<Attr> {
        let (i, inode) = self.get(ino)?;
        let m = &inode.meta;
        Some(Attr {
            mode: m.mode,
            uid: m.uid,
            gid: m.gid,
            size: m.size,
            mtime: m.mtime,
            mtime_nsec: m.mtime_nsec,
            rdev: m.rdev,
            nlink: self.nlink[i as usize].max(1),
        })
    }

    fn lookup(&self, parent: u64, name: &[u8]) -> Option<u64> {
        let (i, _) = self.get(parent)?;
        let child = *self.manifest.children(i)?.get(name)?;
        self.mark(child, STAT);
        Some(u64::from(child))
    }

    fn parent(&self, dir: u64) -> u64 {
        self.get(dir).map(|(i, _)| u64::from(self.parent[i as usize])).unwrap_or(0)
    }

    fn children(&self, dir: u64, skip: usize, f: &mut dyn FnMut(&[u8], u64) -> bool) -> Option<()> {
        let (i, _) = self.get(dir)?;
        self.mark(i, READ);
        for (name, &child) in self.manifest.children(i)?.iter().skip(skip) {
            if !f(name, u64::from(child)) {
                break;
            }
        }
        Some(())
    }

    fn readlink(&self, ino: u64) -> Option<&[u8]> {
        let (i, inode) = self.get(ino)?;
        self.mark(i, READ);
        match &inode.node {
            Node::Symlink(target) => Some(target),
            _ => None,
        }
    }

    fn data(&self, ino: u64) -> Option<Data<'_>> {
        let (i, inode) = self.get(ino)?;
        self.mark(i, READ);
        match &inode.node {
            Node::File(Content::Host(file)) => Some(Data::Host(&file.path)),
            Node::File(content) => self.manifest.memory_content(content, inode.meta.size).map(Data::Bytes),
            _ => None,
        }
    }

    /// Through [`crate::host::HostFile::open`]: never another file than the one resolved.
    fn open(&self, ino: u64, size: u64) -> std::io::Result<std::fs::File> {
        match self.get(ino).map(|(_, inode)| &inode.node) {
            Some(Node::File(Content::Host(file))) => file.open(size),
            _ => Err(std::io::Error::from_raw_os_error(libc::EINVAL)),
        }
    }

    fn xattr(&self, ino: u64, name: &[u8]) -> Option<Vec<u8>> {
        if ino != u64::from(ROOT) {
            return None;
        }
        self.xattrs.iter().find(|(n, _)| n.as_bytes() == name).map(|(_, v)| v.clone())
    }

    fn usage(&self) -> Usage {
        self.usage
    }

    fn xattr_names(&self, ino: u64) -> Vec<Vec<u8>> {
        if ino != u64::from(ROOT) {
            return Vec::new();
        }
        self.xattrs.iter().map(|(n, _)| n.as_bytes().to_vec()).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::manifest::{Inode, Meta, S_IFDIR, S_IFREG};

    fn tree() -> Manifest {
        let dir = Meta { mode: S_IFDIR | 0o755, ..Meta::default() };
        let mut m = Manifest::new(dir);
        assert!(m.mkdir(b"/etc", dir));
        assert!(m.mkdir(b"/etc/sub", dir));
        let file = Inode {
            meta: Meta { mode: S_IFREG | 0o644, size: 5, ..Meta::default() },
            node: Node::File(Content::Inline(Arc::new(b"hello".to_vec()))),
        };
        let f = m.create(b"/etc/a", file, true).unwrap();
        assert!(m.hard_link(b"/etc/b", f));
        m
    }

    #[test]
    fn links_parents_and_contents() {
        let v = ManifestView::new(tree(), &record());
        let etc = v.lookup(0, b"etc").unwrap();
        let a = v.lookup(etc, b"a").unwrap();
        assert_eq!(v.lookup(etc, b"b"), Some(a));
        assert_eq!(v.attr(a).unwrap().nlink, 2);
        assert_eq!(v.attr(etc).unwrap().nlink, 3);
        assert_eq!(v.attr(0).unwrap().nlink, 3);
        let sub = v.lookup(etc, b"sub").unwrap();
        assert_eq!(v.parent(sub), etc);
        assert!(matches!(v.data(a), Some(Data::Bytes(b"hello"))));
        assert!(v.lookup(a, b"x").is_none());
        assert!(v.attr(1 << 40).is_none());
        let mut names = Vec::new();
        v.children(etc, 1, &mut |n, _| {
            names.push(n.to_vec());
            true
        });
        assert_eq!(names, vec![b"b".to_vec(), b"sub".to_vec()]);
    }

    fn record() -> Record {
        Record { inputs: vec!["/d".into()], settings: Settings::default(), sysroot: None, packager: None }
    }

    #[test]
    fn passthrough_pays_for_large_host_files_not_for_many_small_ones() {
        let host = |size| Inode {
            meta: Meta { mode: S_IFREG | 0o644, size, ..Meta::default() },
            node: Node::File(Content::Host(crate::host::HostFile::named("/h"))),
        };
        let mut images = tree();
        images.create(b"/disk.img", host(64 << 20), true).unwrap();
        let v = ManifestView::new(images, &record());
        assert_eq!(v.file_stats(), (3, 64 << 20));
        assert!(v.passthrough_pays());

        let mut appliance = tree();
        appliance.create(b"/big", host(64 << 20), true).unwrap();
        for i in 0..300 {
            // Small host files and one just under the passthrough size: neither counts.
            let size = if i == 0 { PASSTHROUGH_MIN_SIZE - 1 } else { 4096 };
            appliance.create(format!("/f{i}").as_bytes(), host(size), true).unwrap();
        }
        let v = ManifestView::new(appliance, &record());
        assert_eq!(v.file_stats(), (303, 64 << 20));
        assert!(!v.passthrough_pays());
        assert!(!ManifestView::new(Manifest::new(Meta { mode: S_IFDIR | 0o755, ..Meta::default() }), &record())
            .passthrough_pays());
    }

    #[test]
    fn record_round_trips() {
        let r = Record {
            inputs: vec!["/a b".into(), "/c".into()],
            settings: Settings { include_packagelist: true, deps: Deps::Supermin },
            sysroot: Some("/srv/fedora root".into()),
            packager: Some("rpm".into()),
        };
        let back = Record::decode(&r.encode_inputs(), &r.encode_options(), Some(b"/srv/fedora root"));
        assert_eq!(back.inputs, r.inputs);
        assert_eq!(back.settings, Settings { include_packagelist: true, deps: Deps::Supermin });
        assert_eq!(back.sysroot, r.sysroot);
        assert_eq!(back.packager, r.packager);
    }
}
