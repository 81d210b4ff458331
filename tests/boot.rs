//! Bootable outputs, proven the hard way: `e2fsck` on the image, the image mounted and
//! compared with the chroot build, real boots under qemu (ext2 by `/dev/vda` and by
//! `root=UUID=` on virtio-scsi, the way libguestfs boots; initramfs with no disk), and
//! libguestfs itself using this tool as its supermin.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const MARKER: &str = "SUPERMIN-BOOT-MARKER";
/// What libguestfs's `/init` prints (under `guestfs_verbose=1`) as it starts its daemon.
const GUESTFSD: &str = "+ guestfsd --verbose";
/// The warning of a build whose initramfs needs a VM of more than 512 MiB.
const TOO_BIG: &str = "the initramfs needs a VM of at least";

/// A small appliance (bash, coreutils) plus an /init that prints the marker and the kernel
/// release, then exits (process 1 exiting panics the kernel; with `panic=1 -no-reboot` qemu
/// stops).
fn appliance(t: &Scratch) -> PathBuf {
    let d = t.path("supermin.d");
    ok(ours().args(["--prepare", "--use-installed", "bash", "coreutils", "-o"]).arg(&d));
    add_marker_init(t, &d);
    d
}

/// Add `init.tar.gz` holding the marker-printing `/init` to the supermin.d `d`.
fn add_marker_init(t: &Scratch, d: &Path) {
    let init_dir = t.path("init-src");
    fs::create_dir_all(&init_dir).unwrap();
    fs::write(init_dir.join("init"), format!("#!/bin/bash\necho \"{MARKER} $(uname -r) $(ls /lib/modules)\"\n"))
        .unwrap();
    ok(Command::new("chmod").arg("0755").arg(init_dir.join("init")));
    ok(Command::new("tar").arg("-C").arg(&init_dir).arg("-czf").arg(d.join("init.tar.gz")).arg("./init"));
}

/// Boot `out/kernel` with `out/initrd`, the qemu arguments `devices` and the kernel command
/// line `append`.
fn boot_output(out: &Path, devices: &[String], append: &str) -> String {
    boot_output_in(out, devices, append, 2048)
}

/// [`boot_output`] in a VM of `mib` MiB.
fn boot_output_in(out: &Path, devices: &[String], append: &str, mib: u32) -> String {
    let mut args = vec!["-kernel".into(), out.join("kernel").display().to_string()];
    args.extend(["-initrd".into(), out.join("initrd").display().to_string()]);
    args.extend(devices.iter().cloned());
    args.extend(["-append".into(), append.to_string()]);
    boot(args, mib)
}

/// Boot the ext2 appliance in `e` from `/dev/vda`.
fn boot_vda(e: &Path) -> String {
    let drive = format!("file={},format=raw,if=virtio,snapshot=on", e.join("root").display());
    boot_output(e, &["-drive".into(), drive], "console=ttyS0 root=/dev/vda panic=1")
}

fn qemu(accel: &[&str], args: &[String], mib: u32, timeout: Duration) -> String {
    let mut cmd = Command::new("timeout");
    cmd.arg(timeout.as_secs().to_string())
        .arg("qemu-system-x86_64")
        .args(accel)
        .args(["-m", &mib.to_string(), "-nodefaults", "-nographic", "-no-reboot", "-serial", "stdio"])
        .args(args)
        .stdin(Stdio::null());
    let out = run(&mut cmd);
    stdout(&out) + &stderr(&out)
}

/// Boot in a VM of `mib` MiB, with KVM (`-cpu host`) when it works here, else TCG; returns the
/// console output.
fn boot(args: Vec<String>, mib: u32) -> String {
    need("qemu-system-x86_64");
    let kvm = qemu(&["-accel", "kvm", "-cpu", "host"], &args, mib, Duration::from_secs(120));
    if kvm.contains(MARKER) || kvm.contains(GUESTFSD) {
        return kvm;
    }
    qemu(&["-accel", "tcg"], &args, mib, Duration::from_secs(600))
}

/// The release of the host's kernel, as its modules directory names it.
fn host_kernel_release() -> String {
    fs::read_dir("/lib/modules").unwrap().next().unwrap().unwrap().file_name().to_string_lossy().into_owned()
}

fn kernel_release(out: &Path) -> String {
    let k = fs::read_link(out.join("kernel")).unwrap();
    k.file_name().unwrap().to_string_lossy().trim_start_matches("vmlinuz-").to_string()
}

