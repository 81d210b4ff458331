//! kmod's binary indexes (`modules.dep.bin`, `modules.alias.bin`, `modules.symbols.bin`): read
//! into their keys and values, and written back, so that an appliance carrying only some of the
//! kernel's modules gets indexes naming only those (modprobe and udev read these files, never
//! the text ones).
//!
//! The format (kmod's `libkmod-index.c`, written by depmod): big-endian words; a header
//! (magic `0xB007F457`, version 2.1, the root node's offset), then a trie of nodes. A node
//! reference is an offset with flags in its top bits: a prefix (a NUL-terminated string matched
//! before anything else), children (a first and a last byte, then one reference per byte in
//! between, 0 for none) and values (a count, then each value's priority and NUL-terminated
//! string, by ascending priority).

use std::collections::BTreeMap;

use crate::bail;
use crate::error::Result;

const MAGIC: u32 = 0xB007_F457;
const VERSION: u32 = 0x0002_0001;
const PREFIX: u32 = 0x8000_0000;
const VALUES: u32 = 0x4000_0000;
const CHILDREN: u32 = 0x2000_0000;
const OFFSET: u32 = 0x0FFF_FFFF;

/// Each key and its values (priority, value), keys in byte order.
pub type Index = BTreeMap<Vec<u8>, Vec<Value>>;

/// A value and its priority (depmod's: the module's place in `modules.order`).
pub type Value = (u32, Vec<u8>);

/// A key and its values, borrowed from an [`Index`].
type Entry<'a> = (&'a [u8], &'a [Value]);

/// Read an index; `name` is used in errors.
pub fn read(data: &[u8], name: &str) -> Result<Index> {
    let mut r = Reader { data, name, index: Index::new() };
    if r.word(0)? != MAGIC || r.word(4)? >> 16 != VERSION >> 16 {
        bail!("{name}: not a kmod index (bad magic or version)");
    }
    let root = r.word(8)?;
    r.node(root, &mut Vec::new(), 0)?;
    Ok(r.index)
}

struct Reader<'a> {
    data: &'a [u8],
    name: &'a str,
    index: Index,
}

impl Reader<'_> {
    fn word(&self, at: usize) -> Result<u32> {
        match self.data.get(at..at + 4) {
            Some(b) => Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
            None => bail!("{}: corrupt kmod index (truncated at {at})", self.name),
        }
    }

    fn string(&self, at: usize) -> Result<&[u8]> {
        let rest = self.data.get(at..).unwrap_or_default();
        match rest.iter().position(|&b| b == 0) {
            Some(end) => Ok(&rest[..end]),
            None => bail!("{}: corrupt kmod index (unterminated string at {at})", self.name),
        }
    }

    /// The node at `reference`, reached by `key`; its keys and values go into the index.
    fn node(&mut self, reference: u32, key: &mut Vec<u8>, depth: usize) -> Result<()> {
        let mut at = (reference & OFFSET) as usize;
        // A key is at most a few hundred bytes: deeper means a loop in a corrupt file.
        if at == 0 || depth > 4096 {
            bail!("{}: corrupt kmod index (bad node reference {reference:#x})", self.name);
        }
        let len = key.len();
        if reference & PREFIX != 0 {
            let prefix = self.string(at)?;
            key.extend_from_slice(prefix);
            at += prefix.len() + 1;
        }
        let mut children = Vec::new();
        if reference & CHILDREN != 0 {
            let (first, last) = match self.data.get(at..at + 2) {
                Some(&[first, last]) if first <= last => (first, last),
                _ => bail!("{}: corrupt kmod index (bad child range at {at})", self.name),
            };
            at += 2;
            for ch in first..=last {
                children.push((ch, self.word(at)?));
                at += 4;
            }
        }
        if reference & VALUES != 0 {
            let count = self.word(at)?;
            at += 4;
            let mut values = Vec::new();
            for _ in 0..count {
                let priority = self.word(at)?;
                let value = self.string(at + 4)?.to_vec();
                at += 4 + value.len() + 1;
                values.push((priority, value));
            }
            self.index.insert(key.clone(), values);
        }
        for (ch, child) in children.into_iter().filter(|&(_, child)| child != 0) {
            key.push(ch);
            self.node(child, key, depth + 1)?;
            key.pop();
        }
        key.truncate(len);
        Ok(())
    }
}

/// The index file for `index` (keys of 7-bit ASCII, as depmod requires).
pub fn write(index: &Index) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 << 10);
    out.extend_from_slice(&MAGIC.to_be_bytes());
    out.extend_from_slice(&VERSION.to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes()); // the root's reference, known at the end
    let entries: Vec<Entry> = index.iter().map(|(k, v)| (k.as_slice(), v.as_slice())).collect();
    let root = write_node(&entries, 0, &mut out);
    out[8..12].copy_from_slice(&root.to_be_bytes());
    out
}

