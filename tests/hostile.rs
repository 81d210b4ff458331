//! Hostile inputs (issue 10, part 2): every case is built with `--build` in every format
//! (chroot, ext2, initramfs, tar), prepared with `--prepare` where package names apply, and
//! mounted (`supermin mount --daemon`, a full walk and read of the view, then `umount`).
//!
//! For every case and run: no panic; either exit status 1 with one line on stderr naming the
//! file and the problem, or one of the safe successes below; nothing written outside the
//! output and its temporary siblings (a canary tree around the outputs: sibling files, a
//! sibling directory, the inputs and the case's parent directory, snapshotted before and
//! compared after every run); after a failed build the previous output is intact; after a
//! mount the daemon still answers once the whole view was walked and read.
//!
//! | case | build (4 formats) | prepare | mount | why |
//! |---|---|---|---|---|
//! | `tar-dotdot` | error | – | error | a `..` member would land outside the appliance |
//! | `tar-dotdot-inner` | error | – | error | the same, hidden behind a first component |
//! | `tar-absolute` | ok | – | ok | `/x` is unpacked as `x` inside the appliance, as `tar -x` does |
//! | `tar-symlink-abs-through` | ok | – | ok | links resolve inside the tree: the member behind a link to an absolute host path has no parent there and is skipped with a warning |
//! | `tar-symlink-rel-through` | ok | – | ok | `../../..` stops at the appliance root: the member lands at `/PWNED`, inside |
//! | `tar-symlink-then-dir` | ok | – | ok | a directory member through a link to outside is skipped |
//! | `tar-hardlink-outside` | ok | – | ok | hard links to paths not in the archive (absolute or `..`) are skipped |
//! | `tar-hardlink-to-dir` | ok | – | ok | a hard link to a directory is skipped |
//! | `tar-devices` | ok | – | ok | device nodes and fifos are kept, as `tar -x` as root (an appliance needs `/dev/null`); the view shows them without `--dev` |
//! | `tar-setid` | ok | – | ok | set-uid/gid and sticky bits are kept, as `tar -x` as root; the view shows them without `--suid` |
//! | `tar-root-mode-0` | ok | – | ok | a `./` member with mode 0 sets the appliance root's mode |
//! | `tar-duplicates` | ok | – | ok | later members replace earlier ones; a file where a directory is, is skipped |
//! | `tar-sparse-gnu` | error | – | error | a 1 TiB GNU sparse member: not supported (was silently dropped) |
//! | `tar-sparse-pax` | error | – | error | the same in pax format (was unpacked as its raw sparse map) |
//! | `tar-huge-claim` | error | – | error | a member claiming 8 GiB in a 2 KiB archive is truncated |
//! | `tar-truncated` | error | – | error | an archive cut inside a member's data |
//! | `tar-bad-checksum` | error | – | error | a header whose checksum is wrong |
//! | `tar-long-component` | error | – | error | a 300-byte name (the ext2 image wrote it as 44 bytes) |
//! | `tar-long-path` | error | – | error | a 6,000-byte path (`tar -x` cannot create it either) |
//! | `tar-nul-pax` | error | – | error | a pax `path` with a NUL byte: no file name can hold it (the chroot build failed, the others wrote it) |
//! | `tar-bomb-100k` | ok | – | ok | 100,000 tiny members: built and viewed whole |
//! | `gzip-truncated` | error | – | error | corrupt gzip data |
//! | `gzip-corrupt` | error | – | error | corrupt gzip data (bytes flipped) |
//! | `xz-truncated` | error | – | error | corrupt xz data |
//! | `xz-corrupt` | error | – | error | corrupt xz data (bytes flipped) |
//! | `zstd` | error | – | error | zstd is not unwrapped (nor by the original): said so |
//! | `bzip2` | error | – | error | bzip2 would be sniffed as a packages list: said so |
//! | `cpio` | error | – | error | cpio inputs are not supported (the original's words) |
//! | `binary-garbage` | error | – | error | unknown file type |
//! | `packages-invalid-utf8` | error | – | error | not valid UTF-8 text |
//! | `packages-nul` | ok | – | ok | a name with a NUL is no installed package: ignored, as every unknown name |
//! | `packages-missing` | ok | error | ok | unknown names are ignored (as the original does); `--prepare` has nothing left |
//! | `hostfiles-invalid-utf8` | error | – | error | not valid UTF-8 text |
//! | `hostfiles-nul` | ok | – | ok | a pattern with a NUL matches nothing |
//! | `excludefiles-invalid-utf8` | error | – | error | not valid UTF-8 text |
//! | `excludefiles-nul` | ok | – | ok | a pattern with a NUL matches nothing |
//! | `excludefiles-no-dash` | error | – | error | a line without its leading `-` |
//! | `hostfiles-dotdot` | ok | – | ok | `/../../*` is `/*`: the host's top-level entries (directories empty) |
//! | `hostfiles-dotdot-sysroot` | ok | – | ok | in a sysroot, `/../../*` stops at the sysroot |
//! | `hostfiles-proc` | ok | – | ok | `/proc/*`: files copied at their stat size (0 for most; `/proc/kmsg` blocked the chroot build for ever before) |
//! | `hostfiles-dev` | ok | – | ok | `/dev/*`: device nodes made, never opened |
//! | `hostfiles-fifo` | ok | – | ok | a host fifo becomes a fifo node, never opened |
//! | `hostfiles-dangling` | ok | – | ok | a dangling symlink is copied as a symlink |
//! | `input-fifo` | error | – | error | not a regular file (reading it blocked the build for ever) |
//! | `input-device` | error | – | error | a link to `/dev/zero` (reading it never ended) |
//! | `input-dangling` | error | – | error | cannot read input: no such file |
//! | `input-dir-loop` | error | – | error | a symlink to an ancestor directory: named as a loop |
//! | `input-symlink-loop` | error | – | error | too many levels of symbolic links |
//! | `output-regular-file` | error | error | ok | `-o` on a regular file is not replaced (the mount has no `-o`) |
//! | `output-missing-parent` | error | error | ok | the output's parent does not exist |
//! | `tmpdir-relative` | error | error | ok | `$TMPDIR` must be absolute (the original's rule); `mount` does not use it |
//! | `dpkg-cycle` | ok | ok | ok | `a → b → c → a`: each package once |
//! | `dpkg-self-dep` | ok | ok | ok | a package depending on itself |
//! | `dpkg-status-garbage` | error | error | error | the status file is not text |
//! | `dpkg-status-mangled` | ok | ok | ok | paragraphs without `Package`, lines without `:`: skipped (the good package still resolves) |
//! | `dpkg-list-dotdot` | ok | ok | ok | a file list naming `/../../../etc/x` stays in the sysroot and the appliance |
//! | `rpmdb-garbage` | error | error | error | `rpmdb.sqlite` is not a database |
//! | `rpmdb-bad-header` | error | error | error | a package header that is random bytes |
//! | `pacman-cycle` | ok | ok | ok | `a → b → a` |
//! | `pacman-desc-no-name` | error | error | error | a `desc` without `%NAME%` |
//! | `pacman-desc-garbage` | error | error | error | a `desc` that is not text |
//!
//! The original supermin is run on a few of these cases (see `original_on_some_cases`).
//! `HOSTILE_CASE=SUBSTRING` runs only the cases whose name contains it (and says so).
//! Scratch directories are in `/dev/shm` unless `SUPERMIN_TEST_TMP` is set: the 100,000-file
//! case writes and deletes 100,000 files several times, which took minutes on a busy disk.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::*;

