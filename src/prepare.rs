//! `--prepare`: write a supermin appliance (`packages` + `base.tar.gz`) from package names.
//!
//! `packages` lists the requested packages (sorted, unique; dependencies are resolved again at
//! build time). `base.tar.gz` holds the pristine config files of the whole dependency closure,
//! because those are the files a host is expected to have changed. Unlike the original, which
//! downloads every package owning a config file, a host copy whose checksum still matches
//! what dpkg recorded *is* the pristine file, so only packages with modified config files are
//! fetched.

use std::fs;
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use log::info;

use crate::error::{strerror, Error, IoContext, Result};
use crate::host::HostFile;
use crate::output::staging::{self, Replace, Shape, Staging};
use crate::packager::{self, ConfigSource, PackageManager, PkgId};

pub struct Options<'a> {
    pub packages: &'a [String],
    /// `/`, or `--sysroot`: where host config files are read.
    pub root: &'a Path,
    pub out: &'a Path,
    pub use_installed: bool,
    /// `--force`: replace `out` even when it is not an earlier supermin appliance.
    pub force: bool,
    /// `$TMPDIR`, where a private scratch directory is made for downloaded packages.
    pub tmpdir: &'a Path,
}

/// A private scratch directory, removed when dropped.
struct Scratch(std::path::PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        staging::remove_tree(&self.0);
    }
}

/// What `--prepare` writes, to recognise an earlier one (ours or the original's).
const SHAPE: Shape = Shape { name: "supermin.d", files: &["packages"], optional: &["base.tar.gz"] };

pub fn prepare(pm: &dyn PackageManager, opts: &Options) -> Result<()> {
    if opts.packages.is_empty() {
        return Err(Error::new("prepare: no input packages specified"));
    }
    let roots = pm.resolve_names(opts.packages);
    let missing = not_installed(pm, opts);
    if roots.is_empty() {
        return Err(Error::new(format!(
            "prepare: none of the packages listed on the command line seem to be installed: {}",
            missing.advice
        )));
    }
    if !missing.names.is_empty() {
        // The original leaves them out silently.
        log::warn!("prepare: not installed, left out of the appliance: {}", missing.advice);
    }
    let staging = Staging::new(opts.out, Replace { shape: SHAPE, force: opts.force })?;

    let mut names: Vec<&str> = roots.iter().map(|&p| pm.package_name(p)).collect();
    names.sort_unstable();
    names.dedup();
    // Made through the staging directory's descriptor (its parent may be someone else's).
    let out = staging.dir();
    let packages = Path::new("packages");
    let mut text = names.join("\n");
    text.push('\n');
    out.create_file(packages, 0o644, false)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .at(&out.shown(packages), "cannot write")?;

    let closure: Vec<PkgId> = pm.closure(&roots).iter().map(|r| r.pkg).collect();
    info!("prepare: {} packages, including dependencies", closure.len());
    let configs: Vec<_> = pm.files(&closure)?.into_iter().filter(|f| f.config).collect();
    info!("prepare: {} config files", configs.len());
    let scratch = Scratch(staging::create_unique(opts.tmpdir, "supermin", 0o700)?);
    let sources = packager::config_sources(opts.root, &closure, &configs, opts.use_installed, &scratch.0, pm)?;
    if !sources.is_empty() {
        let tarball = Path::new("base.tar.gz");
        let file = out.create_file(tarball, 0o644, false).at(&out.shown(tarball), "cannot create")?;
        write_base_image((file, &out.shown(tarball)), &sources)?;
    }
    out.set_mode(0o755).at(out.path(), "cannot set permissions")?;
    staging.commit()
}

/// The names given to `--prepare` that no installed package answers to, and what to do.
struct Missing {
    names: Vec<String>,
    /// `a, b: install them (apt-get install a b) or check the spelling`.
    advice: String,
}

fn not_installed(pm: &dyn PackageManager, opts: &Options) -> Missing {
    let names: Vec<String> =
        opts.packages.iter().filter(|n| pm.resolve_names(std::slice::from_ref(n)).is_empty()).cloned().collect();
    let chroot = match opts.root == Path::new("/") {
        true => String::new(),
        false => format!("chroot {} ", opts.root.display()),
    };
    let them = if names.len() == 1 { "it" } else { "them" };
    let advice = format!(
        "{}: install {them} ({chroot}{} {}), or check the spelling",
        names.join(", "),
        pm.install_command(),
        names.join(" ")
    );
    Missing { names, advice }
}

/// A host config file's bytes, permission bits and mtime, read through the descriptor that
/// was checked to be the file found (never a file swapped in since).
fn read_host(file: &HostFile, size: u64) -> std::io::Result<(Vec<u8>, u32, u64)> {
    let mut f = file.open(size)?;
    let meta = f.metadata()?;
    let mut data = Vec::with_capacity(size as usize);
    (&mut f).take(size).read_to_end(&mut data)?;
    Ok((data, meta.mode() & 0o7777, meta.mtime().max(0) as u64))
}

/// `base.tar.gz`: `./etc/...` members owned by root (HEAD supermin's `--owner=0 --group=0`),
/// every mtime set to `SOURCE_DATE_EPOCH` when it is set (as HEAD's `--mtime=@…`), for reproducible appliances.
fn write_base_image((file, path): (fs::File, &Path), sources: &[(String, ConfigSource)]) -> Result<()> {
    let epoch: Option<u64> = crate::util::source_date_epoch().and_then(|e| u64::try_from(e).ok());
    let gz = flate2::write::GzEncoder::new(BufWriter::new(file), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let write_err = |e: std::io::Error| Error::io(path, "cannot write", e);
    for (name, source) in sources {
        let (data, mode, mtime) = match source {
            ConfigSource::Host { file, size } => match read_host(file, *size) {
                Ok(read) => read,
                Err(e) => {
                    // Unreadable (e.g. /etc/shadow-like files as non-root): the original's tar
                    // prints a warning and goes on.
                    log::warn!("{}: {} (not included in base.tar.gz)", file.path.display(), strerror(&e));
                    continue;
                }
            },
            ConfigSource::Bytes { data, mode, mtime } => (data.clone(), *mode & 0o7777, *mtime),
        };
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_username("root").map_err(write_err)?;
        header.set_groupname("root").map_err(write_err)?;
        header.set_mtime(epoch.unwrap_or(mtime));
        header.set_entry_type(tar::EntryType::Regular);
        // GNU tar keeps the `./` prefix the original's `-T files-from` list gives; the tar
        // crate's path setter drops `.` components, so short names go in the header as is.
        let member = format!(".{name}");
        if member.len() < 100 {
            let gnu = header.as_gnu_mut().expect("new_gnu header");
            gnu.name = [0; 100];
            gnu.name[..member.len()].copy_from_slice(member.as_bytes());
            header.set_cksum();
            tar.append(&header, &data[..]).map_err(write_err)?;
        } else {
            tar.append_data(&mut header, member, &data[..]).map_err(write_err)?;
        }
    }
    let gz = tar.into_inner().map_err(write_err)?;
    let mut buf = gz.finish().map_err(write_err)?;
    buf.flush().map_err(write_err)?;
    buf.into_inner().map_err(|e| write_err(e.into_error()))?.sync_all().map_err(write_err)?;
    Ok(())
}
