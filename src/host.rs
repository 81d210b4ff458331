//! Access to the host, or to a `--sysroot` tree: every host path the tool reads goes through
//! here, so a different root is one parameter, not a search-and-replace.
//!
//! With a sysroot, a path is resolved *inside* the root, the way a chroot (or `openat2`'s
//! `RESOLVE_IN_ROOT`) would: an absolute symlink (`/etc/alternatives/awk -> /usr/bin/mawk`,
//! `/lib64 -> /usr/lib64` in some images) means the root's own `/usr`, and `..` stops at the
//! root. Letting the kernel follow such links would silently read the *build host's* files
//! into an appliance that claims to come from another distribution. With root `/` paths are
//! used as they are: the kernel's resolution is already the right one.

use std::cell::RefCell;
use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::ffi::CString;
use std::fs;
use std::hash::{Hash, Hasher};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, AT_FDCWD};
use nix::sys::stat::Mode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::util::pathwalk::{self, End, Entry};
use crate::util::sys;

thread_local! {
    /// Resolved directories per (root, path): every file of a package shares a handful of
    /// parent directories, so each is resolved (a few lstats) once. Roots are read, not
    /// modified, during a run.
    static DIRS: RefCell<HashMap<(PathBuf, String), String>> = RefCell::new(HashMap::new());
}

/// While on ([`journal_start`]), the answer to every question below the root was asked: what
/// a resolve learnt from the host, so that a cached resolve can check the host still answers
/// the same ([`Answer::recheck`]) instead of resolving again.
static JOURNAL: Mutex<Option<Vec<Answer>>> = Mutex::new(None);
/// Whether [`JOURNAL`] is on, read without taking its lock.
static JOURNAL_ON: AtomicBool = AtomicBool::new(false);

/// Something a resolve asks the host about a path inside the root.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Question {
    Lstat(String),
    Stat(String),
    Realpath(String),
    Glob(String),
}

/// A question and a hash of what the host answered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    pub question: Question,
    pub hash: u64,
    /// For a (l)stat that found a directory: the hash of what stays when entries come and go
    /// inside it (which directory, its type, permissions and owner; not its time or size).
    pub dir: Option<u64>,
}

/// How the host answers a recorded question now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recheck {
    Same,
    /// The same directory, but entries came or went inside it: only its modification time
    /// (seconds, nanoseconds) and size differ.
    DirTime(i64, u32),
    Changed,
}

impl Answer {
    /// Ask the question again and compare.
    pub fn recheck(&self, root: &Path) -> Recheck {
        let _quiet = Pause::new();
        let m = match &self.question {
            Question::Lstat(p) => lstat(root, p),
            Question::Stat(p) => stat(root, p),
            Question::Realpath(p) => return same_if(hash(&realpath(root, p)) == self.hash),
            Question::Glob(p) => return same_if(hash(&glob(root, p)) == self.hash),
        };
        match &m {
            _ if identity(&m) == self.hash => Recheck::Same,
            Ok(st) if self.dir.is_some() && dir_identity(&m) == self.dir => {
                Recheck::DirTime(st.mtime(), st.mtime_nsec() as u32)
            }
            _ => Recheck::Changed,
        }
    }
}

fn same_if(same: bool) -> Recheck {
    if same {
        Recheck::Same
    } else {
        Recheck::Changed
    }
}

