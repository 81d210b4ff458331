//! The rpm and pacman backends and `--sysroot`, held against the real tools: packages built
//! with `rpmbuild` and `makepkg`, installed into scratch roots with `rpm --root` and
//! `pacman --root`, and appliances built from those roots compared with what the package
//! managers themselves record (`rpm -q --qf '[%{FILENAMES} …]'`, `pacman -Ql`). A Debian root
//! made by `mmdebstrap` must give an appliance in which `bash` runs.
//!
//! Every tool is required: a missing one fails the test with a message to run
//! scripts/install-deps.sh (common::need), never a silent skip.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

/// What `chroot`'s writer does to an absolute link target (the original's quirk).
fn chroot_target(path: &str, target: &str) -> String {
    if target.starts_with('/') {
        format!("{}{}", "../".repeat(path.matches('/').count() - 1), target)
    } else {
        target.to_string()
    }
}

// ------------------------------------------------------------------------------------------
// rpm

struct Spec<'a> {
    name: &'a str,
    epoch: Option<u32>,
    version: &'a str,
    arch: &'a str,
    provides: &'a [&'a str],
    requires: &'a [&'a str],
    install: &'a str,
    files: &'a str,
}

impl<'a> Spec<'a> {
    fn simple(name: &'a str, version: &'a str, install: &'a str, files: &'a str) -> Spec<'a> {
        Spec { name, epoch: None, version, arch: "noarch", provides: &[], requires: &[], install, files }
    }

    fn text(&self) -> String {
        let mut s = String::from(
            "%global debug_package %{nil}\n%define __os_install_post %{nil}\n%define _build_id_links none\n",
        );
        s += &format!("Name: {}\nVersion: {}\nRelease: 1\nSummary: supermin-rs test\nLicense: MIT\nBuildArch: {}\nAutoReqProv: no\n", self.name, self.version, self.arch);
        if let Some(e) = self.epoch {
            s += &format!("Epoch: {e}\n");
        }
        for p in self.provides {
            s += &format!("Provides: {p}\n");
        }
        for r in self.requires {
            s += &format!("Requires: {r}\n");
        }
        s += &format!(
            "%description\ntest\n%install\nmkdir -p %{{buildroot}}\ncd %{{buildroot}}\n{}\n%files\n{}\n",
            self.install, self.files
        );
        s
    }
}

/// Build each spec with rpmbuild; returns the .rpm files in spec order.
fn rpmbuild(top: &Path, specs: &[Spec]) -> Vec<PathBuf> {
    need("rpmbuild");
    fs::create_dir_all(top).unwrap();
    let mut out = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let file = top.join(format!("{}-{i}.spec", spec.name));
        fs::write(&file, spec.text()).unwrap();
        let dest = top.join(format!("rpms-{i}"));
        ok(Command::new("rpmbuild")
            .arg("--define")
            .arg(format!("_topdir {}", top.join("build").display()))
            .arg("--define")
            .arg(format!("_rpmdir {}", dest.display()))
            .arg("--quiet")
            .arg("-bb")
            .arg(&file));
        let rpm = fs::read_dir(dest.join(spec.arch)).unwrap().next().unwrap().unwrap().path();
        out.push(rpm);
    }
    out
}

/// A scratch Fedora-like root: os-release, passwd/group (rpm looks owners up in the root),
/// and `/lib64` as an *absolute* symlink, which must resolve inside the root.
fn rpm_root(root: &Path) {
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::create_dir_all(root.join("usr/lib64")).unwrap();
    fs::write(root.join("etc/os-release"), "NAME=Fedora\nID=fedora\nVERSION_ID=40\n").unwrap();
    fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\ndaemon:x:2:2:daemon:/:/sbin/nologin\n").unwrap();
    fs::write(root.join("etc/group"), "root:x:0:\ndaemon:x:2:\n").unwrap();
    std::os::unix::fs::symlink("/usr/lib64", root.join("lib64")).unwrap();
}

fn rpm_cmd(root: &Path) -> Command {
    need("rpm");
    let mut c = Command::new("rpm");
    c.arg("--root").arg(root).arg("--dbpath").arg("/usr/lib/sysimage/rpm").arg("--define").arg("_db_backend sqlite");
    c
}

fn rpm_install(root: &Path, rpm: &Path) {
    ok(rpm_cmd(root).args(["-i", "--nodeps", "--ignorearch"]).arg(rpm));
}

/// One file as rpm recorded it.
#[derive(Debug)]
struct RpmFile {
    mode: u32,
    user: String,
    size: u64,
    mtime: i64,
    link: String,
    flags: String,
    digest: String,
}

/// rpm's own record of the files of the installed package `nevra`.
fn rpm_files(root: &Path, nevra: &str) -> BTreeMap<String, RpmFile> {
    let out = ok(rpm_cmd(root).args([
        "-q",
        "--qf",
        "[%{FILENAMES}\\t%{FILEMODES}\\t%{FILEUSERNAME}\\t%{FILESIZES}\\t%{FILEMTIMES}\\t%{FILELINKTOS}\\t%{FILEFLAGS:fflags}\\t%{FILEDIGESTS}\\n]",
        nevra,
    ]));
    stdout(&out)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 8, "rpm -q output: {l}");
            (
                f[0].to_string(),
                RpmFile {
                    mode: f[1].parse().unwrap(),
                    user: f[2].to_string(),
                    size: f[3].parse().unwrap(),
                    mtime: f[4].parse().unwrap(),
                    link: f[5].to_string(),
                    flags: f[6].to_string(),
                    digest: f[7].to_string(),
                },
            )
        })
        .collect()
}

