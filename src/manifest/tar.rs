//! Unpacking a base image into the manifest, as `tar -x` run as root would.

use super::{Content, Inode, Manifest, Meta, Node, S_IFLNK, S_IFREG};
use crate::error::{Error, Result};
use crate::inputs::BaseImage;
use crate::util::pathwalk::components;

impl Manifest {
    /// Unpack a base image into the tree, as `tar -x` as root would: owners, modes and times
    /// from the archive, later members replacing earlier ones, hard links kept.
    pub fn add_tar(&mut self, image: BaseImage) -> Result<()> {
        let index = self.images.len() as u32;
        let data = image.tar.clone();
        let name = image.path.display().to_string();
        self.images.push(image);
        let corrupt = |e: std::io::Error| Error::new(format!("{name}: corrupt tar archive: {e}"));
        let mut archive = tar::Archive::new((*data).as_ref());
        for entry in archive.entries().map_err(corrupt)? {
            let mut entry = entry.map_err(corrupt)?;
            let raw_path = entry.path_bytes().into_owned();
            let member = String::from_utf8_lossy(&raw_path).into_owned();
            let path = member_path(&raw_path).ok_or_else(|| {
                Error::new(format!(
                    "{name}: member {member:?} has a '..' component: refusing to unpack it outside the appliance"
                ))
            })?;
            if let Some(problem) = unsupported(&mut entry, &path, (*data).as_ref().len()).map_err(corrupt)? {
                return Err(Error::new(format!("{name}: member {member:?} {problem}")));
            }
            let meta = member_meta(entry.header()).map_err(corrupt)?;
            self.mkdir_parents(&path, Meta { mode: 0o755, uid: 0, gid: 0, ..meta });
            if !self.unpack(&entry, &path, meta, index).map_err(corrupt)? {
                log::warn!(
                    "{name}: {}: cannot be unpacked here (parent missing or a directory in the way)",
                    String::from_utf8_lossy(&path)
                );
            }
        }
        Ok(())
    }

    /// Place one member at `path`; false when the tree has no room for it there.
    fn unpack<R: std::io::Read>(
        &mut self,
        entry: &tar::Entry<R>,
        path: &[u8],
        mut meta: Meta,
        image: u32,
    ) -> std::io::Result<bool> {
        let kind = entry.header().entry_type();
        let placed = match kind {
            tar::EntryType::Directory => self.mkdir(path, meta),
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                meta.mode |= S_IFREG;
                meta.size = entry.size();
                let content = Content::Tar { image, offset: entry.raw_file_position() };
                self.create(path, Inode { meta, node: Node::File(content) }, true).is_some()
            }
            tar::EntryType::Symlink => {
                let target = entry.link_name_bytes().unwrap_or_default().into_owned();
                meta.mode |= S_IFLNK;
                meta.size = target.len() as u64;
                self.create(path, Inode { meta, node: Node::Symlink(target.into_boxed_slice()) }, true).is_some()
            }
            tar::EntryType::Link => {
                let target = entry.link_name_bytes().unwrap_or_default().into_owned();
                match member_path(&target).and_then(|t| self.lookup(&t, false)) {
                    Some(ino) if !matches!(self.inode(ino).node, Node::Dir(_)) => self.hard_link(path, ino),
                    _ => false,
                }
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                meta.mode |= special_type(kind);
                meta.rdev = device_number(entry.header(), kind)?;
                self.create(path, Inode { meta, node: Node::Special }, true).is_some()
            }
            // pax headers, GNU long names etc. are consumed by the tar crate.
            _ => true,
        };
        Ok(placed)
    }
}

/// Why a member cannot be unpacked faithfully, if it cannot: a sparse member (its bytes are
/// not one run of the archive, and GNU tar's sparse maps are not read here), a name no Linux
/// filesystem takes (a NUL byte, which a pax header can carry: the chroot build failed on it
/// while ext2, tar and initramfs wrote it, so it is refused here, once for every output and
/// the mount; a component over 255 bytes, or a path over 4095: `tar -x` fails on it too, and
/// the ext2 writer's name length is one byte), or data that runs past the archive's end (a
/// truncated archive).
fn unsupported<R: std::io::Read>(
    entry: &mut tar::Entry<R>,
    path: &[u8],
    archive_len: usize,
) -> std::io::Result<Option<&'static str>> {
    let sparse_pax = match entry.pax_extensions()? {
        Some(pax) => pax.flatten().any(|ext| ext.key_bytes().starts_with(b"GNU.sparse.")),
        None => false,
    };
    if entry.header().entry_type().is_gnu_sparse() || sparse_pax {
        return Ok(Some("is a sparse file, which is not supported: create the archive without --sparse"));
    }
    if path.contains(&0) {
        return Ok(Some("has a NUL byte in its name, which no file name can hold"));
    }
    let link = entry.link_name_bytes();
    if link.is_some_and(|l| l.contains(&0)) {
        return Ok(Some("has a NUL byte in its link target, which no path can hold"));
    }
    if components(path).any(|c| c.len() > 255) || path.len() > 4095 {
        return Ok(Some("has a name longer than Linux allows (255 bytes a component, 4095 in all)"));
    }
    let kind = entry.header().entry_type();
    let end = entry.raw_file_position().checked_add(entry.size());
    if matches!(kind, tar::EntryType::Regular | tar::EntryType::Continuous)
        && end.is_none_or(|end| end > archive_len as u64)
    {
        return Ok(Some("is truncated: its data runs past the end of the archive"));
    }
    Ok(None)
}

/// Owner, permissions and time of a member (its type and size are added by its kind).
fn member_meta(h: &tar::Header) -> std::io::Result<Meta> {
    Ok(Meta {
        mode: h.mode()? & 0o7777,
        uid: h.uid()? as u32,
        gid: h.gid()? as u32,
        size: 0,
        mtime: h.mtime()? as i64,
        mtime_nsec: 0,
        rdev: 0,
    })
}

fn special_type(kind: tar::EntryType) -> u32 {
    match kind {
        tar::EntryType::Char => libc::S_IFCHR,
        tar::EntryType::Block => libc::S_IFBLK,
        _ => libc::S_IFIFO,
    }
}

/// A device member's number; GNU tar leaves the device fields empty for fifos.
fn device_number(h: &tar::Header, kind: tar::EntryType) -> std::io::Result<u64> {
    if kind == tar::EntryType::Fifo {
        return Ok(0);
    }
    let major = h.device_major()?.unwrap_or(0);
    let minor = h.device_minor()?.unwrap_or(0);
    Ok(libc::makedev(major, minor))
}

/// A tar member name as a path relative to the appliance root (`./etc/x`, `/etc/x` → `etc/x`);
/// `None` when it has a `..` component.
fn member_path(raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(raw.len());
    for c in components(raw) {
        match c {
            b"." => {}
            b".." => return None,
            _ => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(c);
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_paths_are_confined() {
        assert_eq!(member_path(b"./etc/passwd").unwrap(), b"etc/passwd");
        assert_eq!(member_path(b"/etc//x/").unwrap(), b"etc/x");
        assert!(member_path(b"../../etc/passwd").is_none());
        assert!(member_path(b"etc/../../x").is_none());
    }
}
