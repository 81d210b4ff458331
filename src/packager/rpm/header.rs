//! A reader for rpm headers: the tag/type/offset/count index followed by a data store, as
//! stored in the sqlite rpmdb (`Packages.blob`, a header without its 8-byte magic) and in
//! `.rpm` files (after the lead and the signature header).
//!
//! Only what supermin needs: strings, string arrays and integer arrays, each access
//! bounds-checked so that a corrupt blob is an error, never a panic.

pub const NAME: u32 = 1000;
pub const VERSION: u32 = 1001;
pub const RELEASE: u32 = 1002;
pub const EPOCH: u32 = 1003;
pub const ARCH: u32 = 1022;
pub const OLDFILENAMES: u32 = 1027;
pub const FILEDIGESTS: u32 = 1035;
pub const FILEFLAGS: u32 = 1037;
pub const PROVIDENAME: u32 = 1047;
pub const REQUIREFLAGS: u32 = 1048;
pub const REQUIRENAME: u32 = 1049;
pub const DIRINDEXES: u32 = 1116;
pub const BASENAMES: u32 = 1117;
pub const DIRNAMES: u32 = 1118;
pub const FILEDIGESTALGO: u32 = 5011;

/// `%config` in FILEFLAGS.
pub const FILE_CONFIG: u32 = 1 << 0;
/// `%ghost`: recorded but not in the payload; may be absent on disk.
pub const FILE_GHOST: u32 = 1 << 6;
/// A requirement on rpm itself (`rpmlib(...)`), never provided by a package.
pub const SENSE_RPMLIB: u32 = 1 << 24;

const TYPE_CHAR: u32 = 1;
const TYPE_INT8: u32 = 2;
const TYPE_INT16: u32 = 3;
const TYPE_INT32: u32 = 4;
const TYPE_STRING: u32 = 6;
const TYPE_STRING_ARRAY: u32 = 8;
const TYPE_I18NSTRING: u32 = 9;

/// The magic that starts a header in a `.rpm` file (not in the database).
const MAGIC: [u8; 3] = [0x8e, 0xad, 0xe8];

#[derive(Clone, Copy)]
struct Entry {
    tag: u32,
    ty: u32,
    offset: u32,
    count: u32,
}

pub struct Header {
    blob: Vec<u8>,
    /// Sorted by tag.
    entries: Vec<Entry>,
    /// Start of the data store in `blob`.
    data: usize,
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4).map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

impl Header {
    /// Parse a bare header (index count, data length, index, data), as rpmdb stores it.
    pub fn parse(blob: Vec<u8>) -> Result<Header, String> {
        let (h, _) = Header::parse_at(blob, 0)?;
        Ok(h)
    }

    /// Parse a header starting at `start` of `blob`; also returns where it ends.
    fn parse_at(blob: Vec<u8>, start: usize) -> Result<(Header, usize), String> {
        let il = be32(&blob, start).ok_or("truncated header (no index count)")? as usize;
        let dl = be32(&blob, start + 4).ok_or("truncated header (no data length)")? as usize;
        // rpm's own sanity limits: at most 0xffff tags, 256 MiB of data.
        if il == 0 || il > 0xffff || dl > 256 << 20 {
            return Err(format!("implausible header size ({il} tags, {dl} bytes of data)"));
        }
        let data = start + 8 + il * 16;
        let end = data + dl;
        if blob.len() < end {
            return Err(format!("truncated header ({} bytes, {end} needed)", blob.len()));
        }
        let mut entries = Vec::with_capacity(il);
        for i in 0..il {
            let at = start + 8 + i * 16;
            let e = Entry {
                tag: be32(&blob, at).unwrap_or(0),
                ty: be32(&blob, at + 4).unwrap_or(0),
                offset: be32(&blob, at + 8).unwrap_or(0),
                count: be32(&blob, at + 12).unwrap_or(0),
            };
            // Region tags (61-63) point at trailers with negative offsets; we never read them.
            if (61..=63).contains(&e.tag) {
                continue;
            }
            // rpm's own rule (hdrchkRange): no tag starts beyond the data, even one without
            // values (a STRING is read whatever its count says); one with values starts inside.
            let offset = e.offset as usize;
            if offset > dl || (offset >= dl.max(1) && e.count > 0) {
                return Err(format!("tag {} points outside the header data", e.tag));
            }
            entries.push(e);
        }
        entries.sort_by_key(|e| e.tag);
        // Data beyond `end` (the payload of a .rpm) is not ours to keep.
        let mut blob = blob;
        blob.truncate(end);
        let data = data - start;
        let blob = blob.split_off(start);
        Ok((Header { blob, entries, data }, end))
    }

