//! The init of `supermin run`'s PID namespace (this binary, started as `supermin __run-init
//! LOG-LEVEL ROOT [--bind HOST GUEST]... -- CMD...`; the crate's `main` takes the level). In a
//! mount namespace of its own, which ends with it, it chroots into ROOT, mounts `/proc`,
//! `/sys`, a minimal `/dev`, `/tmp`, `/run` and the binds there, runs CMD, reaps orphans,
//! passes SIGTERM and SIGHUP on, and exits with CMD's status. Paths inside the appliance are resolved after the chroot, so a symlink in it
//! (`/tmp -> /var/tmp`) cannot lead a mount out of the root; host paths are opened before.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::fcntl::{open, OFlag};
use nix::mount::{mount, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::stat::Mode;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::error::{Error, Result};
use crate::util::sys;

/// The hidden subcommand that runs this.
pub const COMMAND: &str = "__run-init";

/// A host path opened before the chroot, and where it goes inside.
struct Bind {
    source: OwnedFd,
    is_dir: bool,
    guest: PathBuf,
}

/// Run as init; never returns.
pub fn main(args: &[String]) -> ! {
    let code = match start(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("supermin: run: {e}");
            127
        }
    };
    std::process::exit(code)
}

fn start(args: &[String]) -> Result<i32> {
    // `supermin run` blocked the signals it leaves to the command; they are the command's.
    SigSet::empty().thread_set_mask().map_err(|e| Error::new(format!("cannot unblock signals: {e}")))?;
    let (root, binds, command) = parse(args)?;
    nix::sched::unshare(CloneFlags::CLONE_NEWNS).map_err(|e| Error::new(format!("cannot unshare mounts: {e}")))?;
    let binds = binds.iter().map(|(h, g)| open_bind(h, g)).collect::<Result<Vec<_>>>()?;
    let pts = open_bind(Path::new("/dev/pts"), Path::new("/dev/pts"))?;
    nix::unistd::chroot(&root).map_err(|e| Error::new(format!("{}: cannot chroot: {e}", root.display())))?;
    std::env::set_current_dir("/").map_err(|e| Error::new(format!("cannot enter the appliance: {e}")))?;
    populate(&pts, &binds)?;
    drop((pts, binds));
    run(&command)
}

/// `--bind HOST GUEST` pairs.
type Binds = Vec<(PathBuf, PathBuf)>;

/// `ROOT [--bind HOST GUEST]... -- CMD...`, as `super::run_init` writes it.
fn parse(args: &[String]) -> Result<(PathBuf, Binds, Vec<String>)> {
    let bad = || Error::new(format!("{COMMAND}: bad arguments {args:?}"));
    let (root, mut rest) = args.split_first().ok_or_else(bad)?;
    let mut binds = Vec::new();
    while let [flag, host, guest, tail @ ..] = rest {
        if flag != "--bind" {
            break;
        }
        binds.push((PathBuf::from(host), PathBuf::from(guest)));
        rest = tail;
    }
    let command = rest.strip_prefix(&["--".to_string()][..]).ok_or_else(bad)?;
    Ok((PathBuf::from(root), binds, command.to_vec()))
}

fn open_bind(host: &Path, guest: &Path) -> Result<Bind> {
    let meta = std::fs::metadata(host).map_err(|e| Error::new(format!("--bind {}: {e}", host.display())))?;
    let source = open(host, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| Error::new(format!("--bind {}: cannot open: {e}", host.display())))?;
    Ok(Bind { source, is_dir: meta.is_dir(), guest: guest.to_path_buf() })
}

/// The mounts a command expects, inside the (already chrooted) appliance: `/dev` with the
/// host's `pts` (the terminal), then the user's binds.
fn populate(pts: &Bind, binds: &[Bind]) -> Result<()> {
    let quiet = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    fs_mount("proc", "/proc", "proc", quiet, None)?;
    fs_mount("sysfs", "/sys", "sysfs", quiet | MsFlags::MS_RDONLY, None)?;
    if fs_mount("tmpfs", "/dev", "tmpfs", MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC, Some("mode=0755,size=1m"))? {
        make_devices()?;
        bind_mount(pts)?;
    }
    fs_mount("tmpfs", "/tmp", "tmpfs", MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some("mode=1777"))?;
    fs_mount("tmpfs", "/run", "tmpfs", MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some("mode=0755"))?;
    binds.iter().try_for_each(bind_mount)
}

