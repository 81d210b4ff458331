//! The Debian package, as `scripts/deb.sh` (the README's command) builds it: what it holds;
//! its diversions in scratch dpkg roots (Debian's supermin installed before ours, after ours,
//! or never; a reinstall; remove and purge); then on this machine: installed, libguestfs runs
//! it as its supermin with no setting, removed, and Debian's supermin is back byte for byte.
//!
//! One test, in its own binary: while it runs, /usr/bin/supermin (every other test's oracle)
//! is ours for the time of one libguestfs-test-tool run. A guard puts Debian's back on any
//! failure; if the process is killed instead, `dpkg -P supermin-rs` does it.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use common::*;

const PKG: &str = "supermin-rs";
const VERSION: &str = env!("CARGO_PKG_VERSION");
const BIN: &str = "/usr/bin/supermin";
const MAN: &str = "/usr/share/man/man1/supermin.1.gz";
/// What the package diverts, and where Debian's file goes meanwhile.
const DIVERSIONS: [(&str, &str); 2] =
    [(BIN, "/usr/bin/supermin.distrib"), (MAN, "/usr/share/man/man1/supermin.distrib.1.gz")];

#[test]
fn the_package_takes_over_supermin_and_gives_it_back() {
    for tool in ["dpkg", "dpkg-deb", "dpkg-divert", "gzip", "libguestfs-test-tool"] {
        need(tool);
    }
    let t = Scratch::new("deb");
    let deb = build_package();
    let files = check_contents(&deb, &t);
    before_and_after_debians_supermin(&deb, &files, &t);
    without_debians_supermin(&deb, &files, &t);
    as_the_system_supermin(&deb, &files, &t);
}

/// Run the documented command; it prints the package's path last.
fn build_package() -> PathBuf {
    let started = Instant::now();
    let out = ok(Command::new("bash").arg("scripts/deb.sh").current_dir(env!("CARGO_MANIFEST_DIR")));
    let deb = PathBuf::from(stdout(&out).lines().last().expect("scripts/deb.sh printed nothing"));
    eprintln!("scripts/deb.sh took {:.1} s", started.elapsed().as_secs_f64());
    assert_eq!(deb.file_name().unwrap().to_string_lossy(), format!("{PKG}_{VERSION}_amd64.deb"));
    assert!(deb.is_file(), "{} is missing", deb.display());
    deb
}

/// The bytes the package installs at the diverted paths, and Debian's (or a stand-in's).
#[derive(Clone, PartialEq, Debug)]
struct Files {
    bin: Vec<u8>,
    man: Vec<u8>,
}

impl Files {
    /// What is at the diverted paths under `root` (`None` for both absent).
    fn at(root: &Path) -> Option<Files> {
        Files::pair(root, BIN, MAN)
    }

    /// What is at the names Debian's files are diverted to under `root`.
    fn diverted_at(root: &Path) -> Option<Files> {
        Files::pair(root, DIVERSIONS[0].1, DIVERSIONS[1].1)
    }

    fn pair(root: &Path, bin: &str, man: &str) -> Option<Files> {
        let read = |p: &str| fs::read(root.join(p.trim_start_matches('/'))).ok();
        match (read(bin), read(man)) {
            (Some(bin), Some(man)) => Some(Files { bin, man }),
            (None, None) => None,
            (b, m) => {
                panic!("under {}: {bin} present: {}, {man} present: {}", root.display(), b.is_some(), m.is_some())
            }
        }
    }
}

