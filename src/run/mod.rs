//! `supermin run`: the lazy view as a throwaway root to run a command in.
//!
//! This process enters a private mount namespace (nothing it mounts shows in the host's
//! mount table) and a new PID namespace for its child, mounts the view on a private tmpfs
//! (in the kernel, as `mount --kernel` does, where it can; else served over FUSE on
//! background threads), optionally an overlay with a tmpfs upper layer over it (`--writable`). The child is this same binary as the namespace's init
//! ([`init`]): it mounts `/proc`, `/sys`, a minimal `/dev`, `/tmp` and `/run` and the
//! `--bind`s inside the root, chroots, runs the command and reaps orphans. When the command
//! exits, init exits with its status, the kernel kills whatever the command left behind (the
//! PID namespace ends with its init), and this process unmounts everything and exits with
//! the same status. A SIGKILL of this process loses nothing either: init gets SIGKILL too
//! (its parent-death signal), so the command and everything it started end at once, and the
//! namespaces and the mounts end with them; only the empty directory under `$TMPDIR` it
//! mounted on stays behind.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, Signal};

use crate::bail;
use crate::error::{Error, IoContext, Result};
use crate::mount::{MountOptions, Refusal};
use crate::output::staging;

pub mod init;
pub mod vm;

pub struct Options {
    /// What to mount (its `mountpoint` is chosen here).
    pub mount: MountOptions,
    /// An overlay with a tmpfs upper layer over the view.
    pub writable: bool,
    /// `--bind HOST:GUEST`, host paths absolute.
    pub binds: Vec<(PathBuf, PathBuf)>,
    /// The command and its arguments; empty for the appliance's shell.
    pub command: Vec<String>,
}

/// Run the command in the appliance; returns its exit status (128 + signal when killed).
pub fn run(mut opts: Options) -> Result<i32> {
    enter_namespaces()?;
    let work = Workdir::new()?;
    opts.mount.mountpoint = work.path("view");
    // Before any thread starts, so every thread inherits the mask: the signals a terminal
    // or a supervisor sends are for the command, and reach it (see `forward_signals`).
    let signals = run_signals();
    signals.thread_block().map_err(|e| Error::new(format!("run: cannot block signals: {e}")))?;
    let session = Session::start(&opts.mount)?;
    let root = if opts.writable { work.overlay()? } else { opts.mount.mountpoint.clone() };
    let status = run_init(&root, &opts, signals);
    work.unmount(opts.writable);
    session.unmount(&opts.mount.mountpoint);
    status
}

/// The view the command runs in: in the kernel where it can be (`mount --kernel`: no daemon,
/// reads from the host's page cache), else over FUSE (`--trace`, or a kernel without
/// file-backed EROFS or data-only overlay layers).
enum Session {
    Kernel,
    Fuse(supermin_fuse::Background),
}

impl Session {
    fn start(opts: &MountOptions) -> Result<Session> {
        match crate::mount::try_kernel(opts) {
            Ok(()) => return Ok(Session::Kernel),
            Err(Refusal::Failed(e)) => return Err(e),
            Err(Refusal::Unsupported(why)) => {
                log::info!("run: serving the view over FUSE: no kernel view here ({why})")
            }
        }
        crate::mount::spawn(opts).map(Session::Fuse)
    }

    fn unmount(self, mp: &Path) {
        let done = match self {
            Session::Kernel => umount2(mp, MntFlags::MNT_DETACH).map_err(std::io::Error::from),
            Session::Fuse(session) => session.unmount(),
        };
        if let Err(e) = done {
            log::debug!("run: unmounting the view: {e}");
        }
    }
}

/// A private mount namespace: nothing propagates to or from the host.
fn enter_namespaces() -> Result<()> {
    unshare(CloneFlags::CLONE_NEWNS, "a private mount namespace")?;
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(|e| Error::new(format!("run: cannot make mounts private: {e}")))
}

fn unshare(flags: CloneFlags, what: &str) -> Result<()> {
    nix::sched::unshare(flags).map_err(|e| {
        let hint =
            if e == nix::errno::Errno::EPERM { format!(": run it as root ({})", as_root()) } else { String::new() };
        Error::new(format!("run: cannot make {what}: {e}{hint}"))
    })
}

/// This command line again, prefixed with `sudo`, quoted for a POSIX shell.
fn as_root() -> String {
    let quote = |a: String| {
        let plain = !a.is_empty() && a.bytes().all(|c| c.is_ascii_alphanumeric() || b"_./:=@%+,-".contains(&c));
        if plain {
            a
        } else {
            format!("'{}'", a.replace('\'', "'\\''"))
        }
    };
    let args = std::env::args_os().map(|a| quote(a.to_string_lossy().into_owned()));
    std::iter::once("sudo".to_string()).chain(args).collect::<Vec<_>>().join(" ")
}