fn nevra_of(root: &Path, name: &str) -> Vec<String> {
    let out =
        ok(rpm_cmd(root).args(["-q", "--qf", "%{NAME}-%|EPOCH?{%{EPOCH}:}|%{VERSION}-%{RELEASE}.%{ARCH}\\n", name]));
    stdout(&out).lines().map(str::to_string).collect()
}

const ALPHA_INSTALL: &str = r#"
mkdir -p usr/bin etc/alpha.d usr/share/alpha lib64 var/log var/lib/alpha
printf '#!/bin/sh\necho alpha\n' > usr/bin/alpha; chmod 0755 usr/bin/alpha
ln -s alpha usr/bin/alpha-link
ln -s /usr/bin/alpha usr/bin/alpha-abs
echo 'pristine alpha.conf' > etc/alpha.conf
echo plain > etc/alpha.d/plain
echo defaults > usr/share/alpha/defaults
echo secret > usr/share/alpha/secret
echo 'lib inside the root' > lib64/libalpha.so
touch var/log/alpha.log var/lib/alpha/state
ln -s /etc/passwd etc/alpha-link.conf
"#;

const ALPHA_FILES: &str = r#"
/usr/bin/alpha
/usr/bin/alpha-link
/usr/bin/alpha-abs
%config(noreplace) /etc/alpha.conf
%config /etc/alpha-link.conf
%dir /etc/alpha.d
/etc/alpha.d/plain
%config /usr/share/alpha/defaults
%dir %attr(0750,daemon,daemon) /usr/share/alpha
%attr(0640,daemon,daemon) /usr/share/alpha/secret
/lib64/libalpha.so
%ghost /var/log/alpha.log
%ghost /var/lib/alpha/state
"#;

fn marker(name: &str) -> (String, String) {
    (format!("mkdir -p usr/share/{name}\necho {name} > usr/share/{name}/marker"), format!("/usr/share/{name}/marker"))
}

/// The rpm fixture: packages exercising every rule, installed into `root`. Returns the
/// .rpm files by name (the first of each name).
fn rpm_fixture(t: &Scratch, root: &Path) -> BTreeMap<String, PathBuf> {
    rpm_root(root);
    let m: BTreeMap<&str, (String, String)> =
        ["ba", "bz", "abeta", "eta", "zeta", "d15", "d20", "d09", "epsn", "epsx", "lambda", "mu", "nu"]
            .iter()
            .map(|n| (*n, marker(n)))
            .collect();
    let gamma_install = "mkdir -p usr/lib/gamma\necho data > usr/lib/gamma/data".to_string();
    let theta_install = "mkdir -p usr/bin\necho theta > usr/bin/theta".to_string();
    let specs = vec![
        Spec {
            name: "alpha",
            epoch: Some(1),
            version: "1.0",
            arch: "noarch",
            provides: &[],
            // A capability with three providers, a file path owned (not provided) by gamma,
            // and rpmlib() (never a package).
            requires: &["cap-beta", "/usr/lib/gamma/data", "rpmlib(CompressedFileNames) <= 3.0.4-1"],
            install: ALPHA_INSTALL,
            files: ALPHA_FILES,
        },
        Spec { provides: &["cap-beta"], ..Spec::simple("ba", "1.0", &m["ba"].0, &m["ba"].1) },
        Spec { provides: &["cap-beta"], ..Spec::simple("bz", "1.0", &m["bz"].0, &m["bz"].1) },
        // Sorts first, but is longer: the shortest name wins, then byte order (ba before bz).
        Spec { provides: &["cap-beta"], ..Spec::simple("abeta", "1.0", &m["abeta"].0, &m["abeta"].1) },
        Spec { requires: &["delta >= 1"], ..Spec::simple("gamma", "1.0", &gamma_install, "/usr/lib/gamma") },
        // Three installed builds of delta: the epoch decides (1:1.5 is newer than 2.0 and 0:9).
        // (Installed oldest first: `rpm -i` refuses an older build next to a newer one.)
        Spec { requires: &["zeta"], ..Spec::simple("delta", "2.0", &m["d20"].0, &m["d20"].1) },
        Spec { epoch: Some(0), requires: &["zeta"], ..Spec::simple("delta", "9", &m["d09"].0, &m["d09"].1) },
        Spec { epoch: Some(1), requires: &["eps"], ..Spec::simple("delta", "1.5", &m["d15"].0, &m["d15"].1) },
        // noarch beats the machine's architecture, even when older.
        Spec::simple("eps", "1.0", &m["epsn"].0, &m["epsn"].1),
        Spec { arch: "x86_64", requires: &["zeta"], ..Spec::simple("eps", "3.0", &m["epsx"].0, &m["epsx"].1) },
        Spec { provides: &["cap-eta = 2"], ..Spec::simple("eta", "1.0", &m["eta"].0, &m["eta"].1) },
        // Boolean dependencies: `or` takes the installed side, `if` follows what is installed.
        Spec {
            requires: &["(kappa or lambda >= 1)", "(mu if alpha)", "(nu if notinstalled)"],
            ..Spec::simple("theta", "1.0", &theta_install, "/usr/bin/theta")
        },
        Spec::simple("lambda", "1.0", &m["lambda"].0, &m["lambda"].1),
        Spec::simple("mu", "1.0", &m["mu"].0, &m["mu"].1),
        Spec::simple("nu", "1.0", &m["nu"].0, &m["nu"].1),
        Spec { provides: &["cap-beta"], ..Spec::simple("zeta", "1.0", &m["zeta"].0, &m["zeta"].1) },
    ];
    let rpms = rpmbuild(&t.path("rpmbuild"), &specs);
    let mut by_name = BTreeMap::new();
    for (spec, rpm) in specs.iter().zip(&rpms) {
        rpm_install(root, rpm);
        by_name.entry(spec.name.to_string()).or_insert_with(|| rpm.clone());
    }
    // A %ghost file that exists (made at run time) belongs in the appliance; an absent one not.
    fs::create_dir_all(root.join("var/lib/alpha")).unwrap();
    fs::write(root.join("var/lib/alpha/state"), "running\n").unwrap();
    by_name
}

