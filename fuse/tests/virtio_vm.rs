//! A virtual machine mounts the demo tree over virtio-fs (`serve_vhost_user`) and reads it:
//! qemu (TCG), the host's kernel and its virtio/fuse modules, a static busybox as the
//! initramfs's /init. Fails, saying what is missing, on a machine without them.

use std::io::Write;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use supermin_fuse::demo::{big_byte, Demo};

/// The modules that make virtio-fs, in load order (built in on some kernels: then absent).
const MODULES: [&str; 7] = [
    "drivers/virtio/virtio_ring",
    "drivers/virtio/virtio",
    "drivers/virtio/virtio_pci_modern_dev",
    "drivers/virtio/virtio_pci_legacy_dev",
    "drivers/virtio/virtio_pci",
    "fs/fuse/fuse",
    "fs/fuse/virtiofs",
];

const INIT: &str = "#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
for m in /mod/*.ko; do insmod $m; done
mount -t virtiofs root /mnt && echo MOUNTED
ls /mnt | tr '\\n' ' '; echo
cat /mnt/etc/hostname
readlink /mnt/lib
find /mnt | wc -l
cmp /mnt/usr/lib/big /big && echo BIG-SAME
touch /mnt/x 2>&1
poweroff -f
";

/// The newest /boot/vmlinuz-* whose modules are in /lib/modules.
fn kernel() -> Result<(PathBuf, PathBuf), String> {
    let mut found: Vec<(PathBuf, PathBuf)> = std::fs::read_dir("/boot")
        .map_err(|e| format!("/boot: {e}"))?
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let version = name.strip_prefix("vmlinuz-")?;
            let modules = Path::new("/lib/modules").join(version).join("kernel");
            modules.is_dir().then(|| (Path::new("/boot").join(&name), modules))
        })
        .collect();
    found.sort();
    found.pop().ok_or_else(|| "no /boot/vmlinuz-* with its /lib/modules/*/kernel".into())
}

/// A module's bytes, decompressing .ko.xz with xz; None when the kernel has it built in.
fn module(dir: &Path, name: &str) -> Result<Option<Vec<u8>>, String> {
    let plain = dir.join(format!("{name}.ko"));
    if let Ok(bytes) = std::fs::read(&plain) {
        return Ok(Some(bytes));
    }
    let xz = dir.join(format!("{name}.ko.xz"));
    if !xz.exists() {
        return Ok(None);
    }
    let out = Command::new("xz").arg("-dc").arg(&xz).output().map_err(|e| format!("xz: {e}"))?;
    out.status.success().then_some(Some(out.stdout)).ok_or_else(|| format!("xz -dc {}", xz.display()))
}

/// A newc cpio archive of `files` (path, mode, bytes), directories first.
fn cpio(files: &[(String, u32, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut entry = |name: &str, mode: u32, data: &[u8]| {
        let header = format!(
            "070701{:08x}{mode:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            out.len(),
            0,
            0,
            1,
            0,
            data.len(),
            0,
            0,
            0,
            0,
            name.len() + 1,
            0
        );
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.resize(out.len().next_multiple_of(4), 0);
        out.extend_from_slice(data);
        out.resize(out.len().next_multiple_of(4), 0);
    };
    for (name, mode, data) in files {
        entry(name, *mode, data);
    }
    entry("TRAILER!!!", 0, b"");
    out
}

/// The initramfs: busybox, the modules, /init and the expected bytes of `usr/lib/big`.
fn initramfs(modules: &Path) -> Result<Vec<u8>, String> {
    let busybox = std::fs::read("/bin/busybox").map_err(|e| format!("/bin/busybox (busybox-static): {e}"))?;
    let mut files: Vec<(String, u32, Vec<u8>)> = ["bin", "mnt", "proc", "mod"]
        .iter()
        .map(|d| (d.to_string(), 0o040755, Vec::new()))
        .chain([
            ("bin/busybox".into(), 0o100755, busybox),
            ("init".into(), 0o100755, INIT.as_bytes().to_vec()),
            ("big".into(), 0o100644, (0..300_000).map(big_byte).collect()),
        ])
        .collect();
    for (i, name) in MODULES.iter().enumerate() {
        if let Some(bytes) = module(modules, name)? {
            files.push((format!("mod/{i}.ko"), 0o100644, bytes));
        }
    }
    Ok(cpio(&files))
}

#[test]
fn a_vm_mounts_and_reads_the_view() {
    let (vmlinuz, modules) = kernel().unwrap_or_else(|e| panic!("no kernel to boot: {e}"));
    let dir = std::env::temp_dir().join(format!("supermin-fuse-vm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let initrd = dir.join("initrd");
    let bytes = initramfs(&modules).unwrap_or_else(|e| panic!("cannot make the initramfs: {e}"));
    std::fs::File::create(&initrd).and_then(|mut f| f.write_all(&bytes)).unwrap();
    let socket = dir.join("vfs.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let server = std::thread::spawn(move || {
        supermin_fuse::serve_vhost_user(Demo::sample(), listener, &supermin_fuse::Options::default())
    });
    let memory = "memory-backend-memfd,id=mem,size=512M,share=on";
    let chardev = format!("socket,id=vfs,path={}", socket.display());
    let start = Instant::now();
    let qemu = Command::new("qemu-system-x86_64")
        .args(["-accel", "tcg", "-m", "512M", "-object", memory, "-numa", "node,memdev=mem"])
        .args(["-chardev", &chardev, "-device", "vhost-user-fs-pci,chardev=vfs,tag=root"])
        .arg("-kernel")
        .arg(&vmlinuz)
        .arg("-initrd")
        .arg(&initrd)
        .args(["-nographic", "-no-reboot", "-append", "console=ttyS0 panic=-1 quiet"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("qemu-system-x86_64: {e}"));
    let (console, ran) = wait(qemu, start);
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("VM ran {ran:.1} s:\n{console}");
    for expected in
        ["MOUNTED\n", "etc lib many usr \n", "demo\n", "usr/lib\n", "308\n", "BIG-SAME\n", "Read-only file system"]
    {
        assert!(console.contains(expected), "the guest did not print {expected:?}");
    }
    // The VM is gone: the server returns by itself.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(server.is_finished(), "serve_vhost_user did not return once the VM was gone");
    server.join().expect("server thread").expect("serve_vhost_user returns Ok once the VM is gone");
}

/// Wait for the VM (killed after 3 minutes: the output then lacks what the test expects):
/// its console and stderr, and how long it ran.
fn wait(mut qemu: std::process::Child, start: Instant) -> (String, f64) {
    let mut stdout = qemu.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stdout, &mut out);
        out
    });
    while qemu.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(180) {
            let _ = qemu.kill();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let ran = start.elapsed().as_secs_f64();
    let mut stderr = String::new();
    let _ = std::io::Read::read_to_string(&mut qemu.stderr.take().unwrap(), &mut stderr);
    let console = String::from_utf8_lossy(&reader.join().unwrap()).replace('\r', "");
    (console + &stderr, ran)
}
