//! Resolving a path inside a root, the way the kernel resolves it inside a chroot: every
//! component is looked up in turn, a symlink's target is walked in its place, an absolute
//! target starts again at the root, and `..` never climbs above the root. One walk serves
//! both trees we resolve in: a `--sysroot` on the host disk (`crate::host`) and the
//! appliance being assembled in memory (`crate::manifest`).

/// Symlinks followed in one resolution before giving up (the kernel's `MAXSYMLINKS`).
pub const MAX_LINKS: u32 = 40;

/// What a directory says about one of its names.
pub enum Entry<N> {
    Missing,
    /// A symlink and its target.
    Symlink(N, Vec<u8>),
    /// Anything else (a directory, a file, a device…).
    Node(N),
}

/// A tree to walk: its root and one lookup.
pub trait Tree {
    type Node: Clone;
    fn root(&self) -> Self::Node;
    /// The entry `name` of `dir`; `Missing` too when `dir` is not a directory.
    fn entry(&self, dir: &Self::Node, name: &[u8]) -> Entry<Self::Node>;
}

/// Where a resolution ended.
#[derive(Debug, PartialEq, Eq)]
pub enum End<N> {
    /// Every component resolved: the nodes from the root down (the root first).
    Found(Vec<N>),
    /// `name` is missing from the last of `nodes`; `rest` are the components after it.
    Missing { nodes: Vec<N>, name: Vec<u8>, rest: Vec<Vec<u8>> },
    /// More than [`MAX_LINKS`] symlinks (the kernel's ELOOP).
    TooManyLinks,
}

/// The non-empty components of `path`.
pub fn components(path: &[u8]) -> impl DoubleEndedIterator<Item = &[u8]> {
    path.split(|&b| b == b'/').filter(|c| !c.is_empty())
}

/// Resolve `path` in `tree`, following symlinks in every component, and in the last one
/// when `follow_last`.
pub fn resolve<T: Tree>(tree: &T, path: &[u8], follow_last: bool) -> End<T::Node> {
    let mut nodes = vec![tree.root()];
    // Components still to walk, the next one on top.
    let mut todo: Vec<Vec<u8>> = components(path).rev().map(<[u8]>::to_vec).collect();
    let mut links = 0;
    while let Some(name) = todo.pop() {
        match &name[..] {
            b"." => continue,
            b".." => {
                if nodes.len() > 1 {
                    nodes.pop();
                }
                continue;
            }
            _ => {}
        }
        let dir = nodes.last().expect("the root is never popped");
        match tree.entry(dir, &name) {
            Entry::Missing => return End::Missing { nodes, name, rest: todo.into_iter().rev().collect() },
            Entry::Node(node) => nodes.push(node),
            Entry::Symlink(node, _) if todo.is_empty() && !follow_last => nodes.push(node),
            Entry::Symlink(_, target) => {
                links += 1;
                if links > MAX_LINKS {
                    return End::TooManyLinks;
                }
                if target.starts_with(b"/") {
                    nodes.truncate(1);
                }
                todo.extend(components(&target).rev().map(<[u8]>::to_vec));
            }
        }
    }
    End::Found(nodes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Paths to either a target (symlink) or nothing (directory or file).
    struct Paths(HashMap<&'static str, Option<&'static str>>);

    impl Tree for Paths {
        type Node = String;
        fn root(&self) -> String {
            String::new()
        }
        fn entry(&self, dir: &String, name: &[u8]) -> Entry<String> {
            let path = format!("{dir}/{}", String::from_utf8_lossy(name));
            match self.0.get(path.as_str()) {
                None => Entry::Missing,
                Some(Some(target)) => Entry::Symlink(path, target.as_bytes().to_vec()),
                Some(None) => Entry::Node(path),
            }
        }
    }

    fn last(end: End<String>) -> Option<String> {
        match end {
            End::Found(nodes) => nodes.last().cloned(),
            _ => None,
        }
    }

    #[test]
    fn links_dot_dot_and_loops_stay_inside() {
        let t = Paths(HashMap::from([
            ("/usr", None),
            ("/usr/lib", None),
            ("/lib", Some("usr/lib")),
            ("/up", Some("../../../usr")),
            ("/abs", Some("/usr/lib")),
            ("/loop", Some("/loop")),
        ]));
        assert_eq!(last(resolve(&t, b"/lib", true)).as_deref(), Some("/usr/lib"));
        assert_eq!(last(resolve(&t, b"/lib", false)).as_deref(), Some("/lib"));
        assert_eq!(last(resolve(&t, b"/up/lib", true)).as_deref(), Some("/usr/lib"));
        assert_eq!(last(resolve(&t, b"/usr/../../abs/.", true)).as_deref(), Some("/usr/lib"));
        assert_eq!(resolve(&t, b"/loop/x", true), End::TooManyLinks);
        let missing = resolve(&t, b"/lib/x/y", true);
        let End::Missing { nodes, name, rest } = missing else { panic!("{missing:?}") };
        assert_eq!((nodes.last().unwrap().as_str(), &name[..], rest), ("/usr/lib", &b"x"[..], vec![b"y".to_vec()]));
    }
}
