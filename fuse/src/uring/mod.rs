//! FUSE over io_uring (Linux ≥ 6.14, when `/sys/module/fuse/parameters/enable_uring` is Y).
//!
//! Over `/dev/fuse`, every request wakes a daemon thread that sleeps on whichever CPU it
//! last ran, and its reply wakes the caller back: two cross-CPU wake-ups per request, which
//! on a virtual machine cost more than the work (measured: reading 6,443 small files
//! through the view took 1.1 s from a fresh mount, 0.45 s with caller and daemon pinned to
//! one CPU). With io_uring the kernel keeps one queue per CPU and hands a request to the
//! queue of the CPU its caller runs on; each queue here is served by a thread pinned to that
//! CPU, so a request and its reply never leave the caller's CPU.
//!
//! Life cycle: `fs::ViewFs::init` makes the rings ([`Rings::prepare`]) before it accepts the
//! kernel's offer, because once accepted the kernel sends nothing until every queue has an
//! entry; [`serve`] then starts one thread per queue, which registers its entries and
//! answers requests until the connection ends (its commands then fail with ENOTCONN).
//! Forgets and interrupts still come through `/dev/fuse`, to fuser's loop.
//!
//! Passthrough works the same way: host files from 64 KiB (`PASSTHROUGH_MIN_SIZE_URING`)
//! are registered as backing files (and closed at their last release) by this transport.

mod abi;
mod sys;

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use fuser::Errno;
use io_uring::squeue::Entry128;
use io_uring::IoUring;

use crate::abi::{op, OpIn, Out, FOPEN_KEEP_CACHE};
use crate::core::Core;
use crate::files::RawBacking;
use crate::{raw, View};
use abi::Request;
use sys::Buffers;

/// Each entry's payload buffer: the largest read the kernel sends (256 pages).
pub(crate) const PAYLOAD: usize = 1 << 20;
/// Entries per queue: a caller's request plus the readahead the kernel sends meanwhile.
const ENTRIES: usize = 2;
/// Machines with more possible CPUs stay on `/dev/fuse` (a queue is a thread and 2 MiB).
const MAX_QUEUES: usize = 256;

/// Where the kernel says whether it offers FUSE over io_uring to new connections.
const SWITCH: &str = "/sys/module/fuse/parameters/enable_uring";

/// The kernel's switch for FUSE over io_uring: None when this kernel has no such thing.
pub(crate) fn kernel_switch() -> Option<bool> {
    std::fs::read(SWITCH).ok().map(|v| v.starts_with(b"Y"))
}

/// The `-v` hint when the kernel could serve the view over io_uring but is not set to.
pub(crate) fn switch_hint() -> String {
    format!("FUSE over io_uring is off; `echo Y > {SWITCH}` (as root) makes reads through the view faster")
}

/// One io_uring per possible CPU (the kernel's queue count), not yet enabled, with its
/// entries' buffers.
pub(crate) struct Rings {
    queues: Vec<Queue>,
}

struct Queue {
    // Dropped before the buffers: closing the ring ends the commands that name them.
    ring: IoUring<Entry128>,
    entries: Vec<Buffers>,
}

impl Rings {
    pub(crate) fn prepare(payload: usize) -> io::Result<Rings> {
        let n = possible_cpus()?;
        if n > MAX_QUEUES {
            return Err(io::Error::other(format!("{n} possible CPUs")));
        }
        let queue = || -> io::Result<Queue> {
            // Enabled by its serving thread, which then is the only one to submit (and the
            // one the kernel runs completions on).
            let ring = IoUring::builder()
                .setup_r_disabled()
                .setup_single_issuer()
                .setup_defer_taskrun()
                .build(2 * ENTRIES as u32)?;
            let entries = (0..ENTRIES).map(|_| Buffers::new(abi::HEADER_SIZE, payload)).collect();
            Ok(Queue { ring, entries })
        };
        Ok(Rings { queues: (0..n).map(|_| queue()).collect::<io::Result<_>>()? })
    }
}

/// The kernel's queue count, `num_possible_cpus()`, from `/sys/devices/system/cpu/possible`.
fn possible_cpus() -> io::Result<usize> {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/possible")?;
    cpu_count(&text).ok_or_else(|| io::Error::other(format!("possible CPUs {:?}", text.trim())))
}

/// The CPUs in a kernel CPU list that must be "0-N" or "0": queue ids are CPU numbers, so a
/// list with holes is refused.
fn cpu_count(list: &str) -> Option<usize> {
    match list.trim().split_once('-') {
        Some(("0", last)) => last.parse::<usize>().ok().map(|l| l + 1),
        None if list.trim() == "0" => Some(1),
        _ => None,
    }
}

/// Serve `rings` for the connection on `dev`: a thread per queue, pinned to its CPU. Returns
/// the number of queues.
pub(crate) fn serve<V: View>(rings: Rings, core: Arc<Core<V>>, dev: BorrowedFd) -> io::Result<usize> {
    let queues = rings.queues.len();
    for (qid, queue) in rings.queues.into_iter().enumerate() {
        let (dev, core) = (Arc::new(dev.try_clone_to_owned()?), core.clone());
        std::thread::Builder::new().name(format!("uring-{qid}")).spawn(move || {
            if let Err(e) = run_queue(qid as u16, queue, dev, &core) {
                // Requests on this CPU would wait forever: end the connection instead.
                log::error!("FUSE io_uring queue {qid}: {e}; stopping the daemon");
                std::process::exit(1);
            }
        })?;
    }
    Ok(queues)
}

