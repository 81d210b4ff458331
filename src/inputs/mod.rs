//! Reading a supermin appliance: the files and directories given to `--build`.
//!
//! File names mean nothing; each file's type is sniffed from its content exactly as supermin 5
//! does (gzip and xz are unwrapped first): a tar archive (`ustar` at offset 257) is a base image,
//! text starting with `/` is a hostfiles list, with `-` an excludefiles list, with an alphanumeric
//! character a packages list; empty files are ignored and anything else is refused.

use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::bail;
use crate::error::{Error, IoContext, Result};

pub mod cache;

use cache::ImageCache;

/// A base image: an uncompressed tar archive, in memory for a build (they are small:
/// libguestfs's largest, daemon.tar.gz, is a few MB unpacked) or in a mapped cache file for a
/// mount, which serves members for its whole life (see [`Inputs::read`]).
#[derive(Clone)]
pub struct BaseImage {
    pub path: PathBuf,
    pub tar: ImageBytes,
}

pub type ImageBytes = Arc<dyn ImageData>;

/// A base image's bytes, in memory or mapped from the cache.
pub trait ImageData: AsRef<[u8]> + Send + Sync {
    /// Drop resident pages that can be read back (mapped images; memory cannot).
    fn release_pages(&self) {}
}

impl ImageData for Vec<u8> {}

impl ImageData for cache::Image {
    fn release_pages(&self) {
        cache::Image::release_pages(self)
    }
}

#[derive(Default, Clone)]
pub struct Inputs {
    /// Package names, in the order read (duplicates possible).
    pub packages: Vec<String>,
    /// Host path globs.
    pub hostfiles: Vec<String>,
    /// fnmatch patterns, with the leading `-` removed.
    pub excludes: Vec<String>,
    /// Base images in visiting order: later ones overwrite earlier ones.
    pub base_images: Vec<BaseImage>,
}

impl Inputs {
    /// Read the given inputs; directories are walked recursively, entries in byte order. With
    /// a `cache` (a mount), base images are decompressed once into it and mapped from there
    /// (a cached image is not even read again); without, they are kept in memory.
    pub fn read(args: &[PathBuf], cache: Option<&ImageCache>) -> Result<Inputs> {
        if args.is_empty() {
            bail!("build: no input supermin appliance specified");
        }
        let mut inputs = Inputs::default();
        for arg in args {
            inputs.visit(arg, cache, &mut Vec::new())?;
        }
        if inputs.packages.is_empty() && inputs.hostfiles.is_empty() && inputs.base_images.is_empty() {
            // The original builds an empty appliance without a word.
            let shown: Vec<String> = args.iter().map(|a| a.display().to_string()).collect();
            let dir = args.iter().find(|a| a.is_dir()).map_or("supermin.d".into(), |a| a.display().to_string());
            log::warn!(
                "{}: no packages, hostfiles or base image in it, the appliance is empty: fill it with --prepare \
                 (supermin --prepare bash coreutils -o {dir})",
                shown.join(", ")
            );
        }
        Ok(inputs)
    }

    /// Read one input; `above` holds the (device, inode) of the directories being walked, so
    /// that a symlink back to one of them is an error instead of an endless walk.
    fn visit(&mut self, path: &Path, cache: Option<&ImageCache>, above: &mut Vec<(u64, u64)>) -> Result<()> {
        let meta = fs::metadata(path).at(path, "cannot read input")?;
        if meta.is_dir() {
            let id = (meta.dev(), meta.ino());
            if above.contains(&id) {
                bail!("{}: directory loop: this leads back to a directory that contains it", path.display());
            }
            above.push(id);
            self.visit_dir(path, cache, above)?;
            above.pop();
            return Ok(());
        }
        if !meta.is_file() {
            // A fifo would block the build, a device (/dev/zero) would never end.
            bail!("{}: not a regular file or directory: refusing to read it as an input", path.display());
        }
        // Only tar archives are ever cached, so a hit is a base image.
        if let Some(image) = cache.and_then(|c| c.get(path, &meta)) {
            self.base_images.push(BaseImage { path: path.to_path_buf(), tar: Arc::new(image) });
            return Ok(());
        }
        let raw = fs::read(path).at(path, "cannot read input")?;
        let data = decompress(path, raw)?;
        self.add(path, &meta, data, cache)
    }

    fn visit_dir(&mut self, path: &Path, cache: Option<&ImageCache>, above: &mut Vec<(u64, u64)>) -> Result<()> {
        let mut names: Vec<_> = fs::read_dir(path)
            .at(path, "cannot list input directory")?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()
            .at(path, "cannot list input directory")?;
        // Byte order, as OCaml's `compare` on strings.
        names.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
        for name in names {
            self.visit(&path.join(name), cache, above)?;
        }
        Ok(())
    }

    /// One input file's (decompressed) content, by its sniffed type.
    pub fn add(&mut self, path: &Path, meta: &fs::Metadata, data: Vec<u8>, cache: Option<&ImageCache>) -> Result<()> {
        match sniff(&data) {
            Kind::Empty => {}
            Kind::Tar => {
                let tar: ImageBytes = match cache.map(|c| c.put(path, meta, &data)) {
                    Some(Ok(image)) => Arc::new(image),
                    Some(Err(e)) => {
                        log::warn!(
                            "{}: cannot cache the decompressed image ({e}); keeping it in memory",
                            path.display()
                        );
                        Arc::new(data)
                    }
                    None => Arc::new(data),
                };
                self.base_images.push(BaseImage { path: path.to_path_buf(), tar })
            }
            Kind::Cpio => bail!("{}: cpio files are not supported in this version of supermin", path.display()),
            Kind::Hostfiles => self.hostfiles.extend(lines(path, &data)?),
            Kind::Excludefiles => self.excludes.extend(exclude_patterns(path, &data)?),
            Kind::Packages => self.packages.extend(lines(path, &data)?.into_iter().filter(|l| !l.is_empty())),
            Kind::Unknown => bail!(
                "{}: unknown file type in supermin directory (expected a tar archive, or a packages, hostfiles or \
                 excludefiles list)",
                path.display()
            ),
        }
        Ok(())
    }
}