/// The signals this process leaves to the command.
fn run_signals() -> SigSet {
    let mut set = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGQUIT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(s);
    }
    set
}

/// Start the namespace's init (this binary, `__run-init LEVEL`) and wait for it; SIGTERM and
/// SIGHUP sent to this process are passed on (a terminal's SIGINT and SIGQUIT reach the
/// command directly, being in the same process group).
fn run_init(root: &Path, opts: &Options, signals: SigSet) -> Result<i32> {
    let exe = std::env::current_exe().map_err(|e| Error::new(format!("run: cannot find this program: {e}")))?;
    let mut cmd = Command::new(exe);
    cmd.arg(init::COMMAND).arg(log::max_level().as_str()).arg(root);
    for (host, guest) in &opts.binds {
        cmd.arg("--bind").arg(host).arg(guest);
    }
    cmd.arg("--").args(&opts.command);
    // The forwarder starts before the PID namespace: a thread that has unshared it can
    // start no more threads (and the view's threads are all running already).
    let init_pid = Arc::new(AtomicI32::new(0));
    let pid = init_pid.clone();
    std::thread::spawn(move || loop {
        let sig = signals.wait();
        let target = pid.load(Ordering::SeqCst);
        if let (Ok(sig @ (Signal::SIGTERM | Signal::SIGHUP)), true) = (sig, target > 0) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(target), sig);
        }
    });
    // Init must not outlive this process: a SIGKILL of `run` kills it, and with it every
    // process of its namespace. This runs on the main thread, which the kernel counts as the
    // parent and which lives as long as the process.
    let _link = crate::util::sys::die_with_this_thread(&mut cmd)
        .map_err(|e| Error::new(format!("run: cannot tie the command to this process: {e}")))?;
    unshare(CloneFlags::CLONE_NEWPID, "a PID namespace")?;
    let mut child = cmd.spawn().map_err(|e| Error::new(format!("run: cannot start the command: {e}")))?;
    init_pid.store(child.id() as i32, Ordering::SeqCst);
    let status = child.wait().map_err(|e| Error::new(format!("run: waiting for the command: {e}")))?;
    Ok(exit_code(status))
}

/// The shell's convention: the exit status, or 128 + the signal that killed it.
pub fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// An empty directory under `$TMPDIR` with a private tmpfs on it, holding the mountpoints:
/// `view` (the FUSE view), and for `--writable` `rw` (the overlay's upper and work
/// directories) and `root` (the overlay).
struct Workdir(PathBuf);

impl Workdir {
    fn new() -> Result<Workdir> {
        let dir = staging::create_unique(&std::env::temp_dir(), "supermin-run", 0o700)?;
        let work = Workdir(dir);
        mount(Some("tmpfs"), &work.0, Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some("mode=0700"))
            .map_err(|e| Error::io(&work.0, "cannot mount a tmpfs", e.into()))?;
        for sub in ["view", "rw", "root"] {
            std::fs::create_dir(work.path(sub)).at(&work.path(sub), "cannot create")?;
        }
        Ok(work)
    }

    fn path(&self, sub: &str) -> PathBuf {
        self.0.join(sub)
    }

    /// The view under a writable overlay, its upper layer on a tmpfs of its own.
    fn overlay(&self) -> Result<PathBuf> {
        let rw = self.path("rw");
        mount(Some("tmpfs"), &rw, Some("tmpfs"), MsFlags::empty(), Some("mode=0755"))
            .map_err(|e| Error::io(&rw, "cannot mount a tmpfs", e.into()))?;
        for sub in ["upper", "work"] {
            std::fs::create_dir(rw.join(sub)).at(&rw.join(sub), "cannot create")?;
        }
        let (view, root) = (self.path("view"), self.path("root"));
        let data = format!("lowerdir={},upperdir={}/upper,workdir={}/work", view.display(), rw.display(), rw.display());
        if let Err(e) = mount(Some("overlay"), &root, Some("overlay"), MsFlags::empty(), Some(data.as_str())) {
            bail!("run --writable: cannot mount an overlay over the view: {e} (is the overlay module available?)");
        }
        Ok(root)
    }

    /// Detach every mount (init's children are gone, so nothing holds them), the view last:
    /// its session ends once the kernel lets go of it.
    fn unmount(&self, writable: bool) {
        if writable {
            for sub in ["root", "rw"] {
                let _ = umount2(&self.path(sub), MntFlags::MNT_DETACH);
            }
        }
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        let _ = umount2(&self.0, MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir(&self.0);
    }
}
