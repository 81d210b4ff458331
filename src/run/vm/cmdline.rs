//! What the host tells `run --vm`'s guest, on the kernel command line: the command (argv as
//! hex of NUL-separated arguments, so that no quoting survives or breaks the kernel's own
//! parsing), the `--bind` mount points (9p tags `bind0`, `bind1`, …), `--writable`, whether
//! the command gets the console as a terminal, and the terminal type.

use std::path::PathBuf;

use crate::bail;
use crate::error::{Error, Result};

/// The kernel's command line is at most 2,048 bytes on x86 (`COMMAND_LINE_SIZE`); what we
/// add stays below this, leaving room for the kernel's own options.
const MAX_OURS: usize = 1800;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Guest {
    /// The command and its arguments; empty: the appliance's `/init`, else its shell.
    pub command: Vec<String>,
    pub writable: bool,
    /// The console is the command's terminal (no virtio-serial streams).
    pub interactive: bool,
    /// Kernel and init messages on the console (`-v`).
    pub verbose: bool,
    /// Where each `--bind` share is mounted inside the appliance.
    pub binds: Vec<PathBuf>,
    pub term: String,
}

fn hex(parts: &[String]) -> String {
    parts.join("\0").bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Result<Vec<String>> {
    if s.is_empty() {
        return Ok(Vec::new());
    }
    if !s.len().is_multiple_of(2) {
        bail!("supermin.*: odd hex length");
    }
    let bytes = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|_| Error::new("supermin.*: not hex")))
        .collect::<Result<Vec<u8>>>()?;
    Ok(String::from_utf8_lossy(&bytes).split('\0').map(str::to_string).collect())
}

impl Guest {
    /// Our part of the kernel command line.
    pub fn to_cmdline(&self) -> Result<String> {
        let binds: Vec<String> = self.binds.iter().map(|p| p.to_string_lossy().into_owned()).collect();
        let mut out = format!("supermin.vm supermin.cmd={} supermin.binds={}", hex(&self.command), hex(&binds));
        let term: String = self.term.chars().filter(|c| c.is_ascii_alphanumeric() || "-_.+".contains(*c)).collect();
        out.push_str(&format!(" supermin.term={}", if term.is_empty() { "dumb" } else { &term }));
        for (on, word) in [(self.writable, "writable"), (self.interactive, "tty"), (self.verbose, "verbose")] {
            if on {
                out.push_str(&format!(" supermin.{word}"));
            }
        }
        if out.len() > MAX_OURS {
            bail!(
                "run --vm: the command and --bind paths take {} bytes on the kernel command line, more than its {MAX_OURS}: \
                 put a long command in a script inside the appliance (or a --bind) and run that",
                out.len() / 2
            );
        }
        Ok(out)
    }

    /// Ours, from the whole kernel command line.
    pub fn parse(cmdline: &str) -> Result<Guest> {
        let mut g = Guest { term: "dumb".into(), ..Guest::default() };
        for word in cmdline.split_whitespace() {
            let (key, value) = word.split_once('=').unwrap_or((word, ""));
            match key {
                "supermin.cmd" => g.command = unhex(value)?,
                "supermin.binds" => g.binds = unhex(value)?.into_iter().map(PathBuf::from).collect(),
                "supermin.term" => g.term = value.to_string(),
                "supermin.writable" => g.writable = true,
                "supermin.tty" => g.interactive = true,
                "supermin.verbose" => g.verbose = true,
                _ => {}
            }
        }
        Ok(g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_host_says_the_guest_reads() {
        let g = Guest {
            command: vec!["sh".into(), "-c".into(), "echo \"a b\" 'c' $HOME; exit 3".into(), String::new()],
            writable: true,
            interactive: false,
            verbose: true,
            binds: vec![PathBuf::from("/mnt/data dir"), PathBuf::from("/x")],
            term: "xterm-256color".into(),
        };
        let line = format!("console=ttyS0 quiet {} panic=-1", g.to_cmdline().unwrap());
        assert_eq!(Guest::parse(&line).unwrap(), g);
        assert!(line.split_whitespace().all(|w| w.is_ascii()));
    }

    #[test]
    fn a_command_too_long_is_refused() {
        let g = Guest { command: vec!["x".repeat(1000)], ..Guest::default() };
        assert!(g.to_cmdline().unwrap_err().to_string().contains("kernel command line"));
    }
}