    /// The main header of a `.rpm` file: after the 96-byte lead and the signature header
    /// (padded to 8 bytes). Returns the header and the offset of the payload.
    pub fn parse_package(file: Vec<u8>) -> Result<(Header, usize), String> {
        if file.len() < 96 || file[..4] != [0xed, 0xab, 0xee, 0xdb] {
            return Err("not an rpm package (no lead)".into());
        }
        let sig = 96;
        if file.get(sig..sig + 3) != Some(&MAGIC[..]) {
            return Err("no signature header".into());
        }
        let il = be32(&file, sig + 8).ok_or("truncated signature")? as usize;
        let dl = be32(&file, sig + 12).ok_or("truncated signature")? as usize;
        let mut main = sig + 16 + il * 16 + dl;
        main += (8 - main % 8) % 8;
        if file.get(main..main + 3) != Some(&MAGIC[..]) {
            return Err("no main header after the signature".into());
        }
        let (h, end) = Header::parse_at(file, main + 8)?;
        Ok((h, end))
    }

    fn entry(&self, tag: u32) -> Option<Entry> {
        self.entries.binary_search_by_key(&tag, |e| e.tag).ok().map(|i| self.entries[i])
    }

    fn bytes_from(&self, e: Entry) -> &[u8] {
        &self.blob[self.data + e.offset as usize..]
    }

    /// A STRING (or the first element of a string array / i18n string).
    pub fn string(&self, tag: u32) -> Result<Option<String>, String> {
        Ok(self.strings(tag)?.into_iter().next())
    }

    /// Every string of a STRING_ARRAY (or the one STRING).
    pub fn strings(&self, tag: u32) -> Result<Vec<String>, String> {
        let Some(e) = self.entry(tag) else { return Ok(Vec::new()) };
        let count = match e.ty {
            TYPE_STRING => 1,
            TYPE_STRING_ARRAY | TYPE_I18NSTRING => e.count as usize,
            t => return Err(format!("tag {tag} has type {t}, not a string")),
        };
        let mut rest = self.bytes_from(e);
        let mut out = Vec::with_capacity(count.min(1 << 16));
        for _ in 0..count {
            let nul = rest.iter().position(|&b| b == 0).ok_or_else(|| format!("tag {tag}: unterminated string"))?;
            out.push(String::from_utf8_lossy(&rest[..nul]).into_owned());
            rest = &rest[nul + 1..];
        }
        Ok(out)
    }

    /// An integer array of any width, widened to u32.
    pub fn ints(&self, tag: u32) -> Result<Vec<u32>, String> {
        let Some(e) = self.entry(tag) else { return Ok(Vec::new()) };
        let width = match e.ty {
            TYPE_CHAR | TYPE_INT8 => 1,
            TYPE_INT16 => 2,
            TYPE_INT32 => 4,
            t => return Err(format!("tag {tag} has type {t}, not an integer")),
        };
        let bytes = self.bytes_from(e);
        let n = e.count as usize;
        if bytes.len() < n.saturating_mul(width) {
            return Err(format!("tag {tag}: {n} values do not fit in the header"));
        }
        Ok((0..n)
            .map(|i| {
                let s = &bytes[i * width..(i + 1) * width];
                s.iter().fold(0u32, |acc, &b| (acc << 8) | b as u32)
            })
            .collect())
    }

    pub fn int(&self, tag: u32) -> Result<Option<u32>, String> {
        Ok(self.ints(tag)?.first().copied())
    }