fn hash(value: &impl Hash) -> u64 {
    let mut h = DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

/// What the manifest and the view take from a `stat`: type and permissions, owner, size,
/// device number, modification time, and which file it is (the view's staleness check).
fn identity(m: &io::Result<fs::Metadata>) -> u64 {
    match m {
        Ok(m) => hash(&(m.dev(), m.ino(), m.mode(), m.uid(), m.gid(), m.size(), m.rdev(), m.mtime(), m.mtime_nsec())),
        Err(e) => hash(&e.raw_os_error()),
    }
}

/// [`identity`] of a directory without what changes as entries come and go inside it.
fn dir_identity(m: &io::Result<fs::Metadata>) -> Option<u64> {
    match m {
        Ok(m) if m.is_dir() => Some(hash(&(m.dev(), m.ino(), m.mode(), m.uid(), m.gid()))),
        _ => None,
    }
}

/// Start recording what the host answers (and forget this thread's resolved directories, so
/// that their lookups are asked again and recorded).
pub fn journal_start() {
    DIRS.with(|c| c.borrow_mut().clear());
    *JOURNAL.lock().unwrap_or_else(|e| e.into_inner()) = Some(Vec::new());
    JOURNAL_ON.store(true, Ordering::SeqCst);
}

/// Stop recording; every answer given since [`journal_start`], each question once.
pub fn journal_take() -> Vec<Answer> {
    JOURNAL_ON.store(false, Ordering::SeqCst);
    let mut answers = JOURNAL.lock().unwrap_or_else(|e| e.into_inner()).take().unwrap_or_default();
    let mut seen = std::collections::HashSet::new();
    answers.retain(|a| seen.insert(a.question.clone()));
    answers
}

fn record(question: impl FnOnce() -> Question, hash: impl FnOnce() -> u64) {
    record_answer(|| Answer { question: question(), hash: hash(), dir: None });
}

/// [`record`] for a (l)stat: its answer, and what of it must stay for a directory.
fn record_stat(question: impl FnOnce() -> Question, m: &io::Result<fs::Metadata>) {
    record_answer(|| Answer { question: question(), hash: identity(m), dir: dir_identity(m) });
}

fn record_answer(answer: impl FnOnce() -> Answer) {
    let mut journal = JOURNAL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(j) = journal.as_mut() {
        j.push(answer());
    }
}

thread_local! {
    static PAUSED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Not recording on this thread while it lives (re-asking a question records nothing).
struct Pause(bool);

impl Pause {
    fn new() -> Pause {
        Pause(PAUSED.with(|p| p.replace(true)))
    }
}

impl Drop for Pause {
    fn drop(&mut self) {
        PAUSED.with(|p| p.set(self.0));
    }
}

fn recording() -> bool {
    JOURNAL_ON.load(Ordering::Relaxed) && !PAUSED.with(|p| p.get())
}

fn is_host(root: &Path) -> bool {
    root == Path::new("/")
}

/// The host path for absolute path `p` under `root`. Every component but the last is
/// resolved inside `root`; the last is not followed (this is `lstat`'s view).
pub fn path(root: &Path, p: &str) -> PathBuf {
    if is_host(root) {
        return PathBuf::from(p);
    }
    let (dir, name) = split(p);
    let dir = resolve_dir(root, dir);
    let mut out = root.join(dir.trim_start_matches('/'));
    if !name.is_empty() {
        out.push(name);
    }
    out
}

/// The host path for `p` with the final symlink followed too, inside `root` (`stat`'s view).
pub fn path_follow(root: &Path, p: &str) -> PathBuf {
    if is_host(root) {
        return PathBuf::from(p);
    }
    root.join(resolve(root, p).trim_start_matches('/'))
}

/// `p` as a canonical absolute path inside `root` (`realpath` in a chroot). Components that do
/// not exist are kept as spelled.
pub fn realpath(root: &Path, p: &str) -> String {
    let real = match is_host(root) {
        true => fs::canonicalize(p).map(|r| r.to_string_lossy().into_owned()).unwrap_or_else(|_| p.to_string()),
        false => resolve(root, p),
    };
    if recording() {
        record(|| Question::Realpath(p.to_string()), || hash(&real));
    }
    real
}

pub fn lstat(root: &Path, p: &str) -> io::Result<fs::Metadata> {
    let m = fs::symlink_metadata(path(root, p));
    if recording() {
        record_stat(|| Question::Lstat(p.to_string()), &m);
    }
    m
}

pub fn stat(root: &Path, p: &str) -> io::Result<fs::Metadata> {
    let m = fs::metadata(path_follow(root, p));
    if recording() {
        record_stat(|| Question::Stat(p.to_string()), &m);
    }
    m
}

/// A regular host file as the resolve found it: where it is, and which file it was then.
///
/// Someone else may change the host between the resolve and the read (a user who owns a
/// directory that a hostfiles glob names, the owner of a `--sysroot`), so the file is never
/// read by its path again: [`HostFile::open`] opens it with no symlink followed anywhere on the
/// way and inside the root, and checks that it is still the same file, before a byte is read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostFile {
    /// The root joined with the path resolved inside it: every directory on the way was a real
    /// directory (no symlink) when resolved. For messages, and to open.
    pub path: PathBuf,
    /// How many bytes of `path` name the root (`/` or the sysroot).
    root_len: u32,
    dev: u64,
    ino: u64,
}

impl HostFile {
    /// `p`, a path inside `root` whose `lstat` said `st` (a regular file).
    pub fn new(root: &Path, p: &str, st: &fs::Metadata) -> HostFile {
        let path = if is_host(root) {
            let _quiet = Pause::new(); // the file's own lstat is the answer a cache rechecks
            let (dir, name) = split(p);
            let mut out = PathBuf::from("/");
            out.push(resolve_dir(root, dir).trim_start_matches('/'));
            out.push(name);
            out
        } else {
            path(root, p)
        };
        HostFile { path, root_len: root_len(root), dev: st.dev(), ino: st.ino() }
    }

    /// A host file found at `path` on the host (under `root`) by walking a directory whose
    /// path was resolved inside the root first (no symlink on the way: [`HostFile::open`]
    /// refuses one), whose `lstat` said `st`.
    pub fn found(root: &Path, path: &Path, st: &fs::Metadata) -> HostFile {
        HostFile { path: path.to_path_buf(), root_len: root_len(root), dev: st.dev(), ino: st.ino() }
    }

    /// Its path inside its root, absolute (`/usr/bin/bash` also in a sysroot): where an
    /// overlayfs whose data layer is that root finds it (the erofs writer's redirects).
    pub fn path_in_root(&self) -> Vec<u8> {
        let bytes = self.path.as_os_str().as_bytes();
        let rel = &bytes[(self.root_len as usize).min(bytes.len())..];
        let rel = &rel[rel.iter().take_while(|&&b| b == b'/').count()..];
        let mut out = Vec::with_capacity(rel.len() + 1);
        out.push(b'/');
        out.extend_from_slice(rel);
        out
    }

    /// A host file named by `path` under `/`, matching no file (unit tests of what holds one).
    #[cfg(test)]
    pub fn named(path: &str) -> HostFile {
        HostFile { path: PathBuf::from(path), root_len: 1, dev: 0, ino: 0 }
    }

    /// Open it for reading: through no symlink (not even in a directory on the way) and never
    /// out of its root; it must be the file the resolve found, `size` bytes long, or the
    /// error says that the file changed. In a sysroot, whose owner may make device nodes,
    /// the file is checked before it is opened for reading (an `open` of a device can act).
    pub fn open(&self, size: u64) -> io::Result<fs::File> {
        let split = (self.root_len as usize).min(self.path.as_os_str().len());
        let (root, rel) = self.path.as_os_str().as_bytes().split_at(split);
        let file = if root == b"/" {
            let file = open_no_symlinks(None, &self.path, OFlag::O_RDONLY | OFlag::O_NONBLOCK | noatime());
            self.check(file.map_err(|e| self.loop_is_change(e))?, size)?
        } else {
            let root = Path::new(std::ffi::OsStr::from_bytes(root));
            let rel = Path::new(std::ffi::OsStr::from_bytes(rel));
            let handle = open_no_symlinks(Some(root), rel, OFlag::O_PATH);
            let handle = self.check(handle.map_err(|e| self.loop_is_change(e))?, size)?;
            reopen(&handle)?
        };
        Ok(file)
    }

    /// `file` if it is the file resolved, `size` bytes long.
    fn check(&self, file: fs::File, size: u64) -> io::Result<fs::File> {
        // fstat, not std's statx: the cheapest question, asked of every file read.
        let m = nix::sys::stat::fstat(&file).map_err(io::Error::from)?;
        let regular = m.st_mode & libc::S_IFMT == libc::S_IFREG;
        if !regular || (m.st_dev, m.st_ino) != (self.dev, self.ino) {
            return Err(self.changed("another file is there now"));
        }
        if m.st_size as u64 != size {
            return Err(self.changed(&format!("its size is {} bytes now, not {size}", m.st_size)));
        }
        Ok(file)
    }

    fn loop_is_change(&self, e: io::Error) -> io::Error {
        match e.raw_os_error() {
            Some(libc::ELOOP) | Some(libc::EXDEV) => self.changed("a symlink is on its path now"),
            _ => e,
        }
    }

    fn changed(&self, how: &str) -> io::Error {
        io::Error::other(format!("changed since the appliance was resolved ({how}): build or mount again"))
    }
}

/// How many bytes of a host path name `root` (`/` or the sysroot).
fn root_len(root: &Path) -> u32 {
    if is_host(root) {
        1
    } else {
        root.as_os_str().len() as u32
    }
}

/// `p`, an absolute path inside a root, relative to the root's descriptor (`.` for the root).
fn relative(p: &str) -> &str {
    match p.trim_start_matches('/') {
        "" => ".",
        rel => rel,
    }
}

/// Open `p` (absolute, inside the sysroot `root`) with `flags`, symlinks followed as in a
/// chroot: resolved inside `root` by the kernel, never out of it. Before Linux 5.6 (no
/// `openat2`) our walker resolves it and the last component is not followed.
fn open_following_in_root(root: &Path, p: &str, flags: OFlag) -> io::Result<OwnedFd> {
    let how = OpenHow::new().flags(flags).resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    match nix::fcntl::openat2(root_fd(root)?.as_fd(), relative(p), how) {
        Err(Errno::ENOSYS) => nix::fcntl::open(&path_follow(root, p), flags | OFlag::O_NOFOLLOW, Mode::empty()),
        r => r,
    }
    .map_err(io::Error::from)
}

/// Open `path` with `flags`, no symlink followed on the way: relative to the sysroot `root`
/// when given (and never out of it), else `path` is absolute. Kernels before 5.6 have no
/// `openat2`: then the last component only is not followed, and the caller's identity check
/// is what holds.
fn open_no_symlinks(root: Option<&Path>, path: &Path, flags: OFlag) -> io::Result<fs::File> {
    // `openat2` refuses (EINVAL) any flag `O_PATH` ignores, `O_NOCTTY` among them.
    let noctty = if flags.contains(OFlag::O_PATH) { OFlag::empty() } else { OFlag::O_NOCTTY };
    let flags = flags | OFlag::O_NOFOLLOW | noctty | OFlag::O_CLOEXEC;
    let opened = match root {
        Some(root) => {
            let how =
                OpenHow::new().flags(flags).resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_SYMLINKS);
            match nix::fcntl::openat2(root_fd(root)?.as_fd(), path, how) {
                // `path` may be absolute inside the root: joined below it, not in its place.
                Err(Errno::ENOSYS) => {
                    nix::fcntl::open(&root.join(path.strip_prefix("/").unwrap_or(path)), flags, Mode::empty())
                }
                r => r,
            }
        }
        None => match nix::fcntl::openat2(
            AT_FDCWD,
            path,
            OpenHow::new().flags(flags).resolve(ResolveFlag::RESOLVE_NO_SYMLINKS),
        ) {
            Err(Errno::ENOSYS) => nix::fcntl::open(path, flags, Mode::empty()),
            r => r,
        },
    };
    opened.map(fs::File::from).map_err(io::Error::from)
}

