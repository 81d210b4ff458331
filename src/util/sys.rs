//! The syscalls and libc calls that neither std nor `nix` wraps safely: the only module of
//! this crate allowed `unsafe` (every other module is `#![deny(unsafe_code)]` through the
//! crate root). Each function here is a safe wrapper whose contract is checked or cannot be
//! broken by its caller.

#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use memmap2::Mmap;
use nix::fcntl::AT_FDCWD;
use nix::sys::signal::SigSet;
use nix::sys::stat::{Mode, SFlag};

fn cpath(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// Create a device node, fifo or socket with the full `st_mode` `mode`.
pub fn mknod(path: &Path, mode: u32, rdev: u64) -> io::Result<()> {
    let kind = SFlag::from_bits_truncate(mode & libc::S_IFMT);
    let perm = Mode::from_bits_truncate(mode & 0o7777);
    nix::sys::stat::mknod(path, kind, perm, rdev).map_err(io::Error::from)
}

/// Atomically swap two paths (`renameat2(RENAME_EXCHANGE)`).
pub fn exchange(a: &Path, b: &Path) -> io::Result<()> {
    use nix::fcntl::RenameFlags;
    nix::fcntl::renameat2(AT_FDCWD, a, AT_FDCWD, b, RenameFlags::RENAME_EXCHANGE).map_err(io::Error::from)
}

/// A blocking POSIX write lock over the whole file (what `lockf(F_LOCK)` from offset 0 and
/// OCaml's `Unix.lockf` take), held until the file is closed or the process exits.
pub fn lock(file: &File) -> io::Result<()> {
    let whole = libc::flock {
        l_type: libc::F_WRLCK as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    };
    loop {
        match nix::fcntl::fcntl(file, nix::fcntl::FcntlArg::F_SETLKW(&whole)) {
            Err(nix::errno::Errno::EINTR) => continue,
            r => return r.map(drop).map_err(io::Error::from),
        }
    }
}

/// Whether process `pid` is still running: it exists (signal 0) and has not exited (a
/// zombie waiting for its parent to reap it counts as gone: its resources are released).
pub fn process_running(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else { return false };
    if matches!(nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), None), Err(nix::errno::Errno::ESRCH)) {
        return false;
    }
    // /proc/PID/stat: "PID (COMM) STATE …"; COMM may hold spaces and parentheses.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
    !matches!(state, Some("Z" | "X"))
}

pub fn geteuid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

pub fn getegid() -> u32 {
    nix::unistd::getegid().as_raw()
}

/// The value of extended attribute `name` of `path` (not following a final symlink), of
/// whatever length: the size is asked first, and asked again if the value grew meanwhile.
pub fn get_xattr(path: &Path, name: &str) -> io::Result<Vec<u8>> {
    let p = cpath(path)?;
    // SAFETY: valid C strings and a buffer (null for length 0) of the given length.
    read_xattr(name, |n, buf, len| unsafe { libc::lgetxattr(p.as_ptr(), n, buf, len) })
}

/// [`get_xattr`] of the file open as `file`: what was checked through this descriptor is
/// what is read, whatever its path names meanwhile.
pub fn get_xattr_of(file: &File, name: &str) -> io::Result<Vec<u8>> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: an open descriptor, a valid C string and a buffer (null for length 0) of the given length.
    read_xattr(name, |n, buf, len| unsafe { libc::fgetxattr(fd, n, buf, len) })
}

/// The size-then-value loop of the `getxattr` family; `get(name, buf, len)` is one call.
fn read_xattr(
    name: &str,
    get: impl Fn(*const libc::c_char, *mut libc::c_void, usize) -> libc::ssize_t,
) -> io::Result<Vec<u8>> {
    let n = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    loop {
        // A null buffer of length 0 asks for the size.
        let size = get(n.as_ptr(), std::ptr::null_mut(), 0);
        if size < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = vec![0u8; size as usize];
        let len = get(n.as_ptr(), buf.as_mut_ptr().cast(), buf.len());
        if len >= 0 {
            buf.truncate(len as usize);
            return Ok(buf);
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::ERANGE) {
            return Err(err);
        }
    }
}

