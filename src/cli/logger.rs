//! A minimal `log` backend: `supermin: message` on stderr. Silent but for warnings by default;
//! each `-v` shows one more level (info, debug, trace); `-q` only errors. Also turns progress
//! bars on (a terminal, no `-q`).

use log::{Level, LevelFilter, Log, Metadata, Record};

struct Stderr;

impl Log for Stderr {
    fn enabled(&self, metadata: &Metadata) -> bool {
        // The FUSE library's warnings (e.g. a second unmount attempt after `umount` from
        // outside) are detail for -vv; the mount reports its own failures.
        let level = if metadata.target().starts_with("fuser") && metadata.level() <= Level::Warn {
            Level::Debug
        } else {
            metadata.level()
        };
        level <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if self.enabled(record.metadata()) {
            match record.level() {
                Level::Warn | Level::Error if !record.target().starts_with("fuser") => {
                    eprintln!("supermin: warning: {}", record.args())
                }
                _ => eprintln!("supermin: {}", record.args()),
            }
        }
    }

    fn flush(&self) {}
}

/// From the `-v` and `-q` of [`super::args::verbose`].
pub fn init(m: &clap::ArgMatches) {
    let quiet = m.get_flag("quiet");
    crate::util::progress::enable(quiet);
    let level = match m.get_count("verbose") {
        0 if quiet => LevelFilter::Error,
        0 => LevelFilter::Warn,
        1 => LevelFilter::Info,
        2 => LevelFilter::Debug,
        _ => LevelFilter::Trace,
    };
    install(level);
}

/// Log up to `level` on stderr from now on (also in `run`'s namespace init, given the level
/// of the `supermin run` that started it).
pub fn install(level: LevelFilter) {
    if log::set_logger(&Stderr).is_ok() {
        log::set_max_level(level);
    }
}