/// A descriptor for reading the file that `handle` (an `O_PATH` descriptor) names: the same
/// inode, whatever has become of its path.
fn reopen(handle: &fs::File) -> io::Result<fs::File> {
    let magic = format!("/proc/self/fd/{}", handle.as_raw_fd());
    let flags = OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC | noatime();
    nix::fcntl::open(magic.as_str(), flags, Mode::empty()).map(fs::File::from).map_err(io::Error::from)
}

/// `O_NOATIME` when we may use it on any file (root): reading the host should not write to it.
fn noatime() -> OFlag {
    // Asked once: a build opens thousands of files.
    static ROOT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    match ROOT.get_or_init(|| nix::unistd::geteuid().is_root()) {
        true => OFlag::O_NOATIME,
        false => OFlag::empty(),
    }
}

/// The sysroots' directories, each opened once (`O_PATH`) for [`HostFile::open`].
static ROOTS: Mutex<Vec<(PathBuf, Arc<OwnedFd>)>> = Mutex::new(Vec::new());

fn root_fd(root: &Path) -> io::Result<Arc<OwnedFd>> {
    let mut roots = ROOTS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, fd)) = roots.iter().find(|(r, _)| r == root) {
        return Ok(fd.clone());
    }
    let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let fd = Arc::new(nix::fcntl::open(root, flags, Mode::empty()).map_err(io::Error::from)?);
    roots.push((root.to_path_buf(), fd.clone()));
    Ok(fd)
}