/// Write the node for `entries` (sorted, all sharing their first `depth` bytes), children
/// first as depmod does; its reference.
fn write_node(entries: &[Entry], depth: usize, out: &mut Vec<u8>) -> u32 {
    if entries.is_empty() {
        return out.len() as u32; // an empty index: a root with nothing in it
    }
    // The prefix: what every key shares past `depth` (depmod never gives the root one).
    let first = &entries[0].0[depth..];
    let shared = match depth {
        0 => 0,
        _ => entries[1..].iter().fold(first.len(), |n, (key, _)| {
            first.iter().zip(&key[depth..]).take(n).take_while(|(a, b)| a == b).count()
        }),
    };
    let end = depth + shared;
    // Sorted: a key that ends here comes first.
    let (here, rest) = match entries[0].0.len() == end {
        true => (Some(entries[0].1), &entries[1..]),
        false => (None, entries),
    };
    let mut children: Vec<(u8, u32)> = Vec::new();
    let mut start = 0;
    while start < rest.len() {
        let ch = rest[start].0[end];
        let stop = start + rest[start..].iter().take_while(|(key, _)| key[end] == ch).count();
        children.push((ch, write_node(&rest[start..stop], end + 1, out)));
        start = stop;
    }
    let mut reference = out.len() as u32;
    if shared > 0 {
        out.extend_from_slice(&first[..shared]);
        out.push(0);
        reference |= PREFIX;
    }
    if let (Some(&(lo, _)), Some(&(hi, _))) = (children.first(), children.last()) {
        out.extend_from_slice(&[lo, hi]);
        for ch in lo..=hi {
            let child = children.iter().find(|(c, _)| *c == ch).map_or(0, |(_, r)| *r);
            out.extend_from_slice(&child.to_be_bytes());
        }
        reference |= CHILDREN;
    }
    if let Some(values) = here {
        out.extend_from_slice(&(values.len() as u32).to_be_bytes());
        for (priority, value) in values {
            out.extend_from_slice(&priority.to_be_bytes());
            out.extend_from_slice(value);
            out.push(0);
        }
        reference |= VALUES;
    }
    reference
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn index(pairs: &[(&str, u32, &str)]) -> Index {
        let mut index = Index::new();
        for (k, p, v) in pairs {
            index.entry(k.as_bytes().to_vec()).or_default().push((*p, v.as_bytes().to_vec()));
        }
        index
    }

    #[test]
    fn what_is_written_reads_back() {
        let i = index(&[
            ("ext4", 1, "kernel/fs/ext4/ext4.ko: kernel/fs/jbd2/jbd2.ko"),
            ("ext2", 2, "kernel/fs/ext2/ext2.ko:"),
            ("e", 3, "e"),
            ("fs-ext4", 4, "ext4"),
            ("pci:v00001AF4d*sv*sd*bc*sc*i*", 5, "virtio_pci"),
            ("pci:v00001AF4d*sv*sd*bc*sc*i*", 6, "other"),
        ]);
        let bytes = write(&i);
        assert_eq!(read(&bytes, "t").unwrap(), i);
        assert_eq!(read(&write(&Index::new()), "t").unwrap(), Index::new());
    }

    /// The oracle: depmod's own files of the installed kernel, read and written back, give the
    /// same bytes (the same trie, laid out the same way).
    #[test]
    fn the_host_kernel_indexes_round_trip_byte_for_byte() {
        let Some(dir) = fs::read_dir("/lib/modules").ok().and_then(|mut d| d.next()).and_then(|e| e.ok()) else {
            return eprintln!("no /lib/modules here: skipped");
        };
        for name in ["modules.dep.bin", "modules.alias.bin", "modules.symbols.bin", "modules.builtin.bin"] {
            let bytes = fs::read(dir.path().join(name)).unwrap();
            let index = read(&bytes, name).unwrap();
            assert!(index.len() > 10, "{name}: {} keys", index.len());
            let again = write(&index);
            let at = again.iter().zip(&bytes).position(|(a, b)| a != b);
            assert!(
                again == bytes,
                "{name}: written back differently at {at:?} ({} against {} bytes)",
                again.len(),
                bytes.len()
            );
        }
    }

    #[test]
    fn corrupt_indexes_are_errors_not_panics() {
        let bytes = write(&index(&[("ext4", 1, "a"), ("ext2", 2, "b")]));
        for cut in 0..bytes.len() {
            let _ = read(&bytes[..cut], "t");
        }
        let mut looped = bytes.clone();
        let root = u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        looped[12..16].copy_from_slice(&(root | PREFIX).to_be_bytes());
        let _ = read(&looped, "t");
        assert!(read(b"not an index at all", "t").is_err());
    }
}