    /// Every file as (path, flags, digest); the compressed (dirnames) and old layouts.
    pub fn files(&self) -> Result<Vec<(String, u32, String)>, String> {
        let basenames = self.strings(BASENAMES)?;
        let paths: Vec<String> = if basenames.is_empty() {
            self.strings(OLDFILENAMES)?
        } else {
            let dirs = self.strings(DIRNAMES)?;
            let idx = self.ints(DIRINDEXES)?;
            if idx.len() != basenames.len() {
                return Err("file list: dirindexes and basenames differ in length".into());
            }
            basenames
                .iter()
                .zip(&idx)
                .map(|(b, &i)| dirs.get(i as usize).map(|d| format!("{d}{b}")).ok_or("file list: bad directory index"))
                .collect::<Result<_, _>>()?
        };
        let flags = self.ints(FILEFLAGS)?;
        let digests = self.strings(FILEDIGESTS)?;
        Ok(paths
            .into_iter()
            .enumerate()
            .map(|(i, p)| (p, flags.get(i).copied().unwrap_or(0), digests.get(i).cloned().unwrap_or_default()))
            .collect())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A header blob with the given (tag, type, data, count) entries.
    pub fn build(entries: &[(u32, u32, Vec<u8>, u32)]) -> Vec<u8> {
        let mut index = Vec::new();
        let mut data = Vec::new();
        for (tag, ty, bytes, count) in entries {
            while *ty == TYPE_INT32 && data.len() % 4 != 0 {
                data.push(0);
            }
            index.extend_from_slice(&tag.to_be_bytes());
            index.extend_from_slice(&ty.to_be_bytes());
            index.extend_from_slice(&(data.len() as u32).to_be_bytes());
            index.extend_from_slice(&count.to_be_bytes());
            data.extend_from_slice(bytes);
        }
        let mut blob = (entries.len() as u32).to_be_bytes().to_vec();
        blob.extend_from_slice(&(data.len() as u32).to_be_bytes());
        blob.extend(index);
        blob.extend(data);
        blob
    }

    pub fn s(v: &str) -> (u32, Vec<u8>, u32) {
        (TYPE_STRING, format!("{v}\0").into_bytes(), 1)
    }

    pub fn sa(v: &[&str]) -> (u32, Vec<u8>, u32) {
        (TYPE_STRING_ARRAY, v.iter().flat_map(|x| format!("{x}\0").into_bytes()).collect(), v.len() as u32)
    }

    pub fn i32s(v: &[u32]) -> (u32, Vec<u8>, u32) {
        (TYPE_INT32, v.iter().flat_map(|x| x.to_be_bytes()).collect(), v.len() as u32)
    }

    pub fn with(tag: u32, (ty, b, c): (u32, Vec<u8>, u32)) -> (u32, u32, Vec<u8>, u32) {
        (tag, ty, b, c)
    }

    #[test]
    fn reads_strings_ints_and_files() {
        let blob = build(&[
            with(NAME, s("foo")),
            with(EPOCH, i32s(&[3])),
            with(DIRNAMES, sa(&["/etc/", "/usr/bin/"])),
            with(BASENAMES, sa(&["foo.conf", "foo"])),
            with(DIRINDEXES, i32s(&[0, 1])),
            with(FILEFLAGS, i32s(&[FILE_CONFIG, 0])),
        ]);
        let h = Header::parse(blob).unwrap();
        assert_eq!(h.string(NAME).unwrap().as_deref(), Some("foo"));
        assert_eq!(h.int(EPOCH).unwrap(), Some(3));
        assert_eq!(h.string(VERSION).unwrap(), None);
        let files = h.files().unwrap();
        assert_eq!(files[0].0, "/etc/foo.conf");
        assert_eq!(files[0].1, FILE_CONFIG);
        assert_eq!(files[1].0, "/usr/bin/foo");
    }

    #[test]
    fn corrupt_blobs_are_errors() {
        let good = build(&[with(NAME, s("foo")), with(BASENAMES, sa(&["a", "b"]))]);
        for cut in 0..good.len() {
            // Never a panic: every prefix either parses to something or is an error.
            if let Ok(h) = Header::parse(good[..cut].to_vec()) {
                let _ = h.strings(BASENAMES);
            }
        }
        assert!(Header::parse(vec![0xff; 64]).is_err());
        let mut bad_index = good.clone();
        bad_index[8 + 16 + 8..8 + 16 + 12].copy_from_slice(&1000u32.to_be_bytes());
        assert!(Header::parse(bad_index).is_err());
        // A string array claiming more strings than there are.
        let lying = build(&[(BASENAMES, TYPE_STRING_ARRAY, b"a\0".to_vec(), 5)]);
        assert!(Header::parse(lying).unwrap().strings(BASENAMES).is_err());
        // A STRING with a count of 0 is still read: its offset must be checked all the same
        // (found by fuzzing: the offset sliced past the blob).
        let mut zero_count = build(&[(NAME, TYPE_STRING, b"foo\0".to_vec(), 0)]);
        zero_count[8 + 8..8 + 12].copy_from_slice(&1000u32.to_be_bytes());
        assert!(Header::parse(zero_count).is_err());
        let short_ints = build(&[(FILEFLAGS, TYPE_INT32, vec![0, 0, 0, 1], 9)]);
        assert!(Header::parse(short_ints).unwrap().ints(FILEFLAGS).is_err());
    }
}
