//! Helpers shared by the integration tests (and the benches, which include this file): running
//! binaries, scratch directories, the tree dump + comparison used to hold our outputs against
//! the real supermin's, and mounts.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const ORACLE: &str = "/usr/bin/supermin";
pub const LIBGUESTFS_APPLIANCE: &str = "/usr/lib/x86_64-linux-gnu/guestfs/supermin.d";

/// Our binary, as cargo built it for the tests and benches.
pub const OURS: &str = env!("CARGO_BIN_EXE_supermin");

pub fn ours() -> Command {
    Command::new(OURS)
}

/// The real supermin 5; the tests need it (scripts/install-deps.sh installs it).
pub fn oracle() -> Command {
    assert!(
        Path::new(ORACLE).exists(),
        "{ORACLE} is missing: run `sudo scripts/install-deps.sh` (the parity tests compare against it)"
    );
    Command::new(ORACLE)
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (run `sudo scripts/install-deps.sh`)"))
}

/// The median of some timings (the benches).
pub fn median(mut v: Vec<std::time::Duration>) -> std::time::Duration {
    v.sort();
    v[v.len() / 2]
}

/// Run and require success.
pub fn ok(cmd: &mut Command) -> Output {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A scratch directory removed at drop (also after a failed assertion), with read-only
/// directories made writable first.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let base =
            std::env::var_os("SUPERMIN_TEST_TMP").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/var/tmp"));
        let dir = base.join(format!("supermin-test-{}-{}", name, std::process::id()));
        let _ = Command::new("rm").arg("-rf").arg(&dir).status();
        fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
    pub fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = Command::new("chmod").arg("-R").arg("u+w").arg(&self.0).status();
        let _ = Command::new("rm").arg("-rf").arg(&self.0).status();
    }
}

/// What we compare for one path of an output tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: char,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Regular files only.
    pub size: u64,
    /// Regular files only (directory mtimes depend on when the build ran).
    pub mtime: i64,
    pub target: Option<PathBuf>,
    pub rdev: u64,
    pub nlink: u64,
}

/// Every path under `root` (relative, starting with `/`) and its metadata.
pub fn dump(root: &Path) -> BTreeMap<String, Entry> {
    let mut out = BTreeMap::new();
    let mut stack = vec![PathBuf::from("/")];
    while let Some(rel) = stack.pop() {
        let full = root.join(rel.strip_prefix("/").unwrap());
        let m = fs::symlink_metadata(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()));
        let ft = m.file_type();
        let kind = if ft.is_dir() {
            'd'
        } else if ft.is_file() {
            'f'
        } else if ft.is_symlink() {
            'l'
        } else if ft.is_char_device() {
            'c'
        } else if ft.is_block_device() {
            'b'
        } else if ft.is_fifo() {
            'p'
        } else {
            's'
        };
        let entry = Entry {
            kind,
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
            size: if kind == 'f' { m.size() } else { 0 },
            mtime: if kind == 'f' { m.mtime() } else { 0 },
            target: if kind == 'l' { Some(fs::read_link(&full).unwrap()) } else { None },
            rdev: if kind == 'c' || kind == 'b' { m.rdev() } else { 0 },
            nlink: if kind == 'd' { 0 } else { m.nlink() },
        };
        if kind == 'd' {
            for e in fs::read_dir(&full).unwrap() {
                stack.push(rel.join(e.unwrap().file_name()));
            }
        }
        out.insert(rel.to_string_lossy().into_owned(), entry);
    }
    out
}

fn same_content(a: &Path, b: &Path) -> bool {
    let (mut fa, mut fb) = (fs::File::open(a).unwrap(), fs::File::open(b).unwrap());
    let (mut ba, mut bb) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let na = read_full(&mut fa, &mut ba);
        let nb = read_full(&mut fb, &mut bb);
        if na != nb || ba[..na] != bb[..nb] {
            return false;
        }
        if na == 0 {
            return true;
        }
    }
}

fn read_full(f: &mut fs::File, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]).unwrap() {
            0 => break,
            k => n += k,
        }
    }
    n
}

/// Differences between two trees, one line each: missing on our side, different, and extra
/// (paths only we have). `root` itself is not compared (its mode is the builder's choice).
pub struct Diff {
    pub missing: Vec<String>,
    pub different: Vec<String>,
    pub extra: Vec<String>,
}

pub fn compare(expected_root: &Path, ours_root: &Path) -> Diff {
    compare_with(expected_root, ours_root, true)
}

