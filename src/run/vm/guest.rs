//! Inside `run --vm`'s guest: this binary as the mini initrd's `/init` (process 1), when the
//! kernel command line says `supermin.vm` (see [`super::cmdline`] for what the host passes).
//!
//! It loads the initrd's modules (virtio, virtio-fs, virtio-console, overlay, 9p), mounts the
//! view the host serves over virtio-fs (tag `root`) on `/root`, under an overlay with a tmpfs
//! upper layer for `supermin.writable`, mounts `/proc`, `/sys`, `/dev`, `/tmp`, `/run` and
//! the 9p `--bind` shares inside it, chroots, and runs the command with its standard streams
//! on the host's virtio-serial ports (`supermin.stdin`, `.stdout`, `.stderr`), or on the
//! console for an interactive shell. Its exit status goes back on `supermin.status`, then the
//! guest powers off. With no command and an appliance `/init`, that `/init` replaces this
//! process instead. Every failure is one line on the console, then a power-off: the host
//! reports it with the console's last lines.

use std::fs;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::Path;

use nix::fcntl::{open, OFlag};
use nix::mount::{mount, MsFlags};
use nix::sys::reboot::{reboot, RebootMode};
use nix::sys::stat::Mode;

use super::cmdline::Guest;
use crate::error::{Error, Result};

/// Whether this process 1 is `run --vm`'s (the kernel command line says so).
pub fn is_vm() -> bool {
    let _ = fs::create_dir("/proc");
    let _ = mount(Some("proc"), "/proc", Some("proc"), MsFlags::empty(), None::<&str>);
    fs::read_to_string("/proc/cmdline").is_ok_and(|c| c.split_whitespace().any(|w| w == "supermin.vm"))
}

/// Run as the guest's init; never returns (the guest powers off).
pub fn main() -> ! {
    if let Err(e) = start() {
        console(&format!("supermin: run --vm: {e}"));
    }
    power_off()
}

fn power_off() -> ! {
    nix::unistd::sync();
    let _ = reboot(RebootMode::RB_POWER_OFF);
    // Process 1 exiting makes the kernel panic, which (with panic=-1 and -no-reboot) ends it.
    std::process::exit(1)
}

/// One line on the kernel console (the host shows it with -v, or when the run fails).
fn console(msg: &str) {
    if let Ok(mut c) = fs::OpenOptions::new().write(true).open("/dev/console") {
        let _ = c.write_all(format!("{msg}\n").as_bytes());
    }
}

