//! virtio-fs over vhost-user: the view as the device of a virtual machine's
//! `vhost-user-fs-pci` (qemu), which the guest mounts with `mount -t virtiofs TAG DIR`.
//!
//! `vhost-user-backend` speaks the vhost-user protocol on the socket (features, the guest's
//! memory regions, the queues' addresses and eventfds) and runs a thread that waits on the
//! queues' kicks; [`handle_event`](VirtioFs::handle_event) then takes each descriptor
//! chain, reads its request (bounded by [`frame::MAX_REQUEST`]), answers it with the same
//! `Core` as the other transports (`frame`, which is a pure function over bytes) and writes
//! the reply into the chain's writable descriptors. Queue 0 is the high-priority queue
//! (FORGET, INTERRUPT: consumed, never answered); queue 1 is the one request queue. There
//! is no kernel FUSE on this side: INIT is answered here, and a guest can use no host file
//! descriptor (no passthrough) nor shared mappings (no DAX).

mod frame;

use std::io::{self, Read, Write};
use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use vhost::vhost_user::message::VhostUserProtocolFeatures;
use vhost::vhost_user::{Error as ProtocolError, Listener};
use vhost_user_backend::{Error as DaemonError, VhostUserBackend, VhostUserDaemon, VringRwLock, VringT};
use virtio_queue::QueueT;
use vm_memory::{GuestAddressSpace, GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::event::{new_event_consumer_and_notifier, EventConsumer, EventFlag, EventNotifier};

use crate::core::Core;
use crate::{Options, View};
pub(crate) use frame::{answer, Answer, MAX_REPLY, MAX_REQUEST};

/// The high-priority queue and one request queue.
const QUEUES: usize = 2;
/// The largest queue the frontend may set up (qemu's `queue-size` defaults to 128).
const MAX_QUEUE_SIZE: usize = 1024;

/// Virtio feature bits: VIRTIO_F_VERSION_1, VIRTIO_RING_F_INDIRECT_DESC,
/// VIRTIO_RING_F_EVENT_IDX, and vhost-user's VHOST_USER_F_PROTOCOL_FEATURES.
const FEATURES: u64 = 1 << 32 | 1 << 28 | 1 << 29 | 1 << 30;

type Memory = GuestMemoryAtomic<GuestMemoryMmap>;

/// The device: the view's answers and the guest memory the frontend shared.
struct VirtioFs<V: View> {
    core: Core<V>,
    /// The same memory the daemon maps the frontend's regions into.
    mem: Memory,
    event_idx: AtomicBool,
    /// The request read and the reply assembled (one worker thread serves every queue).
    buffers: Mutex<(Vec<u8>, Vec<u8>)>,
}

/// Serve `view` to the one frontend that connects to `listener`, until it disconnects.
pub(crate) fn serve<V: View>(view: V, listener: UnixListener, opts: &Options) -> io::Result<()> {
    let mem = Memory::new(GuestMemoryMmap::new());
    let device = Arc::new(VirtioFs {
        core: Core::new(view, false, opts.every_lookup),
        mem: mem.clone(),
        event_idx: AtomicBool::new(false),
        buffers: Mutex::new((Vec::new(), Vec::new())),
    });
    let failed = |e: DaemonError| io::Error::other(format!("vhost-user: {e}"));
    let mut daemon = VhostUserDaemon::new("virtio-fs".into(), device, mem).map_err(failed)?;
    daemon.start(&mut Listener::from(listener)).map_err(failed)?;
    log::info!("virtio-fs: a frontend connected");
    // Dropping the daemon stops its worker thread (the exit event) and joins it.
    match daemon.wait() {
        Ok(()) | Err(DaemonError::HandleRequest(ProtocolError::Disconnected | ProtocolError::PartialMessage)) => {
            log::info!("virtio-fs: the frontend disconnected");
            Ok(())
        }
        Err(e) => Err(failed(e)),
    }
}

impl<V: View> VirtioFs<V> {
    /// Answer every chain waiting in `vring`, then notify the guest.
    fn process(&self, vring: &VringRwLock) -> io::Result<()> {
        let mem = self.mem.memory();
        let mut buffers = self.buffers.lock();
        let (request, reply) = &mut *buffers;
        loop {
            let Some(chain) = vring.get_mut().get_queue_mut().pop_descriptor_chain(mem.clone()) else { break };
            let head = chain.head_index();
            // A chain whose descriptors leave guest memory reads as nothing (an EINVAL reply
            // with unique 0) or, when not even its writable part is there, gets no reply.
            let mut reader = chain.clone().reader(&mem).ok();
            request.clear();
            if let Some(r) = reader.as_mut() {
                let n = r.available_bytes().min(MAX_REQUEST + 1);
                request.resize(n, 0);
                let got = read_up_to(r, request);
                request.truncate(got);
            }
            let used = match chain.writer(&mem) {
                Ok(mut w) => {
                    let room = w.available_bytes().min(MAX_REPLY);
                    reply.resize(room, 0);
                    write_answer(answer(&self.core, request, &mut reply[..room]), reply, &mut w)
                }
                Err(_) => 0,
            };
            vring.add_used(head, used as u32).map_err(io::Error::other)?;
        }
        if !self.event_idx.load(Ordering::Relaxed) || vring.needs_notification().map_err(io::Error::other)? {
            vring.signal_used_queue()?;
        }
        Ok(())
    }
}

/// Read until `buf` is full or the reader is exhausted (or fails): the bytes read.
fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> usize {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    got
}

/// Write an answer into the chain: the bytes written, its used length.
fn write_answer(answer: Answer, reply: &[u8], w: &mut impl Write) -> usize {
    match answer {
        Answer::None => 0,
        Answer::Reply { len, tail } => {
            let mut written = 0;
            for part in [&reply[..len], tail] {
                match w.write_all(part) {
                    Ok(()) => written += part.len(),
                    Err(_) => break,
                }
            }
            written
        }
    }
}

impl<V: View> VhostUserBackend for VirtioFs<V> {
    type Bitmap = ();
    type Vring = VringRwLock;

    fn num_queues(&self) -> usize {
        QUEUES
    }

    fn max_queue_size(&self) -> usize {
        MAX_QUEUE_SIZE
    }

    fn features(&self) -> u64 {
        FEATURES
    }

    fn protocol_features(&self) -> VhostUserProtocolFeatures {
        VhostUserProtocolFeatures::MQ
            | VhostUserProtocolFeatures::REPLY_ACK
            | VhostUserProtocolFeatures::CONFIGURE_MEM_SLOTS
    }

    fn set_event_idx(&self, enabled: bool) {
        self.event_idx.store(enabled, Ordering::Relaxed);
    }

    fn update_memory(&self, _mem: Memory) -> io::Result<()> {
        // `mem` is the atomic this device holds too: nothing to swap.
        Ok(())
    }

    /// The worker thread ends when the daemon is dropped, through this eventfd.
    fn exit_event(&self, _thread_index: usize) -> Option<(EventConsumer, EventNotifier)> {
        new_event_consumer_and_notifier(EventFlag::NONBLOCK | EventFlag::CLOEXEC).ok()
    }

    fn handle_event(&self, queue: u16, _evset: EventSet, vrings: &[VringRwLock], _thread: usize) -> io::Result<()> {
        let Some(vring) = vrings.get(queue as usize) else { return Ok(()) };
        if !self.event_idx.load(Ordering::Relaxed) {
            return self.process(vring);
        }
        // With EVENT_IDX the guest kicks once for many chains: drain until none came while
        // notifications were off.
        loop {
            vring.disable_notification().map_err(io::Error::other)?;
            self.process(vring)?;
            if !vring.enable_notification().map_err(io::Error::other)? {
                return Ok(());
            }
        }
    }
}