/// As [`compare`], optionally ignoring link counts (for host trees that other tests may
/// hard-link to meanwhile).
pub fn compare_with(expected_root: &Path, ours_root: &Path, link_counts: bool) -> Diff {
    let (mut exp, mut got) = (dump(expected_root), dump(ours_root));
    if !link_counts {
        exp.values_mut().chain(got.values_mut()).for_each(|e| e.nlink = 0);
    }
    let mut diff = Diff { missing: vec![], different: vec![], extra: vec![] };
    for (path, e) in &exp {
        if path == "/" {
            continue;
        }
        match got.get(path) {
            None => diff.missing.push(path.clone()),
            Some(g) => {
                // Hard links: the original never makes any (it copies each file), so counts
                // are compared where its tree has them.
                if g != e {
                    diff.different.push(format!("{path}: expected {e:?}, got {g:?}"));
                } else if e.kind == 'f' {
                    let rel = path.trim_start_matches('/');
                    if !same_content(&expected_root.join(rel), &ours_root.join(rel)) {
                        diff.different.push(format!("{path}: content differs"));
                    }
                }
            }
        }
    }
    for path in got.keys() {
        if !exp.contains_key(path) {
            diff.extra.push(path.clone());
        }
    }
    diff
}

/// Paths dpkg says the given packages own (from dpkg's own database, via `dpkg-query -L`),
/// with every parent directory of each, as seen inside an appliance where `/bin`, `/lib`… are
/// symlinks into `/usr` (so both spellings are included).
pub fn owned_by(packages: &[&str]) -> std::collections::BTreeSet<String> {
    let mut set = std::collections::BTreeSet::new();
    if packages.is_empty() {
        return set;
    }
    let out = ok(Command::new("dpkg-query").arg("-L").args(packages));
    for line in String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.starts_with('/')) {
        for spelling in usr_spellings(line) {
            let mut p = spelling.as_str();
            set.insert(p.to_string());
            while let Some(i) = p.rfind('/') {
                p = &p[..i];
                if p.is_empty() {
                    break;
                }
                set.insert(p.to_string());
            }
        }
    }
    set
}

fn usr_spellings(path: &str) -> Vec<String> {
    let mut v = vec![path.to_string()];
    for top in ["/bin/", "/sbin/", "/lib/", "/lib64/"] {
        if path.starts_with(top) {
            v.push(format!("/usr{path}"));
        }
    }
    v
}

/// One minbase bookworm tree made by mmdebstrap, shared by every test and run (made once,
/// about a minute; kept in /var/tmp).
pub fn debian_root() -> PathBuf {
    static ROOT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    ROOT.get_or_init(|| {
        let root = PathBuf::from(
            std::env::var_os("SUPERMIN_TEST_DEBROOT").unwrap_or_else(|| "/var/tmp/supermin-test-bookworm-root".into()),
        );
        let done = root.with_extension("complete");
        if done.exists() {
            return root;
        }
        assert!(
            Command::new("mmdebstrap").arg("--version").output().is_ok(),
            "mmdebstrap is missing: run `sudo scripts/install-deps.sh`"
        );
        let _ = fs::remove_dir_all(&root);
        ok(Command::new("mmdebstrap").args(["--quiet", "--variant=minbase", "bookworm"]).arg(&root));
        fs::write(&done, "").unwrap();
        root
    })
    .clone()
}

/// Whatever is mounted at a mountpoint (a FUSE view of ours, also one another user made; a
/// loop-mounted image, a tmpfs, an overlay), unmounted at drop, also after a failed assertion:
/// lazily (a busy mount is detached, never waited for), by every means (`umount -l`, then
/// `fusermount3 -u -z`) until nothing is mounted there, and quietly. A guard that knows the
/// view's daemon then waits (up to 10 s) for it to exit, as `supermin umount` does, so that
/// no daemon outlives its test and the next mount at the same place starts clean.
///
/// Make it before mounting: where nothing is mounted, dropping it does nothing. Dropping it
/// never touches the mountpoint itself, so a dead or hung daemon cannot block it.
pub struct Mounted {
    mp: PathBuf,
    daemon: Option<i32>,
}

impl Mounted {
    pub fn new(mp: &Path) -> Mounted {
        Mounted { mp: mp.to_path_buf(), daemon: None }
    }

    /// Also wait at drop for the view's daemon `pid` to exit.
    pub fn with_daemon(mut self, pid: i32) -> Mounted {
        self.daemon = Some(pid);
        self
    }

