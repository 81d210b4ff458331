//! Trust (issue 19), the hostile sysroot: the owner of a `--sysroot` tree writes its
//! `lib/modules/VERSION/modules.dep`, its modules and its kernel layout, and points them at
//! files of the build host. The oracle is a root-only secret file (0600 in a 0700 directory):
//! its bytes must never reach any output file (the ext2 image, the initrd, decompressed when
//! it is compressed, the kernel or what the kernel symlink leads to). A build may refuse, with
//! one line naming the path and why; where it succeeds, it holds none of the secret.
//!
//! Paths inside a sysroot resolve inside it, as a chroot would: the last test holds absolute
//! symlinks within the sysroot (a kernel, a module) to be followed there.

mod common;

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{assert_one_line_error, ok, ours, run, Scratch};

const VERSION: &str = "6.8.0-1-amd64";
/// The sysroot's own module (`kernel/drivers/virtio/virtio.ko`, which the mini initrd loads).
const MODULE: &[u8] = b"virtio module of the sysroot\n";
const VIRTIO: &str = "kernel/drivers/virtio/virtio.ko";

/// What every line of the secret starts with (never a path: only its bytes spell it).
fn marker() -> String {
    format!("TRUST-SYSROOT-SECRET-{}-", std::process::id())
}

/// A root-owned 0600 file in a root-owned 0700 directory, over 10,000 bytes (so that it would
/// pass for a kernel), every line starting with [`marker`].
fn secret(s: &Scratch) -> PathBuf {
    let dir = s.path("root-only");
    fs::create_dir_all(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
    let file = dir.join("secret");
    let text: String = (0..1000).map(|i| format!("{}{i:05}\n", marker())).collect();
    fs::write(&file, text).unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
    file
}

/// A fake kernel of 20,000 bytes (no bzImage header: its version is its file name's).
fn fake_kernel(path: &Path) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, b"not really a kernel\n".repeat(1000)).unwrap();
}

/// A sysroot detected as Debian, with `/etc/hostname` (the appliance's one file) and
/// `lib/modules/VERSION` holding `modules.dep` (one module, virtio) and that module; with
/// `boot_kernel`, a kernel at `/boot/vmlinuz-VERSION` (the Debian layout).
fn sysroot(s: &Scratch, boot_kernel: bool) -> PathBuf {
    let root = s.path("root");
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::create_dir_all(root.join("var/lib/dpkg")).unwrap();
    fs::write(root.join("etc/debian_version"), "12.0\n").unwrap();
    fs::write(root.join("etc/hostname"), "sysroot\n").unwrap();
    fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
    let modules = root.join("lib/modules").join(VERSION);
    fs::create_dir_all(modules.join("kernel/drivers/virtio")).unwrap();
    fs::write(modules.join("modules.dep"), format!("{VIRTIO}:\n")).unwrap();
    fs::write(modules.join(VIRTIO), MODULE).unwrap();
    if boot_kernel {
        fake_kernel(&root.join("boot").join(format!("vmlinuz-{VERSION}")));
    }
    root
}

fn modules_dir(root: &Path) -> PathBuf {
    root.join("lib/modules").join(VERSION)
}

fn input(s: &Scratch) -> PathBuf {
    let d = s.path("supermin.d");
    fs::create_dir_all(&d).unwrap();
    fs::write(d.join("hostfiles"), "/etc/hostname\n").unwrap();
    d
}

/// `--build -f FORMAT --sysroot ROOT` (plus `extra`) into `out`, the kernel chosen in the
/// sysroot (no `SUPERMIN_KERNEL*`).
fn build(s: &Scratch, root: &Path, format: &str, extra: &[&str], out: &Path) -> Output {
    let d = input(s);
    run(ours()
        .env_remove("SUPERMIN_KERNEL")
        .env_remove("SUPERMIN_KERNEL_VERSION")
        .env_remove("SUPERMIN_MODULES")
        .args(["--build", "-f", format, "--host-cpu", "x86_64", "--size", "64M", "--sysroot"])
        .arg(root)
        .args(extra)
        .arg(&d)
        .arg("-o")
        .arg(out))
}

