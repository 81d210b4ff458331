//! FUSE soak: libguestfs's appliance mounted with `mount --daemon`, 16 threads doing random
//! stat, readdir, read, readlink and mmap over it for `SUPERMIN_SOAK_SECS` seconds (default
//! 30; the README gives a 10-minute run's figures), every answer compared with the chroot
//! build of the same inputs; the daemon stopped and continued (SIGSTOP/SIGCONT) halfway. No
//! daemon crash, no wrong byte, and the daemon's RSS flat: after a first pass that reads
//! every file, at the end within 2 MiB of what it was after the first minute (after 10 s in
//! runs under two minutes).
//!
//! Then a scratch appliance whose host files are deleted, truncated, replaced and rewritten
//! under the mount, and whose base image is deleted and replaced: each file reads as one
//! version of it, never a mix (see the README: a host file changed after the view first read
//! it answers EIO; base images are served from the view's own decompressed copy).
//!
//! `SUPERMIN_SOAK_SECS=600 cargo test --release --test soak -- --nocapture`

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

const THREADS: usize = 16;

fn soak_secs() -> u64 {
    std::env::var("SUPERMIN_SOAK_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(30)
}

fn seed() -> u64 {
    let seed = std::env::var("SUPERMIN_SOAK_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    println!("SUPERMIN_SOAK_SEED={seed}");
    seed
}

/// The daemon's resident memory (VmRSS), in KiB.
fn rss_kib(pid: i32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap_or_else(|| panic!("daemon {pid} is gone"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Stop the daemon for a second (SIGSTOP), check that it is stopped, and continue it.
fn stop_and_continue(pid: i32) {
    ok(Command::new("kill").args(["-STOP", &pid.to_string()]));
    std::thread::sleep(Duration::from_secs(1));
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let state = stat.rsplit_once(')').unwrap().1.split_whitespace().next().unwrap().to_string();
    ok(Command::new("kill").args(["-CONT", &pid.to_string()]));
    assert_eq!(state, "T", "daemon {pid} was not stopped by SIGSTOP");
}

/// Paths of a tree by kind, relative (`usr/bin/bash`).
#[derive(Default)]
struct Tree {
    files: Vec<String>,
    dirs: Vec<String>,
    links: Vec<String>,
}

fn tree(root: &Path) -> Tree {
    let mut t = Tree::default();
    for (path, e) in dump(root) {
        let rel = path.trim_start_matches('/').to_string();
        match e.kind {
            'f' => t.files.push(rel),
            'd' => t.dirs.push(rel),
            'l' => t.links.push(rel),
            _ => {}
        }
    }
    t
}

#[derive(Default)]
struct Counters {
    ops: AtomicU64,
    bytes: AtomicU64,
    mmaps: AtomicU64,
}

/// A python3 process that maps two files and compares them, one pair per line (std has no
/// mmap, and the tests use no `unsafe`): answers `ok N` (N bytes compared) or `bad`.
struct Mapper(Child);

const MAPPER: &str = r#"
import mmap, sys
for line in sys.stdin:
    a, b = line.rstrip("\n").split("\t")
    with open(a, "rb") as fa, open(b, "rb") as fb:
        n = fb.seek(0, 2)
        if n == 0:
            print("ok 0", flush=True); continue
        ma = mmap.mmap(fa.fileno(), 0, prot=mmap.PROT_READ)
        mb = mmap.mmap(fb.fileno(), 0, prot=mmap.PROT_READ)
        print(f"ok {n}" if ma[:] == mb[:] else "bad", flush=True)
"#;

impl Mapper {
    fn new() -> Mapper {
        need("python3");
        let c = Command::new("python3").args(["-c", MAPPER]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn();
        Mapper(c.unwrap())
    }

    /// Bytes compared, or why not.
    fn compare(&mut self, view: &Path, built: &Path) -> Result<u64, String> {
        let stdin = self.0.stdin.as_mut().unwrap();
        writeln!(stdin, "{}\t{}", view.display(), built.display()).map_err(|e| e.to_string())?;
        let mut line = String::new();
        BufReader::new(self.0.stdout.as_mut().unwrap()).read_line(&mut line).map_err(|e| e.to_string())?;
        match line.trim().strip_prefix("ok ") {
            Some(n) => Ok(n.parse().unwrap()),
            None => Err(format!("mmap of {} differs from {}: {line:?}", view.display(), built.display())),
        }
    }
}

impl Drop for Mapper {
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        let _ = self.0.wait();
    }
}

/// What a stat tells, compared between view and build.
fn stat_line(p: &Path) -> Result<String, String> {
    let m = fs::symlink_metadata(p).map_err(|e| format!("{}: {e}", p.display()))?;
    let (size, mtime) = if m.is_file() { (m.size(), m.mtime()) } else { (0, 0) };
    Ok(format!("{:o} {} {} {size} {mtime}", m.mode(), m.uid(), m.gid()))
}

/// A random range of a file read from both sides; returns the bytes compared.
fn read_range(rng: &mut Rng, view: &Path, built: &Path) -> Result<u64, String> {
    let (fv, fb) = (fs::File::open(view), fs::File::open(built));
    let (fv, fb) = (fv.map_err(|e| format!("{}: {e}", view.display()))?, fb.unwrap());
    let size = fb.metadata().unwrap().len();
    let offset = rng.below(size + 1);
    let len = rng.below(1 << 20).min(size - offset) as usize;
    let (mut a, mut b) = (vec![0; len], vec![0; len]);
    fv.read_exact_at(&mut a, offset).map_err(|e| format!("{}: read at {offset}: {e}", view.display()))?;
    fb.read_exact_at(&mut b, offset).unwrap();
    match a == b {
        true => Ok(len as u64),
        false => Err(format!("{}: {len} bytes at {offset} differ from the build", view.display())),
    }
}

fn one_op(rng: &mut Rng, t: &Tree, mp: &Path, built: &Path, mapper: &mut Option<Mapper>) -> Result<u64, String> {
    let both = |rel: &String| (mp.join(rel), built.join(rel));
    match rng.below(10) {
        0..=2 => {
            let (v, b) = both(rng.pick(&t.files));
            read_range(rng, &v, &b)
        }
        3 | 4 => {
            let all = [&t.files[..], &t.dirs[..], &t.links[..]].concat();
            let (v, b) = both(rng.pick(&all));
            let (sv, sb) = (stat_line(&v)?, stat_line(&b)?);
            (sv == sb).then_some(0).ok_or(format!("{}: stat {sv} against {sb}", v.display()))
        }
        5 | 6 => {
            let (v, b) = both(rng.pick(&t.dirs));
            let names = |d: &Path| -> Result<BTreeSet<_>, String> {
                let rd = fs::read_dir(d).map_err(|e| format!("{}: {e}", d.display()))?;
                Ok(rd.map(|e| e.unwrap().file_name()).collect())
            };
            (names(&v)? == names(&b)?).then_some(0).ok_or(format!("{}: listing differs", v.display()))
        }
        7 | 8 => {
            let (v, b) = both(rng.pick(&t.links));
            let target = fs::read_link(&v).map_err(|e| format!("{}: {e}", v.display()))?;
            (target == fs::read_link(&b).unwrap()).then_some(0).ok_or(format!("{}: link differs", v.display()))
        }
        _ => match mapper {
            Some(m) => {
                let (v, b) = both(rng.pick(&t.files));
                m.compare(&v, &b)
            }
            None => Ok(0),
        },
    }
}

fn worker(seed: u64, t: &Tree, mp: &Path, built: &Path, until: Instant, c: &Counters) -> Result<(), String> {
    let mut rng = Rng(seed);
    // A quarter of the threads also map files (each mapper is a process).
    let mut mapper = seed.is_multiple_of(4).then(Mapper::new);
    while Instant::now() < until {
        let bytes = one_op(&mut rng, t, mp, built, &mut mapper)?;
        c.ops.fetch_add(1, Ordering::Relaxed);
        c.bytes.fetch_add(bytes, Ordering::Relaxed);
    }
    c.mmaps.fetch_add(u64::from(mapper.is_some()), Ordering::Relaxed);
    Ok(())
}

/// Stat every entry of the view and read every file once, so that what the daemon keeps per
/// inode (the host file's first stamp, its open descriptor) is in place before the baseline:
/// growth after that is a leak, not a cache filling.
fn warm_up(t: &Tree, mp: &Path) {
    for rel in t.dirs.iter().chain(&t.links) {
        fs::symlink_metadata(mp.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    }
    for rel in &t.files {
        fs::read(mp.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    }
}

/// The daemon's RSS after `baseline` and at the end, while `THREADS` workers run for `secs`
/// (stopped and continued halfway).
fn run_workers(t: &Arc<Tree>, mp: &Path, built: &Path, pid: i32, secs: u64) -> (Arc<Counters>, u64, u64) {
    let seed = seed();
    let started = Instant::now();
    let until = started + Duration::from_secs(secs);
    let counters = Arc::new(Counters::default());
    let workers: Vec<_> = (0..THREADS as u64)
        .map(|i| {
            let (t, mp, built, c) = (t.clone(), mp.to_path_buf(), built.to_path_buf(), counters.clone());
            std::thread::spawn(move || worker(seed.wrapping_add(i), &t, &mp, &built, until, &c))
        })
        .collect();
    let baseline = if secs >= 120 { 60 } else { 10 };
    std::thread::sleep(Duration::from_secs(baseline));
    let rss_start = rss_kib(pid);
    std::thread::sleep((started + Duration::from_secs(secs / 2)).saturating_duration_since(Instant::now()));
    stop_and_continue(pid);
    for w in workers {
        w.join().unwrap().unwrap_or_else(|e| panic!("{e} (seed {seed})"));
    }
    (counters, rss_start, rss_kib(pid))
}

#[test]
fn soak_of_libguestfs_view() {
    let secs = soak_secs().max(12);
    let s = Scratch::new("soak");
    let built = s.path("built");
    ok(ours().args(["--build", "-f", "chroot", LIBGUESTFS_APPLIANCE, "-o"]).arg(&built));
    let t = Arc::new(tree(&built));
    let mp = s.path("mnt");
    let m = mount(Path::new(LIBGUESTFS_APPLIANCE), &mp, &[]);
    let pid = m.daemon().unwrap();
    warm_up(&t, &mp);
    let (c, rss_start, rss_end) = run_workers(&t, &mp, &built, pid, secs);
    assert!(running(pid) && is_mounted(&mp), "the daemon {pid} died");
    let (ops, bytes) = (c.ops.load(Ordering::Relaxed), c.bytes.load(Ordering::Relaxed));
    println!(
        "soak {secs} s, {THREADS} threads ({} mapping): {ops} ops ({} ops/s), {} MiB compared, daemon RSS {rss_start} → {rss_end} KiB",
        c.mmaps.load(Ordering::Relaxed),
        ops / secs,
        bytes >> 20
    );
    assert!(ops > 0 && bytes > 0);
    assert!(rss_end <= rss_start + 2048, "daemon RSS grew from {rss_start} to {rss_end} KiB");
}

/// Host files of the changing appliance: version 0 is what was there at mount time.
const HOST_FILES: u64 = 24;

fn host_size(idx: u64) -> u64 {
    // Every third file is larger than the kernel's readahead window, so that it is only
    // partly in the page cache when it changes.
    if idx.is_multiple_of(3) {
        (6 << 20) + idx * 4099
    } else {
        10_000 + idx * 777
    }
}

/// Bytes `[offset, offset + len)` of version `v` of file `idx`.
fn content(idx: u64, v: u64, offset: u64, len: usize) -> Vec<u8> {
    (offset..offset + len as u64)
        .map(|p| (Rng((idx << 32) ^ (v << 48) ^ (p / 8)).next() >> ((p % 8) * 8)) as u8)
        .collect()
}

fn write_version(path: &Path, idx: u64, v: u64, size: u64) {
    fs::write(path, content(idx, v, 0, size as usize)).unwrap();
}

/// What the readers of the changing appliance saw: versions read per file, and errors.
#[derive(Default, Debug)]
struct Seen {
    versions: Vec<BTreeSet<u64>>,
    errors: BTreeSet<i32>,
    reads: u64,
    failed: u64,
}

/// Versions written to each host file (version 0 first), shared with the readers.
type Written = Mutex<Vec<Vec<u64>>>;

/// One read of a random range of host file `idx` through the view (in `dir`): which of the
/// versions written to it the bytes are, if any.
fn read_version(rng: &mut Rng, dir: &Path, idx: u64, written: &Written) -> std::io::Result<Option<u64>> {
    let size = host_size(idx);
    let offset = rng.below(size);
    let len = rng.below(256 << 10).min(size - offset) as usize;
    let f = fs::File::open(dir.join(format!("f{idx}")))?;
    // Now and then the view's cached pages of the file are dropped, so that reads after a
    // change reach the daemon (the first full read cached every page, and without memory
    // pressure nothing else evicts them: on a loaded machine the changes went unnoticed).
    if rng.below(64) == 0 {
        nix::fcntl::posix_fadvise(&f, 0, 0, nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED)?;
    }
    let mut buf = vec![0; len];
    f.read_exact_at(&mut buf, offset)?;
    let versions = written.lock().unwrap()[idx as usize].clone();
    let head = buf.len().min(8);
    let same = |v: u64| content(idx, v, offset, head) == buf[..head] && content(idx, v, offset, len) == buf;
    Ok(versions.into_iter().find(|&v| same(v)))
}

/// Change host files under the mount until `until`: delete, truncate in place, replace by
/// rename, rewrite in place (each new content a new version of the same size); delete and
/// replace the base image (by one with other bytes, from `alt`).
fn mutate(rng: &mut Rng, host: &Path, d: &Path, alt: &Path, written: &Written, until: Instant) {
    let mut version = 0;
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(30));
        let idx = rng.below(HOST_FILES);
        let path = host.join(format!("f{idx}"));
        version += 1;
        let action = rng.below(5);
        if matches!(action, 2 | 3) {
            written.lock().unwrap()[idx as usize].push(version);
        }
        match action {
            0 => drop(fs::remove_file(&path)),
            1 => drop(fs::OpenOptions::new().write(true).open(&path).and_then(|f| f.set_len(host_size(idx) / 2))),
            2 => {
                let tmp = host.join("new");
                write_version(&tmp, idx, version, host_size(idx));
                fs::rename(&tmp, &path).unwrap();
            }
            3 => {
                let f = fs::OpenOptions::new().write(true).create(true).truncate(false).open(&path).unwrap();
                f.write_all_at(&content(idx, version, 0, host_size(idx) as usize), 0).unwrap();
            }
            _ => {
                let _ = fs::remove_file(d.join("base.tar.gz"));
                ok(Command::new("tar").arg("-czf").arg(d.join("base.tar.gz")).arg("-C").arg(alt).arg("base-file"));
            }
        }
    }
}

/// Readers of the changing appliance: `dir` is where its host files are in the view; every
/// eighth read is of the base image's file, which must always be `base`.
fn changing_reader(seed: u64, dir: &Path, base: (&Path, &[u8]), written: &Written, until: Instant) -> Seen {
    let mut rng = Rng(seed);
    let mut seen = Seen { versions: vec![BTreeSet::new(); HOST_FILES as usize], ..Seen::default() };
    while Instant::now() < until {
        if rng.below(8) == 0 {
            assert_eq!(fs::read(base.0).unwrap(), base.1, "the base image's file changed in the view");
            continue;
        }
        let idx = rng.below(HOST_FILES);
        seen.reads += 1;
        match read_version(&mut rng, dir, idx, written) {
            Ok(Some(v)) => drop(seen.versions[idx as usize].insert(v)),
            Ok(None) => panic!("f{idx}: the bytes read are of no version written to it: a mix (seed {seed})"),
            Err(e) => {
                seen.failed += 1;
                seen.errors.insert(e.raw_os_error().unwrap_or(-1));
            }
        }
    }
    seen
}

/// The scratch appliance: `HOST_FILES` host files (version 0) and a base image with one
/// file; returns (supermin.d, host dir, alternative base dir, the base file's bytes).
fn changing_appliance(s: &Scratch) -> (PathBuf, PathBuf, PathBuf, Vec<u8>) {
    let (d, host, base, alt) = (s.path("supermin.d"), s.path("host"), s.path("base"), s.path("alt"));
    for dir in [&d, &host, &base, &alt] {
        fs::create_dir(dir).unwrap();
    }
    for idx in 0..HOST_FILES {
        write_version(&host.join(format!("f{idx}")), idx, 0, host_size(idx));
    }
    let bytes = b"version 0 of the base image\n".repeat(5000);
    fs::write(base.join("base-file"), &bytes).unwrap();
    fs::write(alt.join("base-file"), "another base image\n").unwrap();
    ok(Command::new("tar").arg("-czf").arg(d.join("base.tar.gz")).arg("-C").arg(&base).arg("base-file"));
    fs::write(d.join("hostfiles"), format!("{}/f*\n", host.display())).unwrap();
    (d, host, alt, bytes)
}

/// Host files deleted, truncated, replaced and rewritten under the mount, and its base image
/// deleted and replaced: every byte read is the version the view first read (here version 0:
/// every file is read once before the changes start), or the read fails with EIO (ENOENT
/// for a deleted file the view had not kept open); the base image's file never changes.
#[test]
fn changed_host_files_read_as_their_first_version_or_eio() {
    let secs = (soak_secs() / 2).clamp(10, 300);
    let s = Scratch::new("soak-changing");
    let (d, host, alt, base_bytes) = changing_appliance(&s);
    let mp = s.path("mnt");
    let m = mount(&d, &mp, &["--no-passthrough"]);
    let pid = m.daemon().unwrap();
    let dir = mp.join(host.strip_prefix("/").unwrap());
    for idx in 0..HOST_FILES {
        assert_eq!(fs::read(dir.join(format!("f{idx}"))).unwrap()[..4096], content(idx, 0, 0, 4096)[..]);
    }
    let written: Arc<Written> = Arc::new(Mutex::new(vec![vec![0]; HOST_FILES as usize]));
    let until = Instant::now() + Duration::from_secs(secs);
    let seed = seed();
    let readers: Vec<_> = (0..8u64)
        .map(|i| {
            let (dir, base, w) = (dir.clone(), (mp.join("base-file"), base_bytes.clone()), written.clone());
            std::thread::spawn(move || changing_reader(seed.wrapping_add(i), &dir, (&base.0, &base.1), &w, until))
        })
        .collect();
    let mutator = {
        let (host, d, alt, w) = (host.clone(), d.clone(), alt.clone(), written.clone());
        std::thread::spawn(move || mutate(&mut Rng(seed), &host, &d, &alt, &w, until))
    };
    std::thread::sleep(Duration::from_secs(secs / 2));
    stop_and_continue(pid);
    mutator.join().unwrap();
    let seen: Vec<Seen> = readers.into_iter().map(|r| r.join().unwrap()).collect();
    assert!(running(pid) && is_mounted(&mp), "the daemon {pid} died");
    let (reads, failed) = (seen.iter().map(|s| s.reads).sum::<u64>(), seen.iter().map(|s| s.failed).sum::<u64>());
    let errors: BTreeSet<i32> = seen.iter().flat_map(|s| s.errors.iter().copied()).collect();
    let versions: BTreeSet<u64> = seen.iter().flat_map(|s| s.versions.iter().flatten().copied()).collect();
    println!(
        "changing host files, {secs} s: {reads} reads, {failed} failed with {errors:?}, versions read {versions:?}"
    );
    assert_eq!(versions, BTreeSet::from([0]), "only the version the view first read may be read");
    assert!(errors.iter().all(|e| [libc::EIO, libc::ENOENT].contains(e)), "errors other than EIO/ENOENT: {errors:?}");
    assert!(failed > 0 && reads > failed, "the changes were never noticed, or nothing could be read");
}