fn assert_booted(console: &str, out: &Path) {
    let release = kernel_release(out);
    let line = console.lines().find(|l| l.contains(MARKER)).unwrap_or_else(|| panic!("no marker; console:\n{console}"));
    // The appliance's /init ran on the chosen kernel, with that kernel's modules installed.
    assert!(line.contains(&format!("{MARKER} {release} {release}")), "{line}");
}

fn ext2_uuid(root: &Path) -> String {
    let data = fs::read(root).map(|d| d[0x468..0x478].to_vec()).unwrap();
    let h: String = data.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

#[test]
fn ext2_is_clean_and_holds_the_chroot_tree_plus_modules() {
    let t = Scratch::new("ext2-tree");
    let d = appliance(&t);
    let (e, c) = (t.path("ext2"), t.path("chroot"));
    ok(ours().args(["--build", "-f", "ext2"]).arg(&d).arg("-o").arg(&e));
    ok(ours().args(["--build", "-f", "chroot"]).arg(&d).arg("-o").arg(&c));
    let fsck = run(Command::new("e2fsck").arg("-fn").arg(e.join("root")));
    assert!(fsck.status.success(), "e2fsck: {}{}", stdout(&fsck), stderr(&fsck));
    // The original's layout: kernel is a symlink to the host kernel; initrd holds init, modules.
    assert!(fs::symlink_metadata(e.join("kernel")).unwrap().file_type().is_symlink());
    let list = ok(Command::new("sh").arg("-c").arg(format!("cpio -t --quiet < {}", e.join("initrd").display())));
    let names = stdout(&list);
    for n in ["init", "modules", "virtio_blk.ko", "virtio_scsi.ko", "ext4.ko"] {
        assert!(names.lines().any(|l| l == n), "initrd lacks {n}: {names}");
    }

    let mnt = t.path("mnt");
    let _mounted = loop_mount(&e.join("root"), &mnt);
    let release = kernel_release(&e);
    let modules = format!("/usr/lib/modules/{release}");
    compare(&c, &mnt).assert_same_but("the image against the chroot build", |p| {
        p.starts_with(&modules) || p == "/usr/lib/modules" || p.starts_with("/lost+found")
    });
    // The whole modules tree, as on the host.
    // (Link counts aside: the sysroot test hard-links the host's modules meanwhile.)
    let in_image = mnt.join(modules.trim_start_matches('/'));
    compare_with(Path::new(&format!("/lib/modules/{release}")), &in_image, false)
        .assert_same_but("the modules tree in the image against the host's", |_| false);
}

#[test]
fn ext2_boots_from_virtio_blk() {
    let t = Scratch::new("boot-vda");
    let d = appliance(&t);
    let e = t.path("ext2");
    ok(ours().args(["--build", "-f", "ext2", "--size", "1G"]).arg(&d).arg("-o").arg(&e));
    let console = boot_vda(&e);
    assert_booted(&console, &e);
    assert!(console.contains("supermin: ext2 mini initrd starting up"), "our init did not speak; console:\n{console}");
}

/// A slim appliance boots and runs the workload it was traced with: its /init is the workload
/// (sort and a checksum, through bash), traced in the lazy view, then `slim`, then `-f ext2`.
#[test]
fn a_slim_ext2_appliance_boots_and_runs_its_workload() {
    let t = Scratch::new("boot-slim");
    let d = t.path("supermin.d");
    ok(ours().args(["--prepare", "--use-installed", "bash", "coreutils", "-o"]).arg(&d));
    let init_dir = t.path("init-src");
    fs::create_dir_all(&init_dir).unwrap();
    let workload = format!("#!/bin/bash\necho \"{MARKER} $(printf 'pear\\napple\\nfig\\n' | sort | sha256sum)\"\n");
    fs::write(init_dir.join("init"), workload).unwrap();
    ok(Command::new("chmod").arg("0755").arg(init_dir.join("init")));
    ok(Command::new("tar").arg("-C").arg(&init_dir).arg("-czf").arg(d.join("init.tar.gz")).arg("./init"));
    let (mp, trace) = (t.path("mnt"), t.path("init.trace"));
    let m = mount(&d, &mp, &["--suid", "--dev", "--trace", trace.to_str().unwrap()]);
    let expected = stdout(&ok(Command::new("chroot").arg(&mp).arg("/init")));
    ok(ours().arg("umount").arg(&mp));
    drop(m);
    let slim_d = t.path("slim.d");
    ok(ours().arg("slim").arg(&d).arg("--trace").arg(&trace).arg("-o").arg(&slim_d));
    let e = t.path("ext2");
    ok(ours().args(["--build", "-f", "ext2", "--size", "1G"]).arg(&slim_d).arg("-o").arg(&e));
    let full = t.path("full");
    ok(ours().args(["--build", "-f", "chroot"]).arg(&d).arg("-o").arg(&full));
    let slim = t.path("slim");
    ok(ours().args(["--build", "-f", "chroot"]).arg(&slim_d).arg("-o").arg(&slim));
    let files = |p: &Path| dump(p).values().filter(|e| e.kind != 'd').count();
    assert!(files(&slim) * 5 < files(&full), "slim: {} files of {}", files(&slim), files(&full));
    let console = boot_vda(&e);
    let line = console.lines().find(|l| l.contains(MARKER)).unwrap_or_else(|| panic!("no marker; console:\n{console}"));
    assert_eq!(line.trim_end(), expected.trim_end(), "the booted slim appliance printed something else");
}

/// The way libguestfs boots: `root=UUID=` and the disk on virtio-scsi, `quiet`.
#[test]
fn ext2_boots_by_uuid_on_virtio_scsi() {
    let t = Scratch::new("boot-uuid");
    let d = appliance(&t);
    let e = t.path("ext2");
    ok(ours().args(["--build", "--copy-kernel", "-f", "ext2"]).arg(&d).arg("-o").arg(&e));
    assert!(fs::symlink_metadata(e.join("kernel")).unwrap().is_file(), "--copy-kernel copies");
    let uuid = ext2_uuid(&e.join("root"));
    let devices = [
        "-device".into(),
        "virtio-scsi-pci,id=scsi".into(),
        "-drive".into(),
        format!("file={},format=raw,if=none,id=hd0,snapshot=on", e.join("root").display()),
        "-device".into(),
        "scsi-hd,drive=hd0".into(),
    ];
    let console = boot_output(&e, &devices, &format!("console=ttyS0 root=UUID={uuid} panic=1 quiet"));
    let release = host_kernel_release();
    let line = console.lines().find(|l| l.contains(MARKER)).unwrap_or_else(|| panic!("no marker; console:\n{console}"));
    assert!(line.contains(&release), "{line}");
    assert!(!console.contains("mini initrd starting up"), "quiet must silence the init");
}

/// Also with a file named `TRAILER!!!` at the top, which sorts before `/init` and is the name
/// that ends a cpio archive: the kernel must unpack everything after it.
#[test]
fn initramfs_boots_without_a_disk() {
    let t = Scratch::new("boot-initramfs");
    let d = appliance(&t);
    let odd = t.path("odd");
    fs::create_dir_all(&odd).unwrap();
    fs::write(odd.join("TRAILER!!!"), "not the end\n").unwrap();
    ok(Command::new("tar").arg("-C").arg(&odd).arg("-czf").arg(d.join("odd.tar.gz")).arg("TRAILER!!!"));
    let i = t.path("initramfs");
    let built = ok(ours().args(["--build", "-f", "initramfs"]).arg(&d).arg("-o").arg(&i));
    assert!(!stderr(&built).contains(TOO_BIG), "no warning for a small appliance: {}", stderr(&built));
    assert!(!i.join("root").exists());
    // 1 GiB: with the host's whole modules tree (gzip'd) this failed to unpack.
    let console = boot_output_in(&i, &[], "console=ttyS0 panic=1", 1024);
    assert_booted(&console, &i);
}

/// The whole modules tree makes an initramfs that needs about 1 GiB: the build says how much
/// (one line), where the default (the VM's modules) says nothing (`initramfs_boots_without_a_disk`).
#[test]
fn initramfs_that_needs_more_than_512_mib_is_warned_about() {
    let t = Scratch::new("initramfs-warn");
    let d = appliance(&t);
    let i = t.path("initramfs");
    let built = ok(ours().args(["--build", "-f", "initramfs", "--modules", "all"]).arg(&d).arg("-o").arg(&i));
    let err = stderr(&built);
    let lines: Vec<&str> = err.lines().filter(|l| l.contains(TOO_BIG)).collect();
    assert_eq!(lines.len(), 1, "{err}");
    let mib: u64 = lines[0].split("qemu -m ").nth(1).and_then(|r| r.split(')').next()).unwrap().parse().unwrap();
    assert!(mib > 512 && mib.is_multiple_of(64), "{}", lines[0]);
    // What that appliance unpacks to, at least: its files, counted twice (the tmpfs gets half).
    let size = fs::metadata(i.join("initrd")).unwrap().len() >> 20;
    assert!(mib > 2 * size, "-m {mib} for an initrd of {size} MiB");
}

/// The modules of an initramfs and their metadata agree: kmod's own `modprobe`, pointed at the
/// unpacked tree, resolves every module kept, its dependencies and the aliases udev and the
/// kernel use, and says "not found" for a module left out.
#[test]
fn initramfs_modules_metadata_names_exactly_the_modules_kept() {
    need("modprobe");
    need("zstd");
    let t = Scratch::new("initramfs-modules");
    let d = appliance(&t);
    let i = t.path("initramfs");
    ok(ours().args(["--build", "-f", "initramfs"]).arg(&d).arg("-o").arg(&i));
    let root = t.path("unpacked");
    unpack_modules(&i.join("initrd"), &root);
    let release = kernel_release(&i);
    let modules = root.join("lib/modules").join(&release);
    let kept = ok(Command::new("find").arg(&modules).args(["-name", "*.ko*", "-printf", "%f\n"]));
    let kept: Vec<String> = stdout(&kept).lines().map(|f| f.split(".ko").next().unwrap().replace('-', "_")).collect();
    let host = fs::read_to_string(format!("/lib/modules/{release}/modules.dep")).unwrap().lines().count();
    assert!(kept.len() > 100 && kept.len() * 3 < host, "{} modules kept of {host}", kept.len());
    let text_lines = fs::read_to_string(modules.join("modules.dep")).unwrap().lines().count();
    assert_eq!(text_lines, kept.len(), "modules.dep lists the modules kept");
    let modprobe = |args: &[&str]| run(Command::new("modprobe").arg("-d").arg(&root).args(["-S", &release]).args(args));
    for name in &kept {
        let r = modprobe(&["--show-depends", name]);
        assert!(r.status.success() && stdout(&r).contains(".ko"), "{name}: {}", stderr(&r));
    }
    for name in ["ext4", "xfs", "btrfs", "dm_crypt", "raid456", "virtio_scsi", "virtio_net", "sd_mod", "virtio_console"]
    {
        assert!(kept.iter().any(|k| k == name), "{name} left out");
    }
    // Aliases: the kernel's request for a filesystem, and a virtio device's modalias.
    let fs = modprobe(&["-R", "fs-ext4"]);
    assert_eq!(stdout(&fs).trim(), "ext4");
    let host_has = |name: &str| run(Command::new("modinfo").args(["-k", &release, name])).status.success();
    for dropped in ["e1000e", "amdgpu", "snd_hda_intel"].into_iter().filter(|n| host_has(n)) {
        let r = modprobe(&["--show-depends", dropped]);
        assert!(!r.status.success() && stderr(&r).contains("not found"), "{dropped}: {}", stderr(&r));
    }
}

/// The kernel modules directory of an initramfs, unpacked to `dest/lib/modules` (its segments
/// are zstd frames of newc archives, one after the other, as the kernel reads them).
fn unpack_modules(initrd: &Path, dest: &Path) {
    let raw = ok(Command::new("zstd").args(["-dc"]).arg(initrd)).stdout;
    let field = |at: usize, i: usize| {
        usize::from_str_radix(std::str::from_utf8(&raw[at + 6 + 8 * i..][..8]).unwrap(), 16).unwrap()
    };
    let mut at = 0;
    while at + 110 <= raw.len() {
        assert_eq!(&raw[at..at + 6], b"070701", "newc magic at {at}");
        let (mode, size, namesize) = (field(at, 1), field(at, 6), field(at, 11));
        let name = std::str::from_utf8(&raw[at + 110..at + 110 + namesize - 1]).unwrap().to_string();
        let data_at = (at + 110 + namesize).next_multiple_of(4);
        let data = &raw[data_at..data_at + size];
        at = (data_at + size).next_multiple_of(4);
        let Some(rel) = name.strip_prefix("usr/").unwrap_or(&name).strip_prefix("lib/modules/") else { continue };
        let path = dest.join("lib/modules").join(rel);
        match mode & 0o170000 {
            0o040000 => fs::create_dir_all(&path).unwrap(),
            0o100000 => fs::write(&path, data).unwrap(),
            _ => {}
        }
    }
}

/// libguestfs's appliance as one initramfs boots in libguestfs's own default memory size
/// (`guestfish get-memsize`) and its `/init` gets as far as starting the daemon, after udev
/// and `modprobe dm_mod` (which must have loaded).
#[test]
fn libguestfs_appliance_as_initramfs_boots_in_libguestfs_memsize() {
    need("guestfish");
    let appliance = Path::new(LIBGUESTFS_APPLIANCE);
    assert!(
        appliance.is_dir(),
        "{} is missing: run `sudo scripts/install-deps.sh` (it installs libguestfs's appliance)",
        appliance.display()
    );
    let memsize = stdout(&ok(Command::new("guestfish").arg("get-memsize"))).trim().parse::<u32>().unwrap();
    let t = Scratch::new("libguestfs-initramfs");
    let i = t.path("initramfs");
    ok(ours().args(["--build", "-f", "initramfs"]).arg(appliance).arg("-o").arg(&i));
    let console = boot_output_in(&i, &[], "console=ttyS0 panic=1 guestfs_verbose=1", memsize);
    assert!(!console.contains("Initramfs unpacking failed"), "{}", tail(&console));
    assert!(console.contains(GUESTFSD), "init did not reach guestfsd in {memsize} MiB:\n{}", tail(&console));
    let lsmod = console.split("+ lsmod").nth(1).unwrap_or("");
    assert!(lsmod.lines().any(|l| l.starts_with("dm_mod ")), "dm_mod not loaded:\n{}", tail(&console));
}

#[test]
fn ext2_if_newer() {
    let t = Scratch::new("ext2-if-newer");
    let d = appliance(&t);
    let e = t.path("ext2");
    let build = || {
        let r = ok(ours().args(["-v", "--build", "--if-newer", "-f", "ext2"]).arg(&d).arg("-o").arg(&e));
        stderr(&r).contains("output does not need rebuilding")
    };
    assert!(!build());
    assert!(build(), "second identical run does nothing");
    for f in ["kernel", "initrd", "root"] {
        fs::remove_file(e.join(f)).unwrap();
        assert!(!build(), "{f} deleted: rebuild");
        for g in ["kernel", "initrd", "root"] {
            assert!(fs::symlink_metadata(e.join(g)).is_ok(), "{g} after rebuilding for {f}");
        }
    }
    // libguestfs touches the outputs after each build: that must not force a rebuild.
    ok(Command::new("touch").arg(e.join("initrd")).arg(e.join("root")));
    assert!(build(), "touched outputs are still fresh");
    fs::write(d.join("packages"), "bash\ncoreutils\nsed\n").unwrap();
    assert!(!build(), "changed input: rebuild");
}

/// Run `script` in a private mount namespace where our binary replaces /usr/bin/supermin,
/// so libguestfs runs it; the host is untouched.
fn with_our_supermin(script: &str, cache: &Path) -> (bool, String) {
    let full = format!(
        "set -e; mount --bind {OURS} /usr/bin/supermin; export LIBGUESTFS_BACKEND=direct \
         LIBGUESTFS_BACKEND_SETTINGS=force_tcg LIBGUESTFS_CACHEDIR={}; {script}",
        cache.display()
    );
    let out =
        Command::new("unshare").args(["-m", "--propagation", "private", "sh", "-c", &full]).output().expect("unshare");
    (out.status.success(), stdout(&out) + &stderr(&out))
}

#[test]
fn libguestfs_test_tool_passes_with_us_as_supermin() {
    need("libguestfs-test-tool");
    let t = Scratch::new("libguestfs");
    let cache = t.path("cache");
    fs::create_dir_all(&cache).unwrap();
    let (ok_, out) = with_our_supermin("libguestfs-test-tool", &cache);
    assert!(ok_ && out.contains("TEST FINISHED OK"), "libguestfs-test-tool failed:\n{}", tail(&out));
    assert!(built_by_us(&cache), "the appliance in {} was not built by us", cache.display());
}

#[test]
fn guestfish_writes_and_reads_a_file() {
    need("guestfish");
    let t = Scratch::new("guestfish");
    let cache = t.path("cache");
    fs::create_dir_all(&cache).unwrap();
    let disk = t.path("disk.img");
    ok(Command::new("truncate").args(["-s", "200M"]).arg(&disk));
    let script = format!(
        "guestfish --rw -a {} run : part-disk /dev/sda mbr : mkfs ext4 /dev/sda1 : mount /dev/sda1 / : \
         write /hello 'written by guestfish' : cat /hello",
        disk.display()
    );
    let (ok_, out) = with_our_supermin(&script, &cache);
    assert!(ok_ && out.contains("written by guestfish"), "guestfish failed:\n{}", tail(&out));
    assert!(built_by_us(&cache));
}

/// Too small an image is refused before anything is written, and nothing is left behind.
#[test]
fn ext2_too_small_is_a_clean_error() {
    let t = Scratch::new("ext2-small");
    let d = appliance(&t);
    let e = t.path("ext2");
    previous_output(&e);
    let res = run(ours().args(["--build", "-f", "ext2", "--size", "100M"]).arg(&d).arg("-o").arg(&e));
    assert_one_line_error(&res, &["No space left on device", "--size"]);
    assert_previous_output_kept(&e);
    let half_built = names_starting_with(&t.0, "ext2.");
    assert!(half_built.is_empty(), "half-built directory left: {half_built:?}");
}

/// An unreadable kernel (Ubuntu ships them 0600) is a clear error naming it and the fix.
#[test]
fn unreadable_kernel_is_explained() {
    let t = Scratch::new("kernel-0600");
    let d = appliance(&t);
    let release = host_kernel_release();
    let kernel = t.path("vmlinuz-private");
    fs::copy(format!("/boot/vmlinuz-{release}"), &kernel).unwrap();
    ok(Command::new("chmod").arg("0600").arg(&kernel));
    ok(Command::new("chmod").arg("0777").arg(&t.0));
    let out = t.path("out");
    let res = run(Command::new("runuser")
        .args(["-u", "nobody", "--"])
        .arg(OURS)
        .args(["--build", "-f", "ext2"])
        .arg(&d)
        .arg("-o")
        .arg(&out)
        .env("SUPERMIN_KERNEL", &kernel)
        .env("SUPERMIN_KERNEL_VERSION", &release));
    let err = stderr(&res);
    assert_eq!(res.status.code(), Some(1), "{err}");
    assert!(err.contains(&kernel.display().to_string()) && err.contains("chmod"), "{err}");
    assert!(!out.exists());
}

/// `--sysroot`: an ext2 appliance built from another root (an mmdebstrap tree given a kernel)
/// uses that root's packages, kernel and modules, never the build host's, and boots.
#[test]
fn ext2_from_a_sysroot_uses_its_kernel_and_boots() {
    let t = Scratch::new("sysroot-ext2");
    let release = host_kernel_release();
    // A copy of the Debian root made of hard links (cheap), given a kernel the same way.
    let root = t.path("root");
    ok(Command::new("cp").arg("-al").arg(debian_root()).arg(&root));
    fs::create_dir_all(root.join("boot")).unwrap();
    ok(Command::new("cp").arg("-al").arg(format!("/boot/vmlinuz-{release}")).arg(root.join("boot/")));
    fs::create_dir_all(root.join("usr/lib/modules")).unwrap();
    ok(Command::new("cp").arg("-al").arg(format!("/lib/modules/{release}")).arg(root.join("usr/lib/modules/")));

    let d = t.path("supermin.d");
    ok(ours().args(["--prepare", "--use-installed", "--sysroot"]).arg(&root).args(["bash", "coreutils", "-o"]).arg(&d));
    add_marker_init(&t, &d);

    let e = t.path("ext2");
    ok(ours().args(["--build", "-f", "ext2", "--size", "1G", "--sysroot"]).arg(&root).arg(&d).arg("-o").arg(&e));
    let kernel = fs::read_link(e.join("kernel")).unwrap();
    assert!(kernel.starts_with(&root), "kernel {} must come from the sysroot", kernel.display());
    let console = boot_vda(&e);
    assert_booted(&console, &e);

    // Without a kernel in the root, the error names the root's /boot, not the host's.
    let bare = t.path("bare");
    ok(Command::new("cp").arg("-al").arg(debian_root()).arg(&bare));
    let r = run(ours().args(["--build", "-f", "ext2", "--sysroot"]).arg(&bare).arg(&d).arg("-o").arg(t.path("e2")));
    let err = stderr(&r);
    assert_eq!(r.status.code(), Some(1), "{err}");
    assert!(err.contains("failed to find a suitable kernel") && err.contains(&bare.display().to_string()), "{err}");
}
