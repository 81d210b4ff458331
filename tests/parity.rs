//! Parity with the real supermin 5 (`/usr/bin/supermin`, the oracle): the same inputs built by
//! both must give the same tree, entry for entry. The only allowed differences are the files of
//! packages the original loses through its dependency handling (first alternative only, no
//! virtual packages, `:any` not understood) and that we resolve; each is listed below. With
//! `--deps=supermin` there is no difference at all.

mod common;

use std::path::Path;

use common::*;

/// Packages we add to `bash coreutils` (base-files Pre-Depends `awk`, virtual: mawk provides it).
const EXTRA_BASH: &[&str] = &["mawk"];

/// Packages we add to libguestfs's appliance, each with the dependency the original drops:
/// awk (virtual → mawk), lsb-base (virtual, provided by sysvinit-utils), `python3:any` of xfsprogs and `perl:any` of
/// sleuthkit and libdate-manip-perl (qualifier), and their own dependencies. (We also add
/// usr-is-merged, for `usrmerge | usr-is-merged`, and libpython3-stdlib, but all their files
/// are documentation, which libguestfs's excludefiles drop; and media-types, whose only file is
/// a config file, which comes from the base image.)
const EXTRA_LIBGUESTFS: &[&str] = &[
    "mawk",
    "sysvinit-utils",
    "python3",
    "python3-minimal",
    "python3.11",
    "python3.11-minimal",
    "libpython3.11-minimal",
    "libpython3.11-stdlib",
    "libnsl2",
    "perl",
    "perl-base",
    "perl-modules-5.36",
    "libperl5.36",
    "libgdbm6",
    "libgdbm-compat4",
];

/// The trees are the same but for the files of `extra_packages`, each of which is added.
fn assert_same_tree_but_packages(expected: &Path, got: &Path, extra_packages: &[&str]) {
    let diff = compare(expected, got);
    let allowed = owned_by(extra_packages);
    // Without extra packages, nothing is allowed to be extra.
    diff.assert_same_but("ours against the original, beyond the expected extra packages", |p| allowed.contains(p));
    // The listed packages really are added (the list is not a blanket excuse).
    for pkg in extra_packages {
        let theirs = owned_by(&[pkg]);
        assert!(diff.extra.iter().any(|p| theirs.contains(p)), "expected files of {pkg} to be added");
    }
}

/// Tests that read host config files through `--prepare` and the one that modifies one must
/// not overlap (tests in one binary run in parallel).
static HOST_CONFIG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn check_prepare(extra_args: &[&str]) {
    let _serial = HOST_CONFIG.lock().unwrap_or_else(|e| e.into_inner());
    let t = Scratch::new(&format!("prepare{}", extra_args.len()));
    let (theirs, ours_dir) = (t.path("theirs"), t.path("ours"));
    ok(oracle().arg("--prepare").args(extra_args).args(["bash", "coreutils", "-o"]).arg(&theirs));
    ok(ours().arg("--prepare").args(extra_args).args(["bash", "coreutils", "-o"]).arg(&ours_dir));
    assert_eq!(std::fs::read(theirs.join("packages")).unwrap(), std::fs::read(ours_dir.join("packages")).unwrap());
    let (a, b) = (tar_members(&theirs.join("base.tar.gz")), tar_members(&ours_dir.join("base.tar.gz")));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>(), "base.tar.gz members");
    for (name, theirs) in &a {
        let Member { mode, uid, gid, data: d } = &b[name];
        assert_eq!(theirs.mode, *mode, "{name}: mode differs");
        assert_eq!((*uid, *gid), (0, 0), "{name}: owned by root");
        if theirs.data != *d {
            // The original downloads the archive's *candidate* version, which may be newer than
            // the installed one; ours must then be the installed version's pristine file, as
            // dpkg recorded it.
            let path = name.trim_start_matches('.');
            assert_eq!(Some(md5(d)), recorded_md5(path), "{name}: neither the original's content nor dpkg's record");
        }
    }
}

fn md5(data: &[u8]) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("md5sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_string()
}

