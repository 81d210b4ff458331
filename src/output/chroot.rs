//! `-f chroot`: write the manifest as a directory tree.
//!
//! The physical limit is copying the file bytes once, so regular files are copied with
//! `copy_file_range` (via `std::io::copy`, which uses it between files; reflinks on
//! filesystems that support them) by as many threads as there are cores. Everything else is
//! metadata and done in one pass. Directories are created 0700 and given their real mode last,
//! in reverse order, so a read-only directory never blocks writing inside it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use log::warn;

use crate::error::{Error, IoContext, Result};
use crate::manifest::{os, Content, Ino, Manifest, Meta, Node, ROOT};
use crate::util::progress::Progress;
use crate::util::{sys, work};

pub fn write(manifest: &Manifest, out: &Path) -> Result<()> {
    let mut dirs: Vec<(PathBuf, Meta)> = Vec::new();
    let mut files: Vec<(PathBuf, Ino)> = Vec::new();
    let mut links: Vec<(PathBuf, PathBuf)> = Vec::new();
    let mut first_path: Vec<Option<usize>> = vec![None; manifest.inodes.len()];
    let mut error: Option<Error> = None;

    manifest.walk(|path, ino| {
        if error.is_some() || ino == ROOT {
            return;
        }
        let dest = out.join(os(&path[1..]));
        let inode = manifest.inode(ino);
        let meta = &inode.meta;
        let result = match &inode.node {
            Node::Dir(_) => {
                dirs.push((dest.clone(), *meta));
                fs::DirBuilder::new().mode(0o700).create(&dest).at(&dest, "cannot create directory")
            }
            Node::File(_) => {
                // Hard links: the first name gets the data, the others are linked afterwards.
                match first_path[ino as usize] {
                    Some(i) => links.push((files[i].0.clone(), dest)),
                    None => {
                        first_path[ino as usize] = Some(files.len());
                        files.push((dest, ino));
                    }
                }
                Ok(())
            }
            Node::Symlink(target) => std::os::unix::fs::symlink(os(target), &dest)
                .at(&dest, "cannot create symlink")
                .and_then(|()| set_owner_and_time(&dest, meta)),
            Node::Special => sys::mknod(&dest, meta.mode, meta.rdev)
                .at(&dest, "cannot create device node")
                .and_then(|()| set_owner_and_time(&dest, meta)),
        };
        if let Err(e) = result {
            error = Some(e);
        }
    });
    if let Some(e) = error {
        return Err(e);
    }

    copy_files(manifest, &files)?;
    for (existing, new) in &links {
        fs::hard_link(existing, new).at(new, "cannot create hard link")?;
    }
    for (dest, meta) in dirs.iter().rev() {
        finish_dir(dest, meta)?;
    }
    finish_dir(out, &manifest.inode(ROOT).meta)
}

fn finish_dir(dest: &Path, meta: &Meta) -> Result<()> {
    set_owner_and_time(dest, meta)?;
    fs::set_permissions(dest, fs::Permissions::from_mode(meta.mode & 0o7777)).at(dest, "cannot set permissions")
}

/// Owner then times. Changing the owner needs root; like `cp -p`, a non-root build keeps its own.
fn set_owner_and_time(dest: &Path, meta: &Meta) -> Result<()> {
    match std::os::unix::fs::lchown(dest, Some(meta.uid), Some(meta.gid)) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {}
        r => r.at(dest, "cannot set owner")?,
    }
    sys::set_mtime(dest, meta.mtime, meta.mtime_nsec).at(dest, "cannot set times")
}

/// Copy regular files on every core.
fn copy_files(manifest: &Manifest, files: &[(PathBuf, Ino)]) -> Result<()> {
    let size = |ino: Ino| manifest.inode(ino).meta.size;
    let progress = Progress::files("chroot: files", files.len() as u64, files.iter().map(|f| size(f.1)).sum());
    work::for_each(files, work::cores(), |(dest, ino)| {
        copy_one(manifest, *ino, dest)?;
        progress.inc(size(*ino));
        Ok(())
    })
}

fn copy_one(manifest: &Manifest, ino: Ino, dest: &Path) -> Result<()> {
    let inode = manifest.inode(ino);
    let meta = &inode.meta;
    let Node::File(content) = &inode.node else { return Ok(()) };
    let mut src = match content {
        Content::Host(src) => match File::open(src) {
            Ok(f) => Some(f),
            Err(e) if matches!(e.kind(), io::ErrorKind::PermissionDenied | io::ErrorKind::NotFound) => {
                // The original's chroot writer skips what `cp` cannot read; say which file.
                warn!("{}: {} (skipped)", src.display(), e);
                return Ok(());
            }
            Err(e) => return Err(Error::io(src, "cannot read", e)),
        },
        _ => None,
    };
    let mut out =
        OpenOptions::new().write(true).create_new(true).mode(0o600).open(dest).at(dest, "cannot create file")?;
    match (&mut src, content) {
        (Some(src), Content::Host(path)) => {
            // No more than the size resolved: a /proc file says 0 and may never end (/proc/kmsg).
            io::copy(&mut src.take(meta.size), &mut out).map_err(|e| copy_error(path, dest, e))?;
        }
        _ => {
            let bytes = manifest
                .memory_content(content, meta.size)
                .ok_or_else(|| Error::new(format!("{}: tar member is truncated", dest.display())))?;
            out.write_all(bytes).at(dest, "cannot write")?;
        }
    }
    drop(out);
    set_owner_and_time(dest, meta)?;
    // After chown, which clears set-uid bits.
    fs::set_permissions(dest, fs::Permissions::from_mode(meta.mode & 0o7777)).at(dest, "cannot set permissions")
}

fn copy_error(src: &Path, dest: &Path, e: io::Error) -> Error {
    if e.raw_os_error() == Some(libc::ENOSPC) {
        Error::io(dest, "cannot write", e)
    } else {
        Error::new(format!("copying {} to {}: {}", src.display(), dest.display(), e))
    }
}
