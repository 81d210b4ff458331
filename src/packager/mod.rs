//! The package-manager seam: everything `prepare` and `build` need from dpkg, rpm or pacman
//! goes through the [`PackageManager`] trait (in `api`), so the rest of the tool never knows
//! which database it is reading. This module is the registry: the drivers the original
//! knows, how each is detected, and which backend opens it. A backend (`dpkg/`, `rpm/`,
//! `pacman/`) implements the trait with the shared rules of `common`.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

mod api;
mod common;
pub(crate) mod dpkg;
pub(crate) mod pacman;
pub(crate) mod rpm;

pub use api::{ConfigSource, PackageFile, PackageManager, PkgId, Reached};
pub use common::config_sources;

/// The package managers we can drive, in the order the original lists its drivers.
pub const DRIVERS: &[(&str, &str)] = &[
    ("arch", "pacman"),
    ("debian", "dpkg"),
    ("openmandriva", "rpm"),
    ("mageia", "rpm"),
    ("opensuse", "rpm"),
    ("ibm_powerkvm", "rpm"),
    ("fedora", "rpm"),
];

/// The package manager of the host rooted at `root`, detected but not yet opened: opening
/// reads the whole database, which `--if-newer` must not pay for when there is nothing to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    Dpkg,
    Rpm,
    Pacman,
}

impl Driver {
    /// `--packager NAME`: the backend chosen by the user, for roots whose release files lie.
    pub fn from_name(name: &str) -> Result<Driver> {
        match name {
            "dpkg" => Ok(Driver::Dpkg),
            "rpm" => Ok(Driver::Rpm),
            "pacman" => Ok(Driver::Pacman),
            _ => Err(Error::usage(format!("--packager: unknown package manager '{name}' (dpkg, rpm or pacman)"))),
        }
    }

    /// The first detected driver of [`DRIVERS`], in the original's order.
    pub fn detect(root: &Path) -> Result<Driver> {
        for (system, packager) in DRIVERS {
            if detected(root, system) {
                return Driver::from_name(packager);
            }
        }
        let fix = if root == Path::new("/") {
            "name it with --packager dpkg|rpm|pacman".to_string()
        } else {
            format!(
                "--sysroot must be an installed system's root (make one: mmdebstrap bookworm {}), or name its \
                 package manager with --packager dpkg|rpm|pacman",
                root.display()
            )
        };
        let place = if root == Path::new("/") { "this system".to_string() } else { root.display().to_string() };
        Err(Error::new(format!(
            "could not detect the package manager used by {place}: no dpkg, rpm or pacman database with a known \
             os-release ID or release file: {fix}"
        )))
    }

    /// Files whose modification means the installed set changed (for `--if-newer`).
    pub fn database_files(self, root: &Path) -> Vec<PathBuf> {
        match self {
            Driver::Dpkg => dpkg::database_files(root),
            Driver::Rpm => rpm::database_files(root),
            Driver::Pacman => pacman::database_files(root),
        }
    }

    pub fn open(self, root: &Path) -> Result<Box<dyn PackageManager>> {
        match self {
            Driver::Dpkg => Ok(Box::new(dpkg::Dpkg::open(root)?)),
            Driver::Rpm => Ok(Box::new(rpm::Rpm::open(root)?)),
            Driver::Pacman => Ok(Box::new(pacman::Pacman::open(root)?)),
        }
    }
}

/// Whether the driver `system` of [`DRIVERS`] is detected in `root`, for `--list-drivers` and
/// [`Driver::detect`]. The original also requires its helper tools (dnf, zypper, pactree…)
/// on the build host; we read the databases ourselves, so we require the database instead.
pub fn detected(root: &Path, system: &str) -> bool {
    match system {
        "debian" => dpkg::detected(root),
        "arch" => pacman::detected(root),
        _ => rpm::detected(root, system),
    }
}
