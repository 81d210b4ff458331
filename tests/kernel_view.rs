//! The kernel view's metadata image (`-f erofs`) against oracles: `fsck.erofs` (erofs-utils)
//! on every image, then the kernel itself: the image mounted (file-backed EROFS) and overlaid
//! on the host as a data-only layer must be the chroot build of the same input, entry for
//! entry and byte for byte. Needs root (mounts, `trusted.` xattrs); mounts are undone by
//! guards, also when an assertion fails.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use common::*;
use nix::mount::{mount, MsFlags};

/// `fsck.erofs` finds nothing wrong, checking the metadata and decoding every file.
fn fsck(image: &Path) {
    need("fsck.erofs");
    for extract in [false, true] {
        let mut cmd = Command::new("fsck.erofs");
        cmd.arg("-d3");
        if extract {
            cmd.arg("--extract");
        }
        let out = ok(cmd.arg(image));
        let said = format!("{}{}", stdout(&out), stderr(&out));
        assert!(!said.contains("<E>") && said.contains("No errors found"), "fsck.erofs {}: {said}", image.display());
    }
}

/// `image` mounted at `meta` (file-backed, no loop device) and overlaid with `data` as the
/// data-only lower layer at `mnt`. The guards unmount the overlay first.
fn kernel_view(image: &Path, meta: &Path, mnt: &Path, data: &Path) -> (Mounted, Mounted) {
    fs::create_dir_all(meta).unwrap();
    fs::create_dir_all(mnt).unwrap();
    let meta_guard = Mounted::new(meta);
    mount(Some(image), meta, Some("erofs"), MsFlags::MS_RDONLY, None::<&str>)
        .unwrap_or_else(|e| panic!("mount -t erofs {}: {e} (needs root and CONFIG_EROFS_FS)", image.display()));
    let view_guard = Mounted::new(mnt);
    let opts = format!("metacopy=on,redirect_dir=follow,lowerdir={}::{}", meta.display(), data.display());
    mount(Some("overlay"), mnt, Some("overlay"), MsFlags::MS_RDONLY, Some(opts.as_str()))
        .unwrap_or_else(|e| panic!("mount -t overlay -o {opts}: {e}"));
    (view_guard, meta_guard)
}

/// Build `input` as a chroot and as an EROFS image; the image must pass `fsck.erofs` and,
/// overlaid on `/`, equal the chroot. Returns the image's size and how long writing it took.
fn image_equals_build(name: &str, input: &Path, s: &Scratch) -> (u64, u128) {
    image_equals_build_in(name, input, s, None)
}

/// As [`image_equals_build`], with `--sysroot ROOT --packager dpkg` when given: then ROOT is
/// the data layer.
fn image_equals_build_in(name: &str, input: &Path, s: &Scratch, sysroot: Option<&Path>) -> (u64, u128) {
    let build = |format: &str, out: &Path| {
        let mut cmd = ours();
        if let Some(root) = sysroot {
            cmd.arg("--sysroot").arg(root).args(["--packager", "dpkg"]);
        }
        ok(cmd.args(["--build", "-f", format]).arg(input).arg("-o").arg(out));
    };
    let built = s.path(&format!("{name}-built"));
    build("chroot", &built);
    let out = s.path(&format!("{name}-erofs"));
    let started = Instant::now();
    build("erofs", &out);
    let ms = started.elapsed().as_millis();
    let image = out.join("root.erofs");
    fsck(&image);
    let (meta, mnt) = (s.path(&format!("{name}-meta")), s.path(&format!("{name}-view")));
    let _guards = kernel_view(&image, &meta, &mnt, sysroot.unwrap_or(Path::new("/")));
    assert_same_tree(&built, &mnt);
    (fs::metadata(&image).unwrap().len(), ms)
}

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/supermin.d")
}

#[test]
fn bash_coreutils_image_is_the_chroot_build() {
    let s = Scratch::new("kview-bash");
    let (size, ms) = image_equals_build("bash", &example(), &s);
    eprintln!("bash+coreutils: root.erofs is {size} bytes, written in {ms} ms");
}

#[test]
fn libguestfs_image_is_the_chroot_build() {
    assert!(Path::new(LIBGUESTFS_APPLIANCE).is_dir(), "{LIBGUESTFS_APPLIANCE} is missing: install libguestfs0");
    let s = Scratch::new("kview-guestfs");
    let (size, ms) = image_equals_build("guestfs", Path::new(LIBGUESTFS_APPLIANCE), &s);
    eprintln!("libguestfs appliance: root.erofs is {size} bytes, `--build -f erofs` took {ms} ms");
}

