//! `-f chroot`: write the manifest as a directory tree.
//!
//! The physical limit is copying the file bytes once, so regular files are copied with
//! `copy_file_range` (via `std::io::copy`, which uses it between files; reflinks on
//! filesystems that support them) by as many threads as there are cores. Everything else is
//! metadata and done in one pass. Directories are created 0700 and given their real mode last,
//! in reverse order, so a read-only directory never blocks writing inside it.
//!
//! Everything is made and changed through the output directory's descriptor
//! ([`crate::util::dirfd`]): a path below it crosses only our private directories, and each
//! file's and directory's owner, times and mode are set through its own descriptor.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::manifest::{os, Content, Ino, Manifest, Meta, Node, ROOT};
use crate::util::dirfd::{self, Attrs, Dir};
use crate::util::progress::Progress;
use crate::util::work;

pub fn write(manifest: &Manifest, out: &Dir) -> Result<()> {
    let mut dirs: Vec<(PathBuf, Meta)> = Vec::new();
    let mut files: Vec<(PathBuf, Ino)> = Vec::new();
    let mut links: Vec<(PathBuf, PathBuf)> = Vec::new();
    let mut first_path: Vec<Option<usize>> = vec![None; manifest.inodes.len()];
    let mut error: Option<Error> = None;

    manifest.walk(|path, ino| {
        if error.is_some() || ino == ROOT {
            return;
        }
        let rel = PathBuf::from(os(&path[1..]));
        let inode = manifest.inode(ino);
        let meta = &inode.meta;
        let result = match &inode.node {
            Node::Dir(_) => {
                let made = out.mkdir(&rel, 0o700).at(&out.shown(&rel), "cannot create directory");
                dirs.push((rel, *meta));
                made
            }
            Node::File(_) => {
                // Hard links: the first name gets the data, the others are linked afterwards.
                match first_path[ino as usize] {
                    Some(i) => links.push((files[i].0.clone(), rel)),
                    None => {
                        first_path[ino as usize] = Some(files.len());
                        files.push((rel, ino));
                    }
                }
                Ok(())
            }
            Node::Symlink(target) => out
                .symlink(os(target).as_os_str(), &rel)
                .at(&out.shown(&rel), "cannot create symlink")
                .and_then(|()| set_owner_and_time(out, &rel, meta)),
            Node::Special => out
                .mknod(&rel, meta.mode, meta.rdev)
                .at(&out.shown(&rel), "cannot create device node")
                .and_then(|()| set_owner_and_time(out, &rel, meta)),
        };
        if let Err(e) = result {
            error = Some(e);
        }
    });
    if let Some(e) = error {
        return Err(e);
    }

    copy_files(manifest, out, &files)?;
    for (existing, new) in &links {
        out.hard_link(existing, new).map_err(|e| link_error(out, existing, new, e))?;
    }
    for (rel, meta) in dirs.iter().rev() {
        let dir = out.open_dir(rel).at(&out.shown(rel), "cannot open directory")?;
        dirfd::finish(&dir, &attrs(meta)).at(&out.shown(rel), "cannot set owner, times and mode")?;
    }
    out.finish(&attrs(&manifest.inode(ROOT).meta)).at(out.path(), "cannot set owner, times and mode")
}

fn attrs(meta: &Meta) -> Attrs {
    Attrs { uid: meta.uid, gid: meta.gid, mtime: meta.mtime, mtime_nsec: meta.mtime_nsec, perm: meta.mode }
}

/// Owner then times of `rel` itself (a symlink or node: no mode to set after).
fn set_owner_and_time(out: &Dir, rel: &Path, meta: &Meta) -> Result<()> {
    out.set_owner_and_time(rel, meta.uid, meta.gid, (meta.mtime, meta.mtime_nsec))
        .at(&out.shown(rel), "cannot set owner and times")
}

/// Copy regular files on every core.
fn copy_files(manifest: &Manifest, out: &Dir, files: &[(PathBuf, Ino)]) -> Result<()> {
    let size = |ino: Ino| manifest.inode(ino).meta.size;
    let progress = Progress::files("chroot: files", files.len() as u64, files.iter().map(|f| size(f.1)).sum());
    work::for_each(files, work::cores(), |(rel, ino)| {
        copy_one(manifest, *ino, out, rel)?;
        progress.inc(size(*ino));
        Ok(())
    })
}

fn copy_one(manifest: &Manifest, ino: Ino, out: &Dir, rel: &Path) -> Result<()> {
    let inode = manifest.inode(ino);
    let meta = &inode.meta;
    let Node::File(content) = &inode.node else { return Ok(()) };
    let dest = out.shown(rel);
    let src = match content {
        // Nothing to read in an empty file (nor in a /proc file, whose size says 0).
        Content::Host(file) if meta.size > 0 => match super::open_host(file, meta.size)? {
            Some(f) => Some((f, file)),
            None => return Ok(()),
        },
        _ => None,
    };
    let mut made = out.create_file(rel, 0o600, false).at(&dest, "cannot create file")?;
    match (src, content) {
        (Some((src, file)), _) => {
            // No more than the size resolved.
            io::copy(&mut src.take(meta.size), &mut made).map_err(|e| copy_error(&file.path, &dest, e))?;
        }
        (None, Content::Host(_)) => {}
        (None, _) => {
            let bytes = manifest
                .memory_content(content, meta.size)
                .ok_or_else(|| Error::new(format!("{}: tar member is truncated", dest.display())))?;
            made.write_all(bytes).at(&dest, "cannot write")?;
        }
    }
    dirfd::finish(&made, &attrs(meta)).at(&dest, "cannot set owner, times and mode")
}

/// A hard link the output's filesystem refused; past its limit of links to one file (ext4:
/// 65,000), named by its path in the appliance, with what to do.
fn link_error(out: &Dir, existing: &Path, new: &Path, e: io::Error) -> Error {
    if e.raw_os_error() != Some(libc::EMLINK) {
        return Error::io(&out.shown(new), "cannot create hard link", e);
    }
    Error::new(format!(
        "/{}: more hard links to /{} than the output's filesystem allows: build on one that allows more (xfs, \
         tmpfs), or choose -f tar",
        new.display(),
        existing.display()
    ))
}

fn copy_error(src: &Path, dest: &Path, e: io::Error) -> Error {
    if e.raw_os_error() == Some(libc::ENOSPC) {
        Error::io(dest, "cannot write", e)
    } else {
        Error::new(format!("copying {} to {}: {}", src.display(), dest.display(), e))
    }
}
