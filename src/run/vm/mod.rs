//! `supermin run --vm`: the appliance booted in a VM straight from the view, with no root
//! image written and no root needed (issue 21).
//!
//! This process is the VM's root filesystem: it resolves the appliance as `mount` does and
//! serves the view as a virtio-fs device over vhost-user (`supermin-fuse`'s third transport,
//! the same request handler as the FUSE mounts). qemu boots the kernel `-f ext2` would pick
//! (or `--kernel`) with a mini initrd made once per kernel and cached (`initrd`: this binary
//! as `/init`, plus the virtio, virtio-fs, virtio-console, overlay and 9p modules); inside,
//! [`guest`] mounts the view and runs the command, its streams on virtio-serial ports that
//! this process relays to its own, and its exit status on another. Every channel is a Unix
//! socket in a private directory, removed as soon as qemu is connected to all of them; qemu
//! dies with this process (its parent-death signal), so a SIGKILL leaves nothing behind.

pub mod cmdline;
pub mod guest;
mod initrd;
mod qemu;
mod relay;

use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::sys::signal::{SigSet, Signal};

pub use qemu::Accel;

use crate::error::{Error, Result};
use crate::mount::MountOptions;
use crate::output::staging;

/// What `run --vm` was asked for, beyond the view (`mount`) and the command.
pub struct VmOptions {
    pub accel: Accel,
    pub memory_mib: u64,
    pub cpus: u32,
    /// `--kernel FILE`; else the kernel `-f ext2` would pick.
    pub kernel: Option<PathBuf>,
}

/// Boot the appliance of `opts` and run its command; returns the command's exit status.
pub fn run(opts: &super::Options, vm: &VmOptions) -> Result<i32> {
    // Before any thread starts, so that every thread inherits the mask: a stop signal is taken
    // by `relay::supervise`'s wait (which stops qemu), never by a thread's default action.
    let signals = stop_signals();
    signals.thread_block().map_err(|e| Error::new(format!("run --vm: cannot block signals: {e}")))?;
    let result = prepare_and_boot(opts, vm, signals);
    let _ = signals.thread_unblock();
    result
}

/// What [`boot`] starts qemu with.
struct Boot {
    qemu: PathBuf,
    kernel: PathBuf,
    initrd: PathBuf,
    /// The private directory of the sockets.
    dir: PathBuf,
    interactive: bool,
}

fn prepare_and_boot(opts: &super::Options, vm: &VmOptions, signals: SigSet) -> Result<i32> {
    let qemu = qemu::program()?;
    let kernel = match &vm.kernel {
        Some(file) => crate::boot::kernel::from_file(&opts.mount.root, file)?,
        None => crate::boot::kernel::find(&opts.mount.root, std::env::consts::ARCH)?,
    };
    log::info!("run --vm: the kernel {} ({})", kernel.path.display(), kernel.version);
    if let Some((host, _)) = opts.binds.iter().find(|(host, _)| !host.is_dir()) {
        return Err(Error::new(format!(
            "run --vm --bind: {}: not a directory (a VM shares directories, over 9p)",
            host.display()
        )));
    }
    let (kernel, initrd) = initrd::cached(&kernel)?;
    let view = Arc::new(traced_view(&opts.mount)?);
    let interactive =
        opts.command.is_empty() && !view.has_init() && nix::unistd::isatty(std::io::stdin()).unwrap_or(false);
    let dir = staging::create_unique(&std::env::temp_dir(), "supermin-vm", 0o700)?;
    let b = Boot { qemu, kernel, initrd, dir, interactive };
    let result = boot(opts, vm, &b, view.clone(), signals);
    let _ = std::fs::remove_dir_all(&b.dir);
    write_trace(&opts.mount, &view)?;
    result
}

