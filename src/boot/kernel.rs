//! Choosing the kernel for `-f ext2`/`initramfs`, with the original's rules and order:
//! `SUPERMIN_KERNEL` (+ `SUPERMIN_KERNEL_VERSION`, `SUPERMIN_MODULES`), then
//! `/lib/modules/*/vmlinuz`, then `/boot/vmlinu?-*` for the host CPU; unbootable variants
//! (xen, zfcpdump, +debug, tegra on arm) skipped, highest version first. Unlike the original we
//! never pick a kernel without a usable modules directory (`modules.dep`), and an unreadable
//! kernel is a clear error with the fix instead of a failing `cp`.

use std::cmp::Ordering;
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use log::debug;

use crate::bail;
use crate::error::{Error, IoContext, Result};
use crate::host;
use crate::util::dirfd::Dir;

pub struct Kernel {
    /// The kernel on the host: its root joined with its path resolved inside that root, so
    /// that the default `kernel` symlink never leads out of a sysroot.
    pub path: PathBuf,
    pub version: String,
    /// `/lib/modules/<version>` (or `SUPERMIN_MODULES`).
    pub modpath: ModulesDir,
    /// The root the kernel is read inside: the sysroot, or `/` for the build host's kernel
    /// and for `SUPERMIN_KERNEL`, which the user names on the build host.
    root: PathBuf,
}

/// A kernel's modules directory: the root it is read inside (the sysroot, or `/` for the
/// build host and `SUPERMIN_MODULES`) and its path resolved inside it. Every file of it is
/// opened inside that root ([`host::open_in_root`]): a sysroot's `modules.dep` and modules are
/// its owner's, who could otherwise point them at any file of the build host.
#[derive(Clone, Debug)]
pub struct ModulesDir {
    root: PathBuf,
    inside: String,
}

impl ModulesDir {
    /// `p`, a directory inside `root`, resolved there.
    pub fn new(root: &Path, p: &str) -> ModulesDir {
        ModulesDir { root: root.to_path_buf(), inside: host::realpath(root, p) }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Its path inside the root, every symlink resolved.
    pub fn inside(&self) -> &str {
        &self.inside
    }

    /// The host path of `rel` in it, for messages (never opened by that path).
    pub fn shown(&self, rel: &str) -> PathBuf {
        let mut p = self.root.join(self.inside.trim_start_matches('/'));
        if !rel.is_empty() {
            p.push(rel);
        }
        p
    }

    /// Open its file `rel` (a relative path, checked by the caller to have no `..`) inside the
    /// root.
    pub fn open(&self, rel: &str) -> std::io::Result<fs::File> {
        host::open_in_root(&self.root, &format!("{}/{rel}", self.inside.trim_end_matches('/')))
    }

    pub fn read(&self, rel: &str) -> std::io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        self.open(rel)?.read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    /// Whether its file `rel` is a symlink leading only out of the root (for the error).
    pub fn link_out(&self, rel: &str) -> bool {
        host::link_out_of_root(&self.root, &format!("{}/{rel}", self.inside.trim_end_matches('/')))
    }

    fn has_dep(&self) -> bool {
        self.open("modules.dep").is_ok()
    }
}

impl Kernel {
    /// Put the kernel at `name` in `out`: a symlink to it, or with `copy` (`--copy-kernel`) a
    /// copy, with a fresh mtime (unlike 5.2.2's `cp -p`, so `--if-newer` sees it as new).
    pub fn install(&self, out: &Dir, name: &str, copy: bool) -> Result<()> {
        let dest = out.shown(Path::new(name));
        if !copy {
            return out.symlink(self.path.as_os_str(), Path::new(name)).at(&dest, "cannot create the kernel symlink");
        }
        let mut src = self.open().at(&self.path, "cannot copy the kernel")?;
        let mode = src.metadata().at(&self.path, "cannot copy the kernel")?.permissions().mode() & 0o777;
        let mut made = out.create_file(Path::new(name), mode, false).at(&dest, "cannot create")?;
        std::io::copy(&mut src, &mut made).map(drop).at(&self.path, "cannot copy the kernel")
    }

