//! Entry points for the fuzz targets of `fuzz/` (cargo-fuzz), and nothing else: each takes
//! arbitrary bytes, feeds them to the parsers that read files we do not write ourselves
//! (a supermin.d, package databases, rpm headers, base images, cpio archives) and checks
//! what must hold of the result. A parser may refuse its input with an error; it must never
//! panic, hang or exhaust memory. Not an API: hidden from the docs, used by `fuzz/` only.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use crate::inputs::{self, BaseImage, Inputs, Kind};
use crate::manifest::{Content, Manifest, Meta, Node};
use crate::packager::dpkg::{self, Dpkg};
use crate::packager::pacman::{self, desc};
use crate::packager::rpm::header::{self as tag, Header};
use crate::packager::rpm::rich::Rich;
use crate::packager::rpm::version::vercmp;
use crate::packager::PackageManager;
use crate::util::cpio;

/// A supermin.d file: decompressed and sniffed as `--build` reads it, then parsed by the
/// packages, hostfiles or excludefiles rules whatever its first byte says.
pub fn inputs(data: &[u8]) {
    static META: OnceLock<std::fs::Metadata> = OnceLock::new();
    let meta = META.get_or_init(|| std::fs::metadata("/").expect("stat /"));
    let path = Path::new("supermin.d/fuzz");
    if let Ok(content) = inputs::decompress(path, data.to_vec()) {
        let kind = inputs::sniff(&content);
        let mut read = Inputs::default();
        let added = read.add(path, meta, content, None);
        match kind {
            Kind::Empty => assert!(added.is_ok()),
            Kind::Tar => assert_eq!(read.base_images.len(), 1),
            Kind::Cpio | Kind::Unknown => assert!(added.is_err()),
            Kind::Packages | Kind::Hostfiles | Kind::Excludefiles => {}
        }
        assert!(read.packages.iter().all(|p| !p.is_empty() && !p.contains('\n')));
    }
    if let Ok(lines) = inputs::lines(path, data) {
        assert!(lines.iter().all(|l| !l.contains('\n')));
    }
    if let Ok(patterns) = inputs::exclude_patterns(path, data) {
        assert!(patterns.len() <= data.len());
    }
}

/// dpkg's `status` (and the same text as `diversions`, an `info/*.list` and `*.md5sums`):
/// the database built from it, every word of it resolved as a package name, and the closure.
pub fn dpkg(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let db = Dpkg::parse(Path::new("/nonexistent"), text, dpkg::parse_diversions(text));
    let names: Vec<String> = text.split(|c: char| c.is_whitespace() || c == ',').map(str::to_string).collect();
    let roots = db.resolve_names(&names);
    let reached = db.closure(&roots);
    let closure: Vec<usize> = reached.iter().map(|r| r.pkg).collect();
    assert!(closure.windows(2).all(|w| w[0] < w[1]), "closure not sorted and unique");
    for r in &reached {
        // Each package is a root or was pulled in by one of the closure; the original's part
        // is closed: what pulled in one of its packages is in it too.
        assert_eq!(r.via.is_none(), roots.contains(&r.pkg), "why {} is in", r.pkg);
        let via = r.via.map(|v| reached[closure.binary_search(&v).expect("pulled in from outside")]);
        assert!(!r.original || via.is_none_or(|v| v.original), "the original's closure is not closed");
    }
    assert!(roots.iter().all(|r| closure.binary_search(r).is_ok()), "closure misses a root");
    for id in closure {
        // dpkg never records an empty `Package:`; if a corrupt status does, nothing breaks.
        assert!(db.pretty_name(id).starts_with(db.package_name(id)));
    }
    assert!(dpkg::list_paths(text).all(|p| p.starts_with('/')));
    for (path, _) in dpkg::parse_md5sums(text) {
        assert!(path.starts_with('/'));
    }
}

/// An rpm header as the database stores it, the same bytes as a `.rpm` file, and as text a
/// rich dependency and two versions to compare.
pub fn rpm_header(data: &[u8]) {
    if let Ok(h) = Header::parse(data.to_vec()) {
        read_header(&h);
    }
    if let Ok((h, end)) = Header::parse_package(data.to_vec()) {
        assert!(end <= data.len(), "payload offset {end} beyond the file");
        read_header(&h);
    }
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(rich) = Rich::parse(text) {
        let installed = |name: &str| name.len().is_multiple_of(2);
        let _ = rich.satisfied(&installed);
        rich.wants(&installed, &mut Vec::new());
    }
    if let Some((a, b)) = text.split_once('\n') {
        assert_eq!(vercmp(a, b), vercmp(b, a).reverse(), "vercmp({a:?}, {b:?}) is not antisymmetric");
        assert_eq!(vercmp(a, a), std::cmp::Ordering::Equal);
    }
}