/// Open `p`, an absolute path inside `root`, for reading, as a chroot would: symlinks are
/// followed but resolved inside `root` (distributions do symlink kernels and modules), and
/// never out of it. The file must be a regular one, checked through an `O_PATH` handle before
/// it is opened for reading, because a sysroot's owner may make device nodes. For files a
/// path names in the sysroot's own metadata (a kernel, `modules.dep` and what it lists),
/// which [`HostFile`] does not cover since no resolve found them. With root `/` the path is
/// the build host's, opened as given.
pub fn open_in_root(root: &Path, p: &str) -> io::Result<fs::File> {
    let flags = OFlag::O_PATH | OFlag::O_CLOEXEC;
    let handle = fs::File::from(if is_host(root) {
        nix::fcntl::open(p, flags, Mode::empty()).map_err(io::Error::from)?
    } else {
        open_following_in_root(root, p, flags)?
    });
    if !handle.metadata()?.is_file() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"));
    }
    reopen(&handle)
}

/// The names in the directory `p` (inside `root`, symlinks resolved inside it), listed
/// through a descriptor of that directory, so that no symlink swapped in on the way lists a
/// directory of the build host instead.
pub fn read_dir_in_root(root: &Path, p: &str) -> io::Result<Vec<std::ffi::OsString>> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOCTTY | OFlag::O_CLOEXEC;
    let fd = if is_host(root) {
        nix::fcntl::open(p, flags, Mode::empty()).map_err(io::Error::from)?
    } else {
        open_following_in_root(root, p, flags)?
    };
    HostDir(nix::dir::Dir::from_fd(fd).map_err(io::Error::from)?).names()
}