const FORMATS: [&str; 4] = ["chroot", "ext2", "initramfs", "tar"];

/// What a run must do: succeed, or fail with one line mentioning every needle.
#[derive(Clone, Copy, Debug)]
enum Want {
    Ok,
    Err(&'static [&'static str]),
}
use Want::{Err as Fail, Ok as Pass};

/// One hostile case: what it builds from, and what each command must do. `prepare` is `None`
/// where `--prepare` does not apply (the case is about input files, not package names).
struct Case {
    name: &'static str,
    setup: fn(&Ctx) -> Setup,
    build: Want,
    prepare: Option<Want>,
    mount: Want,
}

/// What a case's setup made.
#[derive(Default)]
struct Setup {
    /// The inputs (build, mount).
    inputs: Vec<PathBuf>,
    /// Options before the inputs (`--sysroot`, `--packager`), for every command.
    args: Vec<String>,
    /// Package names for `--prepare`.
    names: Vec<String>,
    env: Vec<(&'static str, String)>,
    /// `-o` is a regular file, or in a directory that does not exist, instead of an earlier
    /// output.
    out: OutKind,
}

#[derive(Default, Clone, Copy, PartialEq)]
enum OutKind {
    #[default]
    Previous,
    RegularFile,
    MissingParent,
}

/// Where a case lives: `dir/in` (inputs), `dir/root` (a sysroot), `dir/cage` (outputs and
/// canaries), `dir/mp` (the mountpoint).
struct Ctx {
    dir: PathBuf,
}

impl Ctx {
    fn input(&self) -> PathBuf {
        self.dir.join("in")
    }
    fn root(&self) -> PathBuf {
        self.dir.join("root")
    }
    fn cage(&self) -> PathBuf {
        self.dir.join("cage")
    }
    /// An input directory holding one file `name` with `content`.
    fn one_file(&self, name: &str, content: &[u8]) -> Setup {
        fs::create_dir_all(self.input()).unwrap();
        fs::write(self.input().join(name), content).unwrap();
        Setup { inputs: vec![self.input()], ..Setup::default() }
    }
}

// ------------------------------------------------------------------------------------------
// Tar archives, written header by header (the tar crate's builder refuses what we need).

struct M<'a> {
    name: &'a [u8],
    kind: tar::EntryType,
    data: &'a [u8],
    link: &'a [u8],
    mode: u32,
}

fn file<'a>(name: &'a str, data: &'a [u8]) -> M<'a> {
    M { name: name.as_bytes(), kind: tar::EntryType::Regular, data, link: b"", mode: 0o644 }
}
fn dir(name: &str) -> M<'_> {
    M { name: name.as_bytes(), kind: tar::EntryType::Directory, data: b"", link: b"", mode: 0o755 }
}
fn link<'a>(kind: tar::EntryType, name: &'a str, target: &'a str) -> M<'a> {
    M { name: name.as_bytes(), kind, data: b"", link: target.as_bytes(), mode: 0o777 }
}

fn header(m: &M, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    let old = h.as_old_mut();
    old.name[..m.name.len()].copy_from_slice(m.name);
    old.linkname[..m.link.len()].copy_from_slice(m.link);
    h.set_size(size);
    h.set_mode(m.mode);
    h.set_entry_type(m.kind);
    h.set_mtime(1_600_000_000);
    h.set_uid(0);
    h.set_gid(0);
    if matches!(m.kind, tar::EntryType::Char | tar::EntryType::Block) {
        h.set_device_major(1).unwrap();
        h.set_device_minor(3).unwrap();
    }
    h.set_cksum();
    h
}

