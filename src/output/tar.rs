//! `-f tar`: the appliance as one tar stream, for container tools (`podman import`): a file
//! in the output directory, or standard output with `-o -`.
//!
//! Entries come in path order, each directory before its contents (what GNU tar's
//! `--sort=name` gives), named as `tar -C DIR .` names them (`./`, `./etc/`, `./etc/passwd`).
//! Owners are numeric (no user or group names), times whole seconds; device nodes and fifos
//! are kept; a file with several names is stored once and its other names are hard links to
//! the first. Names and link targets of 100 bytes or more go in GNU long-name records, as GNU
//! tar writes them. Extended attributes are not carried (the chroot output does not carry
//! them either), nor are sockets (GNU tar skips them too).

use std::io::{self, BufWriter, Read, Write};
use std::path::Path;

use log::warn;
use tar::{EntryType, Header};

use crate::error::{Error, IoContext, Result};
use crate::manifest::{Content, Ino, Manifest, Meta, Node, ROOT, S_IFMT};
use crate::util::dirfd::Dir;
use crate::util::progress::Progress;

/// The file `-f tar -o DIR` writes in DIR.
pub const FILE: &str = "appliance.tar";

/// Write the archive to `out`; `shown` names it in errors.
pub fn write(manifest: &Manifest, out: impl Write, shown: &Path) -> Result<()> {
    let werr = |e: io::Error| Error::io(shown, "cannot write", e);
    let mut archive = tar::Builder::new(BufWriter::with_capacity(1 << 20, out));
    // Per inode: the name its data was stored under (for the hard links after it).
    let mut stored: Vec<Option<Box<[u8]>>> = vec![None; manifest.inodes.len()];
    let progress = progress(manifest);
    let mut result = Ok(());
    manifest.walk(|path, ino| {
        if result.is_ok() {
            let inode = manifest.inode(ino);
            if matches!(inode.node, Node::File(_)) && stored[ino as usize].is_none() {
                progress.inc(inode.meta.size);
            }
            let mut name = [b".", path].concat();
            if matches!(manifest.inode(ino).node, Node::Dir(_)) && ino != ROOT {
                name.push(b'/');
            }
            result = append(&mut archive, manifest, &name, ino, &mut stored).map_err(werr);
        }
    });
    result?;
    archive.into_inner().and_then(|mut w| w.flush()).map_err(werr)
}

/// A bar over the regular files, each inode once (hard links are stored once).
fn progress(manifest: &Manifest) -> Progress {
    let mut seen = vec![false; manifest.inodes.len()];
    let (mut files, mut bytes) = (0, 0);
    manifest.walk(|_, ino| {
        let inode = manifest.inode(ino);
        if matches!(inode.node, Node::File(_)) && !std::mem::replace(&mut seen[ino as usize], true) {
            files += 1;
            bytes += inode.meta.size;
        }
    });
    Progress::files("tar: files", files, bytes)
}

/// Write the archive as `FILE` in the (staging) directory `dir`.
pub fn write_file(manifest: &Manifest, dir: &Dir) -> Result<()> {
    let path = dir.shown(Path::new(FILE));
    let file = dir.create_file(Path::new(FILE), 0o644, false).at(&path, "cannot create")?;
    write(manifest, file, &path)
}

fn append<W: Write>(
    archive: &mut tar::Builder<W>,
    manifest: &Manifest,
    name: &[u8],
    ino: Ino,
    stored: &mut [Option<Box<[u8]>>],
) -> io::Result<()> {
    let inode = manifest.inode(ino);
    let mut h = header(&inode.meta);
    match &inode.node {
        Node::Dir(_) => {
            h.set_entry_type(EntryType::Directory);
            append_named(archive, h, name, None, io::empty())
        }
        Node::Symlink(target) => {
            h.set_entry_type(EntryType::Symlink);
            append_named(archive, h, name, Some(target), io::empty())
        }
        Node::Special => append_special(archive, h, name, &inode.meta),
        Node::File(_) if stored[ino as usize].is_some() => {
            h.set_entry_type(EntryType::Link);
            append_named(archive, h, name, stored[ino as usize].as_deref(), io::empty())
        }
        Node::File(content) => {
            let Some(data) = contents(manifest, content, inode.meta.size)? else { return Ok(()) };
            stored[ino as usize] = Some(name.into());
            h.set_entry_type(EntryType::Regular);
            h.set_size(inode.meta.size);
            append_named(archive, h, name, None, data)
        }
    }
}