/// A directory of the host opened by [`HostDir::open`]: its entries are looked at through
/// its descriptor, never by a path that could be redirected.
pub struct HostDir(nix::dir::Dir);

impl HostDir {
    /// The directory `p`, a path inside `root` with no symlink anywhere on it (resolve it first
    /// with [`realpath`]): a symlink swapped in since makes this fail, and nothing on the way
    /// leaves the root.
    pub fn open(root: &Path, p: &str) -> io::Result<HostDir> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY;
        let file = match is_host(root) {
            true => open_no_symlinks(None, Path::new(p), flags)?,
            false => open_no_symlinks(Some(root), Path::new(relative(p)), flags)?,
        };
        Ok(HostDir(nix::dir::Dir::from_fd(file.into()).map_err(io::Error::from)?))
    }

    /// Its entries' names (without `.` and `..`), in the directory's order.
    pub fn names(&mut self) -> io::Result<Vec<std::ffi::OsString>> {
        let mut names = Vec::new();
        for e in self.0.iter() {
            let name = e.map_err(io::Error::from)?.file_name().to_bytes().to_vec();
            if name != b"." && name != b".." {
                names.push(std::ffi::OsString::from_vec(name));
            }
        }
        Ok(names)
    }

    /// Its entries with their `lstat`, each looked up in this directory (`O_PATH|O_NOFOLLOW`).
    pub fn entries(&mut self) -> io::Result<Vec<(std::ffi::OsString, fs::Metadata)>> {
        let flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let mut out = Vec::new();
        for name in self.names()? {
            let fd =
                nix::fcntl::openat(self.0.as_fd(), name.as_os_str(), flags, Mode::empty()).map_err(io::Error::from)?;
            let m = fs::File::from(fd).metadata()?;
            out.push((name, m));
        }
        Ok(out)
    }

    /// The directory's own `stat`.
    pub fn metadata(&self) -> io::Result<fs::Metadata> {
        fs::File::from(self.0.as_fd().try_clone_to_owned()?).metadata()
    }

    /// The target of its symlink `name`.
    pub fn read_link(&self, name: &std::ffi::OsStr) -> io::Result<std::ffi::OsString> {
        nix::fcntl::readlinkat(self.0.as_fd(), name).map_err(io::Error::from)
    }
}

/// Whether `p`, a symlink in the sysroot `root` whose target is not inside it, leads out of
/// the root when the kernel follows it on the build host: what a chroot reads as a missing
/// file, but what a tool that forgot the root would read. For the error that says so (only
/// the build host's metadata is looked at, never a byte of its files).
pub fn link_out_of_root(root: &Path, p: &str) -> bool {
    let _quiet = Pause::new(); // asked only on the way to an error
    if is_host(root) || stat(root, p).is_ok() || !lstat(root, p).is_ok_and(|m| m.file_type().is_symlink()) {
        return false;
    }
    match (fs::canonicalize(path(root, p)), fs::canonicalize(root)) {
        (Ok(there), Ok(root)) => !there.starts_with(root),
        _ => false,
    }
}