fn start() -> Result<()> {
    let text = fs::read_to_string("/proc/cmdline").map_err(|e| Error::new(format!("/proc/cmdline: {e}")))?;
    let guest = Guest::parse(&text)?;
    for dir in ["/sys", "/dev", "/root", "/lower", "/rw"] {
        let _ = fs::create_dir(dir);
    }
    fs_mount("sysfs", "/sys", "sysfs", "")?;
    fs_mount("devtmpfs", "/dev", "devtmpfs", "")?;
    crate::boot::init::load_modules(!guest.verbose);
    mount_root(&guest)?;
    let ports = Ports::open(guest.interactive)?;
    // The host sends standard input only now: data sent before the port is open is lost.
    if let Some(status) = &ports.status {
        let _ = nix::unistd::write(status, b"ready\n");
    }
    for (dir, fstype) in [("proc", "proc"), ("sys", "sysfs"), ("tmp", "tmpfs"), ("run", "tmpfs")] {
        let target = format!("/root/{dir}");
        if Path::new(&target).is_dir() {
            fs_mount(fstype, &target, fstype, "")?;
        }
    }
    if Path::new("/root/dev").is_dir() {
        mount(Some("/dev"), "/root/dev", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
            .map_err(|e| Error::new(format!("move /dev into the appliance: {e}")))?;
    }
    for (i, guest_path) in guest.binds.iter().enumerate() {
        let target = format!("/root{}", guest_path.display());
        if fs::create_dir_all(&target).is_err() && !Path::new(&target).is_dir() {
            return Err(Error::new(format!(
                "--bind: {} is not a directory in the appliance and cannot be made (the view is read-only: add \
                 --writable, or bind onto a directory it has)",
                guest_path.display()
            )));
        }
        let data = "trans=virtio,version=9p2000.L,msize=262144,cache=none";
        fs_mount(&format!("bind{i}"), &target, "9p", data)?;
    }
    nix::unistd::chroot("/root").map_err(|e| Error::new(format!("chroot /root: {e}")))?;
    std::env::set_current_dir("/").map_err(|e| Error::new(format!("chdir /: {e}")))?;
    run_command(&guest, ports)
}

/// The view on `/root`: read-only, or under an overlay whose upper layer is a tmpfs.
fn mount_root(guest: &Guest) -> Result<()> {
    let ro = MsFlags::MS_RDONLY;
    let view = if guest.writable { "/lower" } else { "/root" };
    mount(Some("root"), view, Some("virtiofs"), ro, None::<&str>)
        .map_err(|e| Error::new(format!("mount the view (virtiofs, tag root): {e}")))?;
    if guest.writable {
        fs_mount("tmpfs", "/rw", "tmpfs", "mode=0755")?;
        for d in ["/rw/upper", "/rw/work"] {
            fs::create_dir(d).map_err(|e| Error::new(format!("{d}: {e}")))?;
        }
        fs_mount("overlay", "/root", "overlay", "lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work")?;
    }
    Ok(())
}

fn fs_mount(source: &str, target: &str, fstype: &str, data: &str) -> Result<()> {
    mount(Some(source), target, Some(fstype), MsFlags::empty(), Some(data))
        .map_err(|e| Error::new(format!("mount {fstype} on {target}: {e}")))
}

/// The command's standard streams and where its status goes.
struct Ports {
    stdio: [OwnedFd; 3],
    status: Option<OwnedFd>,
}

impl Ports {
    /// The host's virtio-serial ports by name (`/sys/class/virtio-ports/vportNpM/name`), or
    /// for an interactive run the console, as the command's controlling terminal.
    fn open(interactive: bool) -> Result<Ports> {
        let status = port("supermin.status").ok();
        if interactive {
            let tty = || open_dev("/dev/ttyS0", OFlag::O_RDWR | OFlag::O_NOCTTY);
            return Ok(Ports { stdio: [tty()?, tty()?, tty()?], status });
        }
        match port("supermin.stdin") {
            Ok(stdin) => Ok(Ports { stdio: [stdin, port("supermin.stdout")?, port("supermin.stderr")?], status }),
            // A VM someone else started (`supermin serve`) may have no ports: the console.
            Err(_) => {
                let con = || open_dev("/dev/console", OFlag::O_RDWR | OFlag::O_NOCTTY);
                Ok(Ports { stdio: [con()?, con()?, con()?], status })
            }
        }
    }
}

fn port(name: &str) -> Result<OwnedFd> {
    let rd = fs::read_dir("/sys/class/virtio-ports").map_err(|e| Error::new(format!("no virtio ports: {e}")))?;
    for e in rd.flatten() {
        if fs::read_to_string(e.path().join("name")).is_ok_and(|n| n.trim() == name) {
            let dev = Path::new("/dev").join(e.file_name());
            return open_dev(&dev.to_string_lossy(), OFlag::O_RDWR | OFlag::O_NOCTTY);
        }
    }
    Err(Error::new(format!("no virtio port named {name}")))
}

fn open_dev(path: &str, flags: OFlag) -> Result<OwnedFd> {
    open(path, flags | OFlag::O_CLOEXEC, Mode::empty()).map_err(|e| Error::new(format!("{path}: {e}")))
}

/// Run the command with `ports` as its standard streams and report its status; with no
/// command, become the appliance's `/init` if it has one.
fn run_command(guest: &Guest, ports: Ports) -> Result<()> {
    if guest.command.is_empty() && Path::new("/init").exists() && !guest.interactive {
        redirect(&ports)?;
        let init = c"/init";
        let Err(e) = nix::unistd::execv(init, &[init]);
        return Err(Error::new(format!("execute /init in the appliance: {e}")));
    }
    let (stdio, status) = (ports.stdio, ports.status);
    let env = [("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"), ("HOME", "/root")];
    let mut cmd = match guest.command.split_first() {
        Some((prog, args)) => {
            let mut c = std::process::Command::new(prog);
            c.args(args);
            c
        }
        None => std::process::Command::new(crate::run::init::default_shell()?.remove(0)),
    };
    cmd.env_clear().envs(env).env("TERM", &guest.term);
    let [i, o, e] = stdio;
    let mut err = e.try_clone().map(fs::File::from).map_err(|e| Error::new(format!("dup: {e}")))?;
    cmd.stdin(i).stdout(o).stderr(e);
    if guest.interactive {
        crate::util::sys::new_session_on_stdin(&mut cmd);
    }
    // A command that cannot start is the command's failure, as in a shell: 127 and why.
    let code = crate::run::init::supervise(cmd).unwrap_or_else(|e| {
        let _ = err.write_all(format!("supermin: run --vm: {e}\n").as_bytes());
        127
    });
    drop(err);
    if let Some(status) = status {
        let mut f = fs::File::from(status);
        let _ = f.write_all(format!("{code}\n").as_bytes());
        let _ = f.flush();
    }
    Ok(())
}

/// Standard streams of this process on the ports (before it becomes the appliance's `/init`).
fn redirect(ports: &Ports) -> Result<()> {
    let [i, o, e] = &ports.stdio;
    let dup = |r: nix::Result<()>| r.map_err(|e| Error::new(format!("dup2: {e}")));
    dup(nix::unistd::dup2_stdin(i))?;
    dup(nix::unistd::dup2_stdout(o))?;
    dup(nix::unistd::dup2_stderr(e))
}
