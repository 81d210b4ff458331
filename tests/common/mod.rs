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
pub fn median(mut v: Vec<Duration>) -> Duration {
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
        stdout(&out),
        stderr(&out)
    );
    out
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Require `tool` on the PATH: a missing one fails the test, saying so, never a silent skip.
pub fn need(tool: &str) {
    let found =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file())).unwrap_or(false);
    assert!(found, "{tool} is missing: run `scripts/install-deps.sh` as root first (the tests use the real tools)");
}

/// A failure as our tools report one: exit code 1 and one line on stderr, which mentions every
/// one of `needles`. Returns that line.
pub fn assert_one_line_error(out: &Output, needles: &[&str]) -> String {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "not one line: {err}");
    for n in needles {
        assert!(err.contains(n), "{err:?} should mention {n:?}");
    }
    err
}

/// Make `out` look like the output of an earlier build (marked as ours, with a MARKER file
/// in it), to check that failed builds leave it alone.
pub fn previous_output(out: &Path) {
    fs::create_dir_all(out).unwrap();
    fs::write(out.join("MARKER"), "previous").unwrap();
    ok(Command::new("setfattr").args(["-n", "user.supermin.output", "-v", "chroot"]).arg(out));
}

pub fn assert_previous_output_kept(out: &Path) {
    assert_eq!(fs::read_to_string(out.join("MARKER")).unwrap(), "previous", "{}: the previous output", out.display());
}

/// The names in `dir` that start with `prefix` (temporary directories a build left behind).
pub fn names_starting_with(dir: &Path, prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort();
    names
}

/// Puts a file's content back at drop, also after a failed assertion, for tests that edit a
/// file they do not own (a host or sysroot config file).
pub struct Restore {
    path: PathBuf,
    content: Vec<u8>,
}

impl Restore {
    /// Remember `path`'s content now.
    pub fn new(path: &Path) -> Restore {
        Restore { path: path.to_path_buf(), content: fs::read(path).unwrap() }
    }

    pub fn original(&self) -> &[u8] {
        &self.content
    }
}

impl Drop for Restore {
    fn drop(&mut self) {
        if let Err(e) = fs::write(&self.path, &self.content) {
            // Never a second panic while unwinding (that would abort the whole run).
            if std::thread::panicking() {
                eprintln!("cannot restore {}: {e}", self.path.display());
            } else {
                panic!("cannot restore {}: {e}", self.path.display());
            }
        }
    }
}

/// The SHA-256 of a file, by `sha256sum`.
pub fn sha256(path: &Path) -> String {
    stdout(&ok(Command::new("sha256sum").arg(path))).split_whitespace().next().unwrap_or("").to_string()
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

impl Diff {
    /// Fails unless the two trees are the same, but for extra paths `allowed_extra` accepts;
    /// names up to 20 paths of each kind. `what` says which trees were compared.
    pub fn assert_same_but(&self, what: &str, allowed_extra: impl Fn(&str) -> bool) {
        let extra: Vec<String> = self.extra.iter().filter(|p| !allowed_extra(p)).cloned().collect();
        let show = |v: &[String]| v.iter().take(20).cloned().collect::<Vec<_>>().join("\n  ");
        assert!(
            self.missing.is_empty(),
            "{what}: {} paths missing, e.g.:\n  {}",
            self.missing.len(),
            show(&self.missing)
        );
        assert!(
            self.different.is_empty(),
            "{what}: {} paths differ, e.g.:\n  {}",
            self.different.len(),
            show(&self.different)
        );
        assert!(extra.is_empty(), "{what}: {} extra paths, e.g.:\n  {}", extra.len(), show(&extra));
    }
}

/// Fails unless the tree at `got` is the one at `expected`, entry for entry (see [`compare`]).
pub fn assert_same_tree(expected: &Path, got: &Path) {
    let what = format!("{} against {}", got.display(), expected.display());
    compare(expected, got).assert_same_but(&what, |_| false);
}

/// Every ancestor directory of an absolute path, `/` excluded.
pub fn ancestors(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut p = path;
    while let Some(i) = p.rfind('/') {
        p = &p[..i];
        if p.is_empty() {
            break;
        }
        out.push(p.to_string());
    }
    out
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
            set.extend(ancestors(&spelling));
            set.insert(spelling);
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
        // Test binaries of two cargo runs may get here at once: one builds, the others wait
        // for it (instead of deleting the tree it is building). Released when `lock` drops.
        let lock = fs::File::create(root.with_extension("lock")).unwrap();
        // SAFETY: flock on a descriptor we own.
        assert_eq!(unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) }, 0);
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
            wait_gone(pid);
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

/// Whether process `pid` exits within 10 s, reaped or not.
pub fn wait_gone(pid: i32) -> bool {
    within_10s(|| !running(pid))
}

/// Whether process `pid` is still running: it exists and is not a zombie (an exited process
/// whose parent, here often a slow-reaping init, has not collected it: its resources are
/// gone).
pub fn running(pid: i32) -> bool {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
    !matches!(state, None | Some("Z" | "X"))
}