    pub fn path(&self) -> &Path {
        &self.mp
    }

    pub fn daemon(&self) -> Option<i32> {
        self.daemon
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let quietly = |cmd: &mut Command| {
            let _ = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status();
        };
        // Mounts may be stacked: one detach each.
        for _ in 0..8 {
            if !is_mounted(&self.mp) {
                break;
            }
            quietly(Command::new("umount").arg("-l").arg(&self.mp));
            if is_mounted(&self.mp) {
                quietly(Command::new("fusermount3").args(["-u", "-z"]).arg(&self.mp));
            }
        }
        if let Some(pid) = self.daemon {
            wait_exited(pid);
        }
    }
}

/// Whether something is mounted at `mp` (per /proc/self/mountinfo). Only the parent is
/// resolved, so that a dead or hung FUSE daemon at `mp` cannot make this fail or block.
pub fn is_mounted(mp: &Path) -> bool {
    let full = match (mp.parent(), mp.file_name()) {
        (Some(parent), Some(name)) => {
            let parent = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
            fs::canonicalize(parent).unwrap_or_else(|_| parent.to_path_buf()).join(name)
        }
        _ => mp.to_path_buf(),
    };
    // mountinfo escapes space, tab, newline and backslash as octal.
    let mut escaped = String::new();
    for c in full.to_string_lossy().chars() {
        match c {
            ' ' | '\t' | '\n' | '\\' => escaped += &format!("\\{:03o}", c as u32),
            c => escaped.push(c),
        }
    }
    let table = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    table.lines().any(|l| l.split(' ').nth(4) == Some(escaped.as_str()))
}

/// Whether process `pid` is gone (`kill(pid, 0)` fails: it exited and was reaped) within 10 s.
pub fn wait_gone(pid: i32) -> bool {
    // SAFETY: signal 0 only probes for existence.
    within_10s(|| unsafe { libc::kill(pid, 0) } != 0)
}

/// Whether process `pid` exited within 10 s, reaped or not: a daemon's parent is init, which
/// may collect it only seconds later.
fn wait_exited(pid: i32) -> bool {
    within_10s(|| match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses.
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => true,
    })
}

fn within_10s(done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// The value of the extended attribute `name` of `path` (`getxattr`), if it has one.
pub fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    let c_name = std::ffi::CString::new(name).ok()?;
    let mut buf = vec![0u8; 4096];
    // SAFETY: valid C strings, and a buffer of the length given.
    let n = unsafe { libc::getxattr(c_path.as_ptr(), c_name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    let n = usize::try_from(n).ok()?;
    buf.truncate(n);
    Some(buf)
}

/// The daemon serving the view mounted at `mp` (its `user.supermin.pid` attribute).
pub fn daemon_pid(mp: &Path) -> i32 {
    let value =
        xattr(mp, "user.supermin.pid").unwrap_or_else(|| panic!("{}: no user.supermin.pid attribute", mp.display()));
    String::from_utf8_lossy(&value).trim().parse().unwrap()
}

/// `supermin mount --daemon ARGS… INPUT MP`: returns once the view is ready, with a guard
/// that unmounts it and waits for its daemon.
pub fn mount(input: &Path, mp: &Path, args: &[&str]) -> Mounted {
    fs::create_dir_all(mp).unwrap();
    let guard = Mounted::new(mp);
    ok(ours().arg("mount").arg("--daemon").args(args).arg(input).arg(mp));
    assert!(is_mounted(mp), "mount --daemon returned before the mount was there");
    guard.with_daemon(daemon_pid(mp))
}

/// A filesystem image mounted read-only through a loop device at `mp` (made if need be).
pub fn loop_mount(image: &Path, mp: &Path) -> Mounted {
    fs::create_dir_all(mp).unwrap();
    let guard = Mounted::new(mp);
    ok(Command::new("mount").args(["-o", "loop,ro"]).arg(image).arg(mp));
    guard
}

/// The members of a `base.tar.gz` as text: path (without the leading `.`) → content.
pub fn base_image_text(tgz: &Path) -> BTreeMap<String, String> {
    let mut a = tar::Archive::new(flate2::read::GzDecoder::new(fs::File::open(tgz).unwrap()));
    a.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().trim_start_matches('.').to_string();
            let mut s = String::new();
            e.read_to_string(&mut s).unwrap();
            (name, s)
        })
        .collect()
}
