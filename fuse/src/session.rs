//! Mounting and serving: mount options, readiness and the stop signals.
//!
//! Life cycle: mount (which completes the kernel handshake), tell the caller the mount is
//! ready, serve on several threads until the mount goes away (SIGINT, SIGTERM or SIGHUP
//! unmount it here; `fusermount3 -u` or `umount` from outside end the session too), return.
//! Checking the mountpoint beforehand and detaching into the background are the caller's.

use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fuser::{Config, MountOption, Session, SessionACL};
use nix::sys::signal::{SigSet, Signal};

use crate::core::Core;
use crate::fs::ViewFs;
use crate::View;

#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Let other users in (`allow_other`), with the kernel checking modes (`default_permissions`).
    pub allow_other: bool,
    /// Honour set-uid bits and device nodes (for `chroot` into the view). Off by default.
    pub suid: bool,
    pub dev: bool,
    /// Hand large host files to the kernel with FUSE passthrough (needs root and kernel ≥ 6.9;
    /// falls back by itself). The price is a round trip for every file open, because the
    /// kernel then asks the daemon about each one; without it opens never reach the daemon.
    pub passthrough: bool,
    /// Threads reading `/dev/fuse`; 0 means one per core (io_uring has its own, one per CPU).
    pub threads: usize,
    /// Serve requests over io_uring when the kernel offers it (`enable_uring` is Y): each
    /// request stays on its caller's CPU (see `uring`).
    pub io_uring: bool,
    /// Shown as the mount's source in /proc/mounts.
    pub fsname: String,
    /// The filesystem type is `fuse.SUBTYPE` in /proc/mounts.
    pub subtype: String,
    /// Make the kernel look up every entry by name before its first use, instead of taking
    /// attributes from directory listings (readdirplus): then [`View::lookup`] sees every
    /// path that is used, which is what tracing a workload needs. Costs one request per
    /// entry on first use; repeated uses stay in the kernel's caches.
    pub every_lookup: bool,
}

/// Why [`serve`] stopped early.
#[derive(Debug)]
pub enum ServeError {
    /// The kernel (or fusermount3) refused the mount.
    Mount(io::Error),
    /// The mount was up but serving it failed.
    Serve(io::Error),
}

impl ServeError {
    pub fn io(&self) -> &io::Error {
        match self {
            ServeError::Mount(e) | ServeError::Serve(e) => e,
        }
    }
}

/// Mount `view` at `mountpoint` (absolute, checked by the caller) and serve it until
/// unmounted. `ready` is called once the kernel has accepted the mount (requests from then on
/// are answered).
pub fn serve<V: View>(view: V, mountpoint: &Path, opts: &Options, ready: impl FnOnce()) -> Result<(), ServeError> {
    // Block the stop signals in every thread (threads inherit the mask); one thread waits
    // for them and unmounts, which ends the session loops.
    let signals = stop_signals();
    signals.thread_block().map_err(|e| ServeError::Mount(e.into()))?;
    let (mut session, transport) = mount(view, mountpoint, opts)?;
    let mut unmounter = session.unmount_callable();
    let path = mountpoint.to_path_buf();
    let waiter = move || {
        let sig = signals.wait().map(|s| s.as_str()).unwrap_or("?");
        log::info!("{sig}: unmounting {}", path.display());
        if let Err(e) = unmounter.unmount() {
            log::warn!("{}: {e}; detaching instead", path.display());
            detach(&path);
        }
    };
    std::thread::Builder::new().name("signals".into()).spawn(waiter).map_err(ServeError::Serve)?;
    ready();
    log::info!("serving {} {transport}", mountpoint.display());
    session.run().map_err(ServeError::Serve)
}

/// A view mounted and served on background threads, with no signal handling of its own: for
/// a caller that runs something inside the mount and unmounts it when that ends. Dropping it
/// unmounts too.
pub struct Background(fuser::BackgroundSession);

impl Background {
    /// Unmount and wait for the serving threads.
    pub fn unmount(self) -> io::Result<()> {
        self.0.umount_and_join()
    }
}

/// Mount `view` at `mountpoint` (absolute, checked by the caller) and serve it in the
/// background until [`Background::unmount`].
pub fn spawn<V: View>(view: V, mountpoint: &Path, opts: &Options) -> Result<Background, ServeError> {
    let (session, _) = mount(view, mountpoint, opts)?;
    session.spawn().map(Background).map_err(ServeError::Serve)
}

/// The mounted session, not yet served, and how it is served (for the log).
fn mount<V: View>(view: V, mountpoint: &Path, opts: &Options) -> Result<(Session<ViewFs<V>>, String), ServeError> {
    let threads = match opts.threads {
        0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(2, 8),
        n => n,
    };
    // Passthrough needs CAP_SYS_ADMIN in the initial namespace: not worth trying otherwise,
    // and not trying lets the kernel skip file opens altogether (see fs.rs, `no_open`).
    let passthrough = opts.passthrough && nix::unistd::geteuid().is_root();
    if opts.passthrough && !passthrough {
        log::info!("FUSE passthrough needs root; reading host files through the daemon");
    }
    let core = Arc::new(Core::new(view, passthrough, opts.every_lookup));
    let fs = ViewFs::new(core.clone(), opts.io_uring);
    let rings = fs.rings.clone();
    let session = Session::new(fs, mountpoint, &config(opts, threads)).map_err(ServeError::Mount)?;
    // The kernel took io_uring at the handshake: until every queue is served it sends nothing.
    let transport = match rings.lock().take() {
        Some(rings) => {
            let queues = crate::uring::serve(rings, core, session.as_fd()).map_err(ServeError::Mount)?;
            format!("over io_uring ({queues} queues, a thread pinned to each CPU)")
        }
        None => format!("over /dev/fuse with {threads} threads"),
    };
    Ok((session, transport))
}

fn config(opts: &Options, threads: usize) -> Config {
    let mut mount_options = vec![
        MountOption::FSName(opts.fsname.clone()),
        MountOption::Subtype(opts.subtype.clone()),
        MountOption::RO,
        MountOption::NoAtime,
        if opts.suid { MountOption::Suid } else { MountOption::NoSuid },
        if opts.dev { MountOption::Dev } else { MountOption::NoDev },
    ];
    if opts.allow_other {
        mount_options.push(MountOption::DefaultPermissions);
    }
    let mut config = Config::default();
    config.mount_options = mount_options;
    config.acl = if opts.allow_other { SessionACL::All } else { SessionACL::Owner };
    config.n_threads = Some(threads);
    // One /dev/fuse descriptor per thread: no contention on a shared queue.
    config.clone_fd = true;
    config
}

/// The signals that end a foreground mount cleanly.
fn stop_signals() -> SigSet {
    let mut set = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(s);
    }
    set
}

/// Detach the mount at `path` lazily (the last resort when a plain unmount finds it busy).
fn detach(path: &PathBuf) {
    if let Err(e) = nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH) {
        log::warn!("{}: cannot detach: {e}", path.display());
    }
}