/// `stat(p)` says regular file (symlinks followed inside `root`), as the original's detection
/// checks release files.
pub fn is_file(root: &Path, p: &str) -> bool {
    stat(root, p).map(|m| m.is_file()).unwrap_or(false)
}

pub fn read_to_string(root: &Path, p: &str) -> io::Result<String> {
    fs::read_to_string(path_follow(root, p))
}

/// `ID=` of `/etc/os-release` (or `/usr/lib/os-release`), unquoted.
pub fn os_release_id(root: &Path) -> Option<String> {
    let text = read_to_string(root, "/etc/os-release").or_else(|_| read_to_string(root, "/usr/lib/os-release")).ok()?;
    text.lines().find_map(|l| l.strip_prefix("ID=")).map(|v| v.trim().trim_matches('"').trim_matches('\'').to_string())
}

fn split(p: &str) -> (&str, &str) {
    let p = p.trim_end_matches('/');
    match p.rfind('/') {
        Some(i) => (&p[..i], &p[i + 1..]),
        None => ("", p),
    }
}

fn resolve_dir(root: &Path, dir: &str) -> String {
    if dir.is_empty() || dir == "/" {
        return String::new();
    }
    let key = (root.to_path_buf(), dir.to_string());
    if let Some(hit) = DIRS.with(|c| c.borrow().get(&key).cloned()) {
        return hit;
    }
    let resolved = resolve(root, dir);
    let resolved = if resolved == "/" { String::new() } else { resolved };
    DIRS.with(|c| c.borrow_mut().insert(key, resolved.clone()));
    resolved
}

/// The host file tree under a sysroot, for [`pathwalk`]: nodes are paths inside the root
/// (`""` is the root itself).
struct Sysroot<'a>(&'a Path);

impl pathwalk::Tree for Sysroot<'_> {
    type Node = String;

    fn root(&self) -> String {
        String::new()
    }

    fn entry(&self, dir: &String, name: &[u8]) -> Entry<String> {
        let path = format!("{dir}/{}", String::from_utf8_lossy(name));
        let host = self.0.join(&path[1..]);
        let m = fs::symlink_metadata(&host);
        if recording() {
            record_stat(|| Question::Lstat(path.clone()), &m);
        }
        match m {
            Err(_) => Entry::Missing,
            Ok(m) if m.file_type().is_symlink() => match fs::read_link(&host) {
                Ok(target) => Entry::Symlink(path, target.into_os_string().into_vec()),
                Err(_) => Entry::Node(path),
            },
            Ok(_) => Entry::Node(path),
        }
    }
}

/// A path no syscall accepts (it holds a NUL byte): what a path with a symlink loop resolves
/// to, so that nothing follows the loop out of the root.
const UNRESOLVABLE: &str = "/\0symlink-loop";

/// Resolve `p` inside `root`, every symlink followed. Returns an absolute path (`/` for the
/// root). Missing components end the walk: the rest is appended as spelled (any later lookup
/// fails the same way).
fn resolve(root: &Path, p: &str) -> String {
    let joined = match pathwalk::resolve(&Sysroot(root), p.as_bytes(), true) {
        End::Found(nodes) => nodes.last().cloned().unwrap_or_default(),
        End::Missing { nodes, name, rest } => {
            let mut out = nodes.last().cloned().unwrap_or_default();
            for c in std::iter::once(&name).chain(&rest) {
                out.push('/');
                out.push_str(&String::from_utf8_lossy(c));
            }
            out
        }
        End::TooManyLinks => UNRESOLVABLE.to_string(),
    };
    if joined.is_empty() {
        "/".to_string()
    } else {
        joined
    }
}

/// The hostfiles `glob` inside `root`: libc `glob` semantics with `GLOB_NOESCAPE` (a wildcard
/// does not cross `/` and does not match a leading dot), every directory looked up inside the
/// root. Matches are spelled as the pattern spells them, sorted byte-wise (the original runs
/// with `LANG=C`).
pub fn glob(root: &Path, pattern: &str) -> Vec<String> {
    let found = {
        let _quiet = Pause::new();
        glob_unrecorded(root, pattern)
    };
    if recording() {
        record(|| Question::Glob(pattern.to_string()), || hash(&found));
    }
    found
}

