//! Errors that teach: the ten most likely mistakes, each provoked for real, each answered by one
//! line that says what happened (naming the file or thing concerned) and the command that
//! fixes it. Where the original supermin succeeds without a word (some packages of `--prepare`
//! not installed, an empty supermin.d), we succeed too, with one line of warning that teaches.
//!
//! These tests mount, unshare and switch users: run them as root (the CI does).

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

fn need_root(what: &str) {
    // SAFETY: geteuid cannot fail.
    assert_eq!(unsafe { libc::geteuid() }, 0, "this test {what}: run the tests as root (the CI does)");
}

/// `supermin: <what>: <advice>` on one line, exit 1, naming every one of `needles`.
fn assert_teaches(out: &Output, needles: &[&str]) -> String {
    let line = assert_one_line_error(out, needles);
    assert!(line.starts_with("supermin: "), "{line:?} should start with the program's name");
    line
}

/// A success with exactly one line on stderr, a warning naming every one of `needles`.
fn assert_one_line_warning(out: &Output, needles: &[&str]) -> String {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(err.lines().count(), 1, "not one line: {err}");
    assert!(err.starts_with("supermin: warning: "), "{err:?} should be a warning");
    for n in needles {
        assert!(err.contains(n), "{err:?} should mention {n:?}");
    }
    err
}

/// A small valid supermin appliance: one hostfiles list.
fn hostfiles_input(s: &Scratch) -> PathBuf {
    let d = s.path("supermin.d");
    fs::create_dir_all(&d).unwrap();
    fs::write(d.join("hostfiles"), "/etc/hostname\n").unwrap();
    d
}

/// A root that `--sysroot` detects as Debian (a dpkg status file and /etc/debian_version)
/// and nothing else: no packages, no kernel.
fn bare_debian_root(s: &Scratch) -> PathBuf {
    let root = s.path("root");
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::create_dir_all(root.join("var/lib/dpkg")).unwrap();
    fs::write(root.join("etc/debian_version"), "12.0\n").unwrap();
    fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
    root
}

/// Our binary without the `SUPERMIN_KERNEL*` variables, which would choose the kernel.
fn ours_without_kernel_env(program: &mut Command) -> &mut Command {
    program.env_remove("SUPERMIN_KERNEL").env_remove("SUPERMIN_KERNEL_VERSION").env_remove("SUPERMIN_MODULES")
}

/// `program` run as the unprivileged user nobody (65534), without supplementary groups.
fn as_nobody() -> Command {
    need("setpriv");
    let mut c = Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups", OURS]);
    c
}

/// A scratch directory everyone may enter (for the tests running as nobody).
fn open_scratch(name: &str) -> Scratch {
    let s = Scratch::new(name);
    fs::set_permissions(&s.0, fs::Permissions::from_mode(0o755)).unwrap();
    s
}

#[test]
fn no_kernel_installed() {
    let s = Scratch::new("err-no-kernel");
    let root = bare_debian_root(&s);
    let d = hostfiles_input(&s);
    let out = s.path("out");
    let r = run(ours_without_kernel_env(&mut ours())
        .args(["--build", "-f", "ext2", "--host-cpu", "x86_64", "--sysroot"])
        .arg(&root)
        .arg(&d)
        .arg("-o")
        .arg(&out));
    let boot = root.join("boot").display().to_string();
    let install = format!("chroot {} apt-get install linux-image-amd64", root.display());
    assert_teaches(&r, &["failed to find a suitable kernel", &boot, &install, "SUPERMIN_KERNEL"]);
    assert!(!out.exists());
}

#[test]
fn unreadable_kernel() {
    let s = open_scratch("err-kernel-0600");
    let root = bare_debian_root(&s);
    let kernel = root.join("boot/vmlinuz-6.1.0-9-amd64");
    fs::create_dir_all(kernel.parent().unwrap()).unwrap();
    fs::write(&kernel, b"not really a kernel").unwrap();
    fs::set_permissions(&kernel, fs::Permissions::from_mode(0o600)).unwrap();
    let modules = root.join("lib/modules/6.1.0-9-amd64");
    fs::create_dir_all(&modules).unwrap();
    fs::write(modules.join("modules.dep"), "").unwrap();
    let d = hostfiles_input(&s);
    let outdir = s.path("o");
    fs::create_dir_all(&outdir).unwrap();
    fs::set_permissions(&outdir, fs::Permissions::from_mode(0o777)).unwrap();
    let r = run(ours_without_kernel_env(&mut as_nobody())
        .args(["--build", "-f", "ext2", "--sysroot"])
        .arg(&root)
        .arg(&d)
        .arg("-o")
        .arg(outdir.join("x")));
    let shown = kernel.display().to_string();
    assert_teaches(&r, &[&shown, "cannot read the kernel (mode 0600)", &format!("sudo chmod 0644 {shown}")]);
    assert!(!outdir.join("x").exists());
}