    /// The kernel file, opened inside its root.
    pub fn open(&self) -> std::io::Result<fs::File> {
        host::open_in_root(&self.root, &inside(&self.root, &self.path))
    }

    /// The kernel's build configuration: `config-VERSION` next to it (Debian, Fedora), else
    /// the modules directory's `build/.config`, each read inside the root it was found in;
    /// `None` when neither is readable.
    pub fn config(&self) -> Option<String> {
        let next_to_it = inside(&self.root, &self.path.with_file_name(format!("config-{}", self.version)));
        let found = host::open_in_root(&self.root, &next_to_it)
            .or_else(|_| self.modpath.open("build/.config"))
            .and_then(|mut f| {
                let mut text = String::new();
                f.read_to_string(&mut text).map(|_| text)
            })
            .ok();
        if found.is_none() {
            debug!("no configuration found for kernel {}", self.path.display());
        }
        found
    }

    /// The memory the kernel occupies while it boots: its bzImage header's `init_size` (boot
    /// protocol 2.10 and later), else four times the file (a decompressed kernel is about that).
    pub fn memory(&self) -> u64 {
        let mut header = [0u8; 0x264];
        let file = self.open();
        let fallback = file.as_ref().ok().and_then(|f| f.metadata().ok()).map_or(64 << 20, |m| 4 * m.len());
        let read = file.and_then(|mut f| f.read_exact(&mut header));
        // "HdrS" at 0x202, the protocol version at 0x206, init_size at 0x260.
        if read.is_err()
            || &header[0x202..0x206] != b"HdrS"
            || u16::from_le_bytes([header[0x206], header[0x207]]) < 0x20a
        {
            return fallback;
        }
        u64::from(u32::from_le_bytes([header[0x260], header[0x261], header[0x262], header[0x263]]))
    }
}

/// `path` (the root joined with a path inside it) as that path inside the root.
fn inside(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    format!("/{}", rel.to_string_lossy().trim_start_matches('/'))
}

/// The kernel for an appliance built from `root` (`/`, or a `--sysroot`): its `/boot` and
/// `/lib/modules`, symlinks resolved inside it, never the build host's.
pub fn find(root: &Path, host_cpu: &str) -> Result<Kernel> {
    let kernel = find_candidate(root, host_cpu)?;
    // Readable? (Ubuntu ships kernels 0600.)
    if let Err(e) = kernel.open() {
        return Err(unreadable(&kernel.path, &e));
    }
    debug!(
        "kernel {} version {} modules {}",
        kernel.path.display(),
        kernel.version,
        kernel.modpath.shown("").display()
    );
    Ok(kernel)
}

/// The kernel at `path` on the build host (`run --vm --kernel FILE`), with the modules
/// directory of its version in `root`.
pub fn from_file(root: &Path, path: &Path) -> Result<Kernel> {
    let version = version_from_file(path).ok_or_else(|| {
        Error::new(format!("{}: not a Linux kernel image with a version (an x86 bzImage)", path.display()))
    })?;
    let modpath = modpath_for(root, &version)?;
    if !modpath.has_dep() {
        bail!("{}: no modules.dep for the kernel {version} (install its modules)", modpath.shown("").display());
    }
    Ok(Kernel { path: path.to_path_buf(), version, modpath, root: PathBuf::from("/") })
}

/// The modules directory of `version`: `SUPERMIN_MODULES` (on the build host), else
/// `/lib/modules/VERSION` inside `root`, refused if it is a symlink out of the root.
fn modpath_for(root: &Path, version: &str) -> Result<ModulesDir> {
    if let Some(dir) = std::env::var_os("SUPERMIN_MODULES") {
        return Ok(ModulesDir::new(Path::new("/"), &dir.to_string_lossy()));
    }
    let p = format!("/lib/modules/{version}");
    refuse_link_out(root, &p)?;
    Ok(ModulesDir::new(root, &p))
}

/// An error if `p` in the sysroot `root` is a symlink that only leads somewhere out of it: a
/// sysroot is read as a chroot, so such a link names nothing, and saying so beats a kernel
/// silently not found.
fn refuse_link_out(root: &Path, p: &str) -> Result<()> {
    if host::link_out_of_root(root, p) {
        bail!(
            "{}: {} in the sysroot is a symlink out of it (a sysroot is read as a chroot: point the link at a file \
             inside the sysroot)",
            root.display(),
            p.trim_start_matches('/')
        );
    }
    Ok(())
}

/// The original's order: `SUPERMIN_KERNEL`, then the Fedora layout, then the Debian one.
fn find_candidate(root: &Path, host_cpu: &str) -> Result<Kernel> {
    if let Some(k) = from_environment(root)? {
        return Ok(k);
    }
    if let Some(k) = in_lib_modules(root, host_cpu)? {
        return Ok(k);
    }
    if let Some(k) = in_boot(root, host_cpu)? {
        return Ok(k);
    }
    let (boot, modules) = (host::path_follow(root, "/boot"), host::path_follow(root, "/lib/modules"));
    bail!(
        "failed to find a suitable kernel (host_cpu={host_cpu}) in {} or {}: install one ({}) or point \
         SUPERMIN_KERNEL at one (with SUPERMIN_KERNEL_VERSION and SUPERMIN_MODULES)",
        boot.display(),
        modules.display(),
        install_kernel_command(root, host_cpu)
    )
}

/// The kernel cannot be opened: why, and the fix (a mode 0600 kernel, as Ubuntu ships them,
/// is readable by root only).
fn unreadable(path: &Path, e: &std::io::Error) -> Error {
    let shown = path.display();
    let why = match fs::metadata(path) {
        Ok(m) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            format!("mode {:04o}", std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777)
        }
        _ => crate::error::strerror(e),
    };
    Error::new(format!(
        "{shown}: cannot read the kernel ({why}): run as root, or make it readable (sudo chmod 0644 {shown}), or \
         point SUPERMIN_KERNEL at a readable copy"
    ))
}

