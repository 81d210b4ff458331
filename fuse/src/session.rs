//! Mounting and serving: options, readiness, signals, and `--daemon`.
//!
//! Life cycle: check the mountpoint, mount (which completes the kernel handshake), tell the
//! caller the mount is ready, serve on several threads until the mount goes away (SIGINT,
//! SIGTERM or SIGHUP unmount it here; `fusermount3 -u` or `umount` from outside end the
//! session too), then return.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;

use fuser::{Config, MountOption, Session, SessionACL};

use crate::fs::ViewFs;
use crate::mountpoint::{self, plain};
use crate::View;

#[derive(Clone, Debug)]
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
    /// Event-loop threads; 0 means one per core.
    pub threads: usize,
    /// Shown as the mount's source in /proc/mounts.
    pub fsname: String,
}

impl Default for Options {
    fn default() -> Self {
        Options { allow_other: false, suid: false, dev: false, passthrough: false, threads: 0, fsname: "supermin".into() }
    }
}

/// The connection's readahead window, in KiB: how far ahead of a sequential reader the
/// kernel asks the daemon for data (in requests of at most 1 MiB, FUSE's page limit), so how
/// many requests are in flight at once. The kernel proposes 128 KiB at the handshake and lets
/// the daemon lower it but not raise it, so root raises it afterwards through the mount's
/// `bdi` in sysfs. Measured on a 512 MiB host file read cold through the daemon: 1.5 GB/s at
/// 128 KiB, 1.9 GB/s at 4 MiB.
const READAHEAD_KIB: u32 = 4096;

/// Raise the readahead window of the FUSE mount at `abs` (root only; others keep 128 KiB).
fn raise_readahead(abs: &Path) {
    let Some(dev) = mountpoint::mounted_device(abs) else { return };
    let knob = format!("/sys/class/bdi/{dev}/read_ahead_kb");
    match std::fs::write(&knob, format!("{READAHEAD_KIB}\n")) {
        Ok(()) => log::debug!("{knob}: readahead raised to {READAHEAD_KIB} KiB"),
        Err(e) => log::debug!("{knob}: readahead left as it is ({})", plain(&e)),
    }
}

/// The signals that end a foreground mount cleanly.
fn stop_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

/// Mount `view` at `mountpoint` and serve it until unmounted. `ready` is called once the
/// kernel has accepted the mount (requests from then on are answered).
pub fn serve<V: View>(view: V, mountpoint: &Path, opts: &Options, ready: impl FnOnce()) -> io::Result<()> {
    let abs = mountpoint::check(mountpoint)?;
    let mut mount_options = vec![
        MountOption::FSName(opts.fsname.clone()),
        MountOption::Subtype("supermin".into()),
        MountOption::RO,
        MountOption::NoAtime,
        if opts.suid { MountOption::Suid } else { MountOption::NoSuid },
        if opts.dev { MountOption::Dev } else { MountOption::NoDev },
    ];
    if opts.allow_other {
        mount_options.push(MountOption::DefaultPermissions);
    }
    let threads = match opts.threads {
        0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(2, 8),
        n => n,
    };
    let mut config = Config::default();
    config.mount_options = mount_options;
    config.acl = if opts.allow_other { SessionACL::All } else { SessionACL::Owner };
    config.n_threads = Some(threads);
    // One /dev/fuse descriptor per thread: no contention on a shared queue.
    config.clone_fd = true;

    // Block the stop signals in every thread (threads inherit the mask); one thread waits
    // for them and unmounts, which ends the session loops.
    let set = stop_signals();
    // SAFETY: valid sigset; changes only this thread's mask.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };

    let shown = mountpoint.display();
    // Passthrough needs CAP_SYS_ADMIN in the initial namespace: not worth trying otherwise,
    // and not trying lets the kernel skip file opens altogether (see fs.rs, `no_open`).
    // SAFETY: plain syscall.
    let passthrough = opts.passthrough && unsafe { libc::geteuid() } == 0;
    if opts.passthrough && !passthrough {
        log::info!("FUSE passthrough needs root; reading host files through the daemon");
    }
    let mut session = Session::new(ViewFs::new(view, passthrough), &abs, &config).map_err(|e| match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => io::Error::other(format!(
            "{shown}: cannot mount: permission denied (run as root, or install fuse3 for the fusermount3 helper)"
        )),
        _ => io::Error::other(format!("{shown}: cannot mount: {}", plain(&e))),
    })?;
    raise_readahead(&abs);
    let mut unmounter = session.unmount_callable();
    let waiter_path = abs.clone();
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        let mut sig = 0;
        // SAFETY: valid sigset and out-pointer.
        unsafe { libc::sigwait(&set, &mut sig) };
        log::info!("signal {sig}: unmounting {}", waiter_path.display());
        if let Err(e) = unmounter.unmount() {
            log::warn!("{}: {e}; detaching instead", waiter_path.display());
            mountpoint::detach(&waiter_path);
        }
    })?;
    ready();
    log::info!("serving {} with {threads} threads", abs.display());
    session.run().map_err(|e| io::Error::other(format!("{shown}: session ended: {}", plain(&e))))
}

/// The daemon's end of the readiness pipe of [`daemonize`].
pub struct Ready(File);

impl Ready {
    /// The mount is up: let the waiting parent exit 0, and detach from its terminal and pipes.
    pub fn ok(mut self) {
        let _ = self.0.write_all(b"\0");
        detach_stdio();
        // Do not keep the caller's working directory busy (it may be on a filesystem someone
        // wants to unmount); the inputs were resolved already.
        let _ = std::env::set_current_dir("/");
    }

    /// Starting failed: the parent prints `message` and exits 1.
    pub fn fail(mut self, message: &str) {
        let _ = self.0.write_all(message.as_bytes());
    }
}

/// Fork; the parent waits until the child reports readiness and exits (0 when the mount is
/// up, 1 with the child's message otherwise); the child returns its end of the pipe.
/// Must be called before any thread is started (only the calling thread survives a fork).
pub fn daemonize() -> io::Result<Ready> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid out-array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the descriptors were just created and are owned here.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: no other threads exist yet (documented precondition).
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            drop(r);
            // SAFETY: plain syscall; a new session leaves the caller's terminal and job control.
            unsafe { libc::setsid() };
            Ok(Ready(File::from(w)))
        }
        _ => {
            drop(w);
            let mut msg = Vec::new();
            let _ = File::from(r).read_to_end(&mut msg);
            if msg.first() == Some(&0) {
                std::process::exit(0);
            }
            let text = String::from_utf8_lossy(&msg);
            if text.is_empty() {
                eprintln!("supermin: the mount daemon exited before the mount was ready (run without --daemon to see why)");
            } else {
                eprintln!("supermin: {text}");
            }
            std::process::exit(1);
        }
    }
}

/// Point stdin, stdout and stderr at /dev/null, so whoever started us (a shell's command
/// substitution, a test harness) is not kept waiting on a pipe the daemon still holds.
fn detach_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
        use std::os::fd::AsRawFd;
        for fd in 0..3 {
            // SAFETY: dup2 onto the standard descriptors.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
}
