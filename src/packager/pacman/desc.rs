//! pacman's database syntax: `%SECTION%` blocks, versioned names, mtree escapes.

use std::collections::HashMap;

/// `%SECTION%` blocks of a `desc`/`files` file: section → lines.
pub fn sections(text: &str) -> HashMap<&str, Vec<&str>> {
    let mut out: HashMap<&str, Vec<&str>> = HashMap::new();
    let mut cur: Option<&str> = None;
    for line in text.lines() {
        if line.len() > 2 && line.starts_with('%') && line.ends_with('%') {
            cur = Some(&line[1..line.len() - 1]);
            out.entry(&line[1..line.len() - 1]).or_default();
        } else if line.is_empty() {
            cur = None;
        } else if let Some(c) = cur {
            out.entry(c).or_default().push(line);
        }
    }
    out
}

/// `foo>=1.2`, `foo=1`, `libfoo.so=3-64` → `foo`, `libfoo.so`.
pub fn strip_version(dep: &str) -> &str {
    let dep = dep.split(':').next().unwrap_or(dep); // optdepends-style descriptions
    dep.split(['<', '>', '=']).next().unwrap_or(dep).trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn desc_sections_and_versions() {
        let s = sections("%NAME%\nfoo\n\n%DEPENDS%\nbar>=1.0\nlibx.so=2-64\nbaz\n\n%PROVIDES%\nqux=3\n");
        assert_eq!(s["NAME"], vec!["foo"]);
        let deps: Vec<&str> = s["DEPENDS"].iter().map(|d| strip_version(d)).collect();
        assert_eq!(deps, vec!["bar", "libx.so", "baz"]);
        assert_eq!(strip_version("qux=3"), "qux");
        assert_eq!(strip_version("a<2"), "a");
    }
}
