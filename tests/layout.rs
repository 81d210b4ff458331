//! The code layout's rules, checked on the source itself:
//! - no cycle among the top-level modules of `src/` (the pipeline's stages), nor among the
//!   sibling modules of any folder, judged from the `crate::` and `super::` paths each file
//!   names;
//! - ARCHITECTURE.md's code map names every module folder and file of `src/` and `fuse/src/`,
//!   and every path it names exists.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The module path of a file under `src/`: `output/ext2/mod.rs` → `["output", "ext2"]`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap();
    let mut parts: Vec<String> = rel.iter().map(|c| c.to_string_lossy().into_owned()).collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if !matches!(stem, "mod" | "lib" | "main") {
        parts.push(stem.to_string());
    }
    parts
}

/// Source without comments, so that a path in a doc comment is not an edge.
fn code_only(text: &str) -> String {
    text.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n")
}

/// The first segment of each path in a `use` tree starting at `{`: `{a, b::c, d::{e}}` → a, b, d.
fn group_heads(text: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let (mut depth, mut current, mut at_start) = (0, String::new(), true);
    for c in text.chars() {
        match c {
            '{' => {
                depth += 1;
                at_start = depth == 1;
            }
            '}' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            ',' if depth == 1 => at_start = true,
            c if at_start && (c.is_alphanumeric() || c == '_') => current.push(c),
            _ if at_start && !current.is_empty() => {
                heads.push(std::mem::take(&mut current));
                at_start = false;
            }
            _ => {}
        }
    }
    heads
}

/// The module paths a file refers to (absolute, as segment lists; possibly longer than the
/// module itself, e.g. ending in an item name).
fn references(module: &[String], code: &str) -> Vec<Vec<String>> {
    // `super` is the parent of the file's module (a folder's `mod.rs` is the folder's module).
    let parent = module[..module.len().saturating_sub(1)].to_vec();
    let mut out = Vec::new();
    for (prefix, base) in [("crate::", Vec::new()), ("super::", parent)] {
        for (i, _) in code.match_indices(prefix) {
            if i > 0 && code[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let rest = &code[i + prefix.len()..];
            let mut path = base.clone();
            if rest.starts_with('{') {
                for head in group_heads(rest) {
                    let mut p = path.clone();
                    p.push(head);
                    out.push(p);
                }
                continue;
            }
            let segs = rest.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).next().unwrap_or("");
            path.extend(segs.split("::").filter(|s| !s.is_empty()).map(str::to_string));
            out.push(path);
        }
    }
    out
}

/// Edges between sibling modules: for every file, the child of the common parent that it is
/// in, to the child of that parent it names.
fn sibling_edges(src: &Path) -> BTreeMap<Vec<String>, BTreeSet<(String, String)>> {
    let mut edges: BTreeMap<Vec<String>, BTreeSet<(String, String)>> = BTreeMap::new();
    for file in rust_files(src) {
        let module = module_of(src, &file);
        let code = code_only(&fs::read_to_string(&file).unwrap());
        for target in references(&module, &code) {
            let common = module.iter().zip(&target).take_while(|(a, b)| a == b).count();
            // A module naming its own descendants, or an ancestor naming into itself, is
            // structure, not a dependency between siblings.
            if common >= module.len() || common >= target.len() {
                continue;
            }
            let level = module[..common].to_vec();
            edges.entry(level).or_default().insert((module[common].clone(), target[common].clone()));
        }
    }
    edges
}

/// A cycle in `edges`, if any, as the list of nodes around it.
fn find_cycle(edges: &BTreeSet<(String, String)>) -> Option<Vec<String>> {
    let mut graph: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (a, b) in edges {
        graph.entry(a).or_default().push(b);
    }
    fn visit<'a>(
        n: &'a str,
        graph: &BTreeMap<&'a str, Vec<&'a str>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| *p == n) {
            let mut cycle: Vec<String> = path[i..].iter().map(|s| s.to_string()).collect();
            cycle.push(n.to_string());
            return Some(cycle);
        }
        if !done.insert(n) {
            return None;
        }
        path.push(n);
        for next in graph.get(n).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|n| visit(n, &graph, &mut Vec::new(), &mut done))
}

#[test]
fn no_module_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let edges = sibling_edges(&src);
    let top = edges.get(&Vec::new()).expect("top-level modules refer to each other");
    assert!(top.iter().any(|(a, b)| a == "build" && b == "resolve"), "the edge finder misses `build -> resolve`");
    for (level, edges) in &edges {
        if let Some(cycle) = find_cycle(edges) {
            panic!("module cycle under crate::{}: {}", level.join("::"), cycle.join(" -> "));
        }
    }
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let e = |pairs: &[(&str, &str)]| pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    assert_eq!(find_cycle(&e(&[("a", "b"), ("b", "c"), ("c", "a")])).unwrap(), vec!["a", "b", "c", "a"]);
    assert!(find_cycle(&e(&[("a", "b"), ("b", "c"), ("a", "c")])).is_none());
    let code = "use crate::{boot::{init, kernel}, error::Result};\nuse super::layout::Plan;";
    let refs = references(&["output".into(), "ext2".into(), "write".into()], code);
    let heads: Vec<String> = refs.iter().map(|r| r.join("::")).collect();
    assert_eq!(heads, vec!["boot", "error", "output::ext2::layout::Plan"]);
}

/// Every word in backquotes in `doc`.
fn quoted(doc: &str) -> BTreeSet<String> {
    doc.split('`')
        .skip(1)
        .step_by(2)
        .filter(|w| !w.contains(' '))
        .map(|w| w.trim_end_matches('/').to_string())
        .collect()
}

#[test]
fn architecture_names_every_module_and_only_real_ones() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let named = quoted(&doc);
    // `<name>` stands for a path to be made.
    let paths = named.iter().filter(|w| (w.starts_with("src/") || w.starts_with("fuse/src/")) && !w.contains('<'));
    for p in paths {
        assert!(root.join(p).exists(), "ARCHITECTURE.md names {p}, which does not exist");
    }
    for dir in ["src", "fuse/src"] {
        for file in rust_files(&root.join(dir)) {
            let rel = file.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            // A folder module is named by its folder; its other files by their path, or by
            // their name once their folder is named.
            let folder = rel.strip_suffix("/mod.rs");
            let (dir, name) = rel.rsplit_once('/').unwrap();
            let covered = named.contains(&rel)
                || folder.is_some_and(|f| named.contains(f))
                || (named.contains(dir) && named.contains(name));
            assert!(covered, "ARCHITECTURE.md's code map does not name {}", folder.unwrap_or(&rel));
        }
    }
}