fn tar_of(members: &[M]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for m in members {
        b.append(&header(m, m.data.len() as u64), m.data).unwrap();
    }
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

/// `data` through a compressor on the PATH (`xz -c`, `zstd -c`…).
fn compress_with(tool: &str, data: &[u8]) -> Vec<u8> {
    need(tool);
    let mut child = Command::new(tool).arg("-c").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{tool} failed");
    out.stdout
}

fn small_tar() -> Vec<u8> {
    let body = vec![b'x'; 4000];
    tar_of(&[dir("./etc/"), file("./etc/hostname", b"appliance\n"), file("./big", &body)])
}

/// Flip bytes in the middle of a compressed stream.
fn flipped(mut data: Vec<u8>) -> Vec<u8> {
    let mid = data.len() / 2;
    for b in &mut data[mid..mid + 16] {
        *b ^= 0x5a;
    }
    data
}

fn halved(mut data: Vec<u8>) -> Vec<u8> {
    data.truncate(data.len() / 2);
    data
}

/// An absolute path into this case's canary cage, for members that try to escape.
fn cage_path(c: &Ctx, name: &str) -> String {
    c.cage().join(name).to_string_lossy().into_owned()
}

// ------------------------------------------------------------------------------------------
// The cases' setups.

fn tar_dotdot(c: &Ctx) -> Setup {
    c.one_file("dotdot.tar", &tar_of(&[file("../../../ESCAPED", b"x")]))
}

fn tar_dotdot_inner(c: &Ctx) -> Setup {
    c.one_file("inner.tar", &tar_of(&[dir("./etc/"), file("./etc/../../../ESCAPED", b"x")]))
}

fn tar_absolute(c: &Ctx) -> Setup {
    let abs = cage_path(c, "ESCAPED");
    c.one_file("absolute.tar", &tar_of(&[file(&abs, b"x"), file("/etc/hostile-abs", b"y")]))
}

fn tar_symlink_abs_through(c: &Ctx) -> Setup {
    let abs = c.cage().to_string_lossy().into_owned();
    let t = tar_of(&[link(tar::EntryType::Symlink, "./esc", &abs), file("./esc/ESCAPED", b"x")]);
    c.one_file("symabs.tar", &t)
}

fn tar_symlink_rel_through(c: &Ctx) -> Setup {
    let up = "../../../../../../../../../../../..";
    let t =
        tar_of(&[link(tar::EntryType::Symlink, "./up", up), file("./up/PWNED", b"x"), file("./up/up/PWNED2", b"y")]);
    c.one_file("symrel.tar", &t)
}

fn tar_symlink_then_dir(c: &Ctx) -> Setup {
    let abs = c.cage().to_string_lossy().into_owned();
    let t = tar_of(&[link(tar::EntryType::Symlink, "./x", &abs), dir("./x/"), dir("./x/ESCAPED/")]);
    c.one_file("symdir.tar", &t)
}

fn tar_hardlink_outside(c: &Ctx) -> Setup {
    let abs = cage_path(c, "sibling.txt");
    let t = tar_of(&[
        link(tar::EntryType::Link, "./h1", "/etc/passwd"),
        link(tar::EntryType::Link, "./h2", "../../../etc/shadow"),
        link(tar::EntryType::Link, "./h3", &abs),
        file("./ok", b"ok"),
    ]);
    c.one_file("hardlink.tar", &t)
}

fn tar_hardlink_to_dir(c: &Ctx) -> Setup {
    c.one_file("hldir.tar", &tar_of(&[dir("./d/"), link(tar::EntryType::Link, "./h", "./d")]))
}

fn tar_devices(c: &Ctx) -> Setup {
    let dev = |kind, name| M { name, kind, data: b"", link: b"", mode: 0o666 };
    let t = tar_of(&[
        dir("./dev/"),
        dev(tar::EntryType::Char, b"./dev/null"),
        dev(tar::EntryType::Block, b"./dev/sda"),
        dev(tar::EntryType::Fifo, b"./dev/fifo"),
    ]);
    c.one_file("devices.tar", &t)
}

fn tar_setid(c: &Ctx) -> Setup {
    let t = tar_of(&[
        M { mode: 0o4755, ..file("./suid", b"#!/bin/sh\n") },
        M { mode: 0o2755, ..file("./sgid", b"#!/bin/sh\n") },
        M { mode: 0o1777, ..dir("./sticky/") },
    ]);
    c.one_file("setid.tar", &t)
}

fn tar_root_mode_0(c: &Ctx) -> Setup {
    c.one_file("root0.tar", &tar_of(&[M { mode: 0, ..dir("./") }, file("./f", b"f")]))
}

fn tar_duplicates(c: &Ctx) -> Setup {
    let t = tar_of(&[file("./a", b"1"), file("./a", b"2"), dir("./d/"), file("./d", b"file over dir"), dir("./a/")]);
    c.one_file("dups.tar", &t)
}

/// A 1 TiB sparse file archived by GNU tar in `format`.
fn sparse_tar(c: &Ctx, format: &str, name: &str) -> Setup {
    need("tar");
    let src = c.dir.join("sparse-src");
    fs::create_dir_all(&src).unwrap();
    fs::File::create(src.join("huge")).unwrap().set_len(1 << 40).unwrap();
    fs::create_dir_all(c.input()).unwrap();
    let out = c.input().join(name);
    ok(Command::new("tar")
        .args(["-S", &format!("--format={format}"), "-cf"])
        .arg(&out)
        .arg("-C")
        .arg(&src)
        .arg("huge"));
    fs::remove_dir_all(&src).unwrap();
    Setup { inputs: vec![c.input()], ..Setup::default() }
}

fn tar_sparse_gnu(c: &Ctx) -> Setup {
    sparse_tar(c, "gnu", "sparse-gnu.tar")
}

fn tar_sparse_pax(c: &Ctx) -> Setup {
    sparse_tar(c, "posix", "sparse-pax.tar")
}

fn tar_huge_claim(c: &Ctx) -> Setup {
    let m = file("./huge", b"");
    let mut t = header(&m, 8 << 30).as_bytes().to_vec();
    t.extend_from_slice(&[b'z'; 1536]);
    c.one_file("claim.tar", &t)
}

fn tar_truncated(c: &Ctx) -> Setup {
    let mut t = small_tar();
    t.truncate(512 * 4 + 100); // inside ./big's data
    c.one_file("cut.tar", &t)
}

fn tar_bad_checksum(c: &Ctx) -> Setup {
    let mut t = small_tar();
    t[512 + 148..512 + 156].copy_from_slice(b"0000001\0");
    c.one_file("cksum.tar", &t)
}

fn tar_long_component(c: &Ctx) -> Setup {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(2);
    h.set_mode(0o644);
    b.append_data(&mut h, "x".repeat(300), &b"hi"[..]).unwrap();
    c.one_file("longname.tar", &b.into_inner().unwrap())
}

fn tar_long_path(c: &Ctx) -> Setup {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(2);
    h.set_mode(0o644);
    b.append_data(&mut h, format!("{}/f", vec!["d".repeat(200); 30].join("/")), &b"hi"[..]).unwrap();
    c.one_file("longpath.tar", &b.into_inner().unwrap())
}

fn tar_nul_pax(c: &Ctx) -> Setup {
    let mut b = tar::Builder::new(Vec::new());
    b.append_pax_extensions([("path", &b"./etc/a\0b"[..])]).unwrap();
    let m = file("./etc/placeholder", b"x");
    b.append(&header(&m, 1), &b"x"[..]).unwrap();
    c.one_file("nul.tar", &b.into_inner().unwrap())
}

/// 100,000 one-byte members in one directory, made once per run and shared by reference.
fn bomb() -> &'static Path {
    static BOMB: OnceLock<(Scratch, PathBuf)> = OnceLock::new();
    &BOMB
        .get_or_init(|| {
            let t = memory_scratch("hostile-bomb");
            let mut b = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
            b.append(&header(&dir("./bomb/"), 0), &b""[..]).unwrap();
            for i in 0..100_000 {
                let name = format!("./bomb/{i:05}");
                b.append(&header(&file(&name, b"x"), 1), &b"x"[..]).unwrap();
            }
            let d = t.path("d");
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("bomb.tar.gz"), b.into_inner().unwrap().finish().unwrap()).unwrap();
            (t, d)
        })
        .1
}

fn tar_bomb(_: &Ctx) -> Setup {
    Setup { inputs: vec![bomb().to_path_buf()], ..Setup::default() }
}

fn gzip_truncated(c: &Ctx) -> Setup {
    c.one_file("cut.tar.gz", &halved(gzip(&small_tar())))
}

fn gzip_corrupt(c: &Ctx) -> Setup {
    c.one_file("flip.tar.gz", &flipped(gzip(&small_tar())))
}

fn xz_truncated(c: &Ctx) -> Setup {
    c.one_file("cut.tar.xz", &halved(compress_with("xz", &small_tar())))
}

fn xz_corrupt(c: &Ctx) -> Setup {
    c.one_file("flip.tar.xz", &flipped(compress_with("xz", &small_tar())))
}

fn zstd(c: &Ctx) -> Setup {
    c.one_file("base.tar.zst", &compress_with("zstd", &small_tar()))
}

fn bzip2(c: &Ctx) -> Setup {
    c.one_file("packages.bz2", &compress_with("bzip2", b"bash\ncoreutils\n"))
}

fn cpio(c: &Ctx) -> Setup {
    c.one_file("base.cpio", b"070701000000000000000000000000000000000000")
}

fn binary_garbage(c: &Ctx) -> Setup {
    c.one_file("garbage.bin", &[0xff, 0x00, 0x13, 0x37, 0x00, 0xfe, 0x80])
}

fn packages_invalid_utf8(c: &Ctx) -> Setup {
    c.one_file("packages", b"bash\n\xff\xfe\x80garbage\n")
}

fn packages_nul(c: &Ctx) -> Setup {
    c.one_file("packages", b"nosuchpkg\0bash\n\0\0\0\n")
}