/// The packages the fixture's `alpha eta-capability /usr/bin/theta` must resolve to.
const RPM_CLOSURE: &[&str] = &[
    "alpha-1:1.0-1.noarch",
    "ba-1.0-1.noarch",
    "delta-1:1.5-1.noarch",
    "eps-1.0-1.noarch",
    "eta-1.0-1.noarch",
    "gamma-1.0-1.noarch",
    "lambda-1.0-1.noarch",
    "mu-1.0-1.noarch",
    "theta-1.0-1.noarch",
];

/// Where a path of the root appears in the appliance's tree: `/lib64` is a symlink there too,
/// so what is under it is stored under `/usr/lib64`.
fn in_appliance(path: &str) -> String {
    match path.strip_prefix("/lib64/") {
        Some(rest) => format!("/usr/lib64/{rest}"),
        None => path.to_string(),
    }
}

fn uid_of(user: &str) -> u32 {
    match user {
        "root" => 0,
        "daemon" => 2,
        other => panic!("unexpected owner {other}"),
    }
}

/// Build `d` from the sysroot `root` into `out` (a chroot, with its package list), and mount
/// the lazy view of the same at `mp`, which must show the same tree. Returns the view.
fn build_and_view(root: &Path, d: &Path, out: &Path, mp: &Path) -> Mounted {
    ok(ours()
        .args(["--build", "-f", "chroot", "--include-packagelist", "--sysroot"])
        .arg(root)
        .arg(d)
        .arg("-o")
        .arg(out));
    let view = mount(d, mp, &["--include-packagelist", "--sysroot", root.to_str().unwrap()]);
    assert_same_tree(out, mp);
    view
}

/// What rpm's records say the appliance of [`RPM_CLOSURE`] holds: every file rpm records for
/// the closure, minus %config, minus absent %ghost, with every ancestor directory;
/// /usr/lib64 because /lib64 links to it; the hostfiles. Paths without a record (`None`)
/// are compared with the root.
fn rpm_expected_tree(root: &Path) -> BTreeMap<String, Option<RpmFile>> {
    let mut expected: BTreeMap<String, Option<RpmFile>> = BTreeMap::new();
    for nevra in RPM_CLOSURE {
        for (path, f) in rpm_files(root, nevra) {
            let ghost_absent = f.flags.contains('g') && fs::symlink_metadata(root.join(&path[1..])).is_err();
            if f.flags.contains('c') || ghost_absent {
                continue;
            }
            for a in ancestors(&path) {
                expected.entry(a).or_insert(None);
            }
            // A present %ghost is whatever the system made of it: compared with the root.
            let record = if f.flags.contains('g') { None } else { Some(f) };
            expected.insert(in_appliance(&path), record);
        }
    }
    for extra in ["/usr/lib64", "/usr/lib64/libhostfile.so", "/etc/os-release", "/etc"] {
        expected.entry(extra.to_string()).or_insert(None);
    }
    assert!(expected.contains_key("/var/lib/alpha/state") && !expected.contains_key("/var/log/alpha.log"));
    assert!(!expected.contains_key("/etc/alpha.conf") && expected.contains_key("/etc/alpha.d/plain"));
    expected
}

/// The appliance entry `e` at `path` of the tree `out` as rpm recorded it, or without a
/// record (`None`) as it is in the root (the two hostfiles: as put there).
fn assert_as_recorded(out: &Path, root: &Path, path: &str, e: &Entry, record: Option<&RpmFile>) {
    match record {
        Some(f) => {
            assert_eq!(e.mode, f.mode & 0o7777, "{path}: mode");
            assert_eq!(e.uid, uid_of(&f.user), "{path}: owner");
            match f.mode & 0o170000 {
                0o100000 => {
                    assert_eq!(e.kind, 'f', "{path}");
                    assert_eq!((e.size, e.mtime), (f.size, f.mtime), "{path}: size, mtime");
                    assert_eq!(sha256(&out.join(&path[1..])), f.digest, "{path}: content");
                }
                0o120000 => {
                    assert_eq!(e.kind, 'l', "{path}");
                    assert_eq!(e.target.as_deref(), Some(Path::new(&chroot_target(path, &f.link))), "{path}: target");
                }
                0o040000 => assert_eq!(e.kind, 'd', "{path}"),
                m => panic!("{path}: unexpected type {m:o}"),
            }
        }
        None if path == "/usr/lib64/libhostfile.so" => {
            assert_eq!(fs::read_to_string(out.join("usr/lib64/libhostfile.so")).unwrap(), "hostfile inside the root\n")
        }
        None if path == "/etc/os-release" => {
            assert!(
                fs::read_to_string(out.join("etc/os-release")).unwrap().contains("ID=fedora"),
                "the build host's os-release was used"
            )
        }
        None => {
            let m = fs::symlink_metadata(root.join(&path[1..])).unwrap();
            assert_eq!((e.mode, e.uid, e.gid), (m.mode() & 0o7777, m.uid(), m.gid()), "{path}: metadata");
            if m.is_file() {
                assert_eq!(fs::read(out.join(&path[1..])).unwrap(), fs::read(root.join(&path[1..])).unwrap(), "{path}");
            }
        }
    }
}

