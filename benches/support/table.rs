//! The markdown table the limit benches print (`limits`, `vm`): one row per measurement,
//! ours against a reference, the ratio, the target and whether it was met, between
//! `<!-- NAME:begin -->` / `<!-- NAME:end -->` markers that `scripts/bench-readme.sh` copies.

use std::process::Command;
use std::time::Duration;

use super::{ms, runs};

/// One line of the table.
pub struct Row {
    pub what: String,
    pub ours: String,
    pub reference: String,
    /// How the two compare, phrased as the target is.
    pub ratio: String,
    pub target: &'static str,
    pub met: Option<bool>,
}

/// The rows of the bench `name` (`cargo bench --bench NAME`, the markers' name).
pub struct Table {
    name: &'static str,
    rows: Vec<Row>,
}

impl Table {
    pub fn new(name: &'static str) -> Table {
        Table { name, rows: Vec::new() }
    }

    /// `ours` against `reference` as times: the ratio ours/reference (≤ targets) or
    /// reference/ours (`faster`: ≥ targets, "x sooner").
    pub fn times(&mut self, what: &str, ours: Duration, reference: (&str, Duration), target: (&'static str, f64)) {
        let (name, base) = reference;
        let faster = target.0.starts_with('≥');
        let ratio = if faster { ms(base) / ms(ours) } else { ms(ours) / ms(base) };
        let met = if faster { ratio >= target.1 } else { ratio <= target.1 };
        self.push(what, fmt_ms(ours), format!("{name} {}", fmt_ms(base)), format!("{ratio:.2}x"), target.0, Some(met));
    }

    pub fn push(
        &mut self,
        what: &str,
        ours: String,
        reference: String,
        ratio: String,
        target: &'static str,
        met: Option<bool>,
    ) {
        let row = Row { what: what.into(), ours, reference, ratio, target, met };
        eprintln!("{} | {} | {} | {} | {}", row.what, row.ours, row.reference, row.ratio, row.target);
        self.rows.push(row);
    }

    pub fn print(&self) {
        println!("<!-- {}:begin -->", self.name);
        println!("{}", machine(self.name));
        println!();
        println!("| measurement | ours | reference | ratio | target | |");
        println!("|---|---|---|---|---|---|");
        for r in &self.rows {
            let mark = match r.met {
                Some(true) => "met",
                Some(false) => "**missed**",
                None => "",
            };
            println!("| {} | {} | {} | {} | {} | {mark} |", r.what, r.ours, r.reference, r.ratio, r.target);
        }
        println!("<!-- {}:end -->", self.name);
    }
}

pub fn fmt_ms(d: Duration) -> String {
    match ms(d) {
        t if t < 100.0 => format!("{t:.1} ms"),
        t => format!("{t:.0} ms"),
    }
}

/// The date and the machine, for the table's heading.
fn machine(bench: &str) -> String {
    let out = |cmd: &str| {
        let o = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    format!(
        "`cargo bench --bench {bench}`, {}, {} cores, {} GiB, kernel {}, medians of {} runs.",
        out("date -u +%F"),
        out("nproc"),
        out("awk '/MemTotal/ {printf \"%d\", $2/1048576 + 0.5}' /proc/meminfo"),
        out("uname -r"),
        runs()
    )
}

/// A readiness row: the time against a tmpfs mount's, and its target in milliseconds.
pub fn ready_row(t: &mut Table, what: &str, ready: Duration, tmpfs: Duration, target: (&'static str, f64)) {
    let ratio = format!("{:.1}x", ms(ready) / ms(tmpfs));
    let met = ms(ready) <= target.1;
    t.push(what, fmt_ms(ready), format!("tmpfs mount {}", fmt_ms(tmpfs)), ratio, target.0, Some(met));
}
