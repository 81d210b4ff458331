//! `supermin mount`, `supermin umount` and `supermin materialize`: the lazy view's commands.
//!
//! `mount` resolves the appliance exactly as `--build` does (same [`build`] engine) and serves
//! the manifest through `supermin-fuse` instead of writing it. `materialize` is the explicit
//! real build: from a supermin.d, or from a live mount (whose root records what it resolved).

use std::path::{Path, PathBuf};

use clap::{Arg, ArgAction, ArgMatches, Command};
use supermin_fuse::cache::ImageCache;
use supermin_fuse::session;
use supermin_fuse::{mountpoint, Options};

use crate::build::{self, Format};
use crate::error::{Error, Result};
use crate::packager::Driver;
use crate::sys;
use crate::view::{ManifestView, Record, XATTR_INPUTS, XATTR_OPTIONS, XATTR_PID, XATTR_SYSROOT};

fn flag(name: &'static str, help: &'static str) -> Arg {
    Arg::new(name).long(name).action(ArgAction::SetTrue).help(help)
}

fn verbose() -> Arg {
    Arg::new("verbose").short('v').long("verbose").action(ArgAction::Count).help("Enable debugging messages")
}

fn parse(cmd: Command, args: Vec<String>) -> Result<ArgMatches> {
    let name = cmd.get_name().to_string();
    cmd.try_get_matches_from(std::iter::once(name.clone()).chain(args)).map_err(|e| {
        if matches!(e.kind(), clap::error::ErrorKind::DisplayHelp) {
            print!("{e}");
            std::process::exit(0);
        }
        // clap's first paragraph, on one line (it names missing arguments on the next lines).
        let text = e.to_string();
        let first: Vec<&str> = text.lines().take_while(|l| !l.trim().is_empty()).map(str::trim).collect();
        let first = first.join(" ").trim_start_matches("error: ").to_string();
        Error::usage(format!("{name}: {first} (see supermin {name} --help)"))
    })
}

/// Run `supermin WORD ARGS…` if WORD is one of ours; `None` leaves `args` to the classic parser.
pub fn run(word: &str, args: Vec<String>) -> Option<Result<()>> {
    match word {
        "mount" => Some(mount(args)),
        "umount" | "unmount" => Some(umount(args)),
        "materialize" => Some(materialize(args)),
        _ => None,
    }
}

