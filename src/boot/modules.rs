//! Which kernel modules a bootable appliance carries (`--modules`): the whole tree, as the
//! original copies it, or only what an appliance in a VM can need ([`VM_MODULES`] and the
//! `modules.dep` and soft-dependency closure of it), with the module metadata rewritten to
//! name only the modules kept, so that `modprobe` (and udev through it) loads every one of them
//! and fails cleanly ("not found") for the others.

use std::collections::{BTreeSet, HashMap};
use std::ffi::CString;
use std::path::Path;

use log::debug;

use super::kernel::ModulesDir;
use super::kmod_index;
use crate::error::{Error, Result};
use crate::util::sys;

/// `--modules`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Modules {
    /// The whole modules directory (the default of `-f ext2`, as the original).
    All,
    /// [`VM_MODULES`] and what they need (the default of `-f initramfs`).
    Vm,
}

impl Modules {
    pub fn parse(s: &str) -> Option<Modules> {
        match s {
            "all" => Some(Modules::All),
            "vm" => Some(Modules::Vm),
            _ => None,
        }
    }
}

/// The modules an appliance in a VM can need, as `fnmatch` patterns (`*` crossing `/`) on
/// their paths in the modules directory: every filesystem (and `nls`, `fuse`, overlay, 9p),
/// the block layer, md and device-mapper (LVM, RAID, dm-crypt), all crypto and library
/// modules (checksums, compression, ciphers for LUKS), virtio (block, SCSI, net, console,
/// rng, vsock, crypto, fw_cfg), the disks and CD-ROMs QEMU emulates (SCSI disk and cdrom,
/// AHCI, PIIX IDE, NVMe, NVDIMM) and the network core modules. Left out: the drivers of real
/// hardware (network cards, GPUs, sound, media, USB, wireless, InfiniBand, …), most of it.
pub const VM_MODULES: &[&str] = &[
    "kernel/fs/*",
    "kernel/block/*",
    "kernel/crypto/*",
    "kernel/arch/*/crypto/*",
    "kernel/lib/*",
    "kernel/mm/*",
    "kernel/drivers/block/*",
    "kernel/drivers/md/*",
    "kernel/drivers/virtio/*",
    "kernel/drivers/char/virtio_console.ko*",
    "kernel/drivers/char/hw_random/virtio-rng.ko*",
    "kernel/drivers/crypto/virtio/*",
    "kernel/drivers/firmware/qemu_fw_cfg.ko*",
    "kernel/drivers/scsi/sd_mod.ko*",
    "kernel/drivers/scsi/sr_mod.ko*",
    "kernel/drivers/scsi/sg.ko*",
    "kernel/drivers/scsi/virtio_scsi.ko*",
    "kernel/drivers/scsi/device_handler/*",
    "kernel/drivers/ata/ahci.ko*",
    "kernel/drivers/ata/ata_piix.ko*",
    "kernel/drivers/ata/ata_generic.ko*",
    "kernel/drivers/cdrom/*",
    "kernel/drivers/nvme/host/*",
    "kernel/drivers/nvdimm/*",
    "kernel/drivers/acpi/nfit/*",
    "kernel/drivers/net/virtio_net.ko*",
    "kernel/drivers/net/tun.ko*",
    "kernel/net/core/*",
    "kernel/net/packet/*",
    "kernel/net/unix/*",
    "kernel/net/ipv4/*",
    "kernel/net/ipv6/*",
    "kernel/net/9p/*",
    "kernel/net/vmw_vsock/*",
    // Modules built outside the kernel tree (DKMS) are the host's choice: kept.
    "updates/*",
    "extra/*",
];

/// The metadata files rewritten for the modules kept (the `modules.builtin*` files describe
/// the kernel itself and are kept as they are).
const TEXT_FILES: &[&str] =
    &["modules.dep", "modules.order", "modules.alias", "modules.symbols", "modules.softdep", "modules.devname"];
const INDEXES: &[&str] = &["modules.dep.bin", "modules.alias.bin", "modules.symbols.bin"];