#[test]
fn rpm_sysroot_build_matches_rpms_records() {
    let t = Scratch::new("rpm-build");
    let root = t.path("root");
    rpm_fixture(&t, &root);
    // The fixture is what we think it is: rpm itself sees three deltas and two eps.
    assert_eq!(nevra_of(&root, "delta").len(), 3);
    assert_eq!(nevra_of(&root, "eps").len(), 2);
    assert!(fs::metadata(root.join("usr/share/alpha/secret")).unwrap().uid() == 2, "rpm did not apply %attr");
    assert!(root.join("usr/lib64/libalpha.so").is_file(), "rpm did not install through /lib64");
    // Something only the root has, reached through its absolute /lib64 link by a hostfile.
    fs::write(root.join("usr/lib64/libhostfile.so"), "hostfile inside the root\n").unwrap();

    let d = t.path("supermin.d");
    fs::create_dir_all(&d).unwrap();
    // A name, a capability with one provider, a file path; a capability with several
    // providers and a missing package are ignored at the top level, as in the original.
    fs::write(d.join("packages"), "alpha\ncap-eta\n/usr/bin/theta\ncap-beta\nnosuchpackage\n").unwrap();
    fs::write(d.join("hostfiles"), "/lib64/libhostfile*.so\n/etc/os-release\n").unwrap();
    let out = t.path("out");
    // The lazy view of the same sysroot shows the same tree, and materializing that live
    // view (which records its sysroot) builds it again.
    {
        let mp = t.path("mnt");
        let _view = build_and_view(&root, &d, &out, &mp);
        let again = t.path("materialized");
        ok(ours().args(["materialize", "-f", "chroot"]).arg(&mp).arg("-o").arg(&again));
        assert_same_tree(&out, &again);
    }

    let packagelist = fs::read_to_string(out.join("packagelist")).unwrap();
    assert_eq!(packagelist.lines().collect::<Vec<_>>(), RPM_CLOSURE);
    // Each chosen build is one rpm knows about, spelled as rpm spells it.
    for nevra in RPM_CLOSURE {
        let name = nevra.split('-').next().unwrap();
        assert!(nevra_of(&root, name).iter().any(|n| n == nevra), "{nevra}");
    }

    let expected = rpm_expected_tree(&root);
    let got = dump(&out);
    let got_paths: BTreeSet<&String> = got.keys().filter(|p| *p != "/" && *p != "/packagelist").collect();
    let want_paths: BTreeSet<&String> = expected.keys().collect();
    assert_eq!(got_paths, want_paths, "appliance paths differ from rpm's records");
    for (path, record) in &expected {
        assert_as_recorded(&out, &root, path, &got[path], record.as_ref());
    }
    // /lib64 is the root's absolute link, kept as such, and resolves inside the appliance.
    assert_eq!(fs::read_link(out.join("lib64")).unwrap(), Path::new("/usr/lib64"));
    assert_eq!(fs::read_to_string(out.join("usr/lib64/libalpha.so")).unwrap(), "lib inside the root\n");
}

#[test]
fn rpm_prepare_config_files() {
    let t = Scratch::new("rpm-prepare");
    let root = t.path("root");
    let rpms = rpm_fixture(&t, &root);
    // rpm's own list of %config files of the closure is the oracle; the base image holds the
    // regular files among them (a %config symlink, here to /etc/passwd, is not followed: that
    // would read the build host's file).
    let mut configs = BTreeSet::new();
    for nevra in RPM_CLOSURE {
        configs.extend(
            rpm_files(&root, nevra)
                .into_iter()
                .filter(|(_, f)| f.flags.contains('c') && f.mode & 0o170000 == 0o100000)
                .map(|(p, _)| p),
        );
    }
    assert_eq!(
        configs.iter().map(String::as_str).collect::<Vec<_>>(),
        ["/etc/alpha.conf", "/usr/share/alpha/defaults"]
    );
    assert!(fs::symlink_metadata(root.join("etc/alpha-link.conf")).unwrap().file_type().is_symlink());

    let members = |dir: &Path| base_image_text(&dir.join("base.tar.gz"));
    let prepare = |args: &[&std::ffi::OsStr], out: &Path| {
        run(ours().arg("--prepare").arg("--sysroot").arg(&root).args(args).arg("-o").arg(out))
    };

    // Unmodified: the host copies are pristine (their digests match rpm's).
    let p1 = t.path("p1");
    let r = prepare(&["alpha".as_ref()], &p1);
    assert!(r.status.success(), "{}", stderr(&r));
    assert_eq!(fs::read_to_string(p1.join("packages")).unwrap(), "alpha\n");
    let m = members(&p1);
    assert_eq!(m.keys().cloned().collect::<BTreeSet<_>>(), configs);
    assert_eq!(m["/etc/alpha.conf"], "pristine alpha.conf\n");

    // Modified on the host: --use-installed takes it, a plain prepare needs the package.
    fs::write(root.join("etc/alpha.conf"), "edited by the admin\n").unwrap();
    let p2 = t.path("p2");
    ok(ours().args(["--prepare", "--use-installed", "--sysroot"]).arg(&root).arg("alpha").arg("-o").arg(&p2));
    assert_eq!(members(&p2)["/etc/alpha.conf"], "edited by the admin\n");
    assert_eq!(members(&p2).keys().cloned().collect::<BTreeSet<_>>(), configs);

    let p3 = t.path("p3");
    assert_one_line_error(&prepare(&["alpha".as_ref()], &p3), &["alpha-1:1.0-1.noarch", "/etc/alpha.conf"]);
    assert!(!p3.exists());

    // The .rpm named on the command line: its payload has the pristine file.
    let r = prepare(&[rpms["alpha"].as_os_str()], &p3);
    assert!(r.status.success(), "{}", stderr(&r));
    assert_eq!(fs::read_to_string(p3.join("packages")).unwrap(), "alpha\n");
    let m = members(&p3);
    assert_eq!(m["/etc/alpha.conf"], "pristine alpha.conf\n");
    assert_eq!(m["/usr/share/alpha/defaults"], "defaults\n");

    // Or found in dnf's cache inside the root.
    let cache = root.join("var/cache/dnf/fedora-abc/packages");
    fs::create_dir_all(&cache).unwrap();
    fs::copy(&rpms["alpha"], cache.join(rpms["alpha"].file_name().unwrap())).unwrap();
    let p4 = t.path("p4");
    let r = prepare(&["alpha".as_ref()], &p4);
    assert!(r.status.success(), "{}", stderr(&r));
    assert_eq!(members(&p4)["/etc/alpha.conf"], "pristine alpha.conf\n");

    // And the build from it: the base image's config file wins over the host's.
    let out = t.path("out");
    ok(ours().args(["--build", "-f", "chroot", "--sysroot"]).arg(&root).arg(&p4).arg("-o").arg(&out));
    assert_eq!(fs::read_to_string(out.join("etc/alpha.conf")).unwrap(), "pristine alpha.conf\n");
}

