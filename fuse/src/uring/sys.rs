//! The one place of this crate where `unsafe` is allowed: queueing io_uring commands whose
//! buffers the kernel writes into later, and closing a passthrough backing id (an ioctl).

#![allow(unsafe_code)]

use std::io;
use std::os::fd::RawFd;

use io_uring::squeue::Entry128;
use io_uring::{opcode, types, IoUring};

/// `FUSE_IO_URING_CMD_REGISTER` and `FUSE_IO_URING_CMD_COMMIT_AND_FETCH`.
pub(crate) const REGISTER: u32 = 1;
pub(crate) const COMMIT_AND_FETCH: u32 = 2;

/// One ring entry's buffers, at addresses that never change while the kernel holds them: a
/// header and a payload, and the two `iovec`s (address, length) naming them.
pub(crate) struct Buffers {
    pub header: Box<[u8]>,
    pub payload: Box<[u8]>,
    iovecs: Box<[u64; 4]>,
}

impl Buffers {
    pub(crate) fn new(header: usize, payload: usize) -> Buffers {
        let (header, payload) = (vec![0u8; header].into_boxed_slice(), vec![0u8; payload].into_boxed_slice());
        let iovecs =
            Box::new([header.as_ptr() as u64, header.len() as u64, payload.as_ptr() as u64, payload.len() as u64]);
        Buffers { header, payload, iovecs }
    }
}

/// Queue a FUSE command for entry `index` (its user data) of queue `qid` on `dev`, the
/// connection's `/dev/fuse`.
///
/// The caller keeps `bufs` alive and untouched until the command completes, and drops the
/// ring before the buffers (the kernel writes a request into them when one arrives).
pub(crate) fn queue(
    ring: &mut IoUring<Entry128>,
    dev: RawFd,
    (cmd_op, qid, commit_id): (u32, u16, u64),
    bufs: &Buffers,
    index: usize,
) -> io::Result<()> {
    // `struct fuse_uring_cmd_req`: flags, commit_id, qid.
    let mut cmd = [0u8; 80];
    cmd[8..16].copy_from_slice(&commit_id.to_le_bytes());
    cmd[16..18].copy_from_slice(&qid.to_le_bytes());
    let mut entry = opcode::UringCmd80::new(types::Fd(dev), cmd_op)
        .cmd(cmd)
        .addr(Some(bufs.iovecs.as_ptr() as u64))
        .build()
        .user_data(index as u64);
    // SAFETY: Entry128 is #[repr(C)] over `struct io_uring_sqe` (128 bytes with SQE128), whose
    // `len` is the u32 at offset 24; io-uring's builder has no setter for it, and the FUSE
    // command must say its iovec count there.
    unsafe { (&mut entry as *mut Entry128).cast::<u8>().add(24).cast::<u32>().write_unaligned(2) };
    // SAFETY: the iovecs and the buffers they name outlive the command (see above).
    unsafe { ring.submission().push(&entry) }.map_err(|_| io::Error::other("io_uring submission queue full"))
}

// `FUSE_DEV_IOC_BACKING_CLOSE`: _IOW(229, 2, uint32_t).
nix::ioctl_write_ptr!(fuse_backing_close, 229, 2, u32);

/// Close backing id `id` of the connection on `dev` (the kernel drops its file reference
/// once no open file uses it).
pub(crate) fn close_backing(dev: RawFd, id: u32) {
    // SAFETY: the ioctl reads one u32 from the pointer, which is valid for the call.
    if let Err(e) = unsafe { fuse_backing_close(dev, &id) } {
        log::warn!("cannot close FUSE backing file {id}: {e}");
    }
}
