//! How close each path is to its physical limit, and how far ahead of the original, in one
//! run: `cargo bench --bench limits` (as root; needs scripts/install-deps.sh). Not a test: it
//! prints one markdown table (between `limits:begin`/`limits:end` markers) that
//! `scripts/bench-readme.sh` copies into the README, each row marked met or missed against
//! its target.
//!
//! The references: a tmpfs mount for readiness; the same host files read from `/` in the same
//! order for the view's reads (after the same `drop_caches`); `cp -a` of the finished tree
//! (and `cp` of the finished image) for builds, in the same memory state: "fresh" writes a
//! new directory every run, "in place" replaces the previous output, as libguestfs's cache
//! does; the original supermin 5 for the rest. Each figure is a median of `BENCH_RUNS` (3).

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{KernelUring, ENABLE_URING, LIBGUESTFS_APPLIANCE, ORACLE, OURS};
use support::table::{fmt_ms, ready_row, Table};
use support::{alternate, build, drop_caches, host_backed_files, mount_timed, ms, read_cold_warm, runs, settle, sh};
use support::{times, tmpfs_ready};

fn bench_ready(t: &mut Table, name: &str, input: &Path, scratch: &Path, target: (&'static str, f64)) {
    let mp = scratch.join(format!("{name}-mnt"));
    // The first mount fills the image and manifest caches; a user's next mounts find them.
    drop(mount_timed(input, &mp, &[]));
    let ready = times(runs() * 3, || mount_timed(input, &mp, &[]).1);
    let tmpfs = times(runs() * 3, || tmpfs_ready(&mp));
    ready_row(t, &format!("{name}: ready (`mount --daemon` + `ls /`)"), ready, tmpfs, target);

    // On a running system something always came or went in /tmp since the last mount.
    let churned = times(runs() * 3, || {
        let f = tempfile_in_tmp();
        let d = mount_timed(input, &mp, &[]).1;
        let _ = fs::remove_file(f);
        d
    });
    ready_row(t, &format!("{name}: ready, a file created in /tmp since the last mount"), churned, tmpfs, target);
}

/// A new file directly in /tmp (a directory of both appliances): its time changes.
fn tempfile_in_tmp() -> std::path::PathBuf {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let f = Path::new("/tmp").join(format!("supermin-limits-{}-{nanos}", std::process::id()));
    fs::write(&f, b"").unwrap();
    f
}

/// The view's reads against the same host files', over `/dev/fuse` and (when this kernel
/// has it) over FUSE io_uring, which the kernel offers only when `enable_uring` is set:
/// without passthrough (this appliance's default) and with it.
fn bench_reads(t: &mut Table, built: &Path, scratch: &Path) {
    let files = host_backed_files(built);
    let list = scratch.join("files.list");
    fs::write(&list, files.join("\n") + "\n").unwrap();
    // Its largest host file.
    let (size, large) = files.iter().map(|p| (fs::metadata(Path::new("/").join(p)).unwrap().len(), p)).max().unwrap();
    // Passthrough is off for this appliance by default; the last mount forces it on.
    let transports: &[(bool, &str, &[&str])] = if Path::new(ENABLE_URING).exists() {
        &[
            (false, "/dev/fuse", &[]),
            (true, "io_uring", &[]),
            (true, "io_uring with `--passthrough`", &["--passthrough"]),
        ]
    } else {
        &[(false, "/dev/fuse", &[])]
    };
    // One mount per transport (the kernel's setting counts when a mount is made).
    let mounts: Vec<_> = transports
        .iter()
        .enumerate()
        .map(|(i, &(uring, name, args))| {
            let _setting = KernelUring::set(uring);
            (mount_timed(Path::new(LIBGUESTFS_APPLIANCE), &scratch.join(format!("read-{i}")), args).0, name)
        })
        .collect();
    let cold = |root: &Path| {
        drop_caches();
        sh(&format!("tar cf - -C {} -T {} | cat > /dev/null", root.display(), list.display()))
    };
    // Native and each transport in turn, so that all see the same state of the machine.
    let mut samples = vec![Vec::new(); mounts.len() + 1];
    for _ in 0..runs() {
        samples[0].push(cold(Path::new("/")));
        for (i, (m, _)) in mounts.iter().enumerate() {
            samples[i + 1].push(cold(m.path()));
        }
    }
    let mut medians = samples.into_iter().map(common::median);
    let native = medians.next().unwrap();
    for ((m, name), view) in mounts.iter().zip(medians) {
        let what = format!("libguestfs: read its {} host files, cold, over {name}", files.len());
        t.times(&what, view, ("same files from /", native), ("≤ 1.2x", 1.2));
        let (cold_n, cold_v, warm_n, warm_v) =
            read_cold_warm(&Path::new("/").join(large), &m.path().join(large), runs());
        let what = format!("libguestfs: its largest host file ({} MiB), cold, as throughput, over {name}", size >> 20);
        t.times(&what, cold_v, ("native", cold_n), ("≥ 0.9x", 0.9));
        t.times(&what.replace("cold", "warm"), warm_v, ("native", warm_n), ("≥ 0.9x", 0.9));
    }
}

fn bench_builds(t: &mut Table, built: &Path, scratch: &Path) {
    let (place, copy) = (scratch.join("chroot-in-place"), scratch.join("cp-in-place"));
    build(OURS, "chroot", &[], &place);
    sh(&format!("cp -a {} {}", built.display(), copy.display()));
    let (b, c) = alternate(
        runs(),
        |_| build(OURS, "chroot", &[], &place),
        |_| sh(&format!("rm -rf {0} && cp -a {1} {0}", copy.display(), built.display())),
    );
    t.times("libguestfs: `--build -f chroot`, in place", b, ("`rm -rf` + `cp -a`", c), ("≤ 1.3x", 1.3));

    let orig = scratch.join("chroot-orig");
    build(ORACLE, "chroot", &[], &orig);
    let (b, theirs) =
        alternate(runs(), |_| build(OURS, "chroot", &[], &place), |_| build(ORACLE, "chroot", &[], &orig));
    let ratio = format!("{:.2}x", ms(theirs) / ms(b));
    let theirs = format!("supermin 5 {}", fmt_ms(theirs));
    t.push("libguestfs: `--build -f chroot`, in place", fmt_ms(b), theirs, ratio, "(information)", None);
}

/// As [`alternate`], each run writing to a new path (a fresh directory or file, in new
/// memory); the outputs are removed afterwards, so that later rows do not pay for them.
fn fresh_alternate(
    scratch: &Path,
    ours: impl Fn(&Path) -> Duration,
    reference: impl Fn(&Path) -> Duration,
) -> (Duration, Duration) {
    let fresh = scratch.join("fresh");
    fs::create_dir_all(&fresh).unwrap();
    let (mut a, mut b) = (|i| ours(&fresh.join(format!("ours-{i}"))), |i| reference(&fresh.join(format!("ref-{i}"))));
    let times = alternate(runs(), &mut a, &mut b);
    sh(&format!("rm -rf {}", fresh.display()));
    settle();
    times
}

/// The ext2 appliance against a copy of its root image (into fresh files, and replaced in
/// place) and against the original's build in place.
fn bench_ext2(t: &mut Table, scratch: &Path) {
    let (e2, e2orig, img) = (scratch.join("ext2-ours"), scratch.join("ext2-orig"), scratch.join("image-copy"));
    build(OURS, "ext2", &[], &e2);
    build(ORACLE, "ext2", &[], &e2orig);
    let root = e2.join("root");
    let (b, c) = alternate(
        runs(),
        |_| build(OURS, "ext2", &[], &e2),
        |_| sh(&format!("rm -f {0} && cp --sparse=always {1} {0}", img.display(), root.display())),
    );
    t.times("libguestfs: `--build -f ext2`, in place", b, ("`cp` of its `root` image", c), ("≤ 1.3x", 1.3));
    let (b, theirs) = alternate(runs(), |_| build(OURS, "ext2", &[], &e2), |_| build(ORACLE, "ext2", &[], &e2orig));
    t.times("libguestfs: `--build -f ext2`, in place", b, ("supermin 5", theirs), ("≥ 5x", 5.0));
}

/// Both builds into fresh directories, after every in-place row: their outputs are deleted
/// after each row, and a large deletion slows the next writer down (see `support::settle`).
fn bench_fresh(t: &mut Table, built: &Path, scratch: &Path) {
    let (b, c) = fresh_alternate(
        scratch,
        |out| build(OURS, "chroot", &[], out),
        |out| sh(&format!("cp -a {} {}", built.display(), out.display())),
    );
    t.times("libguestfs: `--build -f chroot`, fresh directory", b, ("`cp -a` of the tree", c), ("≤ 1.3x", 1.3));
    let root = scratch.join("ext2-ours").join("root");
    let (b, c) = fresh_alternate(
        scratch,
        |out| build(OURS, "ext2", &[], out),
        |out| sh(&format!("cp --sparse=always {} {}", root.display(), out.display())),
    );
    t.times("libguestfs: `--build -f ext2`, fresh directory", b, ("`cp` of its `root` image", c), ("≤ 1.3x", 1.3));
}

fn bench_closures(t: &mut Table, scratch: &Path) {
    let size = |dir: &Path| {
        let o = Command::new("du").args(["-sb"]).arg(dir).output().unwrap();
        String::from_utf8_lossy(&o.stdout).split_whitespace().next().unwrap().parse::<u64>().unwrap() >> 20
    };
    let (all, orig) = (scratch.join("deps-all"), scratch.join("deps-supermin"));
    build(OURS, "chroot", &[], &all);
    build(OURS, "chroot", &["--deps", "supermin"], &orig);
    let (a, o) = alternate(
        runs(),
        |_| build(OURS, "chroot", &[], &all),
        |_| build(OURS, "chroot", &["--deps", "supermin"], &orig),
    );
    let what = format!("libguestfs: chroot with `--deps all` ({} MiB) vs `supermin` ({} MiB)", size(&all), size(&orig));
    t.push(&what, fmt_ms(a), fmt_ms(o), format!("{:.2}x", ms(a) / ms(o)), "(information)", None);
}

fn main() {
    let scratch = support::scratch("supermin-limits-bench");
    let mut t = Table::new("limits");
    let bash = support::prepare_bash(&scratch);
    bench_ready(&mut t, "bash+coreutils", &bash, &scratch, ("≤ 12 ms", 12.0));
    bench_ready(&mut t, "libguestfs", Path::new(LIBGUESTFS_APPLIANCE), &scratch, ("≤ 30 ms", 30.0));

    let built = scratch.join("built");
    build(OURS, "chroot", &[], &built);
    bench_rest(&mut t, &built, &scratch);
    t.print();
    let _ = Command::new("rm").arg("-rf").arg(&scratch).status();
}

/// The rows after the views': host file reads over FUSE, closures, builds.
fn bench_rest(t: &mut Table, built: &Path, scratch: &Path) {
    bench_reads(t, built, scratch);
    bench_closures(t, scratch);
    // The ext2 rows first: the chroot rows delete a gigabyte tree per run, which slows the
    // next writer on this VM's disk (see `support::settle`), and the ext2 target is tighter.
    bench_ext2(t, scratch);
    bench_builds(t, built, scratch);
    bench_fresh(t, built, scratch);
}