#[test]
fn mountpoint_not_empty() {
    let s = Scratch::new("err-mp-full");
    let d = hostfiles_input(&s);
    let mp = s.path("full");
    fs::create_dir_all(&mp).unwrap();
    fs::write(mp.join("x"), "").unwrap();
    let _guard = Mounted::new(&mp);
    let shown = mp.display().to_string();
    let r = run(ours().arg("mount").arg("--daemon").arg(&d).arg(&mp));
    assert_teaches(&r, &[&shown, "mountpoint is not empty", &format!("mkdir {shown}.mnt")]);
    assert!(!is_mounted(&mp));
}

#[test]
fn mountpoint_already_mounted() {
    need_root("mounts a tmpfs");
    let s = Scratch::new("err-mp-mounted");
    let d = hostfiles_input(&s);
    let mp = s.path("mnt");
    fs::create_dir_all(&mp).unwrap();
    let _guard = Mounted::new(&mp);
    ok(Command::new("mount").args(["-t", "tmpfs", "-o", "size=1m", "none"]).arg(&mp));
    let shown = mp.display().to_string();
    let r = run(ours().arg("mount").arg("--daemon").arg(&d).arg(&mp));
    assert_teaches(&r, &[&shown, "already mounted", &format!("supermin umount {shown}")]);
}

#[test]
fn mountpoint_busy_at_umount() {
    need_root("mounts a view");
    let s = Scratch::new("err-mp-busy");
    let d = hostfiles_input(&s);
    let mp = s.path("mnt");
    let _m = mount(&d, &mp, &[]);
    // A process whose working directory is inside the mount keeps it busy.
    let mut holder = Command::new("sleep").arg("60").current_dir(&mp).spawn().unwrap();
    let r = run(ours().arg("umount").arg(&mp));
    let _ = holder.kill();
    let _ = holder.wait();
    let shown = mp.display().to_string();
    assert_teaches(&r, &[&shown, "busy", &format!("fuser -vm {shown}"), &format!("umount -l {shown}")]);
    ok(ours().arg("umount").arg(&mp));
    assert!(!is_mounted(&mp));
}

#[test]
fn prepare_with_no_package_installed() {
    let s = Scratch::new("err-prepare-none");
    let out = s.path("out");
    let r = run(ours().args(["--prepare", "no-such-package-here", "-o"]).arg(&out));
    // The original's words first (tests/cli.rs holds them against it), then the advice.
    let line = assert_teaches(
        &r,
        &["no-such-package-here", "install it (apt-get install no-such-package-here)", "check the spelling"],
    );
    assert!(
        line.starts_with("supermin: prepare: none of the packages listed on the command line seem to be installed: "),
        "{line}"
    );
    assert!(!out.exists());
}

#[test]
fn prepare_with_some_packages_not_installed_warns() {
    let s = Scratch::new("err-prepare-some");
    let out = s.path("out");
    let r = run(ours().args(["--prepare", "--use-installed", "bash", "no-such-package-here", "-o"]).arg(&out));
    assert_one_line_warning(&r, &["not installed", "no-such-package-here", "apt-get install no-such-package-here"]);
    // As the original: the appliance is made, without the missing name.
    assert_eq!(fs::read_to_string(out.join("packages")).unwrap(), "bash\n");
}

#[test]
fn run_as_non_root() {
    let s = open_scratch("err-run-nonroot");
    let d = hostfiles_input(&s);
    let r = run(as_nobody().arg("run").arg(&d).args(["--", "true"]));
    let again = format!("sudo {OURS} run {} -- true", d.display());
    assert_teaches(&r, &["private mount namespace", "run it as root", &again]);
}

#[test]
fn output_inside_an_input() {
    let s = Scratch::new("err-out-in-input");
    let d = hostfiles_input(&s);
    let out = d.join("out");
    let r = run(ours().args(["--build", "-f", "chroot"]).arg(&d).arg("-o").arg(&out));
    let suggested = format!("{}.out", fs::canonicalize(&d).unwrap().display());
    assert_teaches(&r, &[&out.display().to_string(), "is inside the input", &format!("-o {suggested}")]);
    assert!(!out.exists());
    // The advice works.
    ok(ours().args(["--build", "-f", "chroot"]).arg(&d).arg("-o").arg(&suggested));
    assert!(Path::new(&suggested).join("etc/hostname").is_file());
}

