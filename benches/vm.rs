//! `run --vm` against its targets (issue 21), in one run: `cargo bench --bench vm` (as root;
//! needs qemu and scripts/install-deps.sh). Not a test: it prints one markdown table (between
//! `vm:begin`/`vm:end` markers) that `scripts/bench-readme.sh` copies into the README.
//!
//! The rows: bash+coreutils running `bash -c 'echo hello'` under TCG, end to end, against
//! what booting the same appliance took before `run --vm` (`--build -f ext2` into a fresh
//! directory, then qemu booting it with the same kernel, its `/init` printing hello); the
//! bytes a `run --vm` writes once its mini initrd is cached, and the cache it needs; the
//! supermin process's peak memory (`VmHWM`, qemu not counted) serving libguestfs's
//! appliance. Each figure is a median of `BENCH_RUNS` (3). `run --vm` gets its own cache
//! directory (`XDG_CACHE_HOME`) and `TMPDIR` in the scratch directory, so that what it
//! writes there can be counted.

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{median, ours, LIBGUESTFS_APPLIANCE};
use support::table::{fmt_ms, Table};
use support::{alternate, mount_timed, ms, runs, settle};

const HELLO: &[&str] = &["/bin/bash", "-c", "echo hello"];
/// libguestfs's appliance's command: `lvm version` needs no device.
const LVM: &[&str] = &["/usr/sbin/lvm", "version"];

/// Where `run --vm` keeps its cache and its private directory, and the reference's cache.
struct Dirs {
    vm_cache: PathBuf,
    vm_tmp: PathBuf,
    build_cache: PathBuf,
}

impl Dirs {
    fn new(scratch: &Path) -> Dirs {
        let d = Dirs {
            vm_cache: scratch.join("vm-cache"),
            vm_tmp: scratch.join("vm-tmp"),
            build_cache: scratch.join("build-cache"),
        };
        for p in [&d.vm_cache, &d.vm_tmp, &d.build_cache] {
            fs::create_dir_all(p).unwrap();
        }
        d
    }

    /// `supermin run --vm --accel tcg INPUT -- CMD`.
    fn run_vm(&self, input: &Path, cmd: &[&str]) -> Command {
        let mut c = ours();
        c.env("XDG_CACHE_HOME", &self.vm_cache).env("TMPDIR", &self.vm_tmp);
        c.args(["run", "--vm", "--accel", "tcg"]).arg(input).arg("--").args(cmd);
        c
    }
}

/// What one run printed and took, and the last values of its `/proc/PID` read every 20 ms.
#[derive(Default)]
struct Sampled {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    status: Option<ExitStatus>,
    elapsed: Duration,
    /// `VmHWM` and `write_bytes` as last read; `RssAnon`, `RssFile`, `RssShmem` (KiB) at the
    /// largest RSS read.
    proc: ProcSample,
}

#[derive(Clone, Copy, Default)]
struct ProcSample {
    hwm_kib: u64,
    anon_kib: u64,
    file_kib: u64,
    shmem_kib: u64,
    write_bytes: u64,
}

impl ProcSample {
    fn rss_kib(&self) -> u64 {
        self.anon_kib + self.file_kib + self.shmem_kib
    }

    /// The process's figures now, or `None` once it is gone (or a zombie, without memory).
    fn read(pid: u32) -> Option<ProcSample> {
        let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let io = fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
        let field = |text: &str, name: &str| {
            text.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.split_whitespace().next()?.parse().ok())
        };
        Some(ProcSample {
            hwm_kib: field(&status, "VmHWM:")?,
            anon_kib: field(&status, "RssAnon:")?,
            file_kib: field(&status, "RssFile:")?,
            shmem_kib: field(&status, "RssShmem:")?,
            write_bytes: field(&io, "write_bytes:")?,
        })
    }
}