/// The MD5 dpkg recorded for a conffile (`dpkg-query -W -f='${Conffiles}'`) or another file
/// (`md5sums` via `dpkg-query --control-show`).
fn recorded_md5(path: &str) -> Option<String> {
    let owner = String::from_utf8(ok(std::process::Command::new("dpkg-query").args(["-S", path])).stdout).unwrap();
    let pkg = owner.split(':').next()?.trim().to_string();
    let conf =
        String::from_utf8(ok(std::process::Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", &pkg])).stdout)
            .unwrap();
    for line in conf.lines() {
        let mut w = line.split_whitespace();
        if w.next() == Some(path) {
            return w.next().map(str::to_string);
        }
    }
    let sums = run(std::process::Command::new("dpkg-query").args(["--control-show", &pkg, "md5sums"]));
    String::from_utf8_lossy(&sums.stdout).lines().find_map(|l| {
        let (sum, file) = l.split_once("  ")?;
        (format!("/{file}") == path).then(|| sum.to_string())
    })
}

#[test]
fn prepare_use_installed_matches_original() {
    check_prepare(&["--use-installed"]);
}

/// Without --use-installed the original downloads every package with config files; we take
/// unmodified host copies instead. The pristine bytes must be the same.
#[test]
fn prepare_pristine_matches_original() {
    check_prepare(&[]);
}

fn check_build(input: &Path, name: &str, extra: &[&str]) {
    let t = Scratch::new(name);
    ok(oracle().args(["--build", "-f", "chroot"]).arg(input).arg("-o").arg(t.path("theirs")));
    ok(ours().args(["--build", "-f", "chroot"]).arg(input).arg("-o").arg(t.path("ours")));
    assert_same_tree_but_packages(&t.path("theirs"), &t.path("ours"), extra);
    // `--deps=supermin` takes exactly the original's closure: no difference at all.
    ok(ours().args(["--build", "--deps", "supermin", "-f", "chroot"]).arg(input).arg("-o").arg(t.path("closure")));
    assert_same_tree_but_packages(&t.path("theirs"), &t.path("closure"), &[]);
}

#[test]
fn build_chroot_bash_coreutils_matches_original() {
    let _serial = HOST_CONFIG.lock().unwrap_or_else(|e| e.into_inner());
    let t = Scratch::new("prep-bash");
    let d = t.path("supermin.d");
    ok(oracle().args(["--prepare", "--use-installed", "bash", "coreutils", "-o"]).arg(&d));
    check_build(&d, "bash", EXTRA_BASH);
}

#[test]
fn build_chroot_libguestfs_appliance_matches_original() {
    check_build(Path::new(LIBGUESTFS_APPLIANCE), "libguestfs", EXTRA_LIBGUESTFS);
}

/// A config file modified on the host: `--prepare` must put the pristine file (dpkg's recorded
/// checksum) into base.tar.gz, fetching the package; `--use-installed` takes the host copy.
#[test]
fn prepare_fetches_pristine_copy_of_a_modified_config() {
    let _serial = HOST_CONFIG.lock().unwrap_or_else(|e| e.into_inner());
    let restore = Restore::new(Path::new("/etc/bash.bashrc"));
    let mut changed = restore.original().to_vec();
    changed.extend_from_slice(b"# changed by the supermin-rs tests\n");
    std::fs::write("/etc/bash.bashrc", &changed).unwrap();

    let t = Scratch::new("prepare-modified");
    ok(ours().args(["--prepare", "bash", "-o"]).arg(t.path("pristine")));
    ok(ours().args(["--prepare", "--use-installed", "bash", "-o"]).arg(t.path("installed")));
    let pristine = tar_members(&t.path("pristine/base.tar.gz"));
    let installed = tar_members(&t.path("installed/base.tar.gz"));
    assert_eq!(Some(md5(&pristine["./etc/bash.bashrc"].data)), recorded_md5("/etc/bash.bashrc"));
    assert_eq!(installed["./etc/bash.bashrc"].data, changed);
}