/// --list-drivers: the original's drivers in its order, detected by what is inside the root.
fn assert_drivers_as_the_original(root: &Path) {
    let out = ok(ours().arg("--list-drivers").arg("--sysroot").arg(root));
    let lines: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
    let order: Vec<&str> = lines.iter().map(|l| l.split('\t').next().unwrap()).collect();
    assert_eq!(
        order,
        [
            "arch/pacman",
            "debian/dpkg",
            "openmandriva/rpm",
            "mageia/rpm",
            "opensuse/rpm",
            "ibm_powerkvm/rpm",
            "fedora/rpm"
        ]
    );
    let detected: Vec<&str> =
        lines.iter().filter(|l| l.ends_with("\tdetected")).map(|l| l.split('\t').next().unwrap()).collect();
    assert_eq!(detected, ["fedora/rpm"]);
    fs::write(root.join("etc/os-release"), "ID=\"opensuse-tumbleweed\"\n").unwrap();
    let out = ok(ours().arg("--list-drivers").arg("--sysroot").arg(root));
    assert!(stdout(&out).contains("opensuse/rpm\tdetected") && stdout(&out).contains("fedora/rpm\tnot-detected"));
}

/// `--if-newer` watches the root's database: nothing to do, then an install into the root →
/// rebuild. `d` was built from `root` into `o` before.
fn assert_if_newer_watches_the_rpmdb(t: &Scratch, root: &Path, d: &Path, o: &Path) {
    let build = || {
        run(ours().args(["-v", "--build", "--if-newer", "-f", "chroot", "--sysroot"]).arg(root).arg(d).arg("-o").arg(o))
    };
    let r = build();
    assert!(r.status.success());
    let r = build();
    assert!(stderr(&r).contains("does not need rebuilding"), "{}", stderr(&r));
    let two = rpmbuild(
        &t.path("rpmbuild2"),
        &[Spec::simple("two", "1", "mkdir -p usr/bin\necho 2 > usr/bin/two", "/usr/bin/two")],
    );
    rpm_install(root, &two[0]);
    let r = build();
    assert!(r.status.success() && !stderr(&r).contains("does not need rebuilding"), "{}", stderr(&r));
}

/// Bad databases: one line naming the file and the problem, exit 1, never a panic. `build`
/// builds from `root` with extra arguments.
fn assert_bad_rpmdbs_are_one_line_errors(t: &Scratch, root: &Path, build: &dyn Fn(&[&str]) -> Output) {
    let db = root.join("usr/lib/sysimage/rpm/rpmdb.sqlite");
    let check = |what: &str, want: &[&str]| {
        let r = build(&[]);
        assert!(!stderr(&r).contains("panicked"), "{what}: {}", stderr(&r));
        assert_one_line_error(&r, want);
    };
    need("sqlite3");
    let copy = t.path("good.sqlite");
    ok(Command::new("sqlite3").arg(&db).arg(format!(".backup {}", copy.display())));
    for f in ["rpmdb.sqlite-wal", "rpmdb.sqlite-shm"] {
        let _ = fs::remove_file(root.join("usr/lib/sysimage/rpm").join(f));
    }
    fs::copy(&copy, &db).unwrap();
    ok(Command::new("sqlite3")
        .arg(&db)
        .arg("UPDATE Packages SET blob = substr(blob, 1, 40) WHERE hnum = (SELECT min(hnum) FROM Packages);"));
    check("truncated header", &[db.to_str().unwrap(), "corrupt header"]);
    ok(Command::new("sqlite3").arg(&db).arg("UPDATE Packages SET blob = zeroblob(64);"));
    check("zeroed header", &["corrupt header"]);
    fs::write(&db, vec![0x42u8; 8192]).unwrap();
    check("not sqlite", &[db.to_str().unwrap(), "cannot read the rpm database"]);
    fs::remove_file(&db).unwrap();
    fs::create_dir_all(root.join("var/lib/rpm")).unwrap();
    fs::write(root.join("var/lib/rpm/Packages"), vec![0u8; 4096]).unwrap();
    check("berkeley db", &["var/lib/rpm/Packages", "Berkeley DB"]);
    fs::remove_file(root.join("var/lib/rpm/Packages")).unwrap();
    fs::write(root.join("usr/lib/sysimage/rpm/Packages.db"), vec![0u8; 4096]).unwrap();
    check("ndb", &["Packages.db", "ndb format"]);
    fs::remove_file(root.join("usr/lib/sysimage/rpm/Packages.db")).unwrap();
    assert_one_line_error(&build(&["--packager", "rpm"]), &["no rpm database"]);
}