/// The modules kept of a modules directory, and its metadata rewritten for them.
pub struct Selection {
    /// Paths of the modules kept, relative to the modules directory.
    kept: BTreeSet<String>,
    /// Their names, as the metadata spells them (`virtio_blk`).
    names: BTreeSet<String>,
    /// File name in the modules directory → its new contents.
    pub files: Vec<(&'static str, Vec<u8>)>,
}

impl Selection {
    /// Whether the file at `rel` (relative to the modules directory) belongs in the appliance:
    /// a module only if it is kept; anything else (builtin lists, firmware links) always.
    pub fn keeps(&self, rel: &str) -> bool {
        !is_module(rel) || self.kept.contains(rel)
    }
}

fn is_module(rel: &str) -> bool {
    [".ko", ".ko.xz", ".ko.zst", ".ko.gz"].iter().any(|s| rel.ends_with(s))
}

/// `kernel/fs/ext4/ext4.ko.zst` → `ext4`; `virtio-rng.ko` → `virtio_rng`.
pub fn module_name(rel: &str) -> String {
    let base = rel.rsplit('/').next().unwrap_or(rel);
    base.split(".ko").next().unwrap_or(base).replace('-', "_")
}

fn matches_any(patterns: &[&str], rel: &str) -> bool {
    let Ok(name) = CString::new(rel) else { return false };
    patterns.iter().any(|p| CString::new(*p).is_ok_and(|p| sys::fnmatch(&p, &name, 0)))
}

/// Refuse a `modules.dep` (`shown`) naming a module by anything but a relative path inside
/// the modules directory: depmod writes no other, and in a sysroot its owner could otherwise
/// name any file of the build host (`/etc/shadow`, `../../../..`) to be copied into the
/// appliance.
pub fn check_dep(text: &str, shown: &Path) -> Result<()> {
    let inside = |m: &str| !m.is_empty() && !m.starts_with('/') && !m.split('/').any(|c| c == "..");
    for (m, deps) in text.lines().filter_map(|l| l.split_once(':')) {
        let m = m.trim();
        if !inside(m) {
            return Err(Error::new(format!(
                "{}: {m} is not a module path inside the modules directory (regenerate the file with depmod)",
                shown.display()
            )));
        }
        if let Some(d) = deps.split_whitespace().find(|d| !inside(d)) {
            return Err(Error::new(format!(
                "{}: {m} depends on {d}, which is not a module path inside the modules directory (regenerate the \
                 file with depmod)",
                shown.display()
            )));
        }
    }
    Ok(())
}

/// Choose the modules of the modules directory `modpath` that `patterns` name, with their
/// dependencies, and rewrite its metadata for them. Every file is read inside the directory's
/// root.
pub fn select(modpath: &ModulesDir, patterns: &[&str]) -> Result<Selection> {
    let read = |name: &str| -> Result<String> {
        match modpath.read(name) {
            Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && name != "modules.dep" => Ok(String::new()),
            Err(e) => Err(Error::io(&modpath.shown(name), "cannot read", e)),
        }
    };
    let dep = read("modules.dep")?;
    check_dep(&dep, &modpath.shown("modules.dep"))?;
    let kept = closure(&dep, &read("modules.softdep")?, &read("modules.alias")?, patterns);
    let names: BTreeSet<String> = kept.iter().map(|m| module_name(m)).collect();
    debug!("modules: keeping {} of {}", kept.len(), dep.lines().count());
    let mut selection = Selection { kept, names, files: Vec::new() };
    for name in TEXT_FILES {
        let text = read(name)?;
        if !text.is_empty() {
            let filtered = filter_text(name, &text, &selection);
            selection.files.push((name, filtered.into_bytes()));
        }
    }
    for name in INDEXES {
        let path = modpath.shown(name);
        let bytes = match modpath.read(name) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(&path, "cannot read", e)),
        };
        let mut index = kmod_index::read(&bytes, &path.display().to_string())?;
        index.retain(|_, values| {
            values.retain(|(_, value)| index_value_kept(name, value, &selection));
            !values.is_empty()
        });
        selection.files.push((name, kmod_index::write(&index)));
    }
    Ok(selection)
}

/// The modules `patterns` name, plus their `modules.dep` dependencies and soft dependencies
/// (`softdep ext4 pre: crypto-crc32c`: a name or an alias), until nothing is added.
fn closure(dep: &str, softdep: &str, alias: &str, patterns: &[&str]) -> BTreeSet<String> {
    let deps: HashMap<&str, Vec<&str>> = dep
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(m, d)| (m.trim(), d.split_whitespace().collect()))
        .collect();
    let by_name: HashMap<String, &str> = deps.keys().map(|m| (module_name(m), *m)).collect();
    let mut aliases: HashMap<&str, Vec<&str>> = HashMap::new();
    for l in alias.lines() {
        if let ["alias", pattern, module] = l.split_whitespace().collect::<Vec<_>>()[..] {
            aliases.entry(pattern).or_default().push(module);
        }
    }
    let mut soft: HashMap<String, Vec<&str>> = HashMap::new();
    for l in softdep.lines() {
        let words: Vec<&str> = l.split_whitespace().collect();
        if let ["softdep", module, rest @ ..] = &words[..] {
            let targets = rest.iter().filter(|w| !w.ends_with(':'));
            soft.entry(module.replace('-', "_")).or_default().extend(targets);
        }
    }
    let mut stack: Vec<&str> = deps.keys().copied().filter(|m| matches_any(patterns, m)).collect();
    let mut kept = BTreeSet::new();
    while let Some(m) = stack.pop() {
        if !kept.insert(m.to_string()) {
            continue;
        }
        stack.extend(deps.get(m).into_iter().flatten());
        for target in soft.get(&module_name(m)).into_iter().flatten() {
            let named = aliases.get(target).into_iter().flatten().copied().chain(std::iter::once(*target));
            stack.extend(named.filter_map(|n| by_name.get(&n.replace('-', "_")).copied()));
        }
    }
    kept
}

