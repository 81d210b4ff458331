//! Plumbing with no knowledge of appliances: syscalls, the thread pool, path walking.

pub mod cpio;
pub mod dirfd;
pub mod escape;
pub mod fingerprint;
pub mod le;
pub mod newfile;
pub mod pathwalk;
pub mod progress;
pub mod sys;
pub mod work;

/// `SOURCE_DATE_EPOCH` (reproducible-builds.org), when set to a number of seconds: the time
/// every output uses instead of the clock, so that the same inputs give the same bytes.
pub fn source_date_epoch() -> Option<i64> {
    std::env::var("SOURCE_DATE_EPOCH").ok()?.trim().parse().ok()
}

/// Now, or `SOURCE_DATE_EPOCH` when it is set, in seconds since the epoch.
pub fn now() -> i64 {
    source_date_epoch().unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
    })
}