fn packages_missing(c: &Ctx) -> Setup {
    let s = c.one_file("packages", b"no-such-package-at-all\nnor-this-one\n");
    Setup { names: vec!["no-such-package-at-all".into(), "nor-this-one".into()], ..s }
}

fn hostfiles_invalid_utf8(c: &Ctx) -> Setup {
    c.one_file("hostfiles", b"/etc/hostname\n/\xff\xfe\n")
}

fn hostfiles_nul(c: &Ctx) -> Setup {
    c.one_file("hostfiles", b"/etc/hostname\0/etc/shadow\n/\0\n")
}

fn excludefiles_invalid_utf8(c: &Ctx) -> Setup {
    c.one_file("excludefiles", b"-/usr/\xff*\n")
}

fn excludefiles_nul(c: &Ctx) -> Setup {
    c.one_file("excludefiles", b"-/usr/\0*\n-\0\n")
}

fn excludefiles_no_dash(c: &Ctx) -> Setup {
    c.one_file("excludefiles", b"-/usr/share/doc/*\n/usr/share/man/*\n")
}

fn hostfiles_dotdot(c: &Ctx) -> Setup {
    c.one_file("hostfiles", b"/../../*\n/etc/../../../etc/host*\n")
}

fn hostfiles_dotdot_sysroot(c: &Ctx) -> Setup {
    let s = dpkg_cycle(c);
    fs::write(c.input().join("hostfiles"), "/../../*\n/../../../etc/../../*/*\n").unwrap();
    s
}

fn hostfiles_proc(c: &Ctx) -> Setup {
    c.one_file("hostfiles", b"/proc/*\n")
}

fn hostfiles_dev(c: &Ctx) -> Setup {
    c.one_file("hostfiles", b"/dev/*\n")
}

fn hostfiles_fifo(c: &Ctx) -> Setup {
    let fifo = c.dir.join("host-fifo");
    ok(Command::new("mkfifo").arg(&fifo));
    c.one_file("hostfiles", format!("{}\n", fifo.display()).as_bytes())
}

fn hostfiles_dangling(c: &Ctx) -> Setup {
    let l = c.dir.join("host-dangling");
    std::os::unix::fs::symlink("/nonexistent/target", &l).unwrap();
    c.one_file("hostfiles", format!("{}\n", l.display()).as_bytes())
}

fn input_fifo(c: &Ctx) -> Setup {
    fs::create_dir_all(c.input()).unwrap();
    ok(Command::new("mkfifo").arg(c.input().join("fifo")));
    Setup { inputs: vec![c.input()], ..Setup::default() }
}

fn input_device(c: &Ctx) -> Setup {
    fs::create_dir_all(c.input()).unwrap();
    std::os::unix::fs::symlink("/dev/zero", c.input().join("zero")).unwrap();
    Setup { inputs: vec![c.input()], ..Setup::default() }
}

fn input_dangling(c: &Ctx) -> Setup {
    fs::create_dir_all(c.input()).unwrap();
    std::os::unix::fs::symlink("nowhere", c.input().join("dangling")).unwrap();
    Setup { inputs: vec![c.input()], ..Setup::default() }
}

fn input_dir_loop(c: &Ctx) -> Setup {
    let s = c.one_file("packages", b"nosuchpkg\n");
    fs::create_dir_all(c.input().join("sub")).unwrap();
    std::os::unix::fs::symlink("..", c.input().join("sub/loop")).unwrap();
    s
}

fn input_symlink_loop(c: &Ctx) -> Setup {
    fs::create_dir_all(c.input()).unwrap();
    std::os::unix::fs::symlink("b", c.input().join("a")).unwrap();
    std::os::unix::fs::symlink("a", c.input().join("b")).unwrap();
    Setup { inputs: vec![c.input()], ..Setup::default() }
}

fn output_regular_file(c: &Ctx) -> Setup {
    let s = dpkg_cycle(c);
    Setup { out: OutKind::RegularFile, ..s }
}

fn output_missing_parent(c: &Ctx) -> Setup {
    let s = dpkg_cycle(c);
    Setup { out: OutKind::MissingParent, ..s }
}

fn tmpdir_relative(c: &Ctx) -> Setup {
    let s = dpkg_cycle(c);
    Setup { env: vec![("TMPDIR", "relative/tmp".into())], ..s }
}

// ------------------------------------------------------------------------------------------
// Fake package databases in a sysroot (dpkg, rpm, pacman), each package owning one file.

/// A sysroot setup reading `root` with the packages `names` (inputs: a packages list).
fn sysroot_setup(c: &Ctx, names: &[&str]) -> Setup {
    let list: String = names.iter().map(|n| format!("{n}\n")).collect();
    let s = c.one_file("packages", list.as_bytes());
    let args = vec!["--sysroot".to_string(), c.root().to_string_lossy().into_owned()];
    Setup { args, names: names.iter().map(|n| n.to_string()).collect(), ..s }
}

fn owned_file(root: &Path, name: &str) {
    let d = root.join("usr/share").join(name);
    fs::create_dir_all(&d).unwrap();
    fs::write(d.join("file"), name).unwrap();
}

/// A dpkg root with `packages` (name, Depends).
fn dpkg_root(c: &Ctx, packages: &[(&str, &str)]) -> Setup {
    let root = c.root();
    let info = root.join("var/lib/dpkg/info");
    fs::create_dir_all(&info).unwrap();
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(root.join("etc/os-release"), "ID=debian\n").unwrap();
    fs::write(root.join("etc/debian_version"), "12.0\n").unwrap();
    let mut status = String::new();
    for (name, deps) in packages {
        status += &format!(
            "Package: {name}\nStatus: install ok installed\nPriority: optional\nArchitecture: amd64\n\
             Version: 1\nDepends: {deps}\n\n"
        );
        let list = format!("/.\n/usr\n/usr/share\n/usr/share/{name}\n/usr/share/{name}/file\n");
        fs::write(info.join(format!("{name}.list")), list).unwrap();
        owned_file(&root, name);
    }
    fs::write(root.join("var/lib/dpkg/status"), status).unwrap();
    sysroot_setup(c, &[packages[0].0])
}

fn dpkg_cycle(c: &Ctx) -> Setup {
    dpkg_root(c, &[("a", "b"), ("b", "c (>= 1)"), ("c", "a | b")])
}

fn dpkg_self_dep(c: &Ctx) -> Setup {
    dpkg_root(c, &[("a", "a, a:any")])
}

fn dpkg_status_garbage(c: &Ctx) -> Setup {
    let s = dpkg_cycle(c);
    fs::write(c.root().join("var/lib/dpkg/status"), b"Package: a\n\xff\xfe\x00\x01garbage\n").unwrap();
    s
}

fn dpkg_status_mangled(c: &Ctx) -> Setup {
    let s = dpkg_root(c, &[("a", "")]);
    let status = c.root().join("var/lib/dpkg/status");
    let good = fs::read_to_string(&status).unwrap();
    let junk = "no colon here\n\nStatus: install ok installed\nDepends: a\n\n: empty name\n \tcontinuation\n\0\0\n\n";
    fs::write(&status, format!("{junk}{good}Package:\nStatus:\n\nPackage: x\nStatus: a b installed\n")).unwrap();
    s
}

