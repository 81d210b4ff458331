//! Helpers shared by the integration tests: running binaries, scratch directories, and the
//! tree dump + comparison used to hold our outputs against the real supermin's.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const ORACLE: &str = "/usr/bin/supermin";
pub const LIBGUESTFS_APPLIANCE: &str = "/usr/lib/x86_64-linux-gnu/guestfs/supermin.d";

pub fn ours() -> Command {
    Command::new(env!("CARGO_BIN_EXE_supermin"))
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
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    out
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

/// Unmounts at drop, lazily and by every means, so a failed test leaves no mount behind.
pub struct Mounted(pub PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        use std::process::Stdio;
        let _ = Command::new("fusermount3").arg("-u").arg("-z").arg(&self.0).stderr(Stdio::null()).status();
        let _ = Command::new("umount").arg("-l").arg(&self.0).stderr(Stdio::null()).status();
    }
}

pub fn is_mounted(mp: &Path) -> bool {
    let mp = fs::canonicalize(mp).unwrap_or_else(|_| mp.to_path_buf());
    let table = fs::read_to_string("/proc/self/mountinfo").unwrap();
    table.lines().any(|l| l.split(' ').nth(4) == Some(mp.to_str().unwrap()))
}

/// `supermin mount --daemon ARGS… INPUT MP`: returns once the view is ready.
pub fn mount(input: &Path, mp: &Path, args: &[&str]) -> Mounted {
    fs::create_dir_all(mp).unwrap();
    let guard = Mounted(mp.to_path_buf());
    ok(ours().arg("mount").arg("--daemon").args(args).arg(input).arg(mp));
    assert!(is_mounted(mp), "mount --daemon returned before the mount was there");
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
