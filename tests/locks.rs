//! Lock storms: many processes running libguestfs's own command line at once, as a busy host
//! starting many guests does. Each round the inputs change, and then exactly one process
//! rebuilds while the others wait for the lock and find the output fresh; all succeed; a
//! reader that keeps opening the output meanwhile never sees a missing or half-written file.
//!
//! `SUPERMIN_STORM_ROUNDS` sets the number of rounds (default 20, about 75 s on the shared
//! 2-core machine; fewer for a quick run).

mod common;

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

const CLIENTS: usize = 16;
/// `--size`'s default: the root image's length.
const ROOT_SIZE: u64 = 4 << 30;

fn rounds() -> usize {
    std::env::var("SUPERMIN_STORM_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(20)
}

/// libguestfs's command line (lib/appliance.c), with `-v` to tell who built.
fn libguestfs_build(input: &Path, out: &Path, lock: &Path) -> Command {
    let mut c = ours();
    c.args(["-v", "--build", "--if-newer", "--lock"]).arg(lock);
    c.args(["--copy-kernel", "-f", "ext2", "--host-cpu", "x86_64"]).arg(input).arg("-o").arg(out);
    c.stdout(Stdio::null()).stderr(Stdio::piped());
    c
}

/// Whether `bytes` is a whole newc cpio archive: headers and names in order, ending with
/// the `TRAILER!!!` entry and nothing but padding after it.
fn whole_newc(bytes: &[u8]) -> Result<(), String> {
    let hex = |b: &[u8]| usize::from_str_radix(std::str::from_utf8(b).unwrap_or("x"), 16).map_err(|e| e.to_string());
    let align = |n: usize| n.div_ceil(4) * 4;
    let mut at = 0;
    loop {
        let header = bytes.get(at..at + 110).ok_or(format!("truncated header at {at}"))?;
        if &header[..6] != b"070701" {
            return Err(format!("no newc magic at {at}"));
        }
        let (size, namesize) = (hex(&header[54..62])?, hex(&header[94..102])?);
        let name = bytes.get(at + 110..at + 110 + namesize).ok_or(format!("truncated name at {at}"))?;
        let data = align(at + 110 + namesize);
        if name == b"TRAILER!!!\0" {
            let rest = bytes.get(data..).unwrap_or_default();
            return match rest.iter().all(|&b| b == 0) {
                true => Ok(()),
                false => Err(format!("bytes after the trailer at {data}")),
            };
        }
        at = align(data + size);
        if at > bytes.len() {
            return Err(format!("truncated data of {}", String::from_utf8_lossy(name)));
        }
    }
}

/// The host's kernels, one of which `kernel` must be, byte for byte.
fn host_kernels() -> Vec<Vec<u8>> {
    let kernels: Vec<Vec<u8>> = fs::read_dir("/boot")
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("vmlinuz-"))
        .map(|p| fs::read(p).unwrap())
        .collect();
    assert!(!kernels.is_empty(), "/boot has no vmlinuz-*: libguestfs's appliance needs a kernel");
    kernels
}

/// One look at the output: each of its files is complete. Absent files are allowed only
/// while `may_be_absent`; returns whether the output was there.
fn check_output(out: &Path, kernels: &[Vec<u8>], may_be_absent: bool) -> Result<bool, String> {
    let mut present = 0;
    for name in ["root", "kernel", "initrd"] {
        let path = out.join(name);
        let mut f = match fs::File::open(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && may_be_absent => continue,
            Err(e) => return Err(format!("{}: {e}", path.display())),
            Ok(f) => f,
        };
        present += 1;
        let bad = |why: String| format!("{}: {why}", path.display());
        if name == "root" {
            let len = f.metadata().map_err(|e| e.to_string())?.len();
            let mut magic = [0u8; 2];
            f.seek(SeekFrom::Start(1080)).and_then(|_| f.read_exact(&mut magic)).map_err(|e| e.to_string())?;
            if len != ROOT_SIZE || magic != [0x53, 0xef] {
                return Err(bad(format!("{len} bytes, superblock magic {magic:02x?}")));
            }
            continue;
        }
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).map_err(|e| e.to_string())?;
        if name == "kernel" && !kernels.contains(&bytes) {
            return Err(bad(format!("{} bytes, not one of the host's kernels", bytes.len())));
        }
        if name == "initrd" {
            whole_newc(&bytes).map_err(bad)?;
        }
    }
    match present {
        0 => Ok(false),
        3 => Ok(true),
        _ => Err(format!("{}: only {present} of its 3 files", out.display())),
    }
}