/// What a base image and host files can hold that stresses the format: hard links, devices,
/// fifos, set-id bits, owners, names of 255 bytes and names sorting before `.`, 10,000 entries
/// in one directory (many directory blocks), symlinks of every length up to 4095 bytes, file
/// sizes around block boundaries (inline tails and whole blocks), and host files (stubs).
#[test]
fn special_files_long_names_and_big_directories() {
    let s = Scratch::new("kview-special");
    let src = s.path("src");
    fs::create_dir_all(&src).unwrap();
    let sh = |cmd: &str| ok(Command::new("sh").arg("-c").arg(cmd).current_dir(&src));
    sh("mkdir -p dev usr/bin many links sizes && mknod dev/null c 1 3 && mknod dev/sda b 8 0 && mknod dev/big c 259 300");
    sh("mkfifo dev/pipe && chmod 0640 dev/sda && chmod 1777 many && chown 7:8 dev/pipe");
    sh("echo tool > usr/bin/tool && chmod 4755 usr/bin/tool && ln usr/bin/tool usr/bin/tool2 && ln usr/bin/tool tool3");
    sh("echo g > usr/bin/g && chmod 2711 usr/bin/g && chown 70000:80000 usr/bin/g");
    sh("for n in '!bang' '-dash' '+plus' ' space' '$(x)' \"$(printf 'x%.0s' $(seq 255))\"; do echo \"$n\" > \"many/$n\"; done");
    sh("cd many && seq -f 'entry-%05g' 10000 | xargs touch");
    sh("for n in 1 60 100 3000 4020 4031 4032 4033 4095; do ln -s \"$(printf 'a%.0s' $(seq $n))\" links/l$n; done");
    sh("for n in 1 4000 4095 4096 4097 8191 8192 12289 100000; do head -c $n /dev/urandom > sizes/s$n; done");
    let d = s.path("d");
    fs::create_dir_all(&d).unwrap();
    ok(Command::new("tar").arg("-C").arg(&src).arg("-czf").arg(d.join("base.tar.gz")).arg("."));
    // Host files: stubs whose bytes the overlay reads from the host.
    let host = s.path("host");
    fs::create_dir_all(&host).unwrap();
    for (n, size) in [("one", 1), ("block", 4096), ("big", 3 << 20), ("a name with spaces", 17), ("empty", 0)] {
        fs::write(host.join(n), (0..size).map(|i| (i * 7 % 251) as u8).collect::<Vec<u8>>()).unwrap();
    }
    ok(Command::new("chmod").arg("6755").arg(host.join("one")));
    fs::write(d.join("hostfiles"), format!("{}/*\n", host.display())).unwrap();
    let (size, _) = image_equals_build("special", &d, &s);
    eprintln!("special: root.erofs is {size} bytes");
}

/// In a sysroot, a stub's redirect is its path inside the root (reached through the root's own
/// absolute symlink `/lib -> /usr/lib`), and the sysroot is the data layer.
#[test]
fn sysroot_stubs_redirect_inside_the_sysroot() {
    let s = Scratch::new("kview-sysroot");
    let root = s.path("root");
    for dir in ["var/lib/dpkg", "usr/lib", "usr/bin"] {
        fs::create_dir_all(root.join(dir)).unwrap();
    }
    fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
    std::os::unix::fs::symlink("/usr/lib", root.join("lib")).unwrap();
    fs::write(root.join("usr/lib/y"), "hello\n").unwrap();
    fs::write(root.join("usr/bin/x"), (0..10_000u32).map(|i| (i % 253) as u8).collect::<Vec<u8>>()).unwrap();
    let d = s.path("d");
    fs::create_dir_all(&d).unwrap();
    fs::write(d.join("hostfiles"), "/lib/y\n/usr/bin/*\n").unwrap();
    image_equals_build_in("sysroot", &d, &s, Some(&root));
    let meta = s.path("sysroot-meta");
    let image = s.path("sysroot-erofs/root.erofs");
    let _guards = kernel_view(&image, &meta, &s.path("sysroot-view2"), &root);
    assert_eq!(xattr(&meta.join("usr/lib/y"), "trusted.overlay.redirect").as_deref(), Some(&b"/usr/lib/y"[..]));
}

/// The example's chroot build (the oracle) in `s`, and an empty mountpoint beside it.
fn built_and_mountpoint(s: &Scratch) -> (PathBuf, PathBuf) {
    let built = s.path("built");
    ok(ours().args(["--build", "-f", "chroot"]).arg(example()).arg("-o").arg(&built));
    let mnt = s.path("mnt");
    fs::create_dir_all(&mnt).unwrap();
    (built, mnt)
}