pub fn set_xattr(path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    let p = cpath(path)?;
    let n = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: valid C strings and a readable buffer of the given length.
    let ret = unsafe { libc::lsetxattr(p.as_ptr(), n.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

pub fn remove_xattr(path: &Path, name: &str) -> io::Result<()> {
    let p = cpath(path)?;
    let n = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: valid C strings.
    if unsafe { libc::lremovexattr(p.as_ptr(), n.as_ptr()) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// libc's `fnmatch`: the matcher the original's excludefiles, hostfiles and module lists
/// use, so patterns mean exactly what they mean there. `flags` are `libc::FNM_*`.
pub fn fnmatch(pattern: &CStr, name: &CStr, flags: libc::c_int) -> bool {
    // SAFETY: both are valid NUL-terminated strings.
    unsafe { libc::fnmatch(pattern.as_ptr(), name.as_ptr(), flags) == 0 }
}

/// libc `glob` with `GLOB_NOESCAPE`, as the original: sorted matches, none for no match.
pub fn glob(pattern: &str) -> Vec<String> {
    let Ok(cpattern) = CString::new(pattern) else { return Vec::new() };
    let mut out = Vec::new();
    // SAFETY: glob_t is plain data that glob() initialises; globfree() releases it, and the
    // strings are copied out before that.
    unsafe {
        let mut g: libc::glob_t = std::mem::zeroed();
        if libc::glob(cpattern.as_ptr(), libc::GLOB_NOESCAPE, None, &mut g) == 0 {
            for i in 0..g.gl_pathc {
                let p = *g.gl_pathv.add(i);
                if !p.is_null() {
                    out.push(CStr::from_ptr(p).to_string_lossy().into_owned());
                }
            }
        }
        libc::globfree(&mut g);
    }
    out
}

/// Give freed heap back to the system (a long-lived daemon after its peak).
pub fn trim_heap() {
    // SAFETY: no arguments to get wrong.
    unsafe { libc::malloc_trim(0) };
}

/// Map `file` read-only. The caller must own the file privately and never change it after
/// publishing it (a truncation under the mapping would be SIGBUS): that is the image cache's
/// design (`inputs::cache`), its only user.
pub fn map_private_file(file: &File) -> io::Result<Mmap> {
    // SAFETY: see above; the mapping is read-only.
    unsafe { Mmap::map(file) }
}

/// Drop this process's resident pages of a read-only file mapping; the next access reads
/// the same bytes back from the file.
pub fn drop_pages(map: &Mmap) -> io::Result<()> {
    // SAFETY: DONTNEED on a read-only shared file mapping only drops page-table entries.
    unsafe { map.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) }
}

/// The calling process has exactly one thread (what `fork` needs to be sound).
fn single_threaded() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status.lines().any(|l| l.strip_prefix("Threads:").map(str::trim) == Some("1"))
}

/// `fork`, refused unless this process has a single thread (so the child cannot inherit a
/// lock some other thread held).
pub fn fork() -> io::Result<nix::unistd::ForkResult> {
    if !single_threaded() {
        return Err(io::Error::other("fork: the process already runs several threads"));
    }
    // SAFETY: single-threaded, checked above.
    unsafe { nix::unistd::fork() }.map_err(io::Error::from)
}

/// What ties a child started by [`die_with_this_thread`] to its parent: the two ends of a
/// pipe the child checks once. Keep it until the child has exited.
pub struct ParentLink {
    _read: std::os::fd::OwnedFd,
    _write: std::os::fd::OwnedFd,
}

/// Make the process `cmd` starts get SIGKILL when the calling thread ends, however it ends
/// (`PR_SET_PDEATHSIG`, set in the child before exec), with no signal blocked: a supervisor's SIGKILL of `run` must
/// not leave its command running. The kernel counts the *thread* that forked as the parent, so
/// call this from a thread that lives as long as the process (`run`'s main thread).
///
/// The parent may die between the fork and the `prctl`; the usual check, `getppid()` against
/// the parent's pid, cannot see that when the child is the first process of a new PID
/// namespace (its parent is outside it, so `getppid()` is always 0). So the child checks a
/// pipe instead: after the `prctl`, it closes its copy of the write end and polls the read
/// end; while the parent lives it holds the write end (in [`ParentLink`]), so a hang-up means
/// it is gone, and the child fails before exec.
pub fn die_with_this_thread(cmd: &mut std::process::Command) -> io::Result<ParentLink> {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let (r, w) = (read.as_raw_fd(), write.as_raw_fd());
    let check = move || -> io::Result<()> {
        // The caller may have blocked the signals it waits for; the program gets none blocked.
        nix::sys::signal::sigprocmask(nix::sys::signal::SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)?;
        nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
        nix::unistd::close(w)?;
        let mut fd = libc::pollfd { fd: r, events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd, a zero timeout.
        match unsafe { libc::poll(&mut fd, 1, 0) } {
            0 => Ok(()),
            -1 => Err(io::Error::last_os_error()),
            _ => Err(io::Error::from_raw_os_error(libc::ESRCH)),
        }
    };
    // SAFETY: `check` runs between fork and exec, where only async-signal-safe calls are
    // sound: it makes three syscalls and allocates nothing.
    unsafe { cmd.pre_exec(check) };
    Ok(ParentLink { _read: read, _write: write })
}

/// A loop device attached read-only to `file` with autoclear: the kernel detaches it when the
/// last user lets go (the returned descriptor, then whatever mounted it), so a process killed
/// at any point leaves no device attached. `LOOP_CTL_GET_FREE`, then `LOOP_CONFIGURE` (Linux
/// 5.8), retried when another process took the same free device first.
pub fn attach_loop(file: &File) -> io::Result<(File, std::path::PathBuf)> {
    use std::os::fd::AsRawFd;
    const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
    const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
    const LO_FLAGS_READ_ONLY: u32 = 1;
    const LO_FLAGS_AUTOCLEAR: u32 = 4;
    let control = std::fs::OpenOptions::new().read(true).write(true).open("/dev/loop-control")?;
    for _ in 0..16 {
        // SAFETY: this request takes no argument.
        let n = unsafe { libc::ioctl(control.as_raw_fd(), LOOP_CTL_GET_FREE) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let path = std::path::PathBuf::from(format!("/dev/loop{n}"));
        let dev = std::fs::OpenOptions::new().read(true).open(&path)?;
        // struct loop_config: fd, block_size, then struct loop_info64 (lo_flags at byte 52).
        let mut config = [0u8; 304];
        config[0..4].copy_from_slice(&(file.as_raw_fd() as u32).to_ne_bytes());
        config[60..64].copy_from_slice(&(LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR).to_ne_bytes());
        // SAFETY: `config` is the 304 bytes of a struct loop_config the kernel only reads.
        if unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_CONFIGURE, config.as_ptr()) } == 0 {
            return Ok((dev, path));
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EBUSY) {
            return Err(e);
        }
    }
    Err(io::Error::from_raw_os_error(libc::EBUSY))
}

/// Make the process `cmd` starts lead a new session whose controlling terminal is its
/// standard input (an interactive shell on a console: job control and Ctrl-C work).
pub fn new_session_on_stdin(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    let take_tty = || -> io::Result<()> {
        nix::unistd::setsid()?;
        // SAFETY: TIOCSCTTY on descriptor 0 takes an integer argument, 0 (do not steal).
        if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } == -1 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    };
    // SAFETY: between fork and exec only setsid and ioctl run: async-signal-safe, no allocation.
    unsafe { cmd.pre_exec(take_tty) };
}

/// Let a write to a closed pipe end the process quietly, as it does C tools (`supermin --help |
/// head`), instead of Rust's default of ignoring SIGPIPE and panicking in `print!`.
pub fn die_on_broken_pipe() {
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: installs the default disposition, no handler code runs.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_xattr_values_are_read_whole() {
        let dir = std::env::temp_dir().join(format!("supermin-xattr-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let value: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        set_xattr(&dir, "user.supermin.test", &value).unwrap();
        assert_eq!(get_xattr(&dir, "user.supermin.test").unwrap(), value);
        assert!(get_xattr(&dir, "user.supermin.absent").is_err());
        let open = File::open(&dir).unwrap();
        assert_eq!(get_xattr_of(&open, "user.supermin.test").unwrap(), value);
        assert!(get_xattr_of(&open, "user.supermin.absent").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn exited_children_are_not_running() {
        let mut child = std::process::Command::new("sleep").arg("10").spawn().unwrap();
        assert!(process_running(child.id()));
        child.kill().unwrap();
        // Killed but not yet reaped: a zombie.
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(!process_running(child.id()));
        child.wait().unwrap();
        assert!(process_running(std::process::id()));
    }

    #[test]
    fn fnmatch_and_glob_are_libcs() {
        let (p, n) = (CString::new("/usr/*").unwrap(), CString::new("/usr/share/doc").unwrap());
        assert!(fnmatch(&p, &n, libc::FNM_NOESCAPE));
        assert!(!fnmatch(&p, &n, libc::FNM_PATHNAME));
        assert!(glob("/etc/*").iter().all(|m| m.starts_with("/etc/")));
        assert!(glob("/nonexistent-*").is_empty());
    }
}