/// The listing, control fields and maintainer scripts, and every file against its source in
/// the tree; returns our binary and man page as packaged.
fn check_contents(deb: &Path, t: &Scratch) -> Files {
    let listing = stdout(&ok(Command::new("dpkg-deb").arg("-c").arg(deb)));
    let mut files = BTreeSet::new();
    for line in listing.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(f[1], "root/root", "{line}");
        if !f[0].starts_with('d') {
            files.insert(f[5].trim_start_matches('.').to_string());
        }
    }
    let mut expected: BTreeSet<String> = [
        BIN,
        "/usr/share/bash-completion/completions/supermin",
        "/usr/share/zsh/vendor-completions/_supermin",
        "/usr/share/fish/vendor_completions.d/supermin.fish",
        "/usr/share/doc/supermin-rs/copyright",
    ]
    .map(String::from)
    .into();
    for page in fs::read_dir(src("dist/man")).unwrap() {
        expected.insert(format!("/usr/share/man/man1/{}.gz", page.unwrap().file_name().to_string_lossy()));
    }
    assert_eq!(files, expected, "{listing}");
    let fields = stdout(&ok(Command::new("dpkg-deb").arg("-f").arg(deb).args(["Package", "Version", "Architecture"])));
    assert_eq!(fields, format!("Package: {PKG}\nVersion: {VERSION}\nArchitecture: amd64\n"));

    let x = t.path("extracted");
    ok(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&x));
    for (installed, source) in [
        ("usr/share/bash-completion/completions/supermin", "dist/completions/supermin.bash"),
        ("usr/share/zsh/vendor-completions/_supermin", "dist/completions/_supermin"),
        ("usr/share/fish/vendor_completions.d/supermin.fish", "dist/completions/supermin.fish"),
        ("usr/share/doc/supermin-rs/copyright", "dist/deb/copyright"),
    ] {
        assert_eq!(fs::read(x.join(installed)).unwrap(), fs::read(src(source)).unwrap(), "{installed}");
    }
    for page in fs::read_dir(src("dist/man")).unwrap() {
        let page = page.unwrap();
        let gz = x.join("usr/share/man/man1").join(format!("{}.gz", page.file_name().to_string_lossy()));
        assert_eq!(gunzip(&gz), fs::read(page.path()).unwrap(), "{}", gz.display());
    }
    let packaged = Files::at(&x).expect("no binary or man page in the package");
    assert_eq!(packaged.bin, fs::read(OURS).unwrap(), "the package must hold the binary cargo built");
    assert_eq!(version_of(&x.join("usr/bin/supermin")), format!("supermin 5.2.2 (supermin-rs {VERSION})"));

    let control = t.path("control");
    ok(Command::new("dpkg-deb").arg("-e").arg(deb).arg(&control));
    for script in ["preinst", "postrm"] {
        assert_eq!(fs::read(control.join(script)).unwrap(), fs::read(src(&format!("dist/deb/{script}"))).unwrap());
        assert_eq!(fs::metadata(control.join(script)).unwrap().permissions().mode() & 0o777, 0o755, "{script}");
    }
    packaged
}

fn src(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn gunzip(path: &Path) -> Vec<u8> {
    let mut data = Vec::new();
    flate2::read::GzDecoder::new(fs::File::open(path).unwrap()).read_to_end(&mut data).unwrap();
    data
}

fn version_of(bin: &Path) -> String {
    stdout(&ok(Command::new(bin).arg("--version"))).trim_end().to_string()
}

/// dpkg on this machine (`/`), or on a scratch root: an empty database, maintainer scripts run
/// without chroot (dpkg-divert follows the DPKG_ROOT dpkg gives them), dependencies ignored.
struct Dpkg {
    root: PathBuf,
    scratch: bool,
}

impl Dpkg {
    fn host() -> Dpkg {
        Dpkg { root: PathBuf::from("/"), scratch: false }
    }

    fn scratch(root: PathBuf) -> Dpkg {
        let admin = root.join("var/lib/dpkg");
        for d in ["info", "updates", "triggers"] {
            fs::create_dir_all(admin.join(d)).unwrap();
        }
        fs::write(admin.join("status"), "").unwrap();
        fs::write(admin.join("available"), "").unwrap();
        Dpkg { root, scratch: true }
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("dpkg");
        if self.scratch {
            cmd.arg(format!("--root={}", self.root.display())).args(["--force-script-chrootless", "--force-depends"]);
        }
        ok(cmd.args(args))
    }

    fn install(&self, deb: &Path) {
        self.run(&["-i", deb.to_str().unwrap()]);
    }

    /// The diversions of anything named supermin, sorted.
    fn diversions(&self) -> Vec<String> {
        let out = ok(Command::new("dpkg-divert").arg(format!("--root={}", self.root.display())).arg("--list"));
        let mut lines: Vec<String> =
            stdout(&out).lines().filter(|l| l.contains("supermin")).map(String::from).collect();
        lines.sort();
        lines
    }

    /// The package's status as dpkg-query reports it ("" when dpkg does not know it).
    fn status(&self, package: &str) -> String {
        let mut cmd = Command::new("dpkg-query");
        cmd.arg(format!("--root={}", self.root.display())).args(["-W", "-f", "${Status}", package]);
        stdout(&run(&mut cmd))
    }

    /// Ours is in place; Debian's files (`debian`, or none) wait under their diverted names.
    fn assert_taken_over(&self, ours: &Files, debian: Option<&Files>, when: &str) {
        let mut expected: Vec<String> =
            DIVERSIONS.iter().map(|(from, to)| format!("diversion of {from} to {to} by {PKG}")).collect();
        expected.sort();
        assert_eq!(self.diversions(), expected, "{when}: the diversions");
        assert!(Files::at(&self.root).as_ref() == Some(ours), "{when}: {BIN} and {MAN} are not ours");
        assert!(Files::diverted_at(&self.root).as_ref() == debian, "{when}: Debian's files are not set aside intact");
        assert_eq!(self.status(PKG), "install ok installed", "{when}");
    }

    /// No diversion is left and Debian's files (or none) are back in place.
    fn assert_given_back(&self, debian: Option<&Files>, when: &str) {
        assert_eq!(self.diversions(), Vec::<String>::new(), "{when}: diversions left");
        assert!(Files::at(&self.root).as_ref() == debian, "{when}: {BIN} and {MAN} are not Debian's");
        assert_eq!(Files::diverted_at(&self.root), None, "{when}: files left at the diverted names");
    }
}

/// A stand-in for Debian's supermin package, for the scratch roots.
fn stand_in(t: &Scratch) -> (PathBuf, Files) {
    let files = Files { bin: b"#!/bin/sh\necho stand-in for Debian's supermin\n".to_vec(), man: b"man".to_vec() };
    let tree = t.path("stand-in");
    fs::create_dir_all(tree.join("DEBIAN")).unwrap();
    let control = "Package: supermin\nVersion: 5.2.2-1\nArchitecture: amd64\nMaintainer: x <x@example.org>\n\
                   Description: stand-in\n";
    fs::write(tree.join("DEBIAN/control"), control).unwrap();
    for (path, bytes) in [(BIN, &files.bin), (MAN, &files.man)] {
        let p = tree.join(path.trim_start_matches('/'));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, bytes).unwrap();
    }
    let deb = t.path("supermin-stand-in.deb");
    ok(Command::new("dpkg-deb").args(["--build", "--root-owner-group"]).arg(&tree).arg(&deb));
    (deb, files)
}