/// Register the queue's entries, then answer and commit each request until the connection
/// ends. A failed registration is no error: the kernel then falls back to `/dev/fuse`. A
/// refused reply (its request gone) loses the entry, so it is registered again.
fn run_queue<V: View>(qid: u16, mut q: Queue, dev_fd: Arc<OwnedFd>, core: &Core<V>) -> io::Result<()> {
    pin_to_cpu(qid as usize);
    q.ring.submitter().register_enable_rings()?;
    let dev = dev_fd.as_raw_fd();
    // The command each entry has in the kernel.
    let mut queued = vec![sys::REGISTER; q.entries.len()];
    for (i, bufs) in q.entries.iter().enumerate() {
        sys::queue(&mut q.ring, dev, (sys::REGISTER, qid, 0), bufs, i)?;
    }
    let mut done = Vec::with_capacity(ENTRIES);
    loop {
        match q.ring.submit_and_wait(1) {
            Ok(_) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)) => continue,
            Err(e) => return Err(e),
        }
        done.clear();
        done.extend(q.ring.completion().map(|c| (c.user_data() as usize, c.result())));
        for &(i, res) in &done {
            let bufs = &mut q.entries[i];
            let (cmd, commit_id) = match res {
                0.. => (sys::COMMIT_AND_FETCH, answer(core, &dev_fd, bufs)),
                _ if queued[i] == sys::REGISTER || connection_ended(-res) => {
                    log::debug!("FUSE io_uring queue {qid}: {}", io::Error::from_raw_os_error(-res));
                    return Ok(());
                }
                _ => {
                    log::warn!("FUSE io_uring queue {qid}: {}", io::Error::from_raw_os_error(-res));
                    (sys::REGISTER, 0)
                }
            };
            queued[i] = cmd;
            sys::queue(&mut q.ring, dev, (cmd, qid, commit_id), bufs, i)?;
        }
    }
}

/// The errors a queue's commands end with when the mount goes away.
fn connection_ended(errno: i32) -> bool {
    matches!(errno, libc::ENOTCONN | libc::ECONNABORTED | libc::ECANCELED | libc::ENODEV)
}

fn pin_to_cpu(cpu: usize) {
    let mut set = nix::sched::CpuSet::new();
    if let Err(e) = set.set(cpu).and_then(|()| nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)) {
        log::debug!("FUSE io_uring queue {cpu}: not pinned to its CPU ({e})");
    }
}

/// Answer the request in `bufs` in place; returns its commit id.
fn answer<V: View>(core: &Core<V>, dev: &Arc<OwnedFd>, bufs: &mut Buffers) -> u64 {
    let req = Request::parse(&bufs.header);
    let op_in: [u8; 128] = abi::op_in(&bufs.header).0.try_into().expect("128 bytes");
    // Names come in the payload that the reply overwrites.
    let name = match req.opcode {
        op::LOOKUP | op::GETXATTR => crate::abi::name(&bufs.payload[..req.payload.min(bufs.payload.len())]).to_vec(),
        _ => Vec::new(),
    };
    let raw = raw::Request { opcode: req.opcode, nodeid: req.nodeid, op_in: OpIn(&op_in), name: &name };
    let r = catch_unwind(AssertUnwindSafe(|| dispatch((core, dev), &raw, &mut bufs.payload)));
    let (error, len) = match r {
        Ok(Ok(len)) => (0, len),
        Ok(Err(e)) => (-e.code(), 0),
        Err(_) => {
            log::error!("FUSE request {}: internal error (panic); answered EIO", req.opcode);
            (-libc::EIO, 0)
        }
    };
    abi::set_reply(&mut bufs.header, req.unique, error, len);
    req.commit_id
}

/// The reply to one request, written at the start of `out`: its length. Opens are this
/// transport's (passthrough); the rest is answered as over virtio-fs (`raw`).
fn dispatch<V: View>(
    (core, dev): (&Core<V>, &Arc<OwnedFd>),
    req: &raw::Request,
    out: &mut [u8],
) -> Result<usize, Errno> {
    if req.opcode == op::OPEN {
        let mut w = Out::new(out);
        open((core, dev), req.nodeid, req.op_in.first_u32(), &mut w)?;
        return Ok(w.len);
    }
    raw::answer(core, req, out).unwrap_or(Err(Errno::ENOSYS))
}

fn open<'o, 'b, V: View>(
    (core, dev): (&Core<V>, &Arc<OwnedFd>),
    node: u64,
    flags: u32,
    w: &'o mut Out<'b>,
) -> Result<&'o mut Out<'b>, Errno> {
    let Some((ino, file)) = core.open(node, flags as i32)? else {
        return Ok(w.open(FOPEN_KEEP_CACHE));
    };
    let register = |f: &File| {
        let id = fuser::BackingId::create_raw(dev.as_fd(), f)?;
        let dev = dev.clone();
        Ok(RawBacking { id, close: Box::new(move |id| sys::close_backing(dev.as_raw_fd(), id)) })
    };
    match core.files.open_passthrough_raw(ino, file, register) {
        Ok(id) => Ok(w.open_passthrough(ino + 1, id)),
        // Refused (a stacked host filesystem): this open reads through the daemon, and the
        // next ones are not sent at all (see `Core::no_open`).
        Err(e) => {
            core.files.disable_passthrough(&e);
            Ok(w.open(FOPEN_KEEP_CACHE))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_without_holes_are_counted() {
        assert_eq!(cpu_count("0-1\n"), Some(2));
        assert_eq!(cpu_count("0\n"), Some(1));
        assert_eq!(cpu_count("0-3,5-7\n"), None);
        assert_eq!(cpu_count("1-3"), None);
        assert_eq!(cpu_count(""), None);
    }
}