/// Run `cmd` (stdin empty, streams captured), reading its `/proc/PID` every 20 ms from
/// another thread; the time is the child's alone (its wait is not the sampler's).
fn run_sampled(mut cmd: Command) -> Sampled {
    let start = Instant::now();
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let pid = child.id();
    let collect = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            r.read_to_end(&mut v).unwrap();
            v
        })
    };
    let out = collect(Box::new(child.stdout.take().unwrap()));
    let err = collect(Box::new(child.stderr.take().unwrap()));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        std::thread::spawn(move || {
            let (mut last, mut peak) = (ProcSample::default(), ProcSample::default());
            while !done.load(Ordering::Relaxed) {
                match ProcSample::read(pid) {
                    Some(s) => last = s,
                    None => break,
                }
                if last.rss_kib() > peak.rss_kib() {
                    peak = last;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            ProcSample { anon_kib: peak.anon_kib, file_kib: peak.file_kib, shmem_kib: peak.shmem_kib, ..last }
        })
    };
    let status = child.wait().unwrap();
    let elapsed = start.elapsed();
    done.store(true, Ordering::Relaxed);
    let (stdout, stderr) = (out.join().unwrap(), err.join().unwrap());
    Sampled { stdout, stderr, status: Some(status), elapsed, proc: sampler.join().unwrap() }
}

/// `run --vm` of `input` running `cmd`, checked: exit 0 and, if given, exactly `expect` out.
fn vm(dirs: &Dirs, input: &Path, cmd: &[&str], expect: Option<&[u8]>) -> Sampled {
    let s = run_sampled(dirs.run_vm(input, cmd));
    let stderr = String::from_utf8_lossy(&s.stderr);
    assert!(s.status.unwrap().success(), "run --vm {cmd:?} failed: {stderr}");
    if let Some(expect) = expect {
        assert_eq!(s.stdout, expect, "run --vm {cmd:?}: unexpected output; stderr: {stderr}");
    }
    s
}

/// The reference: `--build -f ext2` of `input` (whose `/init` prints hello) into `out`, then
/// qemu booting it with the same kernel until the init's exit panics the kernel. The build +
/// boot time, and the boot's alone.
fn build_and_boot(dirs: &Dirs, input: &Path, out: &Path) -> (Duration, Duration) {
    let start = Instant::now();
    let status = ours()
        .env("XDG_CACHE_HOME", &dirs.build_cache)
        .args(["--build", "-f", "ext2"])
        .arg(input)
        .arg("-o")
        .arg(out)
        .status();
    assert!(status.unwrap().success(), "--build -f ext2 failed");
    let booting = Instant::now();
    let o = Command::new("qemu-system-x86_64")
        .args(["-accel", "tcg", "-nodefaults", "-display", "none", "-no-reboot", "-m", "1024M"])
        .arg("-kernel")
        .arg(out.join("kernel"))
        .arg("-initrd")
        .arg(out.join("initrd"))
        .arg("-drive")
        .arg(format!("file={},format=raw,if=virtio", out.join("root").display()))
        .args(["-serial", "stdio", "-append", "console=ttyS0 root=/dev/vda quiet panic=-1"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let (total, boot) = (start.elapsed(), booting.elapsed());
    let console = String::from_utf8_lossy(&o.stdout);
    assert!(console.lines().any(|l| l.trim() == "hello"), "the ext2 appliance did not say hello: {console}");
    (total, boot)
}

/// `input` plus a base image holding an executable `/init` that prints hello.
fn with_init(input: &Path, scratch: &Path) -> PathBuf {
    let (tree, dir) = (scratch.join("init-tree"), scratch.join("bash-init.d"));
    fs::create_dir_all(&tree).unwrap();
    fs::create_dir_all(&dir).unwrap();
    fs::write(tree.join("init"), "#!/bin/bash\necho hello\n").unwrap();
    fs::set_permissions(tree.join("init"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    for e in fs::read_dir(input).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), dir.join(e.file_name())).unwrap();
    }
    let status =
        Command::new("tar").arg("-C").arg(&tree).arg("-czf").arg(dir.join("init.tar.gz")).arg("./init").status();
    assert!(status.unwrap().success());
    dir
}

/// Bytes allocated under `dir` (`du -sB1`).
fn du(dir: &Path) -> u64 {
    let o = Command::new("du").arg("-sB1").arg(dir).output().unwrap();
    String::from_utf8_lossy(&o.stdout).split_whitespace().next().unwrap().parse().unwrap()
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1048576.0)
}