/// The command installing a kernel in `root`, by its os-release ID (Debian's otherwise).
fn install_kernel_command(root: &Path, host_cpu: &str) -> String {
    let command = match host::os_release_id(root).as_deref() {
        Some("fedora" | "rhel" | "centos" | "rocky" | "almalinux") => "dnf install kernel-core".to_string(),
        Some(id) if id.starts_with("opensuse") || id.starts_with("sle") => "zypper install kernel-default".to_string(),
        Some("arch" | "manjaro") => "pacman -S linux".to_string(),
        Some("ubuntu") => "apt-get install linux-image-generic".to_string(),
        _ => {
            let flavour = match host_cpu {
                "x86_64" | "amd64" => "amd64",
                "aarch64" => "arm64",
                "ppc64le" | "ppc64el" => "powerpc64le",
                c if c.len() == 4 && c.starts_with('i') && c.ends_with("86") => "686",
                c => c,
            };
            format!("apt-get install linux-image-{flavour}")
        }
    };
    match root == Path::new("/") {
        true => command,
        false => format!("chroot {} {command}", root.display()),
    }
}

/// `SUPERMIN_KERNEL` (+ `SUPERMIN_KERNEL_VERSION`, `SUPERMIN_MODULES`).
fn from_environment(root: &Path) -> Result<Option<Kernel>> {
    let Some(k) = std::env::var_os("SUPERMIN_KERNEL") else { return Ok(None) };
    let path = PathBuf::from(k);
    let Some(version) = std::env::var("SUPERMIN_KERNEL_VERSION").ok().or_else(|| version_from_file(&path)) else {
        // The original silently ignores a kernel whose version it cannot tell.
        debug!("SUPERMIN_KERNEL={}: cannot find its version, ignored", path.display());
        return Ok(None);
    };
    let modpath = modpath_for(root, &version)?;
    if !modpath.has_dep() {
        bail!(
            "SUPERMIN_KERNEL={}: no modules.dep in {} (set SUPERMIN_MODULES to its modules directory)",
            path.display(),
            modpath.shown("").display()
        );
    }
    Ok(Some(Kernel { path, version, modpath, root: PathBuf::from("/") }))
}