/// `mount --kernel`'s images in the cache (the kernel view's): names and inode numbers (a
/// use touches an image's time, a rewrite makes a new inode).
fn cached_images() -> Vec<(String, u64)> {
    let dir = Path::new("/var/tmp/supermin-rs-cache-0");
    let mut images: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("kernel-"))
        .map(|e| {
            (e.file_name().to_string_lossy().into_owned(), std::os::unix::fs::MetadataExt::ino(&e.metadata().unwrap()))
        })
        .collect();
    images.sort();
    images
}

/// `supermin mount --kernel`: the overlay is the chroot build, no process serves it, a second
/// mount of the same appliance writes no image, and `supermin umount` leaves no mount.
#[test]
fn mount_kernel_is_the_chroot_build_with_no_daemon() {
    let s = Scratch::new("kview-mount");
    let (built, mnt) = built_and_mountpoint(&s);
    for round in 0..2 {
        let guard = Mounted::new(&mnt);
        // The root shows the time the view was made: a later second must not need a new image.
        std::thread::sleep(std::time::Duration::from_millis(1100 * round));
        let before = cached_images();
        let started = Instant::now();
        ok(ours().args(["mount", "--kernel"]).arg(example()).arg(&mnt));
        eprintln!("mount --kernel, round {round}: {} ms", started.elapsed().as_millis());
        let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let line = info.lines().find(|l| l.contains(&format!(" {} ", mnt.display()))).expect("mounted");
        assert!(line.contains(" - overlay ") && line.contains("metacopy=on"), "{line}");
        if round == 1 {
            assert_eq!(cached_images(), before, "a second mount of the same appliance wrote an image");
        }
        assert_same_tree(&built, &mnt);
        ok(ours().arg("umount").arg(&mnt));
        assert!(!is_mounted(&mnt), "umount left the overlay");
        let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!info.contains("supermin-rs-cache-0/layer."), "the image's mount is left: {info}");
        drop(guard);
    }
}

/// A host file of the appliance that a user replaces with a symlink to a root-only file after
/// the mount reads as an error through the kernel view, never as the target's bytes; a
/// non-root user cannot mount one.
#[test]
fn the_kernel_view_never_follows_a_swapped_in_symlink() {
    let s = Scratch::new("kview-swap");
    let secret = s.path("secret");
    fs::write(&secret, "SECRET root-only\n").unwrap();
    let home = hostile_dir(&s.0, "home");
    let f = home.join("f");
    fs::write(&f, "mine: the user's\n").unwrap();
    let (uid, gid) = hostile_user();
    std::os::unix::fs::chown(&f, Some(uid), Some(gid)).unwrap();
    let d = s.path("d");
    fs::create_dir_all(&d).unwrap();
    fs::write(d.join("hostfiles"), format!("{}\n", f.display())).unwrap();
    let mnt = s.path("mnt");
    fs::create_dir_all(&mnt).unwrap();
    let _guard = Mounted::new(&mnt);
    ok(ours().args(["mount", "--kernel"]).arg(&d).arg(&mnt));
    let link = home.join("l");
    std::os::unix::fs::symlink(&secret, &link).unwrap();
    std::os::unix::fs::lchown(&link, Some(uid), Some(gid)).unwrap();
    let mut mv = Command::new("mv");
    mv.arg("-f").arg(&link).arg(&f);
    ok(&mut as_hostile(mv));
    let read = fs::read(mnt.join(f.strip_prefix("/").unwrap()));
    assert!(
        read.is_err(),
        "the kernel view read {:?} through a symlink",
        read.map(|b| String::from_utf8_lossy(&b).into_owned())
    );
    ok(ours().arg("umount").arg(&mnt));
    // Not root: refused in one line, nothing mounted.
    let mut cmd = ours();
    cmd.args(["mount", "--kernel"]).arg(&d).arg(&mnt);
    let out = run(&mut as_hostile(cmd));
    assert_one_line_error(&out, &["needs root"]);
    assert!(!is_mounted(&mnt));
}