#[test]
fn rpm_detection_if_newer_and_bad_databases() {
    let t = Scratch::new("rpm-detect");
    let root = t.path("root");
    rpm_root(&root);
    let rpms = rpmbuild(
        &t.path("rpmbuild"),
        &[Spec::simple("one", "1", "mkdir -p usr/bin\necho 1 > usr/bin/one", "/usr/bin/one")],
    );
    rpm_install(&root, &rpms[0]);

    assert_drivers_as_the_original(&root);

    // A root whose release files lie: not detected, but --packager rpm reads it.
    fs::write(root.join("etc/os-release"), "ID=debian\n").unwrap();
    let d = t.path("d");
    fs::create_dir_all(&d).unwrap();
    fs::write(d.join("packages"), "one\ntwo\n").unwrap();
    let o = t.path("o");
    let build = |extra: &[&str]| {
        run(ours().args(["--build", "-f", "chroot", "--sysroot"]).arg(&root).args(extra).arg(&d).arg("-o").arg(&o))
    };
    let r = build(&[]);
    assert_eq!(r.status.code(), Some(1));
    assert!(stderr(&r).contains("--packager"), "{}", stderr(&r));
    let r = build(&["--packager", "rpm"]);
    assert!(r.status.success(), "{}", stderr(&r));
    assert_eq!(fs::read_to_string(o.join("usr/bin/one")).unwrap(), "1\n");
    let r = build(&["--packager", "yum"]);
    assert_eq!(r.status.code(), Some(2), "{}", stderr(&r));

    // Told the truth again, the root is detected.
    fs::write(root.join("etc/os-release"), "ID=fedora\n").unwrap();
    assert_if_newer_watches_the_rpmdb(&t, &root, &d, &o);
    assert_bad_rpmdbs_are_one_line_errors(&t, &root, &build);
    let r =
        run(ours().args(["--build", "-f", "chroot", "--sysroot"]).arg(t.path("nonexistent")).arg(&d).arg("-o").arg(&o));
    assert_eq!(r.status.code(), Some(1));
    assert!(stderr(&r).contains("nonexistent: --sysroot: No such file or directory"), "{}", stderr(&r));
    // The last good output was never touched by the failed builds.
    assert_eq!(fs::read_to_string(o.join("usr/bin/two")).unwrap(), "2\n");
}

// ------------------------------------------------------------------------------------------
// pacman

/// The throwaway user makepkg runs as (it refuses root).
fn build_user() -> &'static str {
    const USER: &str = "supermin-build";
    if !run(Command::new("id").arg(USER)).status.success() {
        // Parallel tests may race to create it; either way it must exist afterwards.
        let _ = run(Command::new("useradd").args(["-m", USER]));
    }
    ok(Command::new("id").arg(USER));
    USER
}

const PKGBUILD: &str = r#"
pkgbase=ptest
pkgname=(pa pb pc pd pav pz)
pkgver=1.0
pkgrel=3
epoch=2
pkgdesc='supermin-rs test'
arch=('any')
license=('MIT')
options=(!strip !debug !emptydirs)

package_pa() {
  depends=('pb>=1.0' 'libpc.so=1-64' 'pvirt')
  backup=('etc/pa.conf')
  install -d "$pkgdir"/usr/bin "$pkgdir"/etc/pa.d "$pkgdir"/usr/share/pa
  printf '#!/bin/sh\necho pa\n' > "$pkgdir"/usr/bin/pa; chmod 0755 "$pkgdir"/usr/bin/pa
  ln -s pa "$pkgdir"/usr/bin/pa-rel
  ln -s /usr/bin/pa "$pkgdir"/usr/bin/pa-abs
  ln -s /usr/bin/pa "$pkgdir"/etc/pa-link
  echo 'pristine pa.conf' > "$pkgdir"/etc/pa.conf
  echo plain > "$pkgdir"/etc/pa.d/plain
  echo data > "$pkgdir"/usr/share/pa/data; chmod 0600 "$pkgdir"/usr/share/pa/data
  chmod 0750 "$pkgdir"/usr/share/pa
}
package_pb() { install -Dm644 /dev/null "$pkgdir"/usr/share/pb/marker; }
package_pc() { provides=('libpc.so=1-64'); install -Dm644 /dev/null "$pkgdir"/usr/lib/libpc.so.1; }
package_pd() { provides=('pvirt=1'); install -Dm644 /dev/null "$pkgdir"/usr/share/pd/marker; }
package_pav() { provides=('pvirt=1'); install -Dm644 /dev/null "$pkgdir"/usr/share/pav/marker; }
package_pz() { provides=('pvirt'); install -Dm644 /dev/null "$pkgdir"/usr/share/pz/marker; }
"#;

/// Build the split package with makepkg and install every part into `root` with pacman.
fn pacman_fixture(t: &Scratch, root: &Path) -> PathBuf {
    for tool in ["makepkg", "pacman", "bsdtar", "fakeroot"] {
        need(tool);
    }
    let user = build_user();
    let dir = t.path("pkgbuild");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("PKGBUILD"), PKGBUILD).unwrap();
    fs::set_permissions(&t.0, fs::Permissions::from_mode(0o755)).unwrap();
    ok(Command::new("chown").arg("-R").arg(user).arg(&dir));
    ok(Command::new("runuser")
        .args(["-u", user, "--", "makepkg", "--nodeps", "--force"])
        .current_dir(&dir)
        .env("PKGDEST", &dir));
    let mut pkgs: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().contains(".pkg.tar"))
        .collect();
    pkgs.sort();
    assert_eq!(pkgs.len(), 6, "{pkgs:?}");
    fs::create_dir_all(root.join("var/lib/pacman")).unwrap();
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(root.join("etc/os-release"), "NAME=\"Arch Linux\"\nID=arch\n").unwrap();
    ok(Command::new("pacman")
        .arg("--root")
        .arg(root)
        .arg("--dbpath")
        .arg(root.join("var/lib/pacman"))
        .args(["-U", "--noconfirm", "--nodeps", "--nodeps", "--noscriptlet"])
        .args(&pkgs));
    dir
}