fn glob_unrecorded(root: &Path, pattern: &str) -> Vec<String> {
    if is_host(root) {
        return sys::glob(pattern);
    }
    let comps: Vec<&str> = pattern.split('/').filter(|c| !c.is_empty()).collect();
    if comps.is_empty() {
        return Vec::new();
    }
    let mut found: Vec<String> = vec![String::new()];
    for comp in &comps {
        found = glob_step(root, found, comp);
    }
    let mut out: Vec<String> = found.into_iter().filter(|p| lstat(root, p).is_ok()).collect();
    if pattern.ends_with('/') {
        // glob with a trailing slash matches directories only.
        out.retain(|p| stat(root, p).map(|m| m.is_dir()).unwrap_or(false));
    }
    out.sort();
    out
}

/// Extend each of `found` by the component pattern `comp`: as is when it has no wildcard,
/// else by each name of that directory it matches.
fn glob_step(root: &Path, found: Vec<String>, comp: &str) -> Vec<String> {
    if !comp.contains(['*', '?', '[']) {
        return found.into_iter().map(|f| format!("{f}/{comp}")).collect();
    }
    let Ok(cpat) = CString::new(comp) else { return Vec::new() };
    let mut next = Vec::new();
    for f in found {
        let dir = path_follow(root, if f.is_empty() { "/" } else { &f });
        let Ok(rd) = fs::read_dir(&dir) else { continue };
        let mut names: Vec<Vec<u8>> = rd.flatten().map(|e| e.file_name().into_vec()).collect();
        names.sort();
        for name in names {
            let Ok(cname) = CString::new(name.clone()) else { continue };
            if sys::fnmatch(&cpat, &cname, libc::FNM_NOESCAPE | libc::FNM_PERIOD) {
                next.push(format!("{f}/{}", String::from_utf8_lossy(&name)));
            }
        }
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree(name: &str) -> PathBuf {
        let root = std::env::temp_dir().join(format!("supermin-host-test-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("usr/lib64")).unwrap();
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::write(root.join("usr/lib64/libx.so"), b"x").unwrap();
        fs::write(root.join("usr/lib64/.hidden"), b"x").unwrap();
        symlink("/usr/lib64", root.join("lib64")).unwrap();
        symlink("../../../../../etc", root.join("usr/up")).unwrap();
        symlink("/etc/passwd", root.join("etc/abs")).unwrap();
        root
    }

    #[test]
    fn path_in_root_is_the_path_a_data_layer_of_the_root_has() {
        let root = tree("inroot");
        let st = fs::symlink_metadata(root.join("usr/lib64/libx.so")).unwrap();
        // Through the root's own absolute symlink: the real path, inside the root.
        assert_eq!(HostFile::new(&root, "/lib64/libx.so", &st).path_in_root(), b"/usr/lib64/libx.so");
        assert_eq!(HostFile::named("/usr/bin/bash").path_in_root(), b"/usr/bin/bash");
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn absolute_links_stay_inside_the_root() {
        let root = tree("links");
        assert_eq!(path(&root, "/lib64/libx.so"), root.join("usr/lib64/libx.so"));
        assert!(lstat(&root, "/lib64/libx.so").unwrap().is_file());
        assert!(lstat(&root, "/lib64").unwrap().file_type().is_symlink());
        // `..` past the root stops at the root; an absolute target is the root's.
        assert_eq!(realpath(&root, "/usr/up"), "/etc");
        assert_eq!(path_follow(&root, "/etc/abs"), root.join("etc/passwd"));
        assert!(stat(&root, "/etc/abs").is_err(), "must not read the build host's /etc/passwd");
        assert_eq!(realpath(&root, "/lib64/../lib64/libx.so"), "/usr/lib64/libx.so");
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn glob_inside_the_root() {
        let root = tree("glob");
        assert_eq!(glob(&root, "/lib64/*"), vec!["/lib64/libx.so".to_string()]);
        assert_eq!(glob(&root, "/l*/lib?.so"), vec!["/lib64/libx.so".to_string()]);
        assert_eq!(glob(&root, "/lib64/.h*"), vec!["/lib64/.hidden".to_string()]);
        assert!(glob(&root, "/nonexistent/*").is_empty());
        assert_eq!(glob(&root, "/etc/abs"), vec!["/etc/abs".to_string()], "a dangling link exists for lstat");
        let _ = fs::remove_dir_all(&root);
    }
}