/// A kernel view carries its record as a FUSE view does: `materialize` of the mountpoint is
/// the chroot build of what was mounted, and `inspect` of it reports the same appliance.
#[test]
fn materialize_and_inspect_read_a_kernel_view() {
    let s = Scratch::new("kview-record");
    let (built, mnt) = built_and_mountpoint(&s);
    let _guard = Mounted::new(&mnt);
    ok(ours().args(["mount", "--kernel"]).arg(example()).arg(&mnt));
    let out = s.path("materialized");
    let r = ok(ours().args(["materialize", "-v"]).arg(&mnt).args(["-f", "chroot", "-o"]).arg(&out));
    assert!(stderr(&r).contains("is a mounted view of"), "{}", stderr(&r));
    assert_same_tree(&built, &out);
    let from_view = ok(ours().args(["inspect", "--json"]).arg(&mnt)).stdout;
    let from_input = ok(ours().args(["inspect", "--json"]).arg(example())).stdout;
    assert_eq!(String::from_utf8_lossy(&from_view), String::from_utf8_lossy(&from_input));
    ok(ours().arg("umount").arg(&mnt));
}

/// The mount table's line for `mnt`, if it is a mount point.
fn mount_line(mnt: &Path) -> Option<String> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines().find(|l| l.split(' ').nth(4) == Some(&*mnt.to_string_lossy())).map(str::to_string)
}

/// With neither `--kernel` nor `--fuse`, root gets the kernel view (no process left, `-v`
/// says so), `--fuse` the FUSE view, and a user who is not root the FUSE view with the reason
/// in one `-v` line.
#[test]
fn the_default_is_the_kernel_view_where_it_works() {
    let s = Scratch::new("kview-default");
    let mnt = s.path("mnt");
    fs::create_dir_all(&mnt).unwrap();
    let guard = Mounted::new(&mnt);
    let r = ok(ours().args(["mount", "-v"]).arg(example()).arg(&mnt));
    assert!(stderr(&r).contains("mount: the kernel view"), "{}", stderr(&r));
    let line = mount_line(&mnt).expect("mounted");
    assert!(line.contains(" - overlay supermin "), "{line}");
    assert!(mnt.join("usr/bin/bash").is_file());
    ok(ours().arg("umount").arg(&mnt));
    assert!(mount_line(&mnt).is_none());
    let r = ok(ours().args(["mount", "--fuse", "--daemon"]).arg(example()).arg(&mnt));
    assert!(!stderr(&r).contains("kernel view"), "{}", stderr(&r));
    let line = mount_line(&mnt).expect("mounted");
    assert!(line.contains(" - fuse"), "{line}");
    ok(ours().arg("umount").arg(&mnt));
    drop(guard);
    // Not root: the FUSE view, and -v says why.
    let mnt = hostile_dir(&s.0, "user-mnt");
    let guard = Mounted::new(&mnt);
    let mut cmd = ours();
    cmd.args(["mount", "-v", "--daemon"]).arg(example()).arg(&mnt);
    let r = ok(&mut as_hostile(cmd));
    let said = stderr(&r);
    assert!(said.contains("the FUSE view, as no kernel view here: it needs root"), "{said}");
    let line = mount_line(&mnt).expect("mounted");
    assert!(line.contains(" - fuse"), "{line}");
    drop(guard);
}

/// Kernels before 6.12 mount the image through a loop device (forced here on a newer one):
/// the view is the same, the device is read-only with autoclear, and `supermin umount`
/// leaves no device attached to the image.
#[test]
fn the_image_through_a_loop_device() {
    let s = Scratch::new("kview-loop");
    let (built, mnt) = built_and_mountpoint(&s);
    let guard = Mounted::new(&mnt);
    let r = ok(ours().args(["mount", "--kernel", "-v"]).env("SUPERMIN_EROFS_LOOP", "1").arg(example()).arg(&mnt));
    let said = stderr(&r);
    let dev = said.split("the image through /dev/").nth(1).and_then(|r| r.split_whitespace().next());
    let dev = dev.unwrap_or_else(|| panic!("no loop device named: {said}")).to_string();
    let sys = Path::new("/sys/block").join(&dev);
    let backing = fs::read_to_string(sys.join("loop/backing_file")).unwrap();
    assert!(backing.contains("supermin-rs-cache-0/kernel-"), "{dev} backs {backing}");
    assert_eq!(fs::read_to_string(sys.join("loop/autoclear")).unwrap().trim(), "1");
    assert_eq!(fs::read_to_string(sys.join("ro")).unwrap().trim(), "1");
    assert_same_tree(&built, &mnt);
    ok(ours().arg("umount").arg(&mnt));
    assert!(mount_line(&mnt).is_none());
    let detached = (0..100).any(|_| {
        let gone = fs::read_to_string(sys.join("loop/backing_file")).is_err();
        std::thread::sleep(std::time::Duration::from_millis(20));
        gone
    });
    assert!(detached, "{dev} still attached after umount");
    drop(guard);
}