/// The bytes of each output file (the kernel through its symlink), and each compressed one
/// decompressed too.
fn output_bytes(out: &Path) -> Vec<(String, Vec<u8>)> {
    let mut all = Vec::new();
    let Ok(rd) = fs::read_dir(out) else { return all };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Ok(bytes) = fs::read(e.path()) else { continue };
        let tool = match bytes.get(..4) {
            Some([0x1f, 0x8b, _, _]) => Some("gzip"),
            Some([0x28, 0xb5, 0x2f, 0xfd]) => Some("zstd"),
            _ => None,
        };
        if let Some(tool) = tool {
            let unpacked = ok(Command::new(tool).arg("-dc").arg(e.path())).stdout;
            all.push((format!("{name} ({tool} -dc)"), unpacked));
        }
        all.push((name, bytes));
    }
    all
}

/// No output file holds a byte sequence of the secret (a line of it).
fn assert_no_secret(out: &Path) {
    let needle = format!("{}00001\n", marker()).into_bytes();
    for (name, bytes) in output_bytes(out) {
        assert!(!bytes.windows(needle.len()).any(|w| w == needle), "{}/{name} holds the secret", out.display());
    }
}

/// The kernel symlink, if the output has one, leads into the sysroot.
fn assert_kernel_inside(out: &Path, root: &Path) {
    if let Ok(target) = fs::read_link(out.join("kernel")) {
        let real = fs::canonicalize(out.join("kernel")).unwrap_or(target.clone());
        assert!(target.starts_with(root) && real.starts_with(root), "kernel -> {}", target.display());
    }
}

/// The bytes of `name` in the uncompressed newc archive `cpio`.
fn cpio_member(cpio: &[u8], name: &str) -> Option<Vec<u8>> {
    let field = |at: usize, i: usize| {
        usize::from_str_radix(std::str::from_utf8(&cpio[at + 6 + 8 * i..][..8]).unwrap(), 16).unwrap()
    };
    let mut at = 0;
    while at + 110 <= cpio.len() && &cpio[at..at + 6] == b"070701" {
        let (size, namesize) = (field(at, 6), field(at, 11));
        let member = &cpio[at + 110..at + 110 + namesize - 1];
        let data_at = (at + 110 + namesize).next_multiple_of(4);
        if member == name.as_bytes() {
            return Some(cpio[data_at..data_at + size].to_vec());
        }
        at = (data_at + size).next_multiple_of(4);
    }
    None
}

/// `modules.dep` naming the secret as a dependency, by its absolute path or by `..` out of
/// the modules directory: refused, naming modules.dep and the entry, by `-f ext2` (whose mini
/// initrd copied the file before) and `-f initramfs`.
#[test]
fn modules_dep_naming_a_host_file_is_refused() {
    let s = Scratch::new("trust-sysroot-dep");
    let secret = secret(&s);
    let root = sysroot(&s, true);
    let ups = "../".repeat(modules_dir(&root).components().count() + 2);
    let spelled =
        [secret.display().to_string(), format!("{ups}{}", secret.display().to_string().trim_start_matches('/'))];
    for (i, dep) in spelled.iter().enumerate() {
        fs::write(modules_dir(&root).join("modules.dep"), format!("{VIRTIO}: {dep}\n")).unwrap();
        for format in ["ext2", "initramfs"] {
            let out = s.path(&format!("out-{format}-{i}"));
            let r = build(&s, &root, format, &[], &out);
            let shown = modules_dir(&root).join("modules.dep").display().to_string();
            assert_no_secret(&out);
            assert_one_line_error(&r, &[&shown, VIRTIO, dep, "not a module path inside the modules directory"]);
        }
    }
}