/// Debian's supermin installed first: diverted, kept through a reinstall, given back by
/// remove and by purge.
fn before_and_after_debians_supermin(deb: &Path, ours: &Files, t: &Scratch) {
    let host_before = Dpkg::host().diversions();
    let (debian_deb, debian) = stand_in(t);
    let d = Dpkg::scratch(t.path("root-with-debian"));
    d.install(&debian_deb);
    d.install(deb);
    d.assert_taken_over(ours, Some(&debian), "installed over Debian's");
    d.install(deb);
    d.assert_taken_over(ours, Some(&debian), "reinstalled");
    d.run(&["-r", PKG]);
    d.assert_given_back(Some(&debian), "removed");
    d.install(deb);
    d.assert_taken_over(ours, Some(&debian), "installed again");
    d.run(&["-P", PKG]);
    d.assert_given_back(Some(&debian), "purged");
    assert_eq!(d.status(PKG), "", "purged: dpkg still knows {PKG}");
    assert_eq!(Dpkg::host().diversions(), host_before, "a scratch root's dpkg-divert touched this machine's");
}

/// No Debian supermin: ours installs and goes without a trace; Debian's installed while ours
/// is lands aside, and is in place once ours is purged.
fn without_debians_supermin(deb: &Path, ours: &Files, t: &Scratch) {
    let (debian_deb, debian) = stand_in(t);
    let d = Dpkg::scratch(t.path("root-without-debian"));
    d.install(deb);
    d.assert_taken_over(ours, None, "installed alone");
    d.run(&["-r", PKG]);
    d.assert_given_back(None, "removed, alone");
    d.install(deb);
    d.install(&debian_deb);
    d.assert_taken_over(ours, Some(&debian), "Debian's installed after ours");
    d.run(&["-P", PKG]);
    d.assert_given_back(Some(&debian), "purged after Debian's came");
}

