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
    let qemu_bin = qemu::program()?;
    let kernel = match &vm.kernel {
        Some(file) => crate::boot::kernel::from_file(&opts.mount.root, file)?,
        None => crate::boot::kernel::find(&opts.mount.root, std::env::consts::ARCH)?,
    };
    log::info!("run --vm: the kernel {} ({})", kernel.path.display(), kernel.version);
    for (host, _) in &opts.binds {
        if !host.is_dir() {
            return Err(Error::new(format!(
                "run --vm --bind: {}: not a directory (a VM shares directories, over 9p)",
                host.display()
            )));
        }
    }
    let (kernel_copy, initrd) = initrd::cached(&kernel)?;
    let mut view = crate::mount::resolve_view(&opts.mount)?;
    if opts.mount.trace.is_some() {
        view.trace();
    }
    let view = Arc::new(view);
    let interactive =
        opts.command.is_empty() && !view.has_init() && nix::unistd::isatty(std::io::stdin()).unwrap_or(false);
    let tmp = std::env::temp_dir();
    let dir = staging::create_unique(&tmp, "supermin-vm", 0o700)?;
    let result = boot(opts, vm, &qemu_bin, &kernel_copy, &initrd, &dir, view.clone(), interactive);
    let _ = std::fs::remove_dir_all(&dir);
    if let Some(trace) = &opts.mount.trace {
        let (read, looked_up) = view.write_trace(trace)?;
        log::info!("trace: {read} paths read and {looked_up} only looked up, in {}", trace.display());
    }
    result
}

/// `supermin serve --vhost-user SOCKET`: the view of `opts` to one VM someone else starts,
/// until it disconnects.
pub fn serve(opts: &MountOptions, socket: &Path) -> Result<()> {
    let mut view = crate::mount::resolve_view(opts)?;
    if opts.trace.is_some() {
        view.trace();
    }
    let view = Arc::new(view);
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
    if let Some(trace) = &opts.trace {
        let (read, looked_up) = view.write_trace(trace)?;
        log::info!("trace: {read} paths read and {looked_up} only looked up, in {}", trace.display());
    }
    Ok(())
}

/// Serve the view and the channels in `dir`, run qemu to its end; the command's status.
#[allow(clippy::too_many_arguments)]
fn boot(
    opts: &super::Options,
    vm: &VmOptions,
    qemu_bin: &Path,
    kernel: &Path,
    initrd: &Path,
    dir: &Path,
    view: Arc<crate::view::ManifestView>,
    interactive: bool,
) -> Result<i32> {
    let verbose = log::log_enabled!(log::Level::Info);
    let guest = cmdline::Guest {
        command: opts.command.clone(),
        writable: opts.writable,
        interactive,
        verbose,
        binds: opts.binds.iter().map(|(_, g)| g.clone()).collect(),
        term: std::env::var("TERM").unwrap_or_default(),
    };
    let quiet = if verbose { "" } else { " quiet loglevel=3" };
    let append = format!("console=ttyS0 panic=-1 rootfstype=virtiofs{quiet} {}", guest.to_cmdline()?);
    let accel = qemu::choose(vm.accel, qemu_bin, dir);
    let binds: Vec<PathBuf> = opts.binds.iter().map(|(h, _)| h.clone()).collect();
    let machine = qemu::Machine {
        accel,
        memory_mib: vm.memory_mib,
        cpus: vm.cpus,
        kernel,
        initrd,
        append,
        dir,
        interactive,
        binds: &binds,
    };
    let mut cmd = qemu::command(qemu_bin, &machine)?;
    let listener = bind(dir, "vfs.sock")?;
    let fuse_opts = crate::mount::fuse_options(&opts.mount, &view);
    std::thread::spawn(move || {
        if let Err(e) = supermin_fuse::serve_vhost_user(view, listener, &fuse_opts) {
            log::warn!("run --vm: the view's virtio-fs device: {e}");
        }
    });
    let channels = relay::Channels::start(dir, interactive, verbose)?;
    let signals = stop_signals();
    signals.thread_block().map_err(|e| Error::new(format!("run --vm: cannot block signals: {e}")))?;
    let outcome = relay::supervise(&mut cmd, channels, signals, dir);
    SigSet::all().thread_unblock().ok();
    outcome
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
