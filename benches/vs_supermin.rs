//! Times this tool against the real supermin 5 (`/usr/bin/supermin`) on the same inputs, in
//! one run, and prints the ratios. `cargo bench --bench vs_supermin` (as root; needs
//! scripts/install-deps.sh). Not a test: nothing here passes or fails.
//!
//! Each measurement is the median of several runs, each writing a fresh output directory,
//! with a `sync` between runs (`support::settle`).

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{LIBGUESTFS_APPLIANCE, ORACLE, OURS};

/// Median wall times of `runs` runs each of `theirs(out)` and `mine(out)`, alternating, each
/// into a fresh output path.
fn compare(
    runs: usize,
    scratch: &Path,
    mut theirs: impl FnMut(&Path) -> Command,
    mut mine: impl FnMut(&Path) -> Command,
) -> (Duration, Duration) {
    let once = |cmd: &mut dyn FnMut(&Path) -> Command| {
        let out = scratch.join(format!("out{}", scratch.read_dir().unwrap().count()));
        let mut c = cmd(&out);
        let start = Instant::now();
        let status = c.status().unwrap();
        let elapsed = start.elapsed();
        assert!(status.success(), "{c:?} failed");
        elapsed
    };
    support::alternate(runs, |_| once(&mut theirs), |_| once(&mut mine))
}

fn row(name: &str, theirs: Duration, mine: Duration) {
    println!(
        "{:<48} {:>10.1} ms {:>10.1} ms {:>8.1}x",
        name,
        theirs.as_secs_f64() * 1e3,
        mine.as_secs_f64() * 1e3,
        theirs.as_secs_f64() / mine.as_secs_f64()
    );
}

fn main() {
    let me = PathBuf::from(OURS);
    let scratch = support::scratch("supermin-bench");
    let runs = support::runs();

    println!("{:<48} {:>13} {:>13} {:>9}", "benchmark (median)", "supermin 5", "supermin-rs", "speed-up");

    let prep = |bin: PathBuf| {
        move |out: &Path| {
            let mut c = Command::new(&bin);
            c.args(["--prepare", "--use-installed", "bash", "coreutils", "-o"]).arg(out);
            c
        }
    };
    let (theirs, mine) = compare(runs * 2, &scratch, prep(ORACLE.into()), prep(me.clone()));
    row("prepare --use-installed bash coreutils", theirs, mine);

    let build = |bin: PathBuf, input: &'static str| {
        move |out: &Path| {
            let mut c = Command::new(&bin);
            c.args(["--build", "-f", "chroot", input, "-o"]).arg(out);
            c
        }
    };
    let build_fmt = |bin: PathBuf, fmt: &'static str| {
        move |out: &Path| {
            let mut c = Command::new(&bin);
            c.args(["--build", "-f", fmt, LIBGUESTFS_APPLIANCE, "-o"]).arg(out);
            c
        }
    };
    // Warm the page cache for both alike.
    let _ = Command::new(ORACLE)
        .args(["--build", "-f", "chroot", LIBGUESTFS_APPLIANCE, "-o"])
        .arg(scratch.join("warm"))
        .status();
    support::settle();
    let (theirs, mine) =
        compare(runs, &scratch, build(ORACLE.into(), LIBGUESTFS_APPLIANCE), build(me.clone(), LIBGUESTFS_APPLIANCE));
    row("build -f chroot libguestfs appliance", theirs, mine);

    let (theirs, mine) = compare(runs, &scratch, build_fmt(ORACLE.into(), "ext2"), build_fmt(me.clone(), "ext2"));
    row("build -f ext2 libguestfs appliance", theirs, mine);

    // --if-newer with nothing to do, exactly as libguestfs runs it.
    let noop = |bin: PathBuf, out: PathBuf| {
        move |_: &Path| {
            let mut c = Command::new(&bin);
            c.args(["--build", "--if-newer", "--lock"])
                .arg(out.with_extension("lock"))
                .args(["--copy-kernel", "-f", "ext2", "--host-cpu", "x86_64", LIBGUESTFS_APPLIANCE, "-o"])
                .arg(&out);
            c
        }
    };
    let (t_out, m_out) = (scratch.join("uptodate-theirs"), scratch.join("uptodate-ours"));
    assert!(noop(ORACLE.into(), t_out.clone())(&t_out).status().unwrap().success());
    assert!(noop(me.clone(), m_out.clone())(&m_out).status().unwrap().success());
    let (theirs, mine) = compare(runs * 3, &scratch, noop(ORACLE.into(), t_out), noop(me.clone(), m_out));
    row("build --if-newer -f ext2, nothing to do", theirs, mine);

    let _ = Command::new("rm").arg("-rf").arg(&scratch).status();
}