/// Every accessor on every tag supermin reads.
fn read_header(h: &Header) {
    let tags = [
        tag::NAME,
        tag::VERSION,
        tag::RELEASE,
        tag::EPOCH,
        tag::ARCH,
        tag::OLDFILENAMES,
        tag::FILEDIGESTS,
        tag::FILEFLAGS,
        tag::PROVIDENAME,
        tag::REQUIREFLAGS,
        tag::REQUIRENAME,
        tag::DIRINDEXES,
        tag::BASENAMES,
        tag::DIRNAMES,
        tag::FILEDIGESTALGO,
    ];
    for t in tags {
        let _ = h.string(t);
        let _ = h.strings(t);
        let _ = h.int(t);
        let _ = h.ints(t);
    }
    let _ = h.files();
}

/// pacman's `desc` and `files` (`%SECTION%` blocks) and a decompressed `mtree`.
pub fn pacman(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for line in desc::sections(text).values().flatten() {
        assert!(line.contains(desc::strip_version(line)));
    }
    let (files, backup) = pacman::parse_file_list(text);
    assert!(files.iter().chain(&backup).all(|f| f.starts_with('/')));
    assert!(pacman::parse_mtree(text).keys().all(|f| f.starts_with('/')));
}

/// A base image unpacked into a manifest: whatever it holds, every entry of the tree is
/// reachable by its path and every member's bytes lie inside the image.
pub fn tar_index(data: &[u8]) {
    let mut m = Manifest::new(Meta { mode: 0o755, ..Meta::default() });
    let image = BaseImage { path: "base.tar".into(), tar: Arc::new(data.to_vec()) };
    // A refused image fails the build, so only an accepted one must have its members' bytes.
    let accepted = m.add_tar(image).is_ok();
    m.walk(|path, ino| {
        assert_eq!(
            m.lookup(path, false),
            Some(ino),
            "{:?} is not where the walk found it",
            String::from_utf8_lossy(path)
        );
        let inode = m.inode(ino);
        if let (true, Node::File(content @ Content::Tar { .. })) = (accepted, &inode.node) {
            assert!(
                m.memory_content(content, inode.meta.size).is_some(),
                "{:?}: its bytes are outside the image",
                String::from_utf8_lossy(path)
            );
        }
    });
    let _ = m.link_counts();
}

/// One member to write, decoded from the fuzzer's bytes.
struct Member {
    name: Vec<u8>,
    mode: u32,
    mtime: u32,
    rdev: u64,
    data: Vec<u8>,
}

/// Take `n` bytes (fewer at the end of the input).
fn take<'a>(b: &mut &'a [u8], n: usize) -> &'a [u8] {
    let (head, tail) = b.split_at(n.min(b.len()));
    *b = tail;
    head
}

fn take_u32(b: &mut &[u8]) -> u32 {
    take(b, 4).iter().fold(0, |v, &x| (v << 8) | u32::from(x))
}

/// Members from bytes: a name length, the name, mode, mtime, rdev, a data length, the data.
fn members(mut b: &[u8]) -> Vec<Member> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let n = take(&mut b, 1)[0] as usize;
        let name = take(&mut b, n).to_vec();
        let (mode, mtime) = (take_u32(&mut b), take_u32(&mut b));
        let rdev = u64::from(take_u32(&mut b)) << 32 | u64::from(take_u32(&mut b));
        let len = (take_u32(&mut b) % 4096) as usize;
        let data = take(&mut b, len).to_vec();
        // The end-of-archive marker's name cannot be a member's.
        if name != b"TRAILER!!!" {
            out.push(Member { name, mode, mtime, rdev, data });
        }
    }
    out
}

/// cpio: arbitrary bytes read as an archive, and arbitrary members written then read back
/// unchanged.
pub fn cpio_round_trip(data: &[u8]) {
    let _ = cpio::read(data);
    let members = members(data);
    let mut w = cpio::Writer::new(Vec::new());
    for m in &members {
        let h = cpio::Header {
            name: &m.name,
            mode: m.mode,
            uid: m.mode,
            gid: m.mtime,
            nlink: 1,
            mtime: m.mtime,
            rdev: m.rdev,
        };
        w.append(&h, &m.data).expect("writing to memory");
    }
    let archive = w.finish().expect("writing to memory");
    let back = cpio::read(&archive).expect("the reader reads what the writer wrote");
    assert_eq!(back.len(), members.len());
    for (m, b) in members.iter().zip(&back) {
        assert_eq!(b.name, String::from_utf8_lossy(&m.name));
        assert_eq!((b.mode, b.mtime, b.data), (m.mode, u64::from(m.mtime), &m.data[..]));
    }
}
