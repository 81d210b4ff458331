//! The manual pages and completions in dist/ are what the current command line generates
//! (regenerate with scripts/gen-docs.sh), and the completions load in their shells.

mod common;

use std::fs;
use std::path::Path;

use common::{ok, ours, Scratch};

fn assert_same_file(shipped: &Path, fresh: &[u8]) {
    let old = fs::read(shipped).unwrap_or_default();
    assert!(old == fresh, "{} is out of date: run scripts/gen-docs.sh and commit dist/", shipped.display());
}

#[test]
fn manual_pages_are_current() {
    let t = Scratch::new("docs-man");
    ok(ours().arg("manpage").arg(t.path("")));
    let mut fresh: Vec<String> =
        fs::read_dir(t.path("")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    fresh.sort();
    let mut shipped: Vec<String> =
        fs::read_dir("dist/man").unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    shipped.sort();
    assert_eq!(fresh, shipped, "dist/man has other pages: run scripts/gen-docs.sh");
    for page in &fresh {
        assert_same_file(&Path::new("dist/man").join(page), &fs::read(t.path(page)).unwrap());
    }
    // man renders it without warnings.
    let out = ok(std::process::Command::new("man").args(["--warnings", "-l", "-Tascii"]).arg("dist/man/supermin.1"));
    assert!(common::stderr(&out).is_empty(), "{}", common::stderr(&out));
    // Bold and underline are overstrikes (`X\bX`): keep the printed characters.
    let mut text = String::new();
    for c in common::stdout(&out).chars() {
        if c == '\u{8}' {
            text.pop();
        } else {
            text.push(c);
        }
    }
    assert!(text.contains("--if-newer") && text.contains("supermin mount"), "{text}");
}

#[test]
fn completions_are_current_and_load() {
    for (shell, file, check) in [
        ("bash", "supermin.bash", "source dist/completions/supermin.bash && complete -p supermin"),
        ("zsh", "_supermin", "zsh -n dist/completions/_supermin && echo supermin"),
        ("fish", "supermin.fish", "fish --no-execute dist/completions/supermin.fish && echo supermin"),
    ] {
        let out = ok(ours().args(["completions", shell]));
        assert_same_file(&Path::new("dist/completions").join(file), &out.stdout);
        let loaded = ok(std::process::Command::new("bash").args(["-c", check]));
        assert!(common::stdout(&loaded).contains("supermin"), "{shell}: {}", common::stdout(&loaded));
    }
}