/// Row 1: end to end against build + boot (fresh directories, removed afterwards); the
/// allocated size of one reference output, for row 2.
fn bench_time(t: &mut Table, dirs: &Dirs, bash: &Path, scratch: &Path) -> u64 {
    let fresh = scratch.join("fresh");
    fs::create_dir_all(&fresh).unwrap();
    let input = with_init(bash, scratch);
    // Both once first: the mini initrd, the manifests and the page cache, as a user's next runs find them.
    vm(dirs, &input, HELLO, Some(b"hello\n"));
    build_and_boot(dirs, &input, &fresh.join("warm"));
    let mut boots = Vec::new();
    let (ours, reference) = alternate(
        runs(),
        |_| vm(dirs, &input, HELLO, Some(b"hello\n")).elapsed,
        |i| {
            let (total, boot) = build_and_boot(dirs, &input, &fresh.join(format!("ref-{i}")));
            boots.push(boot);
            total
        },
    );
    let output = du(&fresh.join("warm"));
    let _ = Command::new("rm").arg("-rf").arg(&fresh).status();
    settle();
    let what = "bash+coreutils: `run --vm --accel tcg` of `bash -c 'echo hello'`, end to end";
    t.times(what, ours, ("`--build -f ext2` + boot", reference), ("≤ 1.0x", 1.0));
    let boot = median(boots);
    let what = "bash+coreutils: the same, against the reference's boot alone";
    t.push(
        what,
        fmt_ms(ours),
        format!("boot {}", fmt_ms(boot)),
        format!("{:.2}x", ms(ours) / ms(boot)),
        "(information)",
        None,
    );
    output
}

/// Every file under `dirs`: its inode and size.
fn snapshot(dirs: &[&Path]) -> HashMap<PathBuf, (u64, u64)> {
    fn walk(dir: &Path, into: &mut HashMap<PathBuf, (u64, u64)>) {
        for e in fs::read_dir(dir).into_iter().flatten().flatten() {
            let Ok(m) = e.path().symlink_metadata() else { continue };
            if m.is_dir() {
                walk(&e.path(), into);
            } else {
                into.insert(e.path(), (m.ino(), m.len()));
            }
        }
    }
    let mut files = HashMap::new();
    for d in dirs {
        walk(d, &mut files);
    }
    files
}

/// Bytes in files that are new in `after`, or grew.
fn written(before: &HashMap<PathBuf, (u64, u64)>, after: &HashMap<PathBuf, (u64, u64)>) -> u64 {
    after
        .iter()
        .map(|(p, &(ino, size))| match before.get(p) {
            Some(&(i, s)) if i == ino => size.saturating_sub(s),
            _ => size,
        })
        .sum()
}

/// Row 2: what a `run --vm` with its initrd cached writes to files (its cache and `TMPDIR`,
/// and its `write_bytes`), against the reference's output; and the cache `run --vm` needs.
fn bench_bytes(t: &mut Table, dirs: &Dirs, bash: &Path, reference_output: u64) {
    let watched = [dirs.vm_cache.as_path(), dirs.vm_tmp.as_path()];
    // Its manifest cached too (row 1 ran another input), as on a user's second run.
    vm(dirs, bash, HELLO, Some(b"hello\n"));
    let (mut files, mut io) = (Vec::new(), Vec::new());
    for _ in 0..runs() {
        let before = snapshot(&watched);
        let s = vm(dirs, bash, HELLO, Some(b"hello\n"));
        files.push(written(&before, &snapshot(&watched)));
        io.push(s.proc.write_bytes);
    }
    let (files, io) = (files.iter().max().copied().unwrap(), io.iter().max().copied().unwrap());
    let what = "bash+coreutils: bytes written by a `run --vm`, initrd cached (most of any run: new files in its cache and `TMPDIR`; its `write_bytes`)";
    let ours = format!("{files} B; {io} B");
    let reference = format!("`-f ext2` output {}", mib(reference_output));
    let ratio = format!("{:.2}x", files as f64 / reference_output as f64);
    t.push(what, ours, reference, ratio, "0 B of root image", Some(files == 0));

    let initrd: u64 = snapshot(&[&dirs.vm_cache])
        .iter()
        .filter(|(p, _)| p.file_name().unwrap().to_string_lossy().ends_with(".initrd"))
        .map(|(_, &(_, size))| size)
        .sum();
    let total = du(&dirs.vm_cache);
    let what = "bash+coreutils: `run --vm`'s cache (of which the mini initrd)";
    let ours = format!("{} ({})", mib(total), mib(initrd));
    let reference = format!("`-f ext2` output {}", mib(reference_output));
    let ratio = format!("{:.2}x", total as f64 / reference_output as f64);
    t.push(what, ours, reference, ratio, "< 64 MiB", Some(total < 64 << 20));
}