fn pacman_ql(root: &Path, names: &[&str]) -> BTreeSet<String> {
    let out = ok(Command::new("pacman")
        .arg("--root")
        .arg(root)
        .arg("--dbpath")
        .arg(root.join("var/lib/pacman"))
        .arg("-Ql")
        .args(names));
    let prefix = root.to_string_lossy().into_owned();
    stdout(&out)
        .lines()
        .map(|l| {
            let path = l.split_once(' ').unwrap().1;
            let path = path.strip_prefix(&prefix).unwrap_or(path);
            let path = if path.len() > 1 { path.trim_end_matches('/') } else { path };
            path.to_string()
        })
        .collect()
}

/// pacman's own file list of `names` is the oracle for the appliance `o` built from `root`:
/// every listed path but config files (regular files under /etc), with every ancestor, as it
/// is in the root.
fn assert_as_pacman_lists(root: &Path, o: &Path, names: &[&str]) {
    let listed = pacman_ql(root, names);
    let mut expected = BTreeSet::new();
    for p in &listed {
        let m = fs::symlink_metadata(root.join(&p[1..])).unwrap();
        if p.starts_with("/etc/") && m.is_file() {
            continue;
        }
        expected.insert(p.clone());
        expected.extend(ancestors(p));
    }
    assert!(
        expected.contains("/etc/pa-link")
            && !expected.contains("/etc/pa.conf")
            && !expected.contains("/etc/pa.d/plain")
    );
    let got = dump(o);
    let got_paths: BTreeSet<String> = got.keys().filter(|p| *p != "/" && *p != "/packagelist").cloned().collect();
    assert_eq!(got_paths, expected);
    for p in &expected {
        let m = fs::symlink_metadata(root.join(&p[1..])).unwrap();
        let e = &got[p];
        assert_eq!((e.mode, e.uid, e.gid), (m.mode() & 0o7777, m.uid(), m.gid()), "{p}");
        if m.is_file() {
            assert_eq!((e.size, e.mtime), (m.size(), m.mtime()), "{p}");
            assert_eq!(fs::read(o.join(&p[1..])).unwrap(), fs::read(root.join(&p[1..])).unwrap(), "{p}");
        }
        if m.file_type().is_symlink() {
            let target = fs::read_link(root.join(&p[1..])).unwrap();
            assert_eq!(e.target.as_deref(), Some(Path::new(&chroot_target(p, &target.to_string_lossy()))), "{p}");
        }
    }
}

/// --prepare: config files as the original decides them, pristine ones from the host (their
/// MD5 matches the package's mtree), modified ones from the package file (in `pkgdir`).
fn assert_pacman_prepare_config_files(t: &Scratch, root: &Path, pkgdir: &Path) {
    let members = |dir: &Path| base_image_text(&dir.join("base.tar.gz"));
    let p1 = t.path("p1");
    ok(ours().args(["--prepare", "--sysroot"]).arg(root).arg("pa").arg("-o").arg(&p1));
    let m = members(&p1);
    assert_eq!(m.keys().map(String::as_str).collect::<Vec<_>>(), ["/etc/pa.conf", "/etc/pa.d/plain"]);
    fs::write(root.join("etc/pa.conf"), "edited\n").unwrap();
    let p2 = t.path("p2");
    let r = run(ours().args(["--prepare", "--sysroot"]).arg(root).arg("pa").arg("-o").arg(&p2));
    assert_eq!(r.status.code(), Some(1), "{}", stderr(&r));
    assert!(stderr(&r).contains("/etc/pa.conf"));
    let pa_pkg = fs::read_dir(pkgdir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("pa-2"))
        .unwrap();
    ok(ours().args(["--prepare", "--sysroot"]).arg(root).arg(&pa_pkg).arg("-o").arg(&p2));
    assert_eq!(members(&p2)["/etc/pa.conf"], "pristine pa.conf\n");
    assert_eq!(fs::read_to_string(p2.join("packages")).unwrap(), "pa\n");
    let p3 = t.path("p3");
    ok(ours().args(["--prepare", "--use-installed", "--sysroot"]).arg(root).arg("pa").arg("-o").arg(&p3));
    assert_eq!(members(&p3)["/etc/pa.conf"], "edited\n");
}

#[test]
fn pacman_sysroot_build_and_prepare() {
    let t = Scratch::new("pacman");
    let root = t.path("root");
    let pkgdir = pacman_fixture(&t, &root);

    let out = ok(ours().arg("--list-drivers").arg("--sysroot").arg(&root));
    let detected: Vec<String> =
        stdout(&out).lines().filter(|l| l.ends_with("\tdetected")).map(str::to_string).collect();
    assert_eq!(detected, ["arch/pacman\tdetected"]);

    let d = t.path("d");
    fs::create_dir_all(&d).unwrap();
    fs::write(d.join("packages"), "pa\n").unwrap();
    let o = t.path("o");
    // The lazy view of the pacman root shows the same tree.
    drop(build_and_view(&root, &d, &o, &t.path("mnt")));
    // Versioned depends resolved by name; libpc.so through pc's provides; pvirt has three
    // providers: the shortest name wins, then byte order (pd, not pav or pz).
    assert_eq!(
        fs::read_to_string(o.join("packagelist")).unwrap().lines().collect::<Vec<_>>(),
        ["pa-2:1.0-3.any", "pb-2:1.0-3.any", "pc-2:1.0-3.any", "pd-2:1.0-3.any"]
    );
    assert_as_pacman_lists(&root, &o, &["pa", "pb", "pc", "pd"]);
    assert_pacman_prepare_config_files(&t, &root, &pkgdir);

    // A corrupt database entry: one line naming the file.
    let desc = fs::read_dir(root.join("var/lib/pacman/local"))
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("pb-"))
        .unwrap()
        .path()
        .join("desc");
    fs::write(&desc, "%VERSION%\n1\n").unwrap();
    let r = run(ours().args(["--build", "-f", "chroot", "--sysroot"]).arg(&root).arg(&d).arg("-o").arg(&o));
    assert_one_line_error(&r, &[desc.to_str().unwrap()]);
}