/// The patterns of an excludefiles list: each line without its leading `-`.
pub fn exclude_patterns(path: &Path, data: &[u8]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for line in lines(path, data)? {
        match line.strip_prefix('-') {
            Some(pattern) => out.push(pattern.to_string()),
            None => bail!("{}: excludefiles line does not start with '-': {line:?}", path.display()),
        }
    }
    Ok(out)
}

#[derive(Debug, PartialEq, Eq)]
pub enum Kind {
    Empty,
    Tar,
    Cpio,
    Hostfiles,
    Excludefiles,
    Packages,
    Unknown,
}

/// Classify (already decompressed) content by its first bytes, with supermin 5's rules.
pub fn sniff(data: &[u8]) -> Kind {
    let head = &data[..data.len().min(512)];
    if head.is_empty() {
        Kind::Empty
    } else if head.len() >= 262 && &head[257..262] == b"ustar" {
        Kind::Tar
    } else if head.starts_with(b"070701") {
        Kind::Cpio
    } else if head.len() >= 2 && head[0] == b'/' {
        Kind::Hostfiles
    } else if head.len() >= 2 && head[0] == b'-' {
        Kind::Excludefiles
    } else if head[0].is_ascii_alphanumeric() {
        Kind::Packages
    } else {
        Kind::Unknown
    }
}

/// Unwrap gzip (`1f 8b 08`) and xz (`fd 7zXZ 00`) content; anything else is returned as is.
pub fn decompress(path: &Path, raw: Vec<u8>) -> Result<Vec<u8>> {
    if raw.starts_with(&[0x1f, 0x8b, 0x08]) {
        let mut out = Vec::with_capacity(raw.len() * 4);
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| Error::new(format!("{}: corrupt gzip data: {}", path.display(), e)))?;
        Ok(out)
    } else if raw.starts_with(b"\xfd7zXZ\x00") {
        let mut out = Vec::with_capacity(raw.len() * 4);
        lzma_rs::xz_decompress(&mut &raw[..], &mut out)
            .map_err(|e| Error::new(format!("{}: corrupt xz data: {:?}", path.display(), e)))?;
        Ok(out)
    } else if let Some(format) = unsupported_compression(&raw) {
        bail!(
            "{}: {format}-compressed input: not supported (only gzip and xz are); decompress it first",
            path.display()
        )
    } else {
        Ok(raw)
    }
}

/// Compressions the original does not unwrap either (it would call such a file of unknown type,
/// or take bzip2's `BZh` for a packages list): named, so the error says what to do.
fn unsupported_compression(raw: &[u8]) -> Option<&'static str> {
    if raw.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Some("zstd")
    } else if raw.len() >= 10 && raw.starts_with(b"BZh") && &raw[4..10] == b"1AY&SY" {
        Some("bzip2")
    } else if raw.starts_with(&[0x04, 0x22, 0x4d, 0x18]) {
        Some("lz4")
    } else {
        None
    }
}

/// Split text into lines the way the original does: on `\n`, no trimming, no comments; a
/// final newline does not make an extra empty line.
pub fn lines(path: &Path, data: &[u8]) -> Result<Vec<String>> {
    let text =
        std::str::from_utf8(data).map_err(|_| Error::new(format!("{}: not valid UTF-8 text", path.display())))?;
    let text = text.strip_suffix('\n').unwrap_or(text);
    Ok(text.split('\n').map(str::to_string).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_like_supermin() {
        assert_eq!(sniff(b""), Kind::Empty);
        assert_eq!(sniff(b"bash\ncoreutils\n"), Kind::Packages);
        assert_eq!(sniff(b"/etc/ld.so.cache\n"), Kind::Hostfiles);
        assert_eq!(sniff(b"-/usr/share/doc/*\n"), Kind::Excludefiles);
        assert_eq!(sniff(b"070701000000"), Kind::Cpio);
        assert_eq!(sniff(b"# comment\nbash\n"), Kind::Unknown);
        // A lone "/" or "-" is too short to be a list.
        assert_eq!(sniff(b"/"), Kind::Unknown);
        let mut tar = vec![0u8; 512];
        tar[257..262].copy_from_slice(b"ustar");
        assert_eq!(sniff(&tar), Kind::Tar);
    }

    #[test]
    fn lines_keep_blanks_but_not_the_final_newline() {
        let p = Path::new("x");
        assert_eq!(lines(p, b"a\n\nb\n").unwrap(), vec!["a", "", "b"]);
        assert_eq!(lines(p, b"a").unwrap(), vec!["a"]);
    }

    #[test]
    fn gzip_is_unwrapped_and_corruption_named() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, b"bash\n").unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(decompress(Path::new("p"), gz.clone()).unwrap(), b"bash\n");
        let mut bad = gz;
        let n = bad.len();
        bad.truncate(n - 6);
        let err = decompress(Path::new("/d/packages.gz"), bad).unwrap_err();
        assert!(err.message().starts_with("/d/packages.gz: corrupt gzip data"), "{}", err);
    }
}