#[test]
fn dev_fuse_missing() {
    need_root("hides /dev/fuse in a private mount namespace");
    need("unshare");
    let s = Scratch::new("err-no-dev-fuse");
    let d = hostfiles_input(&s);
    let mp = s.path("mnt");
    fs::create_dir_all(&mp).unwrap();
    let _guard = Mounted::new(&mp);
    // A private mount namespace whose /dev is an empty tmpfs.
    let script =
        format!("mount -t tmpfs none /dev && exec {OURS} mount --fuse --daemon {} {}", d.display(), mp.display());
    let r = run(Command::new("unshare").args(["-m", "sh", "-c", &script]));
    assert_teaches(&r, &["/dev/fuse: not available", "modprobe fuse", "apt-get install fuse3"]);
}

#[test]
fn fusermount3_missing_for_a_non_root_mount() {
    need_root("hides fusermount3 in a private mount namespace");
    need("unshare");
    need("setpriv");
    let s = open_scratch("err-no-fusermount");
    let d = hostfiles_input(&s);
    let mp = s.path("mnt");
    fs::create_dir_all(&mp).unwrap();
    let _guard = Mounted::new(&mp);
    // setpriv is copied out of /usr/bin, then /usr/bin and /usr/sbin (so also /bin and /sbin,
    // merged into /usr) are hidden under empty tmpfs: no fusermount3 anywhere fuser looks.
    let setpriv = s.path("setpriv");
    fs::copy("/usr/bin/setpriv", &setpriv).unwrap();
    let script = format!(
        "/usr/bin/mount -t tmpfs none /usr/sbin && /usr/bin/mount -t tmpfs none /usr/bin && \
         exec {} --reuid=65534 --regid=65534 --clear-groups {OURS} mount --daemon {} {}",
        setpriv.display(),
        d.display(),
        mp.display()
    );
    let r = run(Command::new("unshare").args(["-m", "sh", "-c", &script]).env_remove("FUSERMOUNT_PATH"));
    assert_teaches(&r, &["fusermount3: not found", "apt-get install fuse3", "run as root"]);
    assert!(!is_mounted(&mp));
}

#[test]
fn unknown_format() {
    let s = Scratch::new("err-format");
    let d = hostfiles_input(&s);
    let out = s.path("out");
    let r = run(ours().args(["--build", "-f", "ext4"]).arg(&d).arg("-o").arg(&out));
    let line = assert_teaches(&r, &["ext4", "-f chroot", "-f ext2", "-f initramfs", "-f tar"]);
    // The original's words first.
    assert!(line.starts_with("supermin: unknown --format option (ext4): "), "{line}");
    assert!(!out.exists());
}

#[test]
fn empty_supermin_d_warns() {
    let s = Scratch::new("err-empty-d");
    let d = s.path("supermin.d");
    fs::create_dir_all(&d).unwrap();
    let out = s.path("out");
    let r = run(ours().args(["--build", "-f", "chroot"]).arg(&d).arg("-o").arg(&out));
    let shown = d.display().to_string();
    assert_one_line_warning(
        &r,
        &[&shown, "the appliance is empty", &format!("supermin --prepare bash coreutils -o {shown}")],
    );
    // As the original: an empty appliance.
    assert_eq!(fs::read_dir(&out).unwrap().count(), 0);
    // The advice works: the directory can be filled, and is no longer empty.
    ok(ours().args(["--prepare", "--use-installed", "bash", "coreutils", "-o"]).arg(&d));
    let r = ok(ours().args(["--build", "-f", "chroot", "--if-newer"]).arg(&d).arg("-o").arg(&out));
    assert!(stderr(&r).is_empty(), "{}", stderr(&r));
    assert!(out.join("usr/bin/bash").is_file());
}

#[test]
fn sysroot_without_a_package_database() {
    let s = Scratch::new("err-sysroot-empty");
    let root = s.path("root");
    fs::create_dir_all(&root).unwrap();
    let d = hostfiles_input(&s);
    let out = s.path("out");
    let r = run(ours().args(["--build", "-f", "chroot", "--sysroot"]).arg(&root).arg(&d).arg("-o").arg(&out));
    let shown = root.display().to_string();
    assert_teaches(
        &r,
        &[
            &shown,
            "no dpkg, rpm or pacman database",
            &format!("mmdebstrap bookworm {shown}"),
            "--packager dpkg|rpm|pacman",
        ],
    );
    assert!(!out.exists());
}
