//! The two views of libguestfs's appliance side by side with the host and the built tree, in
//! one run: `cargo bench --bench views` (as root). Readiness (median of 7) against a tmpfs
//! mount; a cold `find` of each view against the built tree's; every host file read cold
//! through each view against the same files from `/`; a second kernel view reading what the
//! first left in the page cache. Prints the `views` table that `scripts/bench-readme.sh`
//! copies into the README (the kernel view is `mount`'s default because of these rows).

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::fs;
use std::path::Path;

use common::{LIBGUESTFS_APPLIANCE, OURS};
use support::table::{ready_row, Table};
use support::{build, drop_caches, host_backed_files, kernel_mount_timed, mount_timed, runs, sh, times, tmpfs_ready};

fn main() {
    let scratch = support::scratch("supermin-views-bench");
    let mut t = Table::new("views");
    let built = scratch.join("built");
    build(OURS, "chroot", &[], &built);
    bench_views(&mut t, &built, &scratch);
    t.print();
    let _ = std::process::Command::new("rm").arg("-rf").arg(&scratch).status();
}

/// The kernel view (issue 20) against its limits, beside the FUSE view: readiness (median of
/// 7), a cold `find` against the built tree's, every host file read cold against the same
/// files from `/`, and a second view reading what the first left in the page cache.
fn bench_views(t: &mut Table, built: &Path, scratch: &Path) {
    let input = Path::new(LIBGUESTFS_APPLIANCE);
    let mp = scratch.join("ready");
    drop(kernel_mount_timed(input, &mp));
    drop(mount_timed(input, &mp, &[]));
    let tmpfs = times(7, || tmpfs_ready(&mp));
    let fuse = times(7, || mount_timed(input, &mp, &[]).1);
    ready_row(t, "libguestfs: FUSE view ready (`mount --fuse --daemon` + `ls /`)", fuse, tmpfs, ("≤ 30 ms", 30.0));
    let kernel = times(7, || kernel_mount_timed(input, &mp).1);
    ready_row(t, "libguestfs: kernel view ready (`mount` + `ls /`)", kernel, tmpfs, ("≤ 15 ms", 15.0));

    let fuse = mount_timed(input, &scratch.join("find-fuse"), &[]).0;
    let kernel = kernel_mount_timed(input, &scratch.join("find-kernel")).0;
    let find = |root: &Path| {
        drop_caches();
        sh(&format!("find {} -printf '%s %m %p\\n' > /dev/null", root.display()))
    };
    let mut samples = [Vec::new(), Vec::new(), Vec::new()];
    for _ in 0..runs() {
        samples[0].push(find(built));
        samples[1].push(find(fuse.path()));
        samples[2].push(find(kernel.path()));
    }
    let [tree, over_fuse, in_kernel] = samples.map(common::median);
    t.times("libguestfs: cold `find` of the FUSE view", over_fuse, ("built tree", tree), ("≤ 1.2x", 1.2));
    t.times("libguestfs: cold `find` of the kernel view", in_kernel, ("built tree", tree), ("≤ 1.1x", 1.1));
    bench_reads(t, built, (fuse.path(), kernel.path()), scratch);
}

/// Every host file of the appliance read cold through each view and from `/`; then through a
/// second kernel view of the same appliance, after the first read them all.
fn bench_reads(t: &mut Table, built: &Path, (fuse, view): (&Path, &Path), scratch: &Path) {
    let files = host_backed_files(built);
    let list = scratch.join("kview-files.list");
    fs::write(&list, files.join("\n") + "\n").unwrap();
    let tar = |root: &Path| sh(&format!("tar cf - -C {} -T {} | cat > /dev/null", root.display(), list.display()));
    let mut samples = [Vec::new(), Vec::new(), Vec::new()];
    for _ in 0..runs() {
        for (i, root) in [Path::new("/"), fuse, view].into_iter().enumerate() {
            drop_caches();
            samples[i].push(tar(root));
        }
    }
    let [native, over_fuse, kernel] = samples.map(common::median);
    let what = format!("libguestfs: read its {} host files, cold, FUSE view (/dev/fuse or io_uring)", files.len());
    t.times(&what, over_fuse, ("same files from /", native), ("≤ 1.2x", 1.2));
    let what = format!("libguestfs: read its {} host files, cold, kernel view", files.len());
    t.times(&what, kernel, ("same files from /", native), ("≤ 1.05x", 1.05));
    let second = kernel_mount_timed(Path::new(LIBGUESTFS_APPLIANCE), &scratch.join("kview-second")).0;
    let (mut warm, mut shared) = (Vec::new(), Vec::new());
    for _ in 0..runs() {
        drop_caches();
        tar(view);
        warm.push(tar(view));
        shared.push(tar(second.path()));
    }
    let what = "libguestfs: the same files through a second kernel view, after the first read them";
    t.times(what, common::median(shared), ("warm re-read through the first", common::median(warm)), ("≤ 1.3x", 1.3));
}