fn bind_mount(bind: &Bind) -> Result<()> {
    let source = format!("/proc/self/fd/{}", bind.source.as_raw_fd());
    ensure(&bind.guest, bind.is_dir)?;
    mount(Some(source.as_str()), &bind.guest, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
        .map_err(|e| Error::new(format!("--bind {}: cannot mount: {e}", bind.guest.display())))
}

/// Mount a filesystem at `target`, made if missing; a read-only appliance without it gets a
/// warning (the command may not need it). Returns whether it was mounted.
fn fs_mount(source: &str, target: &str, fstype: &str, flags: MsFlags, data: Option<&str>) -> Result<bool> {
    if let Err(e) = ensure(Path::new(target), true) {
        log::warn!("{e}: not mounted");
        return Ok(false);
    }
    mount(Some(source), target, Some(fstype), flags, data)
        .map_err(|e| Error::new(format!("cannot mount {fstype} on {target}: {e}")))?;
    Ok(true)
}

/// Make `path` exist as a directory (or a file), if it does not.
fn ensure(path: &Path, dir: bool) -> Result<()> {
    if path.exists() {
        return Ok(());
    }
    let made = if dir { std::fs::create_dir_all(path) } else { std::fs::write(path, b"") };
    made.map_err(|e| {
        let hint = if e.raw_os_error() == Some(libc::EROFS) { " (the view is read-only: add --writable)" } else { "" };
        Error::new(format!("{}: not in the appliance and cannot be made: {e}{hint}", path.display()))
    })
}

/// A minimal `/dev`: the usual character devices, the terminal's `pts`, and the links to
/// `/proc/self/fd`.
fn make_devices() -> Result<()> {
    let devices = [("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)];
    for (name, major, minor) in devices {
        let path = Path::new("/dev").join(name);
        sys::mknod(&path, libc::S_IFCHR | 0o666, nix::sys::stat::makedev(major, minor))
            .and_then(|()| std::fs::set_permissions(&path, PermissionsExt::from_mode(0o666)))
            .map_err(|e| Error::new(format!("{}: cannot make: {e}", path.display())))?;
    }
    for dir in ["/dev/pts", "/dev/shm"] {
        std::fs::create_dir(dir).map_err(|e| Error::new(format!("{dir}: cannot make: {e}")))?;
    }
    std::fs::set_permissions("/dev/shm", PermissionsExt::from_mode(0o1777))
        .map_err(|e| Error::new(format!("/dev/shm: {e}")))?;
    let links = [("ptmx", "pts/ptmx"), ("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0")];
    let links = links.into_iter().chain([("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")]);
    for (name, target) in links {
        std::os::unix::fs::symlink(target, Path::new("/dev").join(name))
            .map_err(|e| Error::new(format!("/dev/{name}: cannot make: {e}")))?;
    }
    Ok(())
}

/// Start the command (the appliance's shell by default), then reap every child until it has
/// exited; returns its status.
fn run(command: &[String]) -> Result<i32> {
    let command = if command.is_empty() { default_shell()? } else { command.to_vec() };
    let mut cmd = Command::new(&command[0]);
    cmd.args(&command[1..]);
    supervise(cmd)
}

/// Start `cmd` and, as the init of its PID namespace or VM, reap every child until it has
/// exited, passing SIGTERM and SIGHUP on to it; returns its status.
pub(crate) fn supervise(mut cmd: Command) -> Result<i32> {
    let mut signals = SigSet::empty();
    for s in [Signal::SIGCHLD, Signal::SIGINT, Signal::SIGQUIT, Signal::SIGTERM, Signal::SIGHUP] {
        signals.add(s);
    }
    // The command inherits our signal mask: empty (see `start`) until it runs.
    let shown = cmd.get_program().to_string_lossy().into_owned();
    let child = cmd.spawn().map_err(|e| Error::new(format!("{shown}: cannot run in the appliance: {e}")))?;
    let pid = Pid::from_raw(child.id() as i32);
    signals.thread_block().map_err(|e| Error::new(format!("cannot block signals: {e}")))?;
    // It may have exited before SIGCHLD was blocked.
    if let Some(code) = reap(pid) {
        return Ok(code);
    }
    loop {
        match signals.wait() {
            Ok(Signal::SIGCHLD) => {
                if let Some(code) = reap(pid) {
                    return Ok(code);
                }
            }
            Ok(sig @ (Signal::SIGTERM | Signal::SIGHUP)) => {
                let _ = kill(pid, sig);
            }
            // A terminal's SIGINT and SIGQUIT reach the command directly.
            _ => {}
        }
    }
}

/// Reap every exited child; `Some(status)` once `cmd` is among them.
fn reap(cmd: Pid) -> Option<i32> {
    let mut found = None;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == cmd => found = Some(code),
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == cmd => found = Some(128 + sig as i32),
            Ok(WaitStatus::StillAlive) | Err(_) => return found,
            Ok(_) => {}
        }
    }
}

/// `/bin/bash` if the appliance has it, else `/bin/sh`.
pub(crate) fn default_shell() -> Result<Vec<String>> {
    ["/bin/bash", "/bin/sh"]
        .into_iter()
        .find(|s| Path::new(s).exists())
        .map(|s| vec![s.to_string()])
        .ok_or_else(|| Error::new("the appliance has no /bin/sh: name a command after --".to_string()))
}