/// The Fedora layout: `/lib/modules/VERSION/vmlinuz`, the highest version. The kernel and its
/// directory are resolved inside the root; a symlink out of it is refused.
fn in_lib_modules(root: &Path, host_cpu: &str) -> Result<Option<Kernel>> {
    let mut found: Vec<(String, PathBuf, ModulesDir)> = Vec::new();
    for name in host::read_dir_in_root(root, "/lib/modules").unwrap_or_default() {
        let version = name.to_string_lossy().into_owned();
        if !bootable(&version, host_cpu) {
            continue;
        }
        let dir = format!("/lib/modules/{version}");
        let kernel = format!("{dir}/vmlinuz");
        refuse_link_out(root, &dir)?;
        refuse_link_out(root, &kernel)?;
        let file = host::open_in_root(root, &kernel).and_then(|f| f.metadata());
        let big_enough = file.map(|m| m.len() >= 10000).unwrap_or(false);
        let modpath = ModulesDir::new(root, &dir);
        if big_enough && modpath.has_dep() {
            found.push((version, host::path_follow(root, &kernel), modpath));
        }
    }
    let Some((version, path, modpath)) = found.into_iter().max_by(|a, b| compare_versions(&a.0, &b.0)) else {
        return Ok(None);
    };
    Ok(Some(Kernel { modpath, path, version, root: root.to_path_buf() }))
}

/// The Debian layout: `/boot/vmlinuz-VERSION`, preferring the CPU's flavour, highest version
/// first, the first with a modules directory.
fn in_boot(root: &Path, host_cpu: &str) -> Result<Option<Kernel>> {
    let names: Vec<String> = host::read_dir_in_root(root, "/boot")
        .map(|names| names.into_iter().map(|n| n.to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    let is_kernel = |n: &str| (n.starts_with("vmlinuz-") || n.starts_with("vmlinux-")) && bootable(n, host_cpu);
    let models = cpu_models(host_cpu);
    let mut candidates: Vec<&String> =
        names.iter().filter(|n| is_kernel(n) && models.iter().any(|m| n.ends_with(&format!("-{m}")))).collect();
    if candidates.is_empty() {
        candidates = names.iter().filter(|n| is_kernel(n)).collect();
    }
    candidates.sort_by(|a, b| compare_versions(b, a));
    for name in candidates {
        // A kernel that is a symlink (`vmlinuz -> vmlinuz-6.1…`) is followed inside the root.
        let inside = format!("/boot/{name}");
        refuse_link_out(root, &inside)?;
        let path = host::path_follow(root, &inside);
        let suffix = &name[8..];
        let version = match host::open_in_root(root, &inside).ok().and_then(version_of) {
            Some(v) => v,
            None if modpath_for(root, suffix)?.has_dep() => suffix.to_string(),
            None => continue,
        };
        let modpath = modpath_for(root, &version)?;
        if !modpath.has_dep() {
            debug!("{}: no modules.dep in {}, skipped", path.display(), modpath.shown("").display());
            continue;
        }
        return Ok(Some(Kernel { path, version, modpath, root: root.to_path_buf() }));
    }
    Ok(None)
}

fn bootable(name: &str, host_cpu: &str) -> bool {
    !(name.contains("xen")
        || name.contains("zfcpdump")
        || name.contains("+debug")
        || (host_cpu.starts_with("arm") && name.contains("tegra")))
}

/// Kernel file-name suffixes for a CPU, as the original maps them.
fn cpu_models(cpu: &str) -> Vec<String> {
    let v: &[&str] = match cpu {
        "x86_64" | "amd64" => &["amd64", "x86_64"],
        "aarch64" => &["aarch64", "arm64"],
        c if c.len() == 4 && c.starts_with('i') && c.ends_with("86") => &["?86"],
        c if c.starts_with("armv7") => &["armmp"],
        "ppc" | "powerpc" | "powerpc64" => &["ppc", "powerpc", "powerpc64"],
        "ppc64el" => &["powerpc64le"],
        "sparc" | "sparc64" => &["sparc", "sparc64"],
        "mips" | "mips64" => return vec![cpu.to_string(), "malta".to_string()],
        "parisc" => &["hppa", "hppa64"],
        _ => return vec![cpu.to_string()],
    };
    v.iter().map(|s| s.to_string()).collect()
}

/// The version string inside an x86 bzImage: "HdrS" at 514, the version offset at 526.
pub fn version_from_file(path: &Path) -> Option<String> {
    version_of(fs::File::open(path).ok()?)
}

/// [`version_from_file`] of an open kernel.
fn version_of(mut f: fs::File) -> Option<String> {
    let mut head = vec![0u8; 0x10000];
    let n = f.read(&mut head).ok()?;
    head.truncate(n);
    if head.get(514..518)? != b"HdrS" || u16::from_le_bytes([head[518], head[519]]) < 0x1ff {
        return None;
    }
    let off = u16::from_le_bytes([head[526], head[527]]) as usize + 0x200;
    let raw = head.get(off..(off + 132).min(head.len()))?;
    let end = raw.iter().position(|&b| b == 0 || b == b' ' || b == b'\t' || b == b'\n').unwrap_or(raw.len());
    let v = std::str::from_utf8(&raw[..end]).ok()?;
    (!v.is_empty()).then(|| v.to_string())
}

#[derive(PartialEq, Eq, Debug)]
enum Part<'a> {
    Letters(&'a str),
    Number(u64),
    Other(u8),
}

fn parts(s: &str) -> Vec<Part<'_>> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let start = i;
        if b[i].is_ascii_digit() {
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            out.push(Part::Number(s[start..i].parse().unwrap_or(u64::MAX)));
        } else if b[i].is_ascii_alphabetic() {
            while i < b.len() && b[i].is_ascii_alphabetic() {
                i += 1;
            }
            out.push(Part::Letters(&s[start..i]));
        } else {
            out.push(Part::Other(b[i]));
            i += 1;
        }
    }
    out
}

