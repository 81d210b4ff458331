//! How long reading and resolving the rpm database of a 300-package root takes (target:
//! under 100 ms). `cargo bench --bench rpmdb` (as root; needs scripts/install-deps.sh).
//!
//! The root is made once with the real tools and kept in `$TMPDIR` (default /var/tmp): one
//! spec with 300 (sub)packages built by `rpmbuild`, installed by `rpm --root` into a sqlite
//! rpmdb. Each package has 21 files and a `%config` file, requires two others by name, one by
//! capability and one by file path, so the closure of `p000` is all 300 packages and every
//! lookup kind is exercised. Times are the median of 25 runs, each from a fresh open (the
//! page cache is warm, as on a machine that just installed its packages).
//!
//! Exits 1 when the median of the whole resolution is over the target.

#[path = "../tests/common/mod.rs"]
mod common;

use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{median, ok};
use supermin::packager::Driver;

const PACKAGES: usize = 300;
const TARGET: Duration = Duration::from_millis(100);

fn spec() -> String {
    let mut s = String::from(
        "%global debug_package %{nil}\n%define __os_install_post %{nil}\n%define _build_id_links none\n\
         Summary: bench\nLicense: MIT\nVersion: 1.0\nRelease: 1\nBuildArch: noarch\nAutoReqProv: no\n",
    );
    let name = |i: usize| format!("p{i:03}");
    let deps = |i: usize| {
        let mut d = String::new();
        for child in [2 * i + 1, 2 * i + 2] {
            if child < PACKAGES {
                writeln!(d, "Requires: {}", name(child)).unwrap();
            }
        }
        // A capability and a file path of packages further down (closure unchanged).
        writeln!(d, "Provides: cap-{i:03}\nRequires: cap-{:03}", (i + 7) % PACKAGES).unwrap();
        writeln!(d, "Requires: /usr/share/{}/f00", name((i + 3) % PACKAGES)).unwrap();
        d
    };
    s += &format!("Name: {}\n{}", name(0), deps(0));
    s += "%description\nbench\n";
    for i in 1..PACKAGES {
        s += &format!("%package -n {}\nSummary: bench\n{}%description -n {}\nbench\n", name(i), deps(i), name(i));
    }
    s += "%install\nfor i in $(seq -w 0 299); do\n  mkdir -p %{buildroot}/usr/share/p$i %{buildroot}/etc %{buildroot}/usr/bin\n  \
          for j in $(seq -w 0 19); do echo $i$j > %{buildroot}/usr/share/p$i/f$j; done\n  \
          echo conf > %{buildroot}/etc/p$i.conf\n  echo bin > %{buildroot}/usr/bin/p$i\ndone\n";
    for i in 0..PACKAGES {
        let n = name(i);
        let dash = if i == 0 { String::new() } else { format!(" -n {n}") };
        s += &format!("%files{dash}\n/usr/share/{n}\n/usr/bin/{n}\n%config /etc/{n}.conf\n");
    }
    s
}

fn make_root() -> PathBuf {
    let base = std::env::var_os("TMPDIR").map(PathBuf::from).unwrap_or_else(|| "/var/tmp".into());
    let root = base.join("supermin-bench-rpmroot");
    let done = root.with_extension("complete");
    if done.exists() {
        return root;
    }
    let work = base.join("supermin-bench-rpmbuild");
    let _ = fs::remove_dir_all(&root);
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work).unwrap();
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(root.join("etc/os-release"), "ID=fedora\n").unwrap();
    fs::write(work.join("bench.spec"), spec()).unwrap();
    eprintln!("rpmdb bench: building {PACKAGES} packages with rpmbuild (once)…");
    ok(Command::new("rpmbuild")
        .arg("--define")
        .arg(format!("_topdir {}", work.join("build").display()))
        .arg("--define")
        .arg(format!("_rpmdir {}", work.join("rpms").display()))
        .args(["--quiet", "-bb"])
        .arg(work.join("bench.spec")));
    let mut rpms: Vec<PathBuf> = fs::read_dir(work.join("rpms/noarch")).unwrap().flatten().map(|e| e.path()).collect();
    rpms.sort();
    assert_eq!(rpms.len(), PACKAGES);
    eprintln!("rpmdb bench: installing them into {}…", root.display());
    ok(Command::new("rpm")
        .arg("--root")
        .arg(&root)
        .args(["--dbpath", "/usr/lib/sysimage/rpm", "--define", "_db_backend sqlite", "-i", "--nodeps"])
        .args(&rpms));
    fs::write(&done, "").unwrap();
    let _ = fs::remove_dir_all(&work);
    root
}

fn main() {
    // `cargo bench` passes --bench; nothing to parse.
    let root = make_root();
    let driver = Driver::detect(&root).expect("the bench root is detected as fedora/rpm");
    assert_eq!(driver, Driver::Rpm);
    let appliance = std::env::temp_dir().join(format!("supermin-bench-rpmdb-{}", std::process::id()));
    fs::create_dir_all(&appliance).unwrap();
    fs::write(appliance.join("packages"), "p000\n").unwrap();

    let (mut open, mut closure, mut files, mut whole) = (vec![], vec![], vec![], vec![]);
    let mut counts = (0, 0, 0);
    for _ in 0..25 {
        let t0 = Instant::now();
        let pm = driver.open(&root).unwrap();
        let t1 = Instant::now();
        let roots = pm.resolve_names(&["p000".to_string()]);
        let set: Vec<usize> = pm.closure(&roots).iter().map(|r| r.pkg).collect();
        let t2 = Instant::now();
        let list = pm.files(&set).unwrap();
        let t3 = Instant::now();
        open.push(t1 - t0);
        closure.push(t2 - t1);
        files.push(t3 - t2);

        // The whole resolution a build does before writing: database, closure, file list,
        // lstat of every path, munge, manifest.
        let t4 = Instant::now();
        let (packages, _) = supermin::resolve_appliance(std::slice::from_ref(&appliance), &root).unwrap();
        whole.push(t4.elapsed());
        counts = (set.len(), list.len(), packages);
    }
    let _ = fs::remove_dir_all(&appliance);
    assert_eq!(counts.0, PACKAGES, "the closure of p000 must be every package");
    assert_eq!(counts.2, PACKAGES);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("rpmdb: {PACKAGES} packages, {} files in the closure (median of 25 runs)", counts.1);
    println!("  open the database and decode every header  {:7.2} ms", ms(median(open)));
    println!("  names + Requires closure                   {:7.2} ms", ms(median(closure)));
    println!("  file lists of the closure                  {:7.2} ms", ms(median(files)));
    let whole = median(whole);
    println!("  whole resolution (to the manifest)         {:7.2} ms  (target < {} ms)", ms(whole), TARGET.as_millis());
    if whole > TARGET {
        eprintln!("rpmdb: over the target");
        std::process::exit(1);
    }
}