pub fn within_10s(done: impl Fn() -> bool) -> bool {
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

/// Whether `path` has the extended attribute `name`, with a value.
pub fn has_xattr(path: &Path, name: &str) -> bool {
    xattr(path, name).is_some_and(|v| !v.is_empty())
}

/// The last 40 lines of `s` (a long log in a failure message).
pub fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Evidence that the appliance libguestfs cached in `cache` (its LIBGUESTFS_CACHEDIR) was
/// built by us: our fingerprint xattr on its `appliance.d`.
pub fn built_by_us(cache: &Path) -> bool {
    let Ok(rd) = fs::read_dir(cache) else { return false };
    rd.flatten().any(|e| has_xattr(&e.path().join("appliance.d"), "user.supermin.fingerprint"))
}

/// The daemon serving the view mounted at `mp` (its `user.supermin.pid` attribute).
pub fn daemon_pid(mp: &Path) -> i32 {
    let value =
        xattr(mp, "user.supermin.pid").unwrap_or_else(|| panic!("{}: no user.supermin.pid attribute", mp.display()));
    String::from_utf8_lossy(&value).trim().parse().unwrap()
}

/// `supermin mount --fuse --daemon ARGS… INPUT MP`: returns once the view is ready, with a guard
/// that unmounts it and waits for its daemon.
pub fn mount(input: &Path, mp: &Path, args: &[&str]) -> Mounted {
    mount_by(ours(), input, mp, args).0
}

/// [`mount`] run as `cmd` (our binary with its environment set), with what it printed.
pub fn mount_by(mut cmd: Command, input: &Path, mp: &Path, args: &[&str]) -> (Mounted, Output) {
    fs::create_dir_all(mp).unwrap();
    let guard = Mounted::new(mp);
    let out = ok(cmd.args(["mount", "--fuse", "--daemon"]).args(args).arg(input).arg(mp));
    assert!(is_mounted(mp), "mount --daemon returned before the mount was there");
    (guard.with_daemon(daemon_pid(mp)), out)
}

/// A filesystem image mounted read-only through a loop device at `mp` (made if need be).
pub fn loop_mount(image: &Path, mp: &Path) -> Mounted {
    fs::create_dir_all(mp).unwrap();
    let guard = Mounted::new(mp);
    ok(Command::new("mount").args(["-o", "loop,ro"]).arg(image).arg(mp));
    guard
}

/// One member of a tar archive.
pub struct Member {
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub data: Vec<u8>,
}

/// The members of a .tar.gz by name, as stored (`./etc/x`).
pub fn tar_members(tgz: &Path) -> BTreeMap<String, Member> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(fs::File::open(tgz).unwrap()));
    let mut out = BTreeMap::new();
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let h = e.header().clone();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        out.insert(name, Member { mode: h.mode().unwrap(), uid: h.uid().unwrap(), gid: h.gid().unwrap(), data });
    }
    out
}

/// The members of a `base.tar.gz` as text: path (without the leading `.`) → content.
pub fn base_image_text(tgz: &Path) -> BTreeMap<String, String> {
    tar_members(tgz)
        .into_iter()
        .map(|(name, m)| (name.trim_start_matches('.').to_string(), String::from_utf8(m.data).unwrap()))
        .collect()
}

/// `tar tv` of an archive, with numeric owners.
fn tar_listing(archive: &Path) -> String {
    stdout(&ok(Command::new("tar").args(["--numeric-owner", "-tvf"]).arg(archive)))
}

/// The tar archive `archive` is the tree `tree`: `tar tv` lists it line for line as GNU tar
/// lists `tar --sort=name --numeric-owner -C TREE -c .`, and it unpacks to the same tree.
/// `scratch` holds the reference archive and the unpacked copy; `what` names the case.
pub fn assert_tar_is_tree(archive: &Path, tree: &Path, scratch: &Path, what: &str) {
    let reference = scratch.join("reference.tar");
    let gnu = ["--numeric-owner", "--sort=name", "-C"];
    ok(Command::new("tar").args(gnu).arg(tree).arg("-cf").arg(&reference).arg("."));
    let (ours, theirs) = (tar_listing(archive), tar_listing(&reference));
    let diff: Vec<(&str, &str)> = ours.lines().zip(theirs.lines()).filter(|(a, b)| a != b).take(5).collect();
    assert!(diff.is_empty(), "{what}: entries differ from GNU tar's of the chroot build (ours, GNU's): {diff:#?}");
    assert_eq!(ours.lines().count(), theirs.lines().count(), "{what}: number of entries");
    let unpacked = scratch.join("unpacked");
    fs::create_dir(&unpacked).unwrap();
    let untar = ["--numeric-owner", "--same-permissions", "--same-owner", "-xf"];
    ok(Command::new("tar").args(untar).arg(archive).arg("-C").arg(&unpacked));
    compare(tree, &unpacked).assert_same_but(&format!("{what}: the unpacked archive against the tree"), |_| false);
}