fn mount(args: Vec<String>) -> Result<()> {
    let cmd = Command::new("mount")
        .about("Serve the appliance described by SUPERMIN.D... read-only at MOUNTPOINT, resolving files on first use")
        .override_usage("supermin mount [OPTIONS] SUPERMIN.D... MOUNTPOINT")
        .arg(flag("daemon", "Detach once the mount is ready (default: serve in the foreground until unmounted)"))
        .arg(flag("allow-other", "Let other users in (adds default_permissions: modes are enforced)"))
        .arg(flag("suid", "Honour set-uid bits (for chroot use; default nosuid)"))
        .arg(flag("dev", "Honour device nodes (for chroot use; default nodev)"))
        .arg(flag("passthrough", "Hand large host files to the kernel (FUSE passthrough, as root); every open then costs a round trip (default: chosen from the appliance's file sizes)"))
        .arg(flag("no-passthrough", "Read host files through the daemon, so that opens never reach it").conflicts_with("passthrough"))
        .arg(flag("include-packagelist", "Add /packagelist, as --build --include-packagelist"))
        .arg(Arg::new("threads").long("threads").value_name("N").value_parser(clap::value_parser!(usize)).help("Request threads (default: one per core)"))
        .args(crate::cli::root_args())
        .arg(verbose())
        .arg(Arg::new("args").num_args(0..).value_parser(clap::value_parser!(PathBuf)));
    let m = parse(cmd, args)?;
    crate::logger::init(m.get_count("verbose"));
    let mut paths: Vec<PathBuf> = m.get_many::<PathBuf>("args").map(|v| v.cloned().collect()).unwrap_or_default();
    if paths.len() < 2 {
        return Err(Error::usage("mount: needs SUPERMIN.D... MOUNTPOINT (see supermin mount --help)"));
    }
    let mountpoint = paths.pop().unwrap_or_default();
    // None: decided from the appliance once it is resolved.
    let passthrough = match (m.get_flag("passthrough"), m.get_flag("no-passthrough")) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    };
    let mut opts = Options {
        allow_other: m.get_flag("allow-other"),
        suid: m.get_flag("suid"),
        dev: m.get_flag("dev"),
        passthrough: false,
        threads: m.get_one::<usize>("threads").copied().unwrap_or(0),
        fsname: "supermin".into(),
    };
    let include_packagelist = m.get_flag("include-packagelist");

    // Fork before anything starts a thread; the parent returns only when the child reports.
    let mut ready = if m.get_flag("daemon") {
        Some(session::daemonize().map_err(|e| Error::new(format!("cannot start the mount daemon: {e}")))?)
    } else {
        None
    };
    let (root, driver) = crate::cli::root_and_driver(&m)?;
    let packager = m.get_one::<String>("packager").cloned();
    let served = match resolve_view(&paths, &mountpoint, include_packagelist, &root, driver, packager) {
        Ok(view) => {
            let (files, large) = view.file_stats();
            opts.passthrough = passthrough.unwrap_or_else(|| view.passthrough_pays());
            log::info!(
                "mount: passthrough {} ({files} regular files, {} MiB in host files of 1 MiB or more{})",
                if opts.passthrough { "wanted" } else { "off" },
                large >> 20,
                if passthrough.is_some() { ", as asked" } else { "" }
            );
            session::serve(view, &mountpoint, &opts, || {
            if let Some(r) = ready.take() {
                r.ok();
            }
            })
            .map_err(|e| Error::new(e.to_string()))
        }
        Err(e) => Err(e),
    };
    match (served, ready) {
        // A daemon that failed before the mount was up tells its waiting parent, which exits 1.
        (Err(e), Some(r)) => {
            r.fail(e.message());
            std::process::exit(1);
        }
        (r, _) => r,
    }
}

/// Check the mountpoint (before spending time resolving), then resolve the inputs as
/// `--build` does, with base images in the mapped cache.
fn resolve_view(
    inputs: &[PathBuf],
    mountpoint: &Path,
    include_packagelist: bool,
    root: &Path,
    driver: Driver,
    packager: Option<String>,
) -> Result<ManifestView> {
    mountpoint::check(mountpoint).map_err(|e| Error::new(e.to_string()))?;
    let started = std::time::Instant::now();
    let pm = driver.open(root)?;
    let cache = ImageCache::open_default();
    let resolved = build::resolve_inputs_cached(pm.as_ref(), inputs, root, include_packagelist, cache.as_ref())?;
    drop(pm);
    trim_heap();
    for image in &resolved.manifest.images {
        image.tar.release_pages();
    }
    log::info!("mount: resolved the appliance in {} ms", started.elapsed().as_millis());
    // Absolute, so `materialize MOUNTPOINT` works from any directory.
    let inputs = inputs.iter().map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone())).collect();
    let sysroot = (root != Path::new("/")).then(|| root.to_path_buf());
    let record = Record { inputs, include_packagelist, sysroot, packager };
    Ok(ManifestView::new(resolved.manifest, &record))
}

fn umount(args: Vec<String>) -> Result<()> {
    let cmd = Command::new("umount")
        .about("Unmount a view made by supermin mount, and wait for its daemon to exit")
        .override_usage("supermin umount MOUNTPOINT")
        .arg(verbose())
        .arg(Arg::new("mountpoint").required(true).value_parser(clap::value_parser!(PathBuf)));
    let m = parse(cmd, args)?;
    crate::logger::init(m.get_count("verbose"));
    let mp = m.get_one::<PathBuf>("mountpoint").cloned().unwrap_or_default();
    // Read before unmounting: afterwards the record is gone with the mount.
    let pid = sys::get_xattr(&mp, XATTR_PID).ok().and_then(|v| String::from_utf8(v).ok()).and_then(|s| s.parse().ok());
    mountpoint::unmount(&mp, pid).map_err(|e| Error::new(e.to_string()))
}