/// On this machine: install, libguestfs-test-tool with no supermin setting, remove.
fn as_the_system_supermin(deb: &Path, ours: &Files, t: &Scratch) {
    let host = Dpkg::host();
    assert_eq!(host.diversions(), Vec::<String>::new(), "supermin is already diverted here: not touching it");
    assert_eq!(host.status(PKG), "", "{PKG} is already known to dpkg here: run `dpkg -P {PKG}` first");
    let debian = Files::at(Path::new("/"))
        .unwrap_or_else(|| panic!("{BIN} is missing: run `scripts/install-deps.sh` (it installs Debian's supermin)"));
    let debian_sha = sha256(Path::new(BIN));
    let guard = HostGuard { debian: debian.clone() };

    let started = Instant::now();
    host.install(deb);
    let installed = started.elapsed();
    host.assert_taken_over(ours, Some(&debian), "installed on this machine");
    assert!(version_of(Path::new(BIN)).contains("(supermin-rs "));
    let cache = t.path("guestfs-cache");
    fs::create_dir_all(&cache).unwrap();
    let out = run(Command::new("timeout")
        .args(["900", "libguestfs-test-tool"])
        .env("LIBGUESTFS_BACKEND", "direct")
        .env("LIBGUESTFS_BACKEND_SETTINGS", "force_tcg")
        .env("LIBGUESTFS_CACHEDIR", &cache)
        .env_remove("LIBGUESTFS_PATH")
        .env_remove("SUPERMIN"));
    let log = stdout(&out) + &stderr(&out);
    let tested = started.elapsed();
    host.run(&["-r", PKG]);
    let window = started.elapsed();
    eprintln!(
        "{BIN} was ours for {:.1} s: dpkg -i {:.1} s, libguestfs-test-tool {:.1} s, dpkg -r {:.1} s",
        window.as_secs_f64(),
        installed.as_secs_f64(),
        (tested - installed).as_secs_f64(),
        (window - tested).as_secs_f64()
    );

    assert!(out.status.success() && log.contains("TEST FINISHED OK"), "libguestfs-test-tool failed:\n{}", tail(&log));
    // libguestfs ran /usr/bin/supermin, which was ours: it built the cached appliance (our
    // fingerprint) and the appliance booted our mini initrd.
    assert!(log.contains(&format!("command: run: {BIN}\n")), "libguestfs did not run {BIN}:\n{}", tail(&log));
    assert!(built_by_us(&cache), "the appliance in {} was not built by us", cache.display());
    assert!(
        log.contains(&format!("mini initrd starting up: supermin-rs {VERSION}")),
        "not our initrd:\n{}",
        tail(&log)
    );
    host.assert_given_back(Some(&debian), "removed from this machine");
    assert_eq!(sha256(Path::new(BIN)), debian_sha);
    assert!(!version_of(Path::new(BIN)).contains("supermin-rs"));
    let verify = ok(Command::new("dpkg").args(["-V", "supermin"]));
    assert_eq!(stdout(&verify), "", "dpkg -V supermin");
    host.run(&["-P", PKG]);
    assert_eq!(host.status(PKG), "");
    drop(guard);
}

/// Puts Debian's supermin back however the test ends: purges the package, and if a diversion
/// or other bytes are still there (a failed maintainer script), undoes it by hand. Never
/// panics (a second panic while unwinding would abort before the rest is put back).
struct HostGuard {
    debian: Files,
}

impl Drop for HostGuard {
    fn drop(&mut self) {
        let known = || Command::new("dpkg-query").args(["-W", PKG]).output().is_ok_and(|o| o.status.success());
        if known() {
            eprintln!("purging {PKG}");
            let _ = Command::new("dpkg").args(["--purge", PKG]).status();
            if known() {
                eprintln!("!!! dpkg could not purge {PKG}: Debian's files are put back below, then fix dpkg by hand");
            }
        }
        let listed = Command::new("dpkg-divert").arg("--list").output().map(|o| stdout(&o)).unwrap_or_default();
        let [(bin, bin_aside), (man, man_aside)] = DIVERSIONS;
        for (path, aside, bytes, mode) in
            [(bin, bin_aside, &self.debian.bin, 0o755), (man, man_aside, &self.debian.man, 0o644)]
        {
            if listed.contains(&format!("diversion of {path} to {aside} by {PKG}")) {
                eprintln!("removing the diversion of {path} by hand");
                let args = ["--package", PKG, "--remove", "--no-rename", "--divert", aside, path];
                let _ = Command::new("dpkg-divert").args(args).status();
                let _ = fs::remove_file(aside);
            }
            if fs::read(path).ok().as_ref() != Some(bytes) {
                eprintln!("putting Debian's {path} back by hand");
                let tmp = format!("{path}.deb-test-restore");
                let put = fs::write(&tmp, bytes)
                    .and_then(|()| fs::set_permissions(&tmp, fs::Permissions::from_mode(mode)))
                    .and_then(|()| fs::rename(&tmp, path));
                if let Err(e) = put {
                    eprintln!("!!! cannot restore {path}: {e}; run `apt reinstall supermin`");
                }
            }
        }
    }
}