/// The view of `opts`, recording what is used when `--trace` asks.
fn traced_view(opts: &MountOptions) -> Result<crate::view::ManifestView> {
    let mut view = crate::mount::resolve_view(opts)?;
    if opts.trace.is_some() {
        view.trace();
    }
    Ok(view)
}

/// `--trace FILE`: what the guest used.
fn write_trace(opts: &MountOptions, view: &crate::view::ManifestView) -> Result<()> {
    if let Some(trace) = &opts.trace {
        let (read, looked_up) = view.write_trace(trace)?;
        log::info!("trace: {read} paths read and {looked_up} only looked up, in {}", trace.display());
    }
    Ok(())
}

/// `supermin serve --vhost-user SOCKET`: the view of `opts` to one VM someone else starts,
/// until it disconnects.
pub fn serve(opts: &MountOptions, socket: &Path) -> Result<()> {
    let view = Arc::new(traced_view(opts)?);
    let listener = UnixListener::bind(socket).map_err(|e| {
        let hint =
            if e.kind() == std::io::ErrorKind::AddrInUse { " (remove it first if no one serves it)" } else { "" };
        Error::io(socket, &format!("cannot listen{hint}"), e)
    })?;
    log::info!("serve: listening on {}", socket.display());
    let fuse_opts = crate::mount::fuse_options(opts, &view);
    let served = supermin_fuse::serve_vhost_user(view.clone(), listener, &fuse_opts);
    let _ = std::fs::remove_file(socket);
    served.map_err(|e| Error::io(socket, "virtio-fs", e))?;
    write_trace(opts, &view)
}

/// Serve the view and the channels in `b.dir`, run qemu to its end; the command's status.
fn boot(
    opts: &super::Options,
    vm: &VmOptions,
    b: &Boot,
    view: Arc<crate::view::ManifestView>,
    signals: SigSet,
) -> Result<i32> {
    let verbose = log::log_enabled!(log::Level::Info);
    let guest = cmdline::Guest {
        command: opts.command.clone(),
        writable: opts.writable,
        interactive: b.interactive,
        verbose,
        binds: opts.binds.iter().map(|(_, g)| g.clone()).collect(),
        term: std::env::var("TERM").unwrap_or_default(),
    };
    let quiet = if verbose { "" } else { " quiet loglevel=3" };
    let append = format!("console=ttyS0 panic=-1 rootfstype=virtiofs{quiet} {}", guest.to_cmdline()?);
    let binds: Vec<PathBuf> = opts.binds.iter().map(|(h, _)| h.clone()).collect();
    let machine = qemu::Machine {
        accel: qemu::choose(vm.accel, &b.qemu, &b.dir),
        memory_mib: vm.memory_mib,
        cpus: vm.cpus,
        kernel: &b.kernel,
        initrd: &b.initrd,
        append,
        dir: &b.dir,
        interactive: b.interactive,
        binds: &binds,
    };
    let mut cmd = qemu::command(&b.qemu, &machine)?;
    let listener = bind(&b.dir, "vfs.sock")?;
    let fuse_opts = crate::mount::fuse_options(&opts.mount, &view);
    std::thread::spawn(move || {
        if let Err(e) = supermin_fuse::serve_vhost_user(view, listener, &fuse_opts) {
            log::warn!("run --vm: the view's virtio-fs device: {e}");
        }
    });
    let channels = relay::Channels::start(&b.dir, b.interactive, verbose)?;
    relay::supervise(&mut cmd, channels, signals, &b.dir)
}

/// Ctrl-C, SIGTERM and SIGHUP stop the guest; SIGCHLD says qemu ended.
fn stop_signals() -> SigSet {
    let mut s = SigSet::empty();
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGCHLD] {
        s.add(sig);
    }
    s
}

/// A listening socket `name` in the private directory.
fn bind(dir: &Path, name: &str) -> Result<UnixListener> {
    let path = dir.join(name);
    UnixListener::bind(&path).map_err(|e| Error::io(&path, "cannot listen", e))
}
