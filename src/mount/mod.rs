//! `supermin mount`, `supermin umount` and `supermin materialize`: the lazy view's commands.
//!
//! `mount` resolves the appliance exactly as `--build` does (same [`build`] engine) and serves
//! the manifest through `supermin-fuse` instead of writing it. `materialize` is the explicit
//! real build: from a supermin.d, or from a live mount of ours (whose root records what it
//! resolved; see [`mountpoint::our_mount`] for whose records are believed).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use supermin_fuse::ServeError;

use crate::bail;
use crate::build;
use crate::error::{Error, IoContext, Result};
use crate::packager::Driver;
use crate::resolve::{cache, Settings};
use crate::util::sys;
use crate::view::{ManifestView, Record, XATTR_INPUTS, XATTR_OPTIONS, XATTR_PID, XATTR_SYSROOT};

mod daemon;
mod kernel;

pub use kernel::Refusal;
pub mod mountpoint;

use mountpoint::OurMount;

/// What `supermin mount` was asked for.
pub struct MountOptions {
    pub inputs: Vec<PathBuf>,
    pub mountpoint: PathBuf,
    pub daemon: bool,
    pub allow_other: bool,
    pub suid: bool,
    pub dev: bool,
    /// `None`: decided from the appliance once it is resolved.
    pub passthrough: Option<bool>,
    pub threads: usize,
    pub settings: Settings,
    /// `--sysroot` (or `/`) and `--packager`, when given.
    pub root: PathBuf,
    pub packager: Option<String>,
    /// `--trace FILE` (absolute): record the paths used, written to FILE when the mount ends.
    pub trace: Option<PathBuf>,
    /// `--kernel`, `--fuse`, or neither: which view to serve.
    pub view: ViewKind,
}

/// Which view `mount` serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ViewKind {
    /// The kernel view where it works (root, no FUSE-only option, a kernel that accepts the
    /// mount), else FUSE, saying why with `-v`.
    Auto,
    /// `--kernel`: an overlay over an EROFS image ([`kernel`]), or an error.
    Kernel,
    /// `--fuse`: the FUSE view, served by this process.
    Fuse,
}

pub fn mount(opts: MountOptions) -> Result<()> {
    match opts.view {
        ViewKind::Kernel => return kernel::mount(&opts),
        ViewKind::Fuse => {}
        ViewKind::Auto => match try_kernel(&opts) {
            Ok(()) => return Ok(()),
            Err(Refusal::Failed(e)) => return Err(e),
            Err(Refusal::Unsupported(why)) => log::info!("mount: the FUSE view, as no kernel view here: {why}"),
        },
    }
    // Fork before anything starts a thread; the parent returns only when the child reports.
    let mut ready = if opts.daemon { Some(daemon::daemonize()?) } else { None };
    let served = serve(&opts, || {
        if let Some(r) = ready.take() {
            r.ok();
        }
    });
    match (served, ready) {
        // A daemon that failed before the mount was up tells its waiting parent, which exits 1.
        (Err(e), Some(r)) => {
            r.fail(e.message());
            std::process::exit(1);
        }
        (r, _) => r,
    }
}

/// The kernel view of `opts` unless it asks for something only the FUSE view does.
pub fn try_kernel(opts: &MountOptions) -> std::result::Result<(), Refusal> {
    let fuse_only = if opts.passthrough.is_some() {
        Some("--passthrough and --no-passthrough are FUSE options")
    } else if opts.threads != 0 {
        Some("--threads is a FUSE option")
    } else {
        None
    };
    if let Some(why) = fuse_only {
        return Err(Refusal::Unsupported(why.into()));
    }
    kernel::try_mount(opts)?;
    log::info!("mount: the kernel view (an EROFS image under an overlay, no daemon; --fuse for the FUSE view)");
    Ok(())
}

/// Resolve and serve until unmounted; `ready` once the mount is up.
fn serve(opts: &MountOptions, ready: impl FnOnce()) -> Result<()> {
    let abs = mountpoint::check(&opts.mountpoint)?;
    let mut view = resolve_view(opts)?;
    if opts.trace.is_some() {
        view.trace();
    }
    let view = Arc::new(view);
    let fuse_opts = fuse_options(opts, &view);
    let up = || {
        mountpoint::raise_readahead(&abs);
        ready();
    };
    let served = supermin_fuse::serve(view.clone(), &abs, &fuse_opts, up).map_err(|e| serve_error(&opts.mountpoint, e));
    if let Some(trace) = &opts.trace {
        match view.write_trace(trace) {
            Ok((read, looked_up)) => {
                log::info!("trace: {read} paths read and {looked_up} only looked up, in {}", trace.display())
            }
            // The session's own failure, if any, is the one to report.
            Err(e) if served.is_err() => log::warn!("{}", e.message()),
            Err(e) => return Err(e),
        }
    }
    served
}

