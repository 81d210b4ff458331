//! Finding and reading rpm's database: `rpmdb.sqlite` through rusqlite, and the detection
//! rules of the original's rpm drivers.

use std::path::{Path, PathBuf};

use log::debug;

use crate::error::{Error, Result};
use crate::host;

/// Where rpm keeps its database, newest layout first (as the original looks for it).
const DB_LOCATIONS: &[&str] = &["/usr/lib/sysimage/rpm/rpmdb.sqlite", "/var/lib/rpm/rpmdb.sqlite"];
/// The Berkeley DB database of rpm < 4.16, which we cannot read.
const BDB_LOCATION: &str = "/var/lib/rpm/Packages";
/// rpm's own "ndb" format (openSUSE's default), which we cannot read either.
const NDB_LOCATION: &str = "/usr/lib/sysimage/rpm/Packages.db";

/// Each rpm driver of the original: os-release IDs and release files that identify it.
fn rules(system: &str) -> (&'static [&'static str], &'static [&'static str], bool) {
    // (IDs, release files, whether any ID starting with the first one matches)
    match system {
        "fedora" => (
            &["fedora", "rhel", "centos", "openEuler", "anolis", "kylin", "KylinSecOS", "uos"],
            &["/etc/redhat-release", "/etc/fedora-release", "/etc/openEuler-release", "/etc/anolis-release"],
            false,
        ),
        "opensuse" => (&["opensuse", "sled", "sles"], &["/etc/SuSE-release"], true),
        "mageia" => (&["mageia"], &["/etc/mageia-release"], false),
        "openmandriva" => (&["openmandriva"], &["/etc/openmandriva-release"], false),
        "ibm_powerkvm" => (&[], &["/etc/ibm_powerkvm-release"], false),
        _ => (&[], &[], false),
    }
}

/// The original's detection for rpm driver `system`, relative to `root`, plus an rpm database.
pub fn detected(root: &Path, system: &str) -> bool {
    let (ids, files, prefix) = rules(system);
    if ids.is_empty() && files.is_empty() {
        return false;
    }
    let id = host::os_release_id(root).unwrap_or_default();
    let by_id = ids.iter().any(|i| *i == id) || (prefix && !id.is_empty() && id.starts_with(ids[0]));
    (by_id || files.iter().any(|f| host::is_file(root, f))) && database_path(root).is_some()
}

fn database_path(root: &Path) -> Option<PathBuf> {
    DB_LOCATIONS.iter().chain([&BDB_LOCATION, &NDB_LOCATION]).map(|p| host::path_follow(root, p)).find(|p| p.is_file())
}

/// The database file, and its write-ahead log: rpm's sqlite database is in WAL mode, so an
/// install may change only `rpmdb.sqlite-wal` until sqlite checkpoints.
pub fn database_files(root: &Path) -> Vec<PathBuf> {
    let Some(db) = database_path(root) else { return Vec::new() };
    let mut wal = db.clone().into_os_string();
    wal.push("-wal");
    vec![db, PathBuf::from(wal)]
}

/// Every row of `Packages`, read-only. A database whose WAL cannot be opened read-only (a
/// read-only root) is read as immutable.
pub fn read_blobs(db: &Path) -> Result<Vec<(i64, Vec<u8>)>> {
    use rusqlite::{Connection, OpenFlags};
    let err = |e: rusqlite::Error| Error::new(format!("{}: cannot read the rpm database: {e}", db.display()));
    let query = |conn: &Connection| -> rusqlite::Result<Vec<(i64, Vec<u8>)>> {
        let mut stmt = conn.prepare("SELECT hnum, blob FROM Packages ORDER BY hnum")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))?;
        rows.collect()
    };
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let first = Connection::open_with_flags(db, flags).and_then(|c| query(&c));
    match first {
        Ok(rows) => Ok(rows),
        Err(e @ rusqlite::Error::SqliteFailure(..)) if is_locking_problem(&e) => {
            debug!("{}: {e}: reading it as immutable", db.display());
            let uri = format!("file:{}?immutable=1", uri_escape(&db.to_string_lossy()));
            let c = Connection::open_with_flags(uri, flags | OpenFlags::SQLITE_OPEN_URI).map_err(err)?;
            query(&c).map_err(err)
        }
        Err(e) => Err(err(e)),
    }
}

fn is_locking_problem(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode::*;
    matches!(e.sqlite_error_code(), Some(CannotOpen) | Some(ReadOnly) | Some(DatabaseBusy) | Some(DatabaseLocked))
}

fn uri_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'%' | b'?' | b'#' => format!("%{b:02x}"),
            _ => (b as char).to_string(),
        })
        .collect()
}

/// The sqlite database of `root`, or an error saying which database is there instead and how
/// to convert it.
pub fn locate(root: &Path) -> Result<PathBuf> {
    if let Some(db) = DB_LOCATIONS.iter().map(|p| host::path_follow(root, p)).find(|p| p.is_file()) {
        return Ok(db);
    }
    let ndb = host::path_follow(root, NDB_LOCATION);
    if ndb.is_file() {
        return Err(Error::new(format!(
            "{}: this rpm database is in the ndb format (openSUSE), which supermin-rs cannot read \
             (convert it with `rpmdb --rebuilddb --define '_db_backend sqlite'`)",
            ndb.display()
        )));
    }
    let bdb = host::path_follow(root, BDB_LOCATION);
    if bdb.is_file() {
        return Err(Error::new(format!(
            "{}: this rpm database is in the old Berkeley DB format, which supermin-rs cannot \
             read (convert it with `rpmdb --rebuilddb` from rpm >= 4.16, which writes rpmdb.sqlite)",
            bdb.display()
        )));
    }
    Err(Error::new(format!(
        "{}: no rpm database (looked for {} and {})",
        root.display(),
        DB_LOCATIONS.join(", "),
        BDB_LOCATION
    )))
}
