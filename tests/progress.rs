//! Progress bars: drawn on a terminal (a pseudo-terminal made by `script`), never when stderr
//! is a pipe or a file (libguestfs's and CI's logs), and not with `-q`.

mod common;

use std::process::Command;

use common::{ok, ours, stderr, stdout, Scratch, OURS};

/// Run `args` on a pseudo-terminal; what the terminal showed.
fn on_terminal(args: &str) -> String {
    on_terminal_with("", args)
}

/// As [`on_terminal`], with `env` (`NAME=VALUE`, or empty) in the command's environment.
fn on_terminal_with(env: &str, args: &str) -> String {
    common::need("script");
    let out = ok(Command::new("script").args(["-qefc", &format!("env {env} {OURS} {args}"), "/dev/null"]));
    stdout(&out)
}

#[test]
fn bars_on_a_terminal_only() {
    let t = Scratch::new("progress");
    let out = |name: &str| t.path(name).display().to_string();
    let shown = on_terminal(&format!("--build -f ext2 examples/supermin.d -o {}", out("a")));
    assert!(shown.contains("ext2: files") && shown.contains("MiB"), "a bar with files and bytes: {shown:?}");
    let shown = on_terminal(&format!("materialize examples/supermin.d -f chroot -o {}", out("b")));
    assert!(shown.contains("chroot: files"), "{shown:?}");

    let quiet = on_terminal(&format!("--build -q -f tar examples/supermin.d -o {}", out("c")));
    assert!(quiet.is_empty(), "-q draws nothing: {quiet:?}");
    let piped = ok(ours().args(["--build", "-f", "ext2", "examples/supermin.d", "-o"]).arg(t.path("d")));
    assert!(stderr(&piped).is_empty() && stdout(&piped).is_empty(), "no bar into a pipe: {}", stderr(&piped));
    // inspect's work is the resolve (reading each package's file list): a fresh cache makes
    // it resolve instead of reading a cached manifest.
    let fresh = format!("XDG_CACHE_HOME={}", out("cache"));
    let shown = on_terminal_with(&fresh, "inspect examples/supermin.d");
    assert!(shown.contains("resolve: packages") && shown.contains("PACKAGE"), "{shown:?}");
    let conflict = common::run(ours().args(["inspect", "-q", "-v", "examples/supermin.d"]));
    assert_eq!(conflict.status.code(), Some(2), "-q and -v together are a usage mistake");
}