/// Resolve and mount at `opts.mountpoint`, served on background threads until
/// [`supermin_fuse::Background::unmount`] (for `run`, which handles signals itself).
pub fn spawn(opts: &MountOptions) -> Result<supermin_fuse::Background> {
    let abs = mountpoint::check(&opts.mountpoint)?;
    let view = Arc::new(resolve_view(opts)?);
    let fuse_opts = fuse_options(opts, &view);
    let session = supermin_fuse::spawn(view, &abs, &fuse_opts).map_err(|e| serve_error(&opts.mountpoint, e))?;
    mountpoint::raise_readahead(&abs);
    Ok(session)
}

pub(crate) fn fuse_options(opts: &MountOptions, view: &ManifestView) -> supermin_fuse::Options {
    let (files, large) = view.file_stats();
    let passthrough = opts.passthrough.unwrap_or_else(|| view.passthrough_pays());
    log::info!(
        "mount: passthrough {} ({files} regular files, {} MiB in host files of 1 MiB or more{})",
        if passthrough { "wanted" } else { "off" },
        large >> 20,
        if opts.passthrough.is_some() { ", as asked" } else { "" }
    );
    supermin_fuse::Options {
        allow_other: opts.allow_other,
        suid: opts.suid,
        dev: opts.dev,
        passthrough,
        threads: opts.threads,
        fsname: "supermin".into(),
        subtype: "supermin".into(),
        every_lookup: opts.trace.is_some(),
        io_uring: true,
    }
}

fn serve_error(mp: &Path, e: ServeError) -> Error {
    let denied = matches!(e.io().raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES));
    match e {
        ServeError::Mount(_) if denied => Error::new(format!(
            "{}: cannot mount: permission denied: run as root, or install fuse3 for its fusermount3 helper (sudo \
             apt-get install fuse3)",
            mp.display()
        )),
        ServeError::Mount(e) => Error::io(mp, "cannot mount", e),
        ServeError::Serve(e) => Error::io(mp, "session ended", e),
    }
}

/// Resolve the inputs as `--build` does, with base images in the mapped cache, or take the
/// manifest from the resolved-manifest cache when the host still answers the same.
pub(crate) fn resolve_view(opts: &MountOptions) -> Result<ManifestView> {
    let manifest = resolve_manifest(opts)?;
    // A mount lives long: its RSS should be what the view needs, not the peak of resolving.
    sys::trim_heap();
    for image in &manifest.images {
        image.tar.release_pages();
    }
    Ok(ManifestView::new(manifest, &record_of(opts)))
}

/// What a view of `opts` records on its root, for `materialize` and `inspect` of it.
fn record_of(opts: &MountOptions) -> Record {
    // Absolute, so `materialize MOUNTPOINT` works from any directory.
    let inputs = opts.inputs.iter().map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone())).collect();
    let sysroot = (opts.root != Path::new("/")).then(|| opts.root.clone());
    Record { inputs, settings: opts.settings, sysroot, packager: opts.packager.clone() }
}

/// The manifest of `opts`'s inputs, from the resolved-manifest cache when it still holds.
fn resolve_manifest(opts: &MountOptions) -> Result<crate::manifest::Manifest> {
    let started = std::time::Instant::now();
    let driver = match &opts.packager {
        Some(name) => Driver::from_name(name)?,
        None => Driver::detect(&opts.root)?,
    };
    let manifest = cache::resolve(driver, &opts.inputs, &opts.root, opts.settings)?;
    log::info!("mount: resolved the appliance in {} ms", started.elapsed().as_millis());
    Ok(manifest)
}

/// `supermin umount MOUNTPOINT`: unmount and wait for the daemon to exit.
pub fn umount(mp: &Path) -> Result<()> {
    // Read before unmounting: afterwards the record is gone with the mount. Only our own
    // view's daemon is waited for (any directory can name a pid).
    let pid = our_view_root(&absolute(mp))
        .and_then(|root| sys::get_xattr_of(&root, XATTR_PID).ok())
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|s| s.parse().ok());
    mountpoint::unmount(mp, pid)
}