/// A module that is a symlink to the secret (absolute, or relative with `..` past the root):
/// followed inside the sysroot, where it names nothing. The build refuses, naming the module.
#[test]
fn a_module_symlinked_to_a_host_file_is_not_read() {
    let s = Scratch::new("trust-sysroot-module-link");
    let secret = secret(&s);
    let root = sysroot(&s, true);
    let module = modules_dir(&root).join(VIRTIO);
    let ups = "../".repeat(module.components().count() + 2);
    let targets =
        [secret.clone(), PathBuf::from(format!("{ups}{}", secret.display().to_string().trim_start_matches('/')))];
    for (i, target) in targets.iter().enumerate() {
        fs::remove_file(&module).unwrap();
        symlink(target, &module).unwrap();
        for format in ["ext2", "initramfs"] {
            let out = s.path(&format!("out-{format}-{i}"));
            let r = build(&s, &root, format, &[], &out);
            assert_no_secret(&out);
            if !r.status.success() {
                assert_one_line_error(&r, &[VIRTIO]);
            }
        }
        // The mini initrd needs the module: refused.
        let r = build(&s, &root, "ext2", &[], &s.path(&format!("again-{i}")));
        assert_one_line_error(&r, &[&module.display().to_string(), "cannot read kernel module"]);
    }
}

/// `modules.alias` (metadata `--modules vm` rewrites into the initramfs) a symlink to the
/// secret: read inside the sysroot, where it is missing, so the initramfs holds none of it.
#[test]
fn module_metadata_symlinked_to_a_host_file_is_not_read() {
    let s = Scratch::new("trust-sysroot-alias-link");
    let secret = secret(&s);
    let root = sysroot(&s, true);
    symlink(&secret, modules_dir(&root).join("modules.alias")).unwrap();
    let out = s.path("out");
    let r = build(&s, &root, "initramfs", &["--modules", "vm"], &out);
    assert!(r.status.success(), "{}", common::stderr(&r));
    assert_no_secret(&out);
}

/// The Fedora layout with `lib/modules/VERSION/vmlinuz` a symlink to the secret (absolute,
/// or relative past the root), no kernel in `/boot`: refused, with and without
/// `--copy-kernel`; the output kernel is never the secret.
#[test]
fn a_kernel_symlinked_to_a_host_file_is_refused() {
    let s = Scratch::new("trust-sysroot-vmlinuz");
    let secret = secret(&s);
    let root = sysroot(&s, false);
    let vmlinuz = modules_dir(&root).join("vmlinuz");
    let ups = "../".repeat(vmlinuz.components().count() + 2);
    let targets =
        [secret.clone(), PathBuf::from(format!("{ups}{}", secret.display().to_string().trim_start_matches('/')))];
    for (i, target) in targets.iter().enumerate() {
        let _ = fs::remove_file(&vmlinuz);
        symlink(target, &vmlinuz).unwrap();
        for (j, extra) in [&[][..], &["--copy-kernel"][..]].iter().enumerate() {
            for format in ["ext2", "initramfs"] {
                let out = s.path(&format!("out-{format}-{i}-{j}"));
                let r = build(&s, &root, format, extra, &out);
                let shown = format!("lib/modules/{VERSION}/vmlinuz in the sysroot is a symlink out of it");
                assert_no_secret(&out);
                assert_kernel_inside(&out, &root);
                assert_one_line_error(&r, &[&shown]);
            }
        }
    }
}

