//! One virtio-fs request's bytes in, its reply's bytes out: a pure function over byte
//! slices (fuzzed by `fuzz/fuzz_targets/virtio_fs.rs`), which `virtio` feeds from and to
//! the descriptor chains.
//!
//! A chain's device-readable part is the `fuse_in_header`, the operation's fixed argument
//! and its names; its device-writable part receives the `fuse_out_header` and the reply's
//! body. Whatever the guest sends, the answer is a reply (an errno for a request that is
//! truncated, too short for its opcode, or larger than [`MAX_REQUEST`]) or, for the
//! messages that have none (FORGET, BATCH_FORGET, INTERRUPT) or when the writable part
//! cannot hold even a header, nothing. No request reaches the view before INIT's answer
//! is known, because the guest sends none before it.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;

use fuser::Errno;

use crate::abi::{self, op, u32_at, u64_at, OpIn, Out, FOPEN_KEEP_CACHE, IN_HEADER, OUT_HEADER};
use crate::core::{Core, ReadOut};
use crate::raw::{self, Request};
use crate::View;

/// The largest read (and readdir) reply body: 256 pages, as INIT's `max_pages` says.
pub(crate) const MAX_READ: usize = 256 << 12;
/// The most the device writes for one request: a header and the largest body.
pub(crate) const MAX_REPLY: usize = OUT_HEADER + MAX_READ;
/// The most the device reads of one request: a header, the largest fixed argument and two
/// path-sized names (writes, which can be larger, are refused by their opcode alone).
pub(crate) const MAX_REQUEST: usize = IN_HEADER + 128 + 2 * 4096;

/// The FUSE minor version answered (or the guest's, if older): every message and flag used
/// here has its current layout since 7.31.
const MINOR: u32 = 31;

/// FUSE_INIT flags (`linux/fuse.h`).
mod init {
    pub const ASYNC_READ: u32 = 1 << 0;
    pub const DO_READDIRPLUS: u32 = 1 << 13;
    pub const NO_OPEN_SUPPORT: u32 = 1 << 17;
    pub const PARALLEL_DIROPS: u32 = 1 << 18;
    pub const MAX_PAGES: u32 = 1 << 22;
    pub const CACHE_SYMLINKS: u32 = 1 << 23;
    pub const NO_OPENDIR_SUPPORT: u32 = 1 << 24;
}

/// What to put in the used ring for a request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Answer<'v> {
    /// No reply: the chain is returned with used length 0.
    None,
    /// The first `len` bytes of the output buffer, then `tail` (a READ's bytes straight from
    /// the view's memory); the header's length counts both.
    Reply { len: usize, tail: &'v [u8] },
}

/// Answer the request `request` (the chain's readable bytes, at most [`MAX_REQUEST`] + 1 of
/// them) into `out` (at most the chain's writable length).
pub(crate) fn answer<'v, V: View>(core: &'v Core<V>, request: &[u8], out: &mut [u8]) -> Answer<'v> {
    let opcode = u32_at(request, 4);
    let no_reply = matches!(opcode, op::FORGET | op::BATCH_FORGET | op::INTERRUPT);
    if (no_reply && request.len() >= IN_HEADER) || out.len() < OUT_HEADER {
        return Answer::None;
    }
    let (head, body) = out.split_at_mut(OUT_HEADER);
    let r = catch_unwind(AssertUnwindSafe(|| reply(core, request, body))).unwrap_or_else(|_| {
        log::error!("virtio-fs request {opcode}: internal error (panic); answered EIO");
        Err(Errno::EIO)
    });
    let (error, len, tail) = match r {
        Ok((len, tail)) => (0, len, tail),
        Err(e) => (-e.code(), 0, &[][..]),
    };
    let total = OUT_HEADER + len + tail.len();
    let mut w = Out::new(head);
    w.u32(total as u32).u32(error as u32).u64(u64_at(request, 8));
    Answer::Reply { len: OUT_HEADER + len, tail }
}