/// Row 3: the supermin process's peak RSS serving libguestfs's appliance to a VM running
/// `lvm version`, against its FUSE daemon's after `mount --daemon` + `ls /`.
fn bench_memory(t: &mut Table, dirs: &Dirs, bash: &Path, scratch: &Path) {
    let input = Path::new(LIBGUESTFS_APPLIANCE);
    let lvm_ok = |s: &Sampled| String::from_utf8_lossy(&s.stdout).contains("LVM version");
    // The first run resolves the appliance and caches its manifest, as a user's first would.
    assert!(lvm_ok(&vm(dirs, input, LVM, None)), "lvm version printed no version");
    let samples: Vec<ProcSample> = (0..runs()).map(|_| vm(dirs, input, LVM, None).proc).collect();
    let mid = median_by(&samples, |s| s.hwm_kib);

    let mp = scratch.join("fuse-mnt");
    drop(mount_timed(input, &mp, &[]));
    let daemons: Vec<u64> = (0..runs())
        .map(|_| {
            let (m, _) = mount_timed(input, &mp, &[]);
            ProcSample::read(m.daemon().unwrap() as u32).unwrap().hwm_kib
        })
        .collect();
    let daemon = *median_by(&daemons, |&k| k);
    let what = "libguestfs: supermin's peak RSS (`VmHWM`, qemu not counted) in `run --vm` of `lvm version`";
    let ratio = format!("{:.2}x", mid.hwm_kib as f64 / daemon as f64);
    let reference = format!("FUSE daemon after `mount --daemon` + `ls /` {}", mib(daemon << 10));
    // Where it was at its largest: the process's own memory, its files (the binary, cache
    // files it maps), and the guest's memory that vhost-user maps and the daemon touched.
    let ours = format!(
        "{} (largest sample: anon {}, file {}, shared {})",
        mib(mid.hwm_kib << 10),
        mib(mid.anon_kib << 10),
        mib(mid.file_kib << 10),
        mib(mid.shmem_kib << 10)
    );
    t.push(what, ours, reference, ratio, "< 32 MiB", Some(mid.hwm_kib < 32 << 10));

    let s = vm(dirs, bash, HELLO, Some(b"hello\n")).proc;
    let what = "bash+coreutils: supermin's peak RSS in `run --vm` of `bash -c 'echo hello'`";
    let ratio = format!("{:.2}x", s.hwm_kib as f64 / mid.hwm_kib as f64);
    t.push(what, mib(s.hwm_kib << 10), format!("libguestfs {}", mib(mid.hwm_kib << 10)), ratio, "(information)", None);
}

/// The element of `v` whose `key` is the median.
fn median_by<T>(v: &[T], key: impl Fn(&T) -> u64) -> &T {
    let mut sorted: Vec<&T> = v.iter().collect();
    sorted.sort_by_key(|x| key(x));
    sorted[sorted.len() / 2]
}

fn main() {
    let scratch = support::scratch("supermin-vm-bench");
    let dirs = Dirs::new(&scratch);
    let mut t = Table::new("vm");
    let bash = support::prepare_bash(&scratch);
    let reference_output = bench_time(&mut t, &dirs, &bash, &scratch);
    bench_bytes(&mut t, &dirs, &bash, reference_output);
    bench_memory(&mut t, &dirs, &bash, &scratch);
    t.print();
    let _ = Command::new("rm").arg("-rf").arg(&scratch).status();
}