fn dpkg_list_dotdot(c: &Ctx) -> Setup {
    let s = dpkg_root(c, &[("a", "")]);
    let list = c.root().join("var/lib/dpkg/info/a.list");
    fs::write(&list, "/../../../etc/dotdot-owned\n/usr/../../../usr/share/a/file\n").unwrap();
    fs::write(c.root().join("etc/dotdot-owned"), "sysroot's").unwrap();
    s
}

fn rpm_root(c: &Ctx, db: &dyn Fn(&Path)) -> Setup {
    let root = c.root();
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(root.join("etc/os-release"), "ID=fedora\n").unwrap();
    let dbdir = root.join("usr/lib/sysimage/rpm");
    fs::create_dir_all(&dbdir).unwrap();
    db(&dbdir.join("rpmdb.sqlite"));
    sysroot_setup(c, &["a"])
}

fn rpmdb_garbage(c: &Ctx) -> Setup {
    rpm_root(c, &|db| fs::write(db, vec![0x42u8; 8192]).unwrap())
}

fn rpmdb_bad_header(c: &Ctx) -> Setup {
    need("sqlite3");
    rpm_root(c, &|db| {
        let sql = "CREATE TABLE Packages (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB NOT NULL); \
                   INSERT INTO Packages (blob) VALUES (randomblob(300)), (x'0000000300000010');";
        ok(Command::new("sqlite3").arg(db).arg(sql));
    })
}

/// A pacman root with `packages` (name, one dependency or "").
fn pacman_root(c: &Ctx, packages: &[(&str, &str)]) -> Setup {
    let root = c.root();
    let local = root.join("var/lib/pacman/local");
    fs::create_dir_all(&local).unwrap();
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(root.join("etc/os-release"), "ID=arch\n").unwrap();
    fs::write(local.join("ALPM_DB_VERSION"), "9\n").unwrap();
    for (name, dep) in packages {
        let d = local.join(format!("{name}-1-1"));
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("desc"), format!("%NAME%\n{name}\n\n%VERSION%\n1-1\n\n%DEPENDS%\n{dep}\n\n")).unwrap();
        let files = format!("%FILES%\nusr/\nusr/share/\nusr/share/{name}/\nusr/share/{name}/file\n\n");
        fs::write(d.join("files"), files).unwrap();
        owned_file(&root, name);
    }
    sysroot_setup(c, &[packages[0].0])
}

fn pacman_cycle(c: &Ctx) -> Setup {
    pacman_root(c, &[("a", "b>=1"), ("b", "a")])
}

fn pacman_desc_no_name(c: &Ctx) -> Setup {
    let s = pacman_cycle(c);
    fs::write(c.root().join("var/lib/pacman/local/b-1-1/desc"), "%VERSION%\n1-1\n\n%NAME\nb\n").unwrap();
    s
}

fn pacman_desc_garbage(c: &Ctx) -> Setup {
    let s = pacman_cycle(c);
    fs::write(c.root().join("var/lib/pacman/local/b-1-1/desc"), b"%NAME%\n\xff\xfe\x00b\n").unwrap();
    s
}

// ------------------------------------------------------------------------------------------
// The table.

const UTF8: &[&str] = &["not valid UTF-8"];
const REGULAR: &[&str] = &["not a regular file or directory"];

macro_rules! case {
    ($name:literal, $setup:ident, $build:expr, $prepare:expr, $mount:expr) => {
        Case { name: $name, setup: $setup, build: $build, prepare: $prepare, mount: $mount }
    };
    ($name:literal, $setup:ident, $want:expr) => {
        Case { name: $name, setup: $setup, build: $want, prepare: None, mount: $want }
    };
}