/// The opcodes that would change the tree.
fn writes(opcode: u32) -> bool {
    use op::*;
    matches!(
        opcode,
        SETATTR
            | SYMLINK
            | MKNOD
            | MKDIR
            | UNLINK
            | RMDIR
            | RENAME
            | LINK
            | WRITE
            | SETXATTR
            | REMOVEXATTR
            | CREATE
            | FALLOCATE
            | RENAME2
            | COPY_FILE_RANGE
            | TMPFILE
    )
}

/// The bytes of its fixed argument an operation reads (the kernel sends at least these).
fn arg_size(opcode: u32) -> usize {
    match opcode {
        op::INIT => 16,
        op::READ | op::READDIR | op::READDIRPLUS => 24,
        op::OPEN | op::OPENDIR | op::GETXATTR | op::LISTXATTR | op::ACCESS | op::RELEASE | op::RELEASEDIR => 8,
        _ => 0,
    }
}

/// The reply body, written at the start of `out`: its length, and a READ's bytes.
fn reply<'v, V: View>(core: &'v Core<V>, request: &[u8], out: &mut [u8]) -> Result<(usize, &'v [u8]), Errno> {
    if request.len() < IN_HEADER {
        return Err(Errno::EINVAL);
    }
    let (len, opcode, nodeid) = (u32_at(request, 0) as usize, u32_at(request, 4), u64_at(request, 16));
    if writes(opcode) {
        return Err(Errno::EROFS);
    }
    if len > MAX_REQUEST {
        return Err(Errno::E2BIG);
    }
    let body = request.get(IN_HEADER..len).ok_or(Errno::EINVAL)?;
    let (arg, names) = body.split_at_checked(arg_size(opcode)).ok_or(Errno::EINVAL)?;
    let req = Request { opcode, nodeid, op_in: OpIn(arg), name: abi::name(names) };
    let mut w = Out::new(out);
    let len = match opcode {
        op::INIT => init(core, &req.op_in, &mut w)?,
        op::OPEN => {
            // Never a host file handed over: no passthrough to a guest.
            core.open(nodeid, req.op_in.first_u32() as i32)?;
            w.open(FOPEN_KEEP_CACHE).len
        }
        op::READ => return read(core, &req, out),
        op::FLUSH => 0,
        _ => raw::answer(core, &req, out).unwrap_or(Err(Errno::ENOSYS))?,
    };
    Ok((len, &[]))
}

/// FUSE_INIT: the kernel's offer (`fuse_init_in`) and our `fuse_init_out`.
fn init<V: View>(core: &Core<V>, arg: &OpIn, w: &mut Out) -> Result<usize, Errno> {
    if u32_at(arg.0, 0) != 7 {
        return Err(Errno::EPROTO);
    }
    let (minor, readahead, offered) = (u32_at(arg.0, 4), u32_at(arg.0, 8), u32_at(arg.0, 12));
    // Listings carry attributes unless every first use must be seen as a lookup.
    let plus = if core.every_lookup { 0 } else { init::DO_READDIRPLUS };
    let wanted = init::ASYNC_READ
        | plus
        | init::NO_OPEN_SUPPORT
        | init::PARALLEL_DIROPS
        | init::MAX_PAGES
        | init::CACHE_SYMLINKS
        | init::NO_OPENDIR_SUPPORT;
    let flags = offered & wanted;
    // Opens and opendirs then answer ENOSYS, and the guest stops sending them.
    core.no_open.store(flags & init::NO_OPEN_SUPPORT != 0, Ordering::Relaxed);
    core.no_opendir.store(flags & init::NO_OPENDIR_SUPPORT != 0, Ordering::Relaxed);
    // major, minor, max_readahead, flags, max_background, congestion_threshold, max_write,
    // time_gran, max_pages, map_alignment, flags2, unused[7].
    w.u32(7).u32(minor.min(MINOR)).u32(readahead).u32(flags).u16(0).u16(0).u32(MAX_READ as u32);
    Ok(w.u32(1).u16((MAX_READ >> 12) as u16).u16(0).u32(0).bytes(&[0; 28]).len)
}