/// `lib/modules/VERSION` a symlink to a directory of the build host holding a kernel and the
/// secret as its module: refused, naming the directory; nothing of that directory is read.
#[test]
fn a_modules_directory_symlinked_out_of_the_sysroot_is_refused() {
    let s = Scratch::new("trust-sysroot-moddir");
    let secret = secret(&s);
    let root = sysroot(&s, false);
    let host_dir = s.path("root-only/modules");
    fs::create_dir_all(host_dir.join("kernel/drivers/virtio")).unwrap();
    fs::write(host_dir.join("modules.dep"), format!("{VIRTIO}:\n")).unwrap();
    fs::copy(&secret, host_dir.join(VIRTIO)).unwrap();
    fs::copy(&secret, host_dir.join("vmlinuz")).unwrap();
    fs::remove_dir_all(modules_dir(&root)).unwrap();
    symlink(&host_dir, modules_dir(&root)).unwrap();
    for extra in [&[][..], &["--copy-kernel"][..]] {
        for format in ["ext2", "initramfs"] {
            let out = s.path(&format!("out-{format}-{}", extra.len()));
            let r = build(&s, &root, format, extra, &out);
            assert_no_secret(&out);
            assert_kernel_inside(&out, &root);
            assert_one_line_error(&r, &[&format!("lib/modules/{VERSION} in the sysroot is a symlink out of it")]);
        }
    }
}

/// Absolute symlinks everywhere, each meaning the sysroot's own file: `/boot/vmlinuz-V` to
/// `/boot/real-kernel`, and the virtio module to `/lib/modules/V/real/virtio.ko`. They are
/// followed inside the sysroot: the kernel symlink leads to the sysroot's kernel, the copy is
/// its bytes, and the mini initrd holds the sysroot's module.
#[test]
fn absolute_symlinks_inside_the_sysroot_resolve_there() {
    let s = Scratch::new("trust-sysroot-absolute");
    let root = sysroot(&s, false);
    let real_kernel = root.join("boot/real-kernel");
    fake_kernel(&real_kernel);
    symlink("/boot/real-kernel", root.join("boot").join(format!("vmlinuz-{VERSION}"))).unwrap();
    let module = modules_dir(&root).join(VIRTIO);
    fs::create_dir_all(modules_dir(&root).join("real")).unwrap();
    fs::rename(&module, modules_dir(&root).join("real/virtio.ko")).unwrap();
    symlink(format!("/lib/modules/{VERSION}/real/virtio.ko"), &module).unwrap();

    let out = s.path("linked");
    let r = build(&s, &root, "ext2", &[], &out);
    assert!(r.status.success(), "{}", common::stderr(&r));
    assert_eq!(fs::read_link(out.join("kernel")).unwrap(), real_kernel);
    let initrd = fs::read(out.join("initrd")).unwrap();
    assert_eq!(cpio_member(&initrd, "virtio.ko").as_deref(), Some(MODULE), "the sysroot's module in the initrd");

    let out = s.path("copied");
    let r = build(&s, &root, "ext2", &["--copy-kernel"], &out);
    assert!(r.status.success(), "{}", common::stderr(&r));
    assert!(!fs::symlink_metadata(out.join("kernel")).unwrap().file_type().is_symlink());
    assert_eq!(fs::read(out.join("kernel")).unwrap(), fs::read(&real_kernel).unwrap());
}

/// The build host's own kernel (no sysroot) whose modules directory is reached through a
/// symlink (`/lib -> usr/lib` on merged-/usr systems, as here): the walk of the modules
/// directory resolves it first, so its files are opened with no symlink on their way.
#[test]
fn the_build_hosts_modules_behind_a_symlinked_lib_are_copied() {
    let s = Scratch::new("trust-host-modules");
    let d = input(&s);
    let out = s.path("out");
    let r = run(ours()
        .env_remove("SUPERMIN_KERNEL")
        .env_remove("SUPERMIN_KERNEL_VERSION")
        .env_remove("SUPERMIN_MODULES")
        .args(["--build", "-f", "ext2"])
        .arg(&d)
        .arg("-o")
        .arg(&out));
    assert!(r.status.success(), "{}", common::stderr(&r));
    let initrd = fs::read(out.join("initrd")).unwrap();
    let modules = String::from_utf8(cpio_member(&initrd, "modules").unwrap()).unwrap();
    assert!(modules.lines().any(|m| m == "virtio_blk.ko"), "the host's virtio_blk in the initrd: {modules}");
}