const CASES: &[Case] = &[
    case!("tar-dotdot", tar_dotdot, Fail(&["dotdot.tar", "../../../ESCAPED", "'..' component"])),
    case!("tar-dotdot-inner", tar_dotdot_inner, Fail(&["inner.tar", "'..' component"])),
    case!("tar-absolute", tar_absolute, Pass),
    case!("tar-symlink-abs-through", tar_symlink_abs_through, Pass),
    case!("tar-symlink-rel-through", tar_symlink_rel_through, Pass),
    case!("tar-symlink-then-dir", tar_symlink_then_dir, Pass),
    case!("tar-hardlink-outside", tar_hardlink_outside, Pass),
    case!("tar-hardlink-to-dir", tar_hardlink_to_dir, Pass),
    case!("tar-devices", tar_devices, Pass),
    case!("tar-setid", tar_setid, Pass),
    case!("tar-root-mode-0", tar_root_mode_0, Pass),
    case!("tar-duplicates", tar_duplicates, Pass),
    case!("tar-sparse-gnu", tar_sparse_gnu, Fail(&["sparse-gnu.tar", "\"huge\"", "sparse file"])),
    case!("tar-sparse-pax", tar_sparse_pax, Fail(&["sparse-pax.tar", "sparse file"])),
    case!("tar-huge-claim", tar_huge_claim, Fail(&["claim.tar", "\"./huge\"", "truncated"])),
    case!("tar-truncated", tar_truncated, Fail(&["cut.tar", "truncated"])),
    case!("tar-bad-checksum", tar_bad_checksum, Fail(&["cksum.tar", "corrupt tar archive", "checksum"])),
    case!("tar-long-component", tar_long_component, Fail(&["longname.tar", "longer than Linux allows"])),
    case!("tar-long-path", tar_long_path, Fail(&["longpath.tar", "longer than Linux allows"])),
    case!("tar-nul-pax", tar_nul_pax, Fail(&["nul.tar", "etc/a\\0b", "NUL byte"])),
    case!("tar-bomb-100k", tar_bomb, Pass),
    case!("gzip-truncated", gzip_truncated, Fail(&["cut.tar.gz", "corrupt gzip data"])),
    case!("gzip-corrupt", gzip_corrupt, Fail(&["flip.tar.gz", "corrupt gzip data"])),
    case!("xz-truncated", xz_truncated, Fail(&["cut.tar.xz", "corrupt xz data"])),
    case!("xz-corrupt", xz_corrupt, Fail(&["flip.tar.xz", "corrupt xz data"])),
    case!("zstd", zstd, Fail(&["base.tar.zst", "zstd-compressed input: not supported"])),
    case!("bzip2", bzip2, Fail(&["packages.bz2", "bzip2-compressed input: not supported"])),
    case!("cpio", cpio, Fail(&["base.cpio", "cpio files are not supported"])),
    case!("binary-garbage", binary_garbage, Fail(&["garbage.bin", "unknown file type"])),
    case!("packages-invalid-utf8", packages_invalid_utf8, Fail(&["in/packages", UTF8[0]])),
    case!("packages-nul", packages_nul, Pass),
    case!("packages-missing", packages_missing, Pass, Some(Fail(&["none of the packages"])), Pass),
    case!("hostfiles-invalid-utf8", hostfiles_invalid_utf8, Fail(&["in/hostfiles", UTF8[0]])),
    case!("hostfiles-nul", hostfiles_nul, Pass),
    case!("excludefiles-invalid-utf8", excludefiles_invalid_utf8, Fail(&["in/excludefiles", UTF8[0]])),
    case!("excludefiles-nul", excludefiles_nul, Pass),
    case!("excludefiles-no-dash", excludefiles_no_dash, Fail(&["in/excludefiles", "does not start with '-'"])),
    case!("hostfiles-dotdot", hostfiles_dotdot, Pass),
    case!("hostfiles-dotdot-sysroot", hostfiles_dotdot_sysroot, Pass),
    case!("hostfiles-proc", hostfiles_proc, Pass),
    case!("hostfiles-dev", hostfiles_dev, Pass),
    case!("hostfiles-fifo", hostfiles_fifo, Pass),
    case!("hostfiles-dangling", hostfiles_dangling, Pass),
    case!("input-fifo", input_fifo, Fail(&["in/fifo", REGULAR[0]])),
    case!("input-device", input_device, Fail(&["in/zero", REGULAR[0]])),
    case!("input-dangling", input_dangling, Fail(&["in/dangling", "No such file or directory"])),
    case!("input-dir-loop", input_dir_loop, Fail(&["in/sub/loop", "directory loop"])),
    case!("input-symlink-loop", input_symlink_loop, Fail(&["in/a", "Too many levels of symbolic links"])),
    case!(
        "output-regular-file",
        output_regular_file,
        Fail(&["out-", "exists and is not a directory"]),
        Some(Fail(&["out-prepare", "exists and is not a directory"])),
        Pass
    ),
    case!(
        "output-missing-parent",
        output_missing_parent,
        Fail(&["missing/out-", "parent directory of the output does not exist"]),
        Some(Fail(&["missing/out-prepare", "parent directory of the output does not exist"])),
        Pass
    ),
    case!(
        "tmpdir-relative",
        tmpdir_relative,
        Fail(&["$TMPDIR must be an absolute path"]),
        Some(Fail(&["$TMPDIR must be an absolute path"])),
        Pass
    ),
    case!("dpkg-cycle", dpkg_cycle, Pass, Some(Pass), Pass),
    case!("dpkg-self-dep", dpkg_self_dep, Pass, Some(Pass), Pass),
    case!("dpkg-status-mangled", dpkg_status_mangled, Pass, Some(Pass), Pass),
    case!("dpkg-list-dotdot", dpkg_list_dotdot, Pass, Some(Pass), Pass),
    case!("pacman-cycle", pacman_cycle, Pass, Some(Pass), Pass),
    case!(
        "dpkg-status-garbage",
        dpkg_status_garbage,
        Fail(&["var/lib/dpkg/status", "cannot read the dpkg database"]),
        Some(Fail(&["var/lib/dpkg/status", "cannot read the dpkg database"])),
        Fail(&["var/lib/dpkg/status", "cannot read the dpkg database"])
    ),
    case!(
        "rpmdb-garbage",
        rpmdb_garbage,
        Fail(&["rpmdb.sqlite", "cannot read the rpm database"]),
        Some(Fail(&["rpmdb.sqlite", "cannot read the rpm database"])),
        Fail(&["rpmdb.sqlite", "cannot read the rpm database"])
    ),
    case!(
        "rpmdb-bad-header",
        rpmdb_bad_header,
        Fail(&["rpmdb.sqlite", "corrupt header"]),
        Some(Fail(&["rpmdb.sqlite", "corrupt header"])),
        Fail(&["rpmdb.sqlite", "corrupt header"])
    ),
    case!(
        "pacman-desc-no-name",
        pacman_desc_no_name,
        Fail(&["b-1-1/desc", "no %NAME%"]),
        Some(Fail(&["b-1-1/desc", "no %NAME%"])),
        Fail(&["b-1-1/desc", "no %NAME%"])
    ),
    case!(
        "pacman-desc-garbage",
        pacman_desc_garbage,
        Fail(&["b-1-1/desc", "cannot read the pacman database"]),
        Some(Fail(&["b-1-1/desc", "cannot read the pacman database"])),
        Fail(&["b-1-1/desc", "cannot read the pacman database"])
    ),
];

/// Paths that must (true) or must not (false) be in a case's successful chroot build, so
/// that a success is the one documented above.
fn expected_paths(case: &str) -> &'static [(&'static str, bool)] {
    match case {
        "tar-absolute" => &[("etc/hostile-abs", true)],
        "tar-symlink-abs-through" => &[("esc", true)],
        "tar-symlink-rel-through" => &[("up", true), ("PWNED", true), ("PWNED2", true)],
        "tar-hardlink-outside" => &[("ok", true), ("h1", false), ("h2", false), ("h3", false)],
        "tar-hardlink-to-dir" => &[("d", true), ("h", false)],
        "tar-devices" => &[("dev/null", true), ("dev/sda", true), ("dev/fifo", true)],
        "tar-setid" => &[("suid", true), ("sgid", true), ("sticky", true)],
        "tar-bomb-100k" => &[("bomb/00000", true), ("bomb/99999", true)],
        "hostfiles-proc" => &[("proc/cmdline", true), ("proc/self", true)],
        "hostfiles-dev" => &[("dev/null", true)],
        "dpkg-cycle" | "hostfiles-dotdot-sysroot" => {
            &[("usr/share/a/file", true), ("usr/share/b/file", true), ("usr/share/c/file", true)]
        }
        "dpkg-self-dep" | "dpkg-status-mangled" => &[("usr/share/a/file", true)],
        "dpkg-list-dotdot" => &[("etc/dotdot-owned", true), ("usr/share/a/file", true)],
        "pacman-cycle" => &[("usr/share/a/file", true), ("usr/share/b/file", true)],
        _ => &[],
    }
}

// ------------------------------------------------------------------------------------------
// The driver.