#[derive(Debug, Default)]
struct ReaderStats {
    looks: usize,
    absent: usize,
    e2fsck_runs: usize,
}

/// Look at the output until `stop`, running `e2fsck -fn` on its root every second.
fn reader(out: PathBuf, built: Arc<AtomicBool>, stop: Arc<AtomicBool>) -> Result<ReaderStats, String> {
    let kernels = host_kernels();
    let mut stats = ReaderStats::default();
    let mut last_fsck = Instant::now();
    while !stop.load(Ordering::Acquire) {
        // Read before looking: once a build has finished, the output must be there.
        let may_be_absent = !built.load(Ordering::Acquire);
        stats.looks += 1;
        if !check_output(&out, &kernels, may_be_absent)? {
            stats.absent += 1;
        } else if last_fsck.elapsed() > Duration::from_secs(1) {
            // The root as opened now (a later swap does not disturb an open image).
            let fsck = run(Command::new("e2fsck").args(["-fn"]).arg(out.join("root")));
            if !fsck.status.success() {
                return Err(format!("e2fsck -fn: {}{}", stdout(&fsck), stderr(&fsck)));
            }
            stats.e2fsck_runs += 1;
            last_fsck = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(stats)
}

/// One round: all clients at once; returns how many built.
fn storm(input: &Path, out: &Path, lock: &Path, round: usize) -> usize {
    let children: Vec<_> = (0..CLIENTS).map(|_| libguestfs_build(input, out, lock).spawn().unwrap()).collect();
    let mut builders = 0;
    for child in children {
        let done = child.wait_with_output().unwrap();
        let log = stderr(&done);
        assert!(done.status.success(), "round {round}: a client failed with {}: {log}", done.status);
        let built = log.contains("wrote the output");
        assert!(built || log.contains("output does not need rebuilding"), "round {round}: {log}");
        builders += usize::from(built);
    }
    builders
}

#[test]
fn lock_storms_build_once_per_round() {
    need("e2fsck");
    let s = Scratch::new("locks");
    let input = s.path("supermin.d");
    ok(Command::new("cp").arg("-a").arg(LIBGUESTFS_APPLIANCE).arg(&input));
    let (out, lock) = (s.path("appliance"), s.path("lock"));
    let (built, stop) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let reader = {
        let (out, built, stop) = (out.clone(), built.clone(), stop.clone());
        std::thread::spawn(move || reader(out, built, stop))
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let mut times = Vec::new();
    for round in 0..rounds() {
        // A new mtime each round: --if-newer must rebuild.
        ok(Command::new("touch").arg("-d").arg(format!("@{}", now - 1000 + round as u64)).arg(input.join("packages")));
        let started = Instant::now();
        let builders = storm(&input, &out, &lock, round);
        times.push(started.elapsed().as_millis());
        built.store(true, Ordering::Release);
        assert_eq!(builders, 1, "round {round}: exactly one of {CLIENTS} clients should build");
    }
    stop.store(true, Ordering::Release);
    let stats = reader.join().unwrap().unwrap_or_else(|e| panic!("the reader saw an incomplete output: {e}"));
    assert!(stats.e2fsck_runs > 0 && stats.looks > stats.absent, "the reader never saw the output: {stats:?}");
    ok(Command::new("e2fsck").args(["-fn"]).arg(out.join("root")));
    println!("{} rounds of {CLIENTS} clients, ms each: {times:?}; reader: {stats:?}", times.len());
}

#[test]
fn whole_newc_tells_truncated_archives() {
    need("cpio");
    let s = Scratch::new("locks-newc");
    let input = s.path("in");
    fs::create_dir(&input).unwrap();
    fs::write(input.join("f"), vec![b'x'; 2000]).unwrap();
    let out = ok(Command::new("sh").arg("-c").arg("cd in && echo f | cpio -o -H newc 2>/dev/null").current_dir(&s.0));
    assert_eq!(whole_newc(&out.stdout), Ok(()));
    let trailer = out.stdout.windows(10).position(|w| w == b"TRAILER!!!").unwrap();
    for cut in [50, 300, trailer - 20, trailer + 5] {
        assert!(whole_newc(&out.stdout[..cut]).is_err(), "cut at {cut}");
    }
}