/// Append an entry named `name` (and, for links, pointing at `link`), in GNU tar's spelling:
/// the bytes as they are, a long-name record before the header when they do not fit in it.
fn append_named<W: Write>(
    archive: &mut tar::Builder<W>,
    mut h: Header,
    name: &[u8],
    link: Option<&[u8]>,
    data: impl Read,
) -> io::Result<()> {
    let gnu = h.as_gnu_mut().expect("a GNU header");
    for (value, field, kind) in [(Some(name), &mut gnu.name, b'L'), (link, &mut gnu.linkname, b'K')] {
        let Some(value) = value else { continue };
        if value.len() >= field.len() {
            let (long, bytes) = long_name_record(kind, value);
            archive.append(&long, &bytes[..])?;
        }
        let n = value.len().min(field.len());
        field[..n].copy_from_slice(&value[..n]);
    }
    h.set_cksum();
    archive.append(&h, data)
}

/// GNU tar's record for a name (`L`) or link target (`K`) too long for a header.
fn long_name_record(kind: u8, value: &[u8]) -> (Header, Vec<u8>) {
    let mut h = Header::new_gnu();
    let marker = b"././@LongLink";
    h.as_gnu_mut().expect("a GNU header").name[..marker.len()].copy_from_slice(marker);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(value.len() as u64 + 1);
    h.set_entry_type(EntryType::new(kind));
    h.set_cksum();
    (h, [value, b"\0"].concat())
}

/// A GNU header with the permissions, numeric owner and time of `meta`.
fn header(meta: &Meta) -> Header {
    let mut h = Header::new_gnu();
    h.set_mode(meta.mode & 0o7777);
    h.set_uid(u64::from(meta.uid));
    h.set_gid(u64::from(meta.gid));
    h.set_mtime(meta.mtime.max(0) as u64);
    h.set_size(0);
    h
}

fn append_special<W: Write>(archive: &mut tar::Builder<W>, mut h: Header, name: &[u8], meta: &Meta) -> io::Result<()> {
    let kind = match meta.mode & S_IFMT {
        libc::S_IFCHR => EntryType::Char,
        libc::S_IFBLK => EntryType::Block,
        libc::S_IFIFO => EntryType::Fifo,
        _ => {
            warn!("{}: a socket cannot be archived (left out)", String::from_utf8_lossy(name));
            return Ok(());
        }
    };
    h.set_entry_type(kind);
    if kind != EntryType::Fifo {
        h.set_device_major(libc::major(meta.rdev))?;
        h.set_device_minor(libc::minor(meta.rdev))?;
    }
    append_named(archive, h, name, None, io::empty())
}

/// The bytes of a regular file: exactly `size` of them, whatever happened to the host file
/// since the appliance was resolved (a shorter one is padded with zeros, and said so).
/// `None` for a host file that cannot be opened: left out, as the chroot writer leaves it.
fn contents<'a>(manifest: &'a Manifest, content: &'a Content, size: u64) -> io::Result<Option<Box<dyn Read + 'a>>> {
    match content {
        Content::Host(file) => match crate::output::open_host(file, size) {
            Ok(Some(f)) => {
                Ok(Some(Box::new(Exactly { inner: f.take(size), left: size, path: &file.path, short: false })))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(io::Error::other(e.message().to_string())),
        },
        _ => match manifest.memory_content(content, size) {
            Some(bytes) => Ok(Some(Box::new(bytes))),
            None => Err(io::Error::other("a tar member of a base image is truncated")),
        },
    }
}

/// A reader that yields exactly `left` bytes: its inner reader's, then zeros.
struct Exactly<'a, R> {
    inner: R,
    left: u64,
    path: &'a Path,
    /// The inner reader ended early (said once).
    short: bool,
}

impl<R: Read> Read for Exactly<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf.len().min(usize::try_from(self.left).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = if self.short { 0 } else { self.inner.read(&mut buf[..want])? };
        let n = if n > 0 {
            n
        } else {
            if !self.short {
                warn!("{}: shorter than when the appliance was resolved (padded with zeros)", self.path.display());
                self.short = true;
            }
            buf[..want].fill(0);
            want
        };
        self.left -= n as u64;
        Ok(n)
    }
}
