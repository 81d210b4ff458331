//! `supermin inspect`: held against a chroot build of the same appliance (every entry counted
//! once, the bytes adding up), against the original supermin's own closure (which packages
//! it leaves out), and its SVG parsed back.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::{ok, oracle, ours, stdout, Scratch, LIBGUESTFS_APPLIANCE};
use serde_json::Value;

fn inspect_json(args: &[&Path]) -> Value {
    let out = ok(ours().args(["inspect", "--json", "--top", "25"]).args(args));
    serde_json::from_slice(&out.stdout).expect("inspect --json prints JSON")
}

fn counts(v: &Value) -> (u64, u64) {
    (v["entries"].as_u64().unwrap(), v["bytes"].as_u64().unwrap())
}

/// Entries of a tree (every path below the root) and bytes of its regular files, each inode once.
fn tree_counts(root: &Path) -> (u64, u64) {
    let (mut entries, mut bytes, mut seen) = (0, 0, HashSet::new());
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let m = e.path().symlink_metadata().unwrap();
            entries += 1;
            if m.is_dir() {
                stack.push(e.path());
            } else if m.is_file() && seen.insert(m.ino()) {
                bytes += m.size();
            }
        }
    }
    (entries, bytes)
}

/// The groups (packages, base images, hostfiles, other) add up to the total, which is the
/// chroot build's; the largest files are the build's, largest first.
fn assert_adds_up(r: &Value, chroot: &Path) {
    let total = counts(&r["total"]);
    assert_eq!(total, tree_counts(chroot), "inspect's total against the chroot build");
    let mut sum = counts(&r["other"]);
    let groups = r["packages"].as_array().unwrap().iter().chain(r["base_images"].as_array().unwrap());
    for g in groups.chain(std::iter::once(&r["hostfiles"])) {
        let (e, b) = counts(g);
        sum = (sum.0 + e, sum.1 + b);
    }
    assert_eq!(sum, total, "the groups add up to the total");
    let largest = r["largest"].as_array().unwrap();
    assert_eq!(largest.len(), 25);
    let sizes: Vec<u64> = largest.iter().map(|f| f["bytes"].as_u64().unwrap()).collect();
    assert!(sizes.windows(2).all(|w| w[0] >= w[1]), "largest first: {sizes:?}");
    for f in largest {
        let path = chroot.join(f["path"].as_str().unwrap().trim_start_matches('/'));
        assert_eq!(path.symlink_metadata().unwrap().size(), f["bytes"].as_u64().unwrap(), "{}", path.display());
    }
    let biggest_in_tree = walk_sizes(chroot).into_iter().max().unwrap();
    assert_eq!(sizes[0], biggest_in_tree);
}

fn walk_sizes(root: &Path) -> Vec<u64> {
    let out = ok(std::process::Command::new("find").arg(root).args(["-type", "f", "-printf", "%s\n"]));
    stdout(&out).lines().map(|l| l.parse().unwrap()).collect()
}

#[test]
fn libguestfs_appliance_against_chroot_and_the_original_closure() {
    let t = Scratch::new("inspect-lg");
    let input = Path::new(LIBGUESTFS_APPLIANCE);
    let r = inspect_json(&[input]);
    ok(ours().args(["--build", "-f", "chroot"]).arg(input).arg("-o").arg(t.path("ours")));
    assert_adds_up(&r, &t.path("ours"));

    // The packages marked as in the original's closure are exactly its /packagelist.
    ok(oracle().args(["--build", "--include-packagelist", "-f", "chroot"]).arg(input).arg("-o").arg(t.path("orig")));
    let theirs: BTreeSet<String> =
        fs::read_to_string(t.path("orig/packagelist")).unwrap().split_whitespace().map(String::from).collect();
    let packages = r["packages"].as_array().unwrap();
    let in_original: BTreeSet<String> = packages
        .iter()
        .filter(|p| p["in_original_closure"].as_bool().unwrap())
        .map(|p| p["package"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(in_original, theirs, "packages in the original's closure");
    let extra = packages.iter().filter(|p| !p["in_original_closure"].as_bool().unwrap()).count();
    assert!(extra > 0, "libguestfs's appliance has dependencies the original loses");
    // Every package but the named ones was pulled in by a package of the closure.
    let names: HashSet<&str> = packages.iter().map(|p| p["name"].as_str().unwrap()).collect();
    let named: BTreeSet<&str> =
        packages.iter().filter(|p| p["pulled_in_by"].is_null()).map(|p| p["name"].as_str().unwrap()).collect();
    // libguestfs's supermin.d has several packages files (packages, packages-xfs, …).
    let mut listed = String::new();
    for e in fs::read_dir(input).unwrap() {
        let e = e.unwrap();
        if e.file_name().to_string_lossy().starts_with("packages") {
            listed += &fs::read_to_string(e.path()).unwrap();
        }
    }
    assert!(named.iter().all(|n| listed.lines().any(|l| l == *n)), "{named:?}");
    assert!(packages.iter().filter_map(|p| p["pulled_in_by"].as_str()).all(|v| names.contains(v)));
    assert!(counts(&r["excluded"]).0 > 0, "libguestfs's excludefiles remove files");
}

#[test]
fn example_and_its_mounted_view_give_the_same_report() {
    let t = Scratch::new("inspect-example");
    let input = fs::canonicalize("examples/supermin.d").unwrap();
    let r = inspect_json(&[&input]);
    ok(ours().args(["--build", "-f", "chroot"]).arg(&input).arg("-o").arg(t.path("chroot")));
    assert_adds_up(&r, &t.path("chroot"));
    let mp = t.path("mp");
    let _guard = common::mount(&input, &mp, &[]);
    assert_eq!(inspect_json(&[&mp]), r, "inspect of the mounted view");
}

#[test]
fn text_and_svg() {
    let t = Scratch::new("inspect-svg");
    let input = fs::canonicalize("examples/supermin.d").unwrap();
    let svg = t.path("sizes.svg");
    let text = stdout(&ok(ours().arg("inspect").arg("--svg").arg(&svg).arg(&input)));
    let r = inspect_json(&[&input]);
    let first = text.lines().next().unwrap();
    let total = r["total"]["entries"].as_u64().unwrap();
    assert!(first.contains(&format!("{total} entries")), "{first}");
    for p in r["packages"].as_array().unwrap() {
        let row = text.lines().find(|l| l.starts_with(p["package"].as_str().unwrap())).expect("a row per package");
        assert!(row.contains(&format!(" {} ", p["entries"])), "{row}");
    }

    let xml = fs::read_to_string(&svg).unwrap();
    let doc = roxmltree::Document::parse(&xml).expect("the SVG is well-formed XML");
    let bars: Vec<roxmltree::Node> =
        doc.descendants().filter(|n| n.has_tag_name("rect") && n.attribute("y").is_some_and(|y| y != "34")).collect();
    let labels: Vec<&str> = doc.descendants().filter(|n| n.has_tag_name("text")).filter_map(|n| n.text()).collect();
    let mut by_size: Vec<&Value> = r["packages"].as_array().unwrap().iter().collect();
    by_size.sort_by_key(|p| std::cmp::Reverse(p["bytes"].as_u64().unwrap()));
    let top = by_size[0]["name"].as_str().unwrap();
    assert!(labels.contains(&top), "the largest package {top} is labelled: {labels:?}");
    assert!(!bars.is_empty() && bars.len() <= 40, "{} bars", bars.len());
    let widths: Vec<f64> = bars.iter().map(|b| b.attribute("width").unwrap().parse().unwrap()).collect();
    assert!(widths.iter().all(|&w| w >= 1.0));
}