/// `text`, the metadata file `name`, without the lines about modules not kept.
fn filter_text(name: &str, text: &str, s: &Selection) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let keep = match (name, &words[..]) {
            (_, []) => true,
            (_, [w, ..]) if w.starts_with('#') => true,
            ("modules.dep", _) => line.split_once(':').is_none_or(|(m, _)| s.kept.contains(m.trim())),
            ("modules.order", [m]) => s.kept.contains(*m),
            ("modules.alias" | "modules.symbols", ["alias", _, module]) => s.names.contains(*module),
            ("modules.softdep", ["softdep", module, ..]) => s.names.contains(&module.replace('-', "_")),
            ("modules.devname", [module, ..]) => s.names.contains(*module),
            _ => true,
        };
        if keep {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Whether an index entry is about a module kept: `modules.dep.bin` maps a module's name to
/// its `modules.dep` line, the others map an alias or symbol to a module's name.
fn index_value_kept(index: &str, value: &[u8], s: &Selection) -> bool {
    let value = String::from_utf8_lossy(value);
    match index {
        "modules.dep.bin" => value.split_once(':').is_some_and(|(m, _)| s.kept.contains(m.trim())),
        _ => s.names.contains(value.as_ref()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "kernel/fs/ext4/ext4.ko: kernel/fs/jbd2/jbd2.ko kernel/lib/crc16.ko\n\
                       kernel/fs/jbd2/jbd2.ko:\nkernel/lib/crc16.ko:\n\
                       kernel/crypto/crc32c_generic.ko:\n\
                       kernel/drivers/gpu/drm/drm.ko:\n\
                       kernel/drivers/net/ethernet/intel/e1000/e1000.ko:\n";
    const SOFTDEP: &str = "# Soft dependencies\nsoftdep ext4 pre: crypto-crc32c\nsoftdep e1000 pre: drm\n";
    const ALIAS: &str = "alias fs-ext4 ext4\nalias crypto-crc32c crc32c_generic\nalias pci:v00008086d* e1000\n";

    #[test]
    fn dependencies_and_soft_dependencies_are_kept() {
        let kept = closure(DEP, SOFTDEP, ALIAS, &["kernel/fs/ext4/*"]);
        let want = [
            "kernel/crypto/crc32c_generic.ko",
            "kernel/fs/ext4/ext4.ko",
            "kernel/fs/jbd2/jbd2.ko",
            "kernel/lib/crc16.ko",
        ];
        assert_eq!(kept.iter().map(String::as_str).collect::<Vec<_>>(), want);
        assert!(closure(DEP, SOFTDEP, ALIAS, &["kernel/fs/*", "kernel/lib/*"]).len() == 4);
    }

    #[test]
    fn metadata_names_only_what_is_kept() {
        let kept = closure(DEP, SOFTDEP, ALIAS, &["kernel/fs/*"]);
        let names = kept.iter().map(|m| module_name(m)).collect();
        let s = Selection { kept, names, files: Vec::new() };
        assert!(s.keeps("kernel/fs/ext4/ext4.ko") && !s.keeps("kernel/drivers/gpu/drm/drm.ko"));
        assert!(s.keeps("modules.builtin"));
        let alias = filter_text("modules.alias", ALIAS, &s);
        assert_eq!(alias, "alias fs-ext4 ext4\nalias crypto-crc32c crc32c_generic\n");
        let dep = filter_text("modules.dep", DEP, &s);
        assert!(dep.contains("ext4.ko:") && !dep.contains("e1000") && !dep.contains("drm"), "{dep}");
        assert_eq!(
            filter_text("modules.softdep", SOFTDEP, &s),
            "# Soft dependencies\nsoftdep ext4 pre: crypto-crc32c\n"
        );
        assert_eq!(module_name("kernel/drivers/char/hw_random/virtio-rng.ko.zst"), "virtio_rng");
    }
}