fn materialize(args: Vec<String>) -> Result<()> {
    let cmd = Command::new("materialize")
        .about("Build the appliance for real (as --build): from SUPERMIN.D... or from a live mount of it")
        .override_usage("supermin materialize SRC... -f chroot|ext2|initramfs -o OUTPUT")
        .arg(Arg::new("format").short('f').long("format").value_name("FORMAT").required(true))
        .arg(Arg::new("output").short('o').value_name("OUTPUT").required(true).value_parser(clap::value_parser!(PathBuf)))
        .arg(flag("include-packagelist", "Add /packagelist (for a mount, as it was mounted)"))
        .arg(flag("copy-kernel", "Copy kernel instead of symlinking to it (ext2)"))
        .arg(Arg::new("size").long("size").value_name("SIZE").help("Size of the ext2 filesystem"))
        .arg(Arg::new("host-cpu").long("host-cpu").value_name("ARCH"))
        .args(crate::cli::root_args())
        .arg(verbose())
        .arg(Arg::new("src").num_args(1..).required(true).value_parser(clap::value_parser!(PathBuf)));
    let m = parse(cmd, args)?;
    crate::logger::init(m.get_count("verbose"));
    let fmt = m.get_one::<String>("format").cloned().unwrap_or_default();
    let format = Format::parse(&fmt).ok_or_else(|| Error::new(format!("unknown --format option ({fmt})")))?;
    let srcs: Vec<PathBuf> = m.get_many::<PathBuf>("src").map(|v| v.cloned().collect()).unwrap_or_default();
    let mut include_packagelist = m.get_flag("include-packagelist");
    let (mut root, mut driver) = crate::cli::root_and_driver(&m)?;
    let inputs = match mounted_record(&srcs) {
        Some(record) => {
            log::info!("materialize: {} is a mounted view of {:?}", srcs[0].display(), record.inputs);
            include_packagelist |= record.include_packagelist;
            // Resolve from the root the view was resolved from.
            if let Some(sysroot) = record.sysroot {
                root = sysroot;
            }
            driver = match record.packager {
                Some(name) => Driver::from_name(&name)?,
                None => Driver::detect(&root)?,
            };
            record.inputs
        }
        None => srcs,
    };
    let opts = build::Options {
        inputs,
        out: m.get_one::<PathBuf>("output").cloned().unwrap_or_default(),
        format,
        if_newer: false,
        include_packagelist,
        copy_kernel: m.get_flag("copy-kernel"),
        host_cpu: m.get_one::<String>("host-cpu").cloned().unwrap_or_else(|| std::env::consts::ARCH.to_string()),
        size: m.get_one::<String>("size").map(|s| crate::cli::parse_size(s)).transpose()?,
        root,
    };
    build::build(driver, &opts)
}

/// The record of a mounted view when `srcs` is exactly one such mountpoint.
fn mounted_record(srcs: &[PathBuf]) -> Option<Record> {
    let [src] = srcs else { return None };
    let inputs = sys::get_xattr(src, XATTR_INPUTS).ok()?;
    let options = sys::get_xattr(src, XATTR_OPTIONS).unwrap_or_default();
    let sysroot = sys::get_xattr(src, XATTR_SYSROOT).ok();
    Some(Record::decode(&inputs, &options, sysroot.as_deref()))
}

/// Give freed heap (the package database, file lists) back to the system: a mount lives long
/// and its RSS should be what the view needs, not the peak of resolving it.
fn trim_heap() {
    // SAFETY: plain libc call.
    unsafe { libc::malloc_trim(0) };
}
