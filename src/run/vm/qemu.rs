//! The qemu side of `run --vm`: which accelerator really works, and the command line. The
//! guest's memory is a shared memfd (vhost-user maps it into this process); the root is the
//! `vhost-user-fs-pci` device on `vfs.sock`; the command's streams and status are
//! virtio-serial ports on sockets, the console a serial port on another (or the terminal,
//! for an interactive shell); each `--bind` a read-only or writable virtio-9p share.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::bail;
use crate::error::{Error, Result};

pub const QEMU: &str = "qemu-system-x86_64";

/// `--accel`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    Auto,
    Kvm,
    Tcg,
}

/// Everything the command line is made of.
pub struct Machine<'a> {
    pub accel: Accel,
    pub memory_mib: u64,
    pub cpus: u32,
    pub kernel: &'a Path,
    pub initrd: &'a Path,
    pub append: String,
    /// The private directory holding the sockets.
    pub dir: &'a Path,
    pub interactive: bool,
    /// Host directories shared as `bind0`, `bind1`, …
    pub binds: &'a [PathBuf],
}

/// The sockets qemu connects to, in the private directory (`vfs.sock` first: see
/// `super::Channels`).
pub const SOCKETS: &[&str] = &["vfs.sock", "stdin.sock", "stdout.sock", "stderr.sock", "status.sock", "console.sock"];

/// The qemu program, or an error saying how to install it.
pub fn program() -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|d| d.join(QEMU)).find(|p| p.is_file()).ok_or_else(|| {
        Error::new(format!(
            "run --vm: {QEMU} not found: install qemu (sudo apt-get install qemu-system-x86; qemu 8 or later for \
             vhost-user-fs-pci)"
        ))
    })
}

/// The accelerator to use: `tcg` as asked, `kvm` as asked (qemu's own error if it fails), or
/// for `auto` KVM only when a two-second probe guest really ran on it (a nested `/dev/kvm` can
/// exist and still abort or hang every guest), else TCG with a one-line note.
pub fn choose(accel: Accel, qemu: &Path, dir: &Path) -> Accel {
    if accel != Accel::Auto {
        return accel;
    }
    if std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_err() {
        log::info!("run --vm: no usable /dev/kvm: TCG (emulation; slower)");
        return Accel::Tcg;
    }
    match probe_kvm(qemu, dir) {
        Ok(()) => Accel::Kvm,
        Err(why) => {
            eprintln!("supermin: run --vm: KVM does not work here ({why}): using TCG (emulation; slower)");
            Accel::Tcg
        }
    }
}

/// Boot a 64 KiB BIOS that writes 0 to the `isa-debug-exit` port on KVM: qemu then exits
/// with status 1. Anything else (an abort, a hang past two seconds) means KVM is not usable.
fn probe_kvm(qemu: &Path, dir: &Path) -> std::result::Result<(), String> {
    let bios = dir.join("kvm-probe.bin");
    let mut image = vec![0xf4u8; 0x10000];
    // At the reset vector (16 bytes from the end): mov al, 0; out 0xf4, al; hlt.
    image[0xfff0..0xfff5].copy_from_slice(&[0xb0, 0x00, 0xe6, 0xf4, 0xf4]);
    std::fs::write(&bios, &image).map_err(|e| e.to_string())?;
    let mut child = Command::new(qemu)
        .args(["-accel", "kvm", "-cpu", "host", "-M", "pc", "-nodefaults", "-display", "none", "-bios"])
        .arg(&bios)
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
            break s;
        }
        if started.elapsed() > Duration::from_secs(2) {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_file(&bios);
            return Err("a probe guest did not run within 2 s".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let _ = std::fs::remove_file(&bios);
    match status.code() {
        Some(1) => Ok(()),
        _ => Err(format!("a probe guest failed: qemu {status}")),
    }
}

/// The qemu command for `m`.
pub fn command(qemu: &Path, m: &Machine) -> Result<Command> {
    if m.memory_mib < 128 {
        bail!("run --vm: --memory {} MiB is too little for a Linux guest: give at least 128", m.memory_mib);
    }
    let sock = |name: &str| m.dir.join(name).to_string_lossy().replace(',', ",,");
    let mut c = Command::new(qemu);
    c.args(["-nodefaults", "-no-user-config", "-display", "none", "-no-reboot", "-M", "pc"]);
    match m.accel {
        Accel::Kvm => c.args(["-accel", "kvm", "-cpu", "host"]),
        _ => c.args(["-accel", "tcg"]),
    };
    c.args(["-smp", &m.cpus.max(1).to_string(), "-m", &format!("{}M", m.memory_mib)]);
    c.arg("-object").arg(format!("memory-backend-memfd,id=mem,size={}M,share=on", m.memory_mib));
    c.args(["-numa", "node,memdev=mem"]);
    c.arg("-kernel").arg(m.kernel).arg("-initrd").arg(m.initrd).arg("-append").arg(&m.append);
    c.arg("-chardev").arg(format!("socket,id=vfs,path={}", sock("vfs.sock")));
    c.args(["-device", "vhost-user-fs-pci,queue-size=1024,chardev=vfs,tag=root"]);
    c.args(["-device", "virtio-serial-pci"]);
    for name in ["stdin", "stdout", "stderr", "status"] {
        c.arg("-chardev").arg(format!("socket,id={name},path={}", sock(&format!("{name}.sock"))));
        c.arg("-device").arg(format!("virtserialport,chardev={name},name=supermin.{name}"));
    }
    if m.interactive {
        c.args(["-chardev", "stdio,id=console,signal=off"]);
    } else {
        c.arg("-chardev").arg(format!("socket,id=console,path={}", sock("console.sock")));
    }
    c.args(["-serial", "chardev:console"]);
    for (i, host) in m.binds.iter().enumerate() {
        let path = host.to_string_lossy().replace(',', ",,");
        c.arg("-fsdev").arg(format!("local,id=bind{i},path={path},security_model=none"));
        c.arg("-device").arg(format!("virtio-9p-pci,fsdev=bind{i},mount_tag=bind{i}"));
    }
    Ok(c)
}

/// What qemu's own error says, as one line with the fix where we know it.
pub fn explain(stderr: &str) -> String {
    let line = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
    if stderr.contains("'vhost-user-fs-pci' is not a valid device") {
        return format!("this qemu has no vhost-user-fs-pci device (qemu 5.0 or later has it): {line}");
    }
    if stderr.contains("Could not access KVM") || stderr.contains("failed to initialize kvm") {
        return format!("KVM is not usable here: pass --accel tcg ({line})");
    }
    line.to_string()
}