// ------------------------------------------------------------------------------------------
// A Debian root made by mmdebstrap

#[test]
fn debian_root_from_mmdebstrap_runs_bash() {
    let t = Scratch::new("debroot");
    let root = debian_root();
    let out = ok(ours().arg("--list-drivers").arg("--sysroot").arg(&root));
    assert!(stdout(&out).contains("debian/dpkg\tdetected"), "{}", stdout(&out));

    // A package diversion inside the root (as a package's preinst would make): the appliance
    // has the diverted-to file's bytes at the original path.
    let admin = root.join("var/lib/dpkg");
    let diverted = root.join("usr/bin/savelog.supermin-test");
    if !diverted.exists() {
        need("dpkg-divert");
        ok(Command::new("dpkg-divert").arg("--root").arg(&root).arg("--admindir").arg(&admin).args([
            "--package",
            "supermin-test",
            "--rename",
            "--divert",
            "/usr/bin/savelog.supermin-test",
            "--add",
            "/usr/bin/savelog",
        ]));
    }
    assert!(diverted.is_file() && !root.join("usr/bin/savelog").exists());

    let d = t.path("d");
    fs::create_dir_all(&d).unwrap();
    fs::write(d.join("packages"), "bash\ncoreutils\ndebianutils\n").unwrap();
    let o = t.path("o");
    ok(ours().args(["--build", "-f", "chroot", "--sysroot"]).arg(&root).arg(&d).arg("-o").arg(&o));
    let r = ok(Command::new("chroot").arg(&o).args([
        "/bin/bash",
        "-c",
        "echo \"bash $BASH_VERSION\"; ls /usr/bin/savelog",
    ]));
    assert!(stdout(&r).starts_with("bash 5.2"), "{}", stdout(&r));
    assert_eq!(fs::read(o.join("usr/bin/savelog")).unwrap(), fs::read(&diverted).unwrap());

    // dpkg's own records for the root are the oracle: every listed path of these packages
    // that exists in the root (config files aside) is in the appliance, with its metadata.
    let listed =
        ok(Command::new("dpkg-query").arg("--admindir").arg(&admin).args(["-L", "bash", "coreutils", "libc6"]));
    let mut checked = 0;
    for p in stdout(&listed).lines().filter(|l| l.starts_with('/') && *l != "/.") {
        // Resolve through the root's /bin, /lib… symlinks (relative in bookworm) on the host.
        let Ok(m) = fs::symlink_metadata(root.join(&p[1..])) else { continue };
        if (p.starts_with("/etc/") && m.is_file()) || p == "/usr/bin/savelog" {
            continue;
        }
        let g =
            fs::symlink_metadata(o.join(&p[1..])).unwrap_or_else(|e| panic!("{p}: missing from the appliance: {e}"));
        assert_eq!((g.mode(), g.uid(), g.gid()), (m.mode(), m.uid(), m.gid()), "{p}");
        if m.is_file() {
            assert_eq!((g.len(), g.mtime()), (m.len(), m.mtime()), "{p}");
        }
        checked += 1;
    }
    assert!(checked > 300, "only {checked} paths checked");

    // --prepare from the root: its unmodified config files (MD5 as dpkg recorded them in the
    // root) go into base.tar.gz with the root's bytes, without downloading anything.
    let p = t.path("p");
    ok(ours().args(["--prepare", "--sysroot"]).arg(&root).args(["bash", "-o"]).arg(&p));
    assert_eq!(fs::read_to_string(p.join("packages")).unwrap(), "bash\n");
    let members = tar_members(&p.join("base.tar.gz"));
    let bashrc = members.get("./etc/bash.bashrc").expect("/etc/bash.bashrc missing from base.tar.gz");
    assert_eq!(bashrc.data, fs::read(root.join("etc/bash.bashrc")).unwrap());

    // Modified in the root: the pristine file must come from the root's distribution, so apt
    // runs with the root's configuration (mmdebstrap leaves it without package lists: a clear
    // error, where the build host's apt would have fetched its own bookworm's bash).
    let bashrc = root.join("etc/bash.bashrc");
    let restore = Restore::new(&bashrc);
    let mut edited = restore.original().to_vec();
    edited.extend_from_slice(b"# edited in the root\n");
    fs::write(&bashrc, &edited).unwrap();
    let p2 = t.path("p2");
    let r = run(ours().args(["--prepare", "--sysroot"]).arg(&root).args(["bash", "-o"]).arg(&p2));
    assert_eq!(r.status.code(), Some(1), "{}", stderr(&r));
    assert!(stderr(&r).contains("apt-get update` in the sysroot"), "{}", stderr(&r));
    ok(ours().args(["--prepare", "--use-installed", "--sysroot"]).arg(&root).args(["bash", "-o"]).arg(&p2));
    let bashrc_member = tar_members(&p2.join("base.tar.gz")).remove("./etc/bash.bashrc").map(|m| m.data);
    assert_eq!(bashrc_member, Some(edited));
}
