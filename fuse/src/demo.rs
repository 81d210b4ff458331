//! A small tree held in memory: the view of the unit tests, the virtio-fs fuzz target and
//! the `vhost_dir` example (and a test that boots a VM on it). Not an API.

use std::fs::File;
use std::io;

use crate::{Attr, Data, Ino, View, ROOT};

/// Directories, files with their bytes, and symlinks, added one by one.
pub struct Demo {
    nodes: Vec<Node>,
}

struct Node {
    parent: Ino,
    attr: Attr,
    kind: Kind,
}

enum Kind {
    Dir(Vec<(Vec<u8>, Ino)>),
    File(Vec<u8>),
    Link(Vec<u8>),
}

impl Default for Demo {
    fn default() -> Self {
        let attr = Attr { mode: libc::S_IFDIR | 0o755, nlink: 2, mtime: 1_700_000_000, ..Attr::default() };
        Demo { nodes: vec![Node { parent: ROOT, attr, kind: Kind::Dir(Vec::new()) }] }
    }
}

impl Demo {
    fn add(&mut self, parent: Ino, name: &str, mode: u32, size: u64, kind: Kind) -> Ino {
        let ino = self.nodes.len() as Ino;
        let attr = Attr { mode, size, nlink: 1, mtime: 1_700_000_000, ..Attr::default() };
        self.nodes.push(Node { parent, attr, kind });
        if let Some(Kind::Dir(children)) = self.nodes.get_mut(parent as usize).map(|n| &mut n.kind) {
            children.push((name.as_bytes().to_vec(), ino));
        }
        ino
    }

    /// A directory `name` in `parent`.
    pub fn dir(&mut self, parent: Ino, name: &str) -> Ino {
        self.add(parent, name, libc::S_IFDIR | 0o755, 0, Kind::Dir(Vec::new()))
    }

    pub fn file(&mut self, parent: Ino, name: &str, bytes: &[u8]) -> Ino {
        self.add(parent, name, libc::S_IFREG | 0o644, bytes.len() as u64, Kind::File(bytes.to_vec()))
    }

    pub fn symlink(&mut self, parent: Ino, name: &str, target: &str) -> Ino {
        let kind = Kind::Link(target.as_bytes().to_vec());
        self.add(parent, name, libc::S_IFLNK | 0o777, target.len() as u64, kind)
    }

    /// `etc/hostname`, a 300,000-byte `usr/lib/big` (a byte pattern: `big_byte`), a symlink
    /// `lib -> usr/lib` and `many/` with 300 empty files `f000`..`f299`.
    pub fn sample() -> Demo {
        let mut d = Demo::default();
        let etc = d.dir(ROOT, "etc");
        d.file(etc, "hostname", b"demo\n");
        let usr = d.dir(ROOT, "usr");
        let lib = d.dir(usr, "lib");
        d.file(lib, "big", &(0..300_000).map(big_byte).collect::<Vec<u8>>());
        d.symlink(ROOT, "lib", "usr/lib");
        let many = d.dir(ROOT, "many");
        for i in 0..300 {
            d.file(many, &format!("f{i:03}"), b"");
        }
        d
    }
}

/// Byte `i` of the sample's `usr/lib/big`.
pub fn big_byte(i: usize) -> u8 {
    (i % 251) as u8
}

impl View for Demo {
    fn attr(&self, ino: Ino) -> Option<Attr> {
        self.nodes.get(ino as usize).map(|n| n.attr)
    }
    fn lookup(&self, parent: Ino, name: &[u8]) -> Option<Ino> {
        match &self.nodes.get(parent as usize)?.kind {
            Kind::Dir(children) => children.iter().find(|(n, _)| n == name).map(|&(_, ino)| ino),
            _ => None,
        }
    }
    fn parent(&self, dir: Ino) -> Ino {
        self.nodes.get(dir as usize).map_or(ROOT, |n| n.parent)
    }
    fn children(&self, dir: Ino, skip: usize, f: &mut dyn FnMut(&[u8], Ino) -> bool) -> Option<()> {
        let Kind::Dir(children) = &self.nodes.get(dir as usize)?.kind else { return None };
        for (name, ino) in children.iter().skip(skip) {
            if !f(name, *ino) {
                break;
            }
        }
        Some(())
    }
    fn readlink(&self, ino: Ino) -> Option<&[u8]> {
        match &self.nodes.get(ino as usize)?.kind {
            Kind::Link(target) => Some(target),
            _ => None,
        }
    }
    fn data(&self, ino: Ino) -> Option<Data<'_>> {
        match &self.nodes.get(ino as usize)?.kind {
            Kind::File(bytes) => Some(Data::Bytes(bytes)),
            _ => None,
        }
    }
    fn open(&self, _ino: Ino, _size: u64) -> io::Result<File> {
        Err(io::Error::from_raw_os_error(libc::ENOENT))
    }
    fn xattr(&self, ino: Ino, name: &[u8]) -> Option<Vec<u8>> {
        (ino == ROOT && name == b"user.demo").then(|| b"yes".to_vec())
    }
    fn xattr_names(&self, ino: Ino) -> Vec<Vec<u8>> {
        if ino == ROOT {
            vec![b"user.demo".to_vec()]
        } else {
            Vec::new()
        }
    }
}