/// A kernel file and an empty modules tree: ext2 and initramfs builds then take milliseconds
/// instead of copying the host's modules.
fn fake_kernel_env() -> &'static [(&'static str, String); 3] {
    static ENV: OnceLock<(Scratch, [(&'static str, String); 3])> = OnceLock::new();
    &ENV.get_or_init(|| {
        let t = Scratch::new("hostile-kernel");
        fs::create_dir_all(t.path("modules")).unwrap();
        fs::write(t.path("modules/modules.dep"), "").unwrap();
        fs::write(t.path("vmlinuz"), "not really a kernel").unwrap();
        let env = [
            ("SUPERMIN_KERNEL", t.path("vmlinuz").to_string_lossy().into_owned()),
            ("SUPERMIN_KERNEL_VERSION", "0.0.0-hostile".to_string()),
            ("SUPERMIN_MODULES", t.path("modules").to_string_lossy().into_owned()),
        ];
        (t, env)
    })
    .1
}

fn command(c: &Ctx, s: &Setup) -> Command {
    let mut cmd = ours();
    cmd.envs(fake_kernel_env().iter().map(|(k, v)| (*k, v.as_str())));
    // A mount's decompressed-image cache stays in the case's directory.
    cmd.env("XDG_CACHE_HOME", c.dir.join("cache"));
    cmd.envs(s.env.iter().map(|(k, v)| (*k, v.as_str())));
    cmd
}

/// Run `cmd`, killing it and failing after `limit`: a hostile input must never hang a command.
fn run_for(c: &Ctx, cmd: &mut Command, limit: Duration) -> Output {
    let logs = c.dir.join("log");
    fs::create_dir_all(&logs).unwrap();
    let (out, err) = (logs.join("stdout"), logs.join("stderr"));
    cmd.stdin(Stdio::null()).stdout(fs::File::create(&out).unwrap()).stderr(fs::File::create(&err).unwrap());
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} still running after {limit:?}: {}", fs::read_to_string(&err).unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Output { status, stdout: fs::read(&out).unwrap(), stderr: fs::read(&err).unwrap() }
}

fn assert_no_panic(out: &Output, what: &str) {
    let err = stderr(out);
    assert!(!err.contains("panicked") && out.status.code().is_some(), "{what}: {:?} {err}", out.status);
}

/// Every entry under `dir` but the outputs (`cage/out-*`: each output and its temporary
/// siblings), the mountpoint, the mount cache and the logs: kind, mode, size, link count, and
/// the content of files.
fn snapshot(dir: &Path) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
        let skipped = ["mp", "cache", "log"].contains(&rel.as_str())
            || rel.starts_with("cage/out-")
            || rel.starts_with("cage/missing/out-");
        if skipped {
            continue;
        }
        let m = fs::symlink_metadata(&p).unwrap();
        // A directory's size and link count change with its entries (the outputs' come and go).
        let (nlink, size) = if m.is_dir() { (0, 0) } else { (m.nlink(), m.size()) };
        let mut line = format!("{:o} {nlink} {size}", m.mode());
        if m.is_file() {
            line += &format!(" {:x}", fnv(&fs::read(&p).unwrap()));
        } else if m.is_symlink() {
            line += &format!(" -> {}", fs::read_link(&p).unwrap().display());
        } else if m.is_dir() {
            stack.extend(fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
        map.insert(rel, line);
    }
    map
}

fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf29ce484222325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x100000001b3))
}

fn assert_same_snapshot(before: &BTreeMap<String, String>, dir: &Path, what: &str) {
    let after = snapshot(dir);
    let changed: Vec<String> = before
        .iter()
        .filter(|(k, v)| after.get(*k) != Some(v))
        .map(|(k, v)| format!("{k}: {v} → {:?}", after.get(k)))
        .chain(after.keys().filter(|k| !before.contains_key(*k)).map(|k| format!("{k}: new")))
        .collect();
    assert!(changed.is_empty(), "{what}: written outside the output: {changed:#?}");
}

/// The canary tree around the outputs: `cage/` holds them, a sibling file and a sibling
/// directory; the case directory (the cage's parent) holds a file too.
fn make_canaries(c: &Ctx) {
    fs::create_dir_all(c.cage().join("sibling-dir")).unwrap();
    fs::write(c.cage().join("sibling.txt"), "sibling").unwrap();
    fs::write(c.cage().join("sibling-dir/inner.txt"), "inner").unwrap();
    fs::write(c.dir.join("parent.txt"), "parent").unwrap();
}

fn output_path(c: &Ctx, s: &Setup, what: &str) -> PathBuf {
    let out = match s.out {
        OutKind::MissingParent => c.cage().join("missing").join(format!("out-{what}")),
        _ => c.cage().join(format!("out-{what}")),
    };
    match s.out {
        OutKind::Previous => previous_output(&out),
        OutKind::RegularFile => fs::write(&out, "precious").unwrap(),
        OutKind::MissingParent => {}
    }
    out
}

/// One `--build -f FORMAT` (or `--prepare`, `format` "prepare") of a case, checked.
fn check_run(c: &Ctx, s: &Setup, case: &Case, format: &str, want: Want) {
    let what = format!("{} {format}", case.name);
    let out = output_path(c, s, format);
    let before = snapshot(&c.dir);
    let mut cmd = command(c, s);
    if format == "prepare" {
        cmd.args(["--prepare", "--use-installed"]).args(&s.args).args(&s.names);
    } else {
        cmd.args(["--build", "-f", format]).args(&s.args).args(&s.inputs);
    }
    let started = Instant::now();
    let r = run_for(c, cmd.arg("-o").arg(&out), Duration::from_secs(120));
    let ran = started.elapsed();
    assert_no_panic(&r, &what);
    match want {
        Pass => {
            assert!(r.status.success(), "{what}: {}", stderr(&r));
            check_output(&out, format, case.name);
        }
        Fail(needles) => {
            let line = assert_one_line_error(&r, needles);
            assert!(line.starts_with("supermin: "), "{what}: {line}");
            match s.out {
                OutKind::Previous => assert_previous_output_kept(&out),
                OutKind::RegularFile => assert_eq!(fs::read_to_string(&out).unwrap(), "precious", "{what}"),
                OutKind::MissingParent => assert!(!c.cage().join("missing").exists(), "{what}"),
            }
        }
    }
    assert_same_snapshot(&before, &c.dir, &what);
    eprintln!("  {what}: {} ms (checked in {} ms)", ran.as_millis(), started.elapsed().as_millis());
}

/// What a successful build must look like, besides the canaries: the documented entries in
/// the chroot, a clean ext2 image, a tar archive whose members all stay under `./`.
fn check_output(out: &Path, format: &str, case: &str) {
    match format {
        "chroot" => {
            for (path, present) in expected_paths(case) {
                let found = fs::symlink_metadata(out.join(path)).is_ok();
                assert_eq!(found, *present, "{case}: {path} in the chroot build");
            }
        }
        "ext2" => {
            need("e2fsck");
            let r = run(Command::new("e2fsck").arg("-fn").arg(out.join("root")));
            assert!(r.status.success(), "{case}: e2fsck: {}{}", stdout(&r), stderr(&r));
        }
        "tar" => {
            let mut archive = tar::Archive::new(fs::File::open(out.join("appliance.tar")).unwrap());
            for e in archive.entries().unwrap() {
                let e = e.unwrap();
                let name = e.path_bytes().into_owned();
                let confined =
                    name == b"./" || name.starts_with(b"./") && !name.split(|&b| b == b'/').any(|c| c == b"..");
                assert!(confined, "{case}: tar member {:?}", String::from_utf8_lossy(&name));
            }
        }
        _ => {}
    }
}