/// The original's version ordering: element-wise over runs of digits (numeric), runs of
/// letters, and single other characters; letters < numbers < other characters; a prefix is
/// lower.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    fn rank(p: &Part) -> u8 {
        match p {
            Part::Letters(_) => 0,
            Part::Number(_) => 1,
            Part::Other(_) => 2,
        }
    }
    let (pa, pb) = (parts(a), parts(b));
    for (x, y) in pa.iter().zip(pb.iter()) {
        let o = match (x, y) {
            (Part::Letters(x), Part::Letters(y)) => x.cmp(y),
            (Part::Number(x), Part::Number(y)) => x.cmp(y),
            (Part::Other(x), Part::Other(y)) => x.cmp(y),
            _ => rank(x).cmp(&rank(y)),
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    pa.len().cmp(&pb.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_order_like_the_original() {
        assert_eq!(compare_versions("6.1.0-10-amd64", "6.1.0-9-amd64"), Ordering::Greater);
        assert_eq!(compare_versions("5.10", "5.10.1"), Ordering::Less);
        // letters < numbers < other characters: `3.10.0.old` beats `3.10.0-957`.
        assert_eq!(compare_versions("3.10.0.old", "3.10.0-957"), Ordering::Greater);
        assert_eq!(compare_versions("1a", "12"), Ordering::Less);
    }

    #[test]
    fn the_installed_debian_kernel_has_a_version() {
        // An oracle from the host: Debian names kernels vmlinuz-VERSION.
        for e in fs::read_dir("/boot").unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(v) = name.strip_prefix("vmlinuz-") {
                assert_eq!(version_from_file(&e.path()).as_deref(), Some(v));
            }
        }
    }
}