/// `supermin materialize SRC…`: when `opts.inputs` is exactly one mounted view, build what
/// it was mounted from (its inputs, root and packager); otherwise build the inputs.
pub fn materialize(mut opts: build::Options, driver: Driver) -> Result<()> {
    // A mountpoint given as the source is refused as an output as the inputs it was mounted
    // from are (by `build`), before anything is written. (`-o -` is standard output.)
    if opts.out != Path::new("-") {
        build::check_apart(&opts.inputs, &opts.out)?;
    }
    let source = Source { inputs: opts.inputs, root: opts.root, driver, settings: opts.settings };
    let source = source.unmounted()?;
    (opts.inputs, opts.root, opts.settings) = (source.inputs, source.root, source.settings);
    build::build(source.driver, &opts)
}

/// What an appliance is resolved from: supermin.d inputs, or a mounted view of some.
pub struct Source {
    pub inputs: Vec<PathBuf>,
    pub root: PathBuf,
    pub driver: Driver,
    pub settings: Settings,
}

impl Source {
    /// When the inputs are exactly one mounted view, what that view was resolved from (the
    /// same inputs, root, package manager, `/packagelist` and closure); otherwise `self`.
    pub fn unmounted(mut self) -> Result<Source> {
        let Some(record) = mounted_record(&self.inputs)? else { return Ok(self) };
        log::info!("{} is a mounted view of {:?}", self.inputs[0].display(), record.inputs);
        // As mounted: the view's /packagelist and closure.
        self.settings.include_packagelist |= record.settings.include_packagelist;
        self.settings.deps = record.settings.deps;
        // Resolve from the root the view was resolved from.
        if let Some(sysroot) = record.sysroot {
            self.root = sysroot;
        }
        self.driver = match record.packager {
            Some(name) => Driver::from_name(&name)?,
            None => Driver::detect(&self.root)?,
        };
        self.inputs = record.inputs;
        Ok(self)
    }
}

/// The record of a mounted view when `srcs` is exactly one live view of ours; `None` for
/// supermin.d inputs. A path that claims to be a view (it carries a record, or a supermin
/// mount is there) but is not one of ours is refused: anyone can set `user.` xattrs on a
/// directory they own, or mount a view of their own, and its record names the inputs and
/// sysroot that we would then read and build from.
fn mounted_record(srcs: &[PathBuf]) -> Result<Option<Record>> {
    let [src] = srcs else { return Ok(None) };
    let abs = absolute(src);
    if let Some(root) = our_view_root(&abs) {
        let inputs = sys::get_xattr_of(&root, XATTR_INPUTS).at(src, "cannot read the mount's record")?;
        let options = sys::get_xattr_of(&root, XATTR_OPTIONS).unwrap_or_default();
        let sysroot = sys::get_xattr_of(&root, XATTR_SYSROOT).ok();
        return Ok(Some(Record::decode(&inputs, &options, sysroot.as_deref())));
    }
    if mountpoint::is_supermin_view(&abs) || sys::get_xattr(&abs, XATTR_INPUTS).is_ok() {
        bail!(
            "{}: not a live supermin view (no mount of ours there): give the supermin.d directories, or mount them \
             first (supermin mount D DIR)",
            src.display()
        );
    }
    Ok(None)
}

/// The directory at `abs` opened, when it is the root of a live mount of ours
/// ([`mountpoint::our_mount`]): the only place a record is believed, and read through this
/// descriptor, so a directory renamed into that path meanwhile is not read instead.
fn our_view_root(abs: &Path) -> Option<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let root = fs::OpenOptions::new().read(true).custom_flags(libc::O_DIRECTORY).open(abs).ok()?;
    (mountpoint::our_mount(abs, &root) != OurMount::None).then_some(root)
}

/// `path` absolute and canonical, its last component left unresolved when it cannot be
/// resolved (another user's view refuses even root's `stat`; a dead one answers ENOTCONN):
/// the form of the mount table's mount points.
fn absolute(path: &Path) -> PathBuf {
    if let Ok(abs) = fs::canonicalize(path) {
        return abs;
    }
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => {
            let parent = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
            fs::canonicalize(parent).map(|p| p.join(name)).unwrap_or_else(|_| path.to_path_buf())
        }
        _ => path.to_path_buf(),
    }
}