/// A `SOURCE_DATE_EPOCH` an hour before this test process started, the same for all its
/// builds: two builds compared entry for entry then agree on the times of host directories
/// that other tests change meanwhile (`/var/tmp`, clamped to it), while older times are kept.
pub fn pinned_epoch() -> &'static str {
    static EPOCH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    EPOCH.get_or_init(|| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        (now - 3600).to_string()
    })
}

/// splitmix64: small and seedable, for random moments, paths and ranges in tests.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in [0, n).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len() as u64) as usize]
    }
}

/// The kernel's offer of FUSE over io_uring to new mounts (`enable_uring`), set for a test or
/// a bench row and put back as it was when dropped. Tests that set it run one at a time.
pub struct KernelUring {
    old: String,
    _turn: std::sync::MutexGuard<'static, ()>,
}

pub const ENABLE_URING: &str = "/sys/module/fuse/parameters/enable_uring";

impl KernelUring {
    pub fn set(on: bool) -> KernelUring {
        static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
        let old = fs::read_to_string(ENABLE_URING).unwrap_or_else(|e| panic!("{ENABLE_URING}: {e}"));
        fs::write(ENABLE_URING, if on { "Y" } else { "N" }).unwrap();
        KernelUring { old, _turn: turn }
    }
}

impl Drop for KernelUring {
    fn drop(&mut self) {
        let _ = fs::write(ENABLE_URING, self.old.trim());
    }
}

/// The unprivileged account of the hostile-user tests (issue 19): a user who owns directories
/// that appliances name, and swaps files and symlinks in them while root works. Created with
/// `useradd` the first time (several test binaries may race to create it: whoever loses finds
/// it made). Returns its uid and gid.
pub fn hostile_user() -> (u32, u32) {
    // Once per test binary (its tests run on parallel threads); binaries run one at a time.
    static USER: std::sync::OnceLock<(u32, u32)> = std::sync::OnceLock::new();
    *USER.get_or_init(make_hostile_user)
}

fn make_hostile_user() -> (u32, u32) {
    const NAME: &str = "supermin-hostile";
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").args([flag, NAME]).output().ok()?;
        String::from_utf8(out.stdout).ok()?.trim().parse().ok().filter(|_| out.status.success())
    };
    // useradd fails while another process holds /etc/passwd's lock: try again a while.
    for _ in 0..50 {
        if id("-u").is_some() {
            break;
        }
        let _ = Command::new("useradd")
            .args(["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", NAME])
            .stderr(Stdio::null())
            .status();
        if id("-u").is_none() {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let (uid, gid) = (id("-u"), id("-g"));
    let (Some(uid), Some(gid)) = (uid, gid) else {
        panic!("cannot create the test user {NAME} with useradd (the hostile-user tests run as root)")
    };
    assert_ne!(uid, 0, "{NAME} must not be root");
    (uid, gid)
}

/// `cmd` to be run as the hostile user.
pub fn as_hostile(mut cmd: Command) -> Command {
    use std::os::unix::process::CommandExt;
    let (uid, gid) = hostile_user();
    cmd.uid(uid).gid(gid);
    cmd
}

/// A directory owned by the hostile user (mode 0755), inside `parent`.
pub fn hostile_dir(parent: &Path, name: &str) -> PathBuf {
    let (uid, gid) = hostile_user();
    let dir = parent.join(name);
    fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
    dir
}

/// The hostile user exchanging `a` and `b` (two names in one directory it owns) with
/// `renameat2(RENAME_EXCHANGE)` in a tight loop, until dropped. Perl is Essential in Debian,
/// so it is there to run the loop without a helper binary of ours.
pub struct Swapper(std::process::Child);

impl Swapper {
    pub fn start(a: &Path, b: &Path) -> Swapper {
        Swapper::start_many(&[(a.to_path_buf(), b.to_path_buf())])
    }

    /// Exchanging each of `pairs` in turn, round after round.
    pub fn start_many(pairs: &[(PathBuf, PathBuf)]) -> Swapper {
        // syscall 316 is renameat2 on x86_64; -100 is AT_FDCWD, 2 is RENAME_EXCHANGE.
        let script = "while (1) { for (my $i = 0; $i < @ARGV; $i += 2) { \
                      syscall(316, -100, $ARGV[$i], -100, $ARGV[$i + 1], 2) == 0 or die \"renameat2: $!\" } }";
        let args: Vec<&Path> = pairs.iter().flat_map(|(a, b)| [a.as_path(), b.as_path()]).collect();
        Swapper::perl(script, &args)
    }

    /// Any perl `script` with `args`, run as the hostile user until dropped.
    pub fn perl(script: &str, args: &[&Path]) -> Swapper {
        let mut cmd = Command::new("perl");
        cmd.args(["-e", script]).args(args).stdin(Stdio::null());
        let child = as_hostile(cmd).spawn().expect("perl (Debian's perl-base) runs the swap loop");
        Swapper(child)
    }

    /// Whether the loop is still running (it dies when a swap fails).
    pub fn alive(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None))
    }
}

impl Drop for Swapper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