/// A READ: host files read into `out`, the view's own bytes handed out as they are.
fn read<'v, V: View>(core: &'v Core<V>, req: &Request, out: &mut [u8]) -> Result<(usize, &'v [u8]), Errno> {
    let (offset, size) = req.op_in.read();
    let size = size.min(out.len());
    Ok(match core.read(req.nodeid, offset, size, out)? {
        ReadOut::InBuf(n) => (n, &[]),
        ReadOut::Bytes(bytes) => (0, bytes),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::{big_byte, Demo};

    /// A request as the guest lays it out.
    fn request(opcode: u32, nodeid: u64, arg: &[u8], name: &[u8]) -> Vec<u8> {
        let len = IN_HEADER + arg.len() + name.len();
        let mut r = Vec::with_capacity(len);
        r.extend_from_slice(&(len as u32).to_le_bytes());
        r.extend_from_slice(&opcode.to_le_bytes());
        r.extend_from_slice(&77u64.to_le_bytes());
        r.extend_from_slice(&nodeid.to_le_bytes());
        r.extend_from_slice(&[0; 16]);
        r.extend_from_slice(arg);
        r.extend_from_slice(name);
        r
    }

    /// `fuse_read_in` for `size` bytes at `offset`.
    fn read_in(offset: u64, size: u32) -> Vec<u8> {
        [&0u64.to_le_bytes()[..], &offset.to_le_bytes(), &size.to_le_bytes(), &[0; 20]].concat()
    }

    /// The reply to `req` given `room` writable bytes: error, body (tail included).
    fn ask(core: &Core<Demo>, req: &[u8], room: usize) -> (i32, Vec<u8>) {
        let mut out = vec![0; room];
        let Answer::Reply { len, tail } = answer(core, req, &mut out) else { panic!("no reply") };
        assert_eq!(u32_at(&out, 0) as usize, len + tail.len());
        let unique = if req.len() >= 16 { 77 } else { 0 };
        assert_eq!(u64_at(&out, 8), unique);
        (u32_at(&out, 4) as i32, [&out[OUT_HEADER..len], tail].concat())
    }

    fn core() -> Core<Demo> {
        Core::new(Demo::sample(), false, false)
    }

    #[test]
    fn init_answers_what_a_read_only_tree_wants() {
        let core = core();
        // Linux 6.1's offer: 7.37 (flags with all of ours, and more).
        let arg = [7u32, 37, 128 << 10, 0x3fff_ffff].map(u32::to_le_bytes).concat();
        let (error, out) = ask(&core, &request(op::INIT, 0, &[arg, vec![0; 48]].concat(), b""), 4096);
        assert_eq!((error, out.len()), (0, 64));
        let expected = init::ASYNC_READ
            | init::DO_READDIRPLUS
            | init::NO_OPEN_SUPPORT
            | init::PARALLEL_DIROPS
            | init::MAX_PAGES
            | init::CACHE_SYMLINKS
            | init::NO_OPENDIR_SUPPORT;
        assert_eq!([u32_at(&out, 0), u32_at(&out, 4), u32_at(&out, 8), u32_at(&out, 12)], [7, 31, 128 << 10, expected]);
        // max_write, time_gran, max_pages.
        assert_eq!(
            (u32_at(&out, 20), u32_at(&out, 24), out[28..30].to_vec()),
            (1 << 20, 1, 256u16.to_le_bytes().to_vec())
        );
        assert!(core.no_open() && core.no_opendir());
        // Then opens are ENOSYS: the guest stops sending them.
        assert_eq!(ask(&core, &request(op::OPEN, 3, &[0; 8], b""), 4096).0, -libc::ENOSYS);
        // An older guest keeps its minor; another major is refused.
        let old = [7u32, 27, 0, init::ASYNC_READ].map(u32::to_le_bytes).concat();
        let (_, out) = ask(&core, &request(op::INIT, 0, &old, b""), 4096);
        assert_eq!((u32_at(&out, 4), u32_at(&out, 12)), (27, init::ASYNC_READ));
        assert!(!core.no_open());
        let other = [8u32, 0, 0, 0].map(u32::to_le_bytes).concat();
        assert_eq!(ask(&core, &request(op::INIT, 0, &other, b""), 4096).0, -libc::EPROTO);
    }

    #[test]
    fn lookups_find_names_and_remember_missing_ones() {
        let core = core();
        let (error, out) = ask(&core, &request(op::LOOKUP, 1, &[], b"etc\0"), 4096);
        assert_eq!((error, out.len(), u64_at(&out, 0)), (0, 128, 2));
        // A missing name is a negative entry (node 0 with a timeout): the guest answers
        // ENOENT itself from then on.
        let (error, out) = ask(&core, &request(op::LOOKUP, 1, &[], b"nothing\0"), 4096);
        assert_eq!((error, out.len(), u64_at(&out, 0), u64_at(&out, 16)), (0, 128, 0, crate::core::TTL.as_secs()));
        // In a directory that does not exist: ENOENT.
        assert_eq!(ask(&core, &request(op::LOOKUP, 9999, &[], b"etc\0"), 4096).0, -libc::ENOENT);
        // A reply that does not fit the guest's buffer: ERANGE, not a cut entry.
        assert_eq!(ask(&core, &request(op::LOOKUP, 1, &[], b"etc\0"), 100), (-libc::ERANGE, vec![]));
    }

    #[test]
    fn readdirplus_fills_its_buffer_and_resumes() {
        let core = core();
        let many = 8; // kernel inode of `many/`
        let (mut offset, mut names) = (0, Vec::new());
        loop {
            let (error, out) = ask(&core, &request(op::READDIRPLUS, many, &read_in(offset, 4096), b""), MAX_REPLY);
            assert_eq!(error, 0);
            if out.is_empty() {
                break;
            }
            // Full: no room for one more entry (128 + 32 bytes for these names).
            assert!(out.len() > 4096 - 160 || names.len() > 280, "{} bytes", out.len());
            let mut at = 0;
            while at < out.len() {
                let namelen = u32_at(&out, at + 128 + 16) as usize;
                offset = u64_at(&out, at + 128 + 8);
                names.push(out[at + 128 + 24..at + 128 + 24 + namelen].to_vec());
                at += 128 + (24 + namelen).next_multiple_of(8);
            }
        }
        assert_eq!(names.len(), 302);
        assert_eq!(
            (&names[0][..], &names[1][..], &names[2][..], &names[301][..]),
            (&b"."[..], &b".."[..], &b"f000"[..], &b"f299"[..])
        );
    }

    #[test]
    fn reads_come_from_the_view() {
        let core = core();
        let big = 6;
        let (error, out) = ask(&core, &request(op::READ, big, &read_in(299_000, 1 << 20), b""), MAX_REPLY);
        assert_eq!((error, out.len()), (0, 1000));
        assert!(out.iter().enumerate().all(|(i, &b)| b == big_byte(299_000 + i)));
        // Never more than the guest's buffer holds.
        let (_, out) = ask(&core, &request(op::READ, big, &read_in(0, 1 << 20), b""), 4096 + 16);
        assert_eq!(out.len(), 4096);
    }

    #[test]
    fn malformed_requests_get_errors() {
        let core = core();
        let lookup = request(op::LOOKUP, 1, &[], b"etc\0");
        // A truncated header, a length past the bytes, an argument too short.
        assert_eq!(ask(&core, &lookup[..20], 4096), (-libc::EINVAL, vec![]));
        assert_eq!(ask(&core, &lookup[..lookup.len() - 1], 4096).0, -libc::EINVAL);
        assert_eq!(ask(&core, &request(op::READ, 6, &[0; 16], b""), 4096).0, -libc::EINVAL);
        // Too large, unknown, or a write.
        let mut huge = request(op::LOOKUP, 1, &[], &[b'a'; MAX_REQUEST]);
        huge.truncate(MAX_REQUEST + 1);
        assert_eq!(ask(&core, &huge, 4096).0, -libc::E2BIG);
        assert_eq!(ask(&core, &request(4000, 1, &[], b""), 4096), (-libc::ENOSYS, vec![]));
        assert_eq!(ask(&core, &request(op::MKDIR, 1, &[0; 8], b"x\0"), 4096).0, -libc::EROFS);
        // No reply for forgets, nor where a header does not fit.
        let mut out = [0; 64];
        assert_eq!(answer(&core, &request(op::FORGET, 2, &[1, 0, 0, 0, 0, 0, 0, 0], b""), &mut out), Answer::None);
        assert_eq!(answer(&core, &lookup, &mut out[..15]), Answer::None);
    }
}