/// Walk the whole view without following links, reading every link and every regular file
/// (up to 1 MiB each, and one byte past its size to see it ends there; on 4 threads).
fn walk_view(mp: &Path) {
    let mut stack = vec![mp.to_path_buf()];
    let mut files = Vec::new();
    while let Some(p) = stack.pop() {
        let m = fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        if m.is_dir() {
            let rd = fs::read_dir(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            stack.extend(rd.map(|e| e.unwrap().path()));
        } else if m.is_symlink() {
            fs::read_link(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        } else if m.is_file() {
            files.push((p, m.size()));
        }
    }
    std::thread::scope(|s| {
        for chunk in files.chunks(files.len().div_ceil(4).max(1)) {
            s.spawn(move || chunk.iter().for_each(|(p, size)| read_view_file(p, *size)));
        }
    });
}

fn read_view_file(p: &Path, size: u64) {
    const CAP: u64 = 1 << 20;
    let f = fs::File::open(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let mut data = Vec::new();
    f.take(size.min(CAP) + 1).read_to_end(&mut data).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    assert_eq!(data.len() as u64, if size > CAP { CAP + 1 } else { size }, "{}", p.display());
}

/// `mount --fuse --daemon`, then the walk, then `umount`; or the mount refused with one line.
fn check_mount(c: &Ctx, s: &Setup, case: &Case) {
    let what = format!("{} mount", case.name);
    let mp = c.dir.join("mp");
    fs::create_dir_all(&mp).unwrap();
    let before = snapshot(&c.dir);
    let guard = Mounted::new(&mp);
    let mut cmd = command(c, s);
    cmd.args(["mount", "--fuse", "--daemon"]).args(&s.args).args(&s.inputs).arg(&mp);
    let r = run_for(c, &mut cmd, Duration::from_secs(120));
    assert_no_panic(&r, &what);
    match case.mount {
        Fail(needles) => {
            assert_one_line_error(&r, needles);
            assert!(!is_mounted(&mp), "{what}: mounted anyway");
        }
        Pass => {
            assert!(r.status.success(), "{what}: {}", stderr(&r));
            let pid = daemon_pid(&mp);
            let guard = guard.with_daemon(pid);
            let started = Instant::now();
            walk_view(&mp);
            eprintln!("  {what}: walked in {} ms", started.elapsed().as_millis());
            for (path, present) in expected_paths(case.name) {
                assert_eq!(fs::symlink_metadata(mp.join(path)).is_ok(), *present, "{what}: {path} in the view");
            }
            // Still answering after the walk.
            assert!(running(pid), "{what}: the daemon died");
            assert_eq!(daemon_pid(&mp), pid, "{what}");
            fs::read_dir(&mp).unwrap_or_else(|e| panic!("{what}: {e}"));
            let r = run_for(c, command(c, s).arg("umount").arg(&mp), Duration::from_secs(60));
            assert!(r.status.success(), "{what}: umount: {}", stderr(&r));
            assert!(wait_gone(pid), "{what}: the daemon outlived umount");
            drop(guard);
        }
    }
    assert_same_snapshot(&before, &c.dir, &what);
}

fn run_case(t: &Scratch, case: &Case) {
    let c = Ctx { dir: t.path(case.name) };
    fs::create_dir_all(&c.dir).unwrap();
    make_canaries(&c);
    let s = (case.setup)(&c);
    for format in FORMATS {
        check_run(&c, &s, case, format, case.build);
    }
    if let Some(want) = case.prepare {
        check_run(&c, &s, case, "prepare", want);
    }
    check_mount(&c, &s, case);
    let _ = Command::new("rm").arg("-rf").arg(&c.dir).status();
}

/// A scratch directory in memory (`/dev/shm`) when there is one: the 100,000-file case
/// writes and deletes its outputs several times, which on a busy disk takes minutes.
fn memory_scratch(name: &str) -> Scratch {
    if std::env::var_os("SUPERMIN_TEST_TMP").is_some() || !Path::new("/dev/shm").is_dir() {
        return Scratch::new(name);
    }
    let dir = PathBuf::from(format!("/dev/shm/supermin-test-{name}-{}", std::process::id()));
    let _ = Command::new("rm").arg("-rf").arg(&dir).status();
    fs::create_dir_all(&dir).unwrap();
    Scratch(dir)
}

#[test]
fn hostile_inputs() {
    assert!(CASES.len() >= 40, "{} cases", CASES.len());
    let t = memory_scratch("hostile");
    let only = std::env::var("HOSTILE_CASE").ok();
    if let Some(o) = &only {
        eprintln!("HOSTILE_CASE={o}: only the cases whose name contains it");
    }
    let mut failures = Vec::new();
    for case in CASES.iter().filter(|c| only.as_deref().is_none_or(|o| c.name.contains(o))) {
        let started = Instant::now();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_case(&t, case)));
        eprintln!("{}: {} ms", case.name, started.elapsed().as_millis());
        if let Err(e) = result {
            let msg = e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()));
            failures.push(format!("{}: {}", case.name, msg.unwrap_or_default()));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), CASES.len(), failures.join("\n\n"));
}

/// A case, whether the original succeeds, and what it says.
type OracleCase = (&'static str, fn(&Ctx) -> Setup, bool, &'static [&'static str]);

/// What the original supermin does with a few of these cases, next to ours: both refuse a
/// `..` member and an excludefiles line without `-` (ours names the file, the original does
/// not); both ignore a package that does not exist; the original unpacks a sparse member
/// (GNU tar knows sparse maps), which we refuse with one line instead of dropping it.
#[test]
fn original_on_some_cases() {
    let t = Scratch::new("hostile-original");
    let cases: [OracleCase; 4] = [
        ("tar-dotdot", tar_dotdot, false, &["Member name contains '..'"]),
        ("excludefiles-no-dash", excludefiles_no_dash, false, &["excludefiles line does not start with '-'"]),
        ("packages-missing", packages_missing, true, &[]),
        ("tar-sparse-gnu", tar_sparse_gnu, true, &[]),
    ];
    for (name, setup, original_succeeds, says) in cases {
        let c = Ctx { dir: t.path(name) };
        fs::create_dir_all(c.cage()).unwrap();
        let s = setup(&c);
        let theirs =
            run(oracle().args(["--build", "-f", "chroot"]).args(&s.inputs).arg("-o").arg(c.cage().join("orig")));
        assert_eq!(theirs.status.success(), original_succeeds, "{name}: the original: {}", stderr(&theirs));
        for needle in says {
            assert!(stderr(&theirs).contains(needle), "{name}: the original: {}", stderr(&theirs));
        }
        let ours = run(ours().args(["--build", "-f", "chroot"]).args(&s.inputs).arg("-o").arg(c.cage().join("ours")));
        let ours_succeeds = name == "packages-missing";
        assert_eq!(ours.status.success(), ours_succeeds, "{name}: ours: {}", stderr(&ours));
        if name == "tar-sparse-gnu" {
            let huge = fs::metadata(c.cage().join("orig/huge")).unwrap();
            assert_eq!(huge.len(), 1 << 40, "the original unpacks the sparse member whole");
        }
        if name == "packages-missing" {
            assert_same_tree(&c.cage().join("orig"), &c.cage().join("ours"));
        }
        assert!(!c.cage().join("ESCAPED").exists() && !t.0.join("ESCAPED").exists(), "{name}: escaped");
    }
}
