//! The `newc` cpio format: written for the kernel to unpack as an initramfs, read from
//! `rpm2cpio` (pristine config files of rpm packages).

use std::io::{self, Write};

pub struct Writer<W: Write> {
    out: W,
    ino: u32,
    written: u64,
}

/// One archive member's metadata.
pub struct Header<'a> {
    pub name: &'a [u8],
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub mtime: u32,
    pub rdev: u64,
}

impl<W: Write> Writer<W> {
    pub fn new(out: W) -> Self {
        Writer { out, ino: 0, written: 0 }
    }

    fn pad(&mut self) -> io::Result<()> {
        let pad = (4 - (self.written % 4) as usize) % 4;
        self.put(&[0u8; 3][..pad])
    }

    fn put(&mut self, b: &[u8]) -> io::Result<()> {
        self.out.write_all(b)?;
        self.written += b.len() as u64;
        Ok(())
    }

    /// Append a member; `data` is the file content or symlink target (empty otherwise).
    pub fn append(&mut self, h: &Header, data: &[u8]) -> io::Result<()> {
        self.ino += 1;
        let (maj, min) = (libc::major(h.rdev), libc::minor(h.rdev));
        let header = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            self.ino,
            h.mode,
            h.uid,
            h.gid,
            h.nlink,
            h.mtime,
            data.len(),
            0,
            0,
            maj,
            min,
            h.name.len() + 1,
            0
        );
        self.put(header.as_bytes())?;
        self.put(h.name)?;
        self.put(&[0])?;
        self.pad()?;
        self.put(data)?;
        self.pad()
    }

    /// Write the trailer and return the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        let h = Header { name: b"TRAILER!!!", mode: 0, uid: 0, gid: 0, nlink: 1, mtime: 0, rdev: 0 };
        self.append(&h, &[])?;
        Ok(self.out)
    }
}

/// One member of an archive being read.
pub struct Member<'a> {
    pub name: String,
    pub mode: u32,
    pub mtime: u64,
    pub data: &'a [u8],
}

/// The members of a `newc` (070701) cpio archive, such as rpm2cpio writes.
pub fn read(mut b: &[u8]) -> Result<Vec<Member<'_>>, String> {
    let mut out = Vec::new();
    let pad4 = |n: usize| (4 - n % 4) % 4;
    loop {
        if b.len() < 110 || &b[..6] != b"070701" {
            return Err("not a newc cpio archive, or truncated".into());
        }
        let field = |i: usize| -> Result<usize, String> {
            let s = std::str::from_utf8(&b[6 + i * 8..14 + i * 8]).map_err(|_| "bad header")?;
            usize::from_str_radix(s, 16).map_err(|_| "bad header".to_string())
        };
        let (mode, mtime, size, namesize) = (field(1)?, field(5)?, field(6)?, field(11)?);
        let name_end = 110 + namesize;
        let data_start = name_end + pad4(name_end);
        let data_end = data_start.checked_add(size).ok_or("bad size")?;
        if namesize == 0 || b.len() < data_end {
            return Err("truncated archive".into());
        }
        let name = String::from_utf8_lossy(&b[110..name_end - 1]).into_owned();
        if name == "TRAILER!!!" {
            return Ok(out);
        }
        out.push(Member { name, mode: mode as u32, mtime: mtime as u64, data: &b[data_start..data_end] });
        let next = (data_end + pad4(data_end)).min(b.len());
        b = &b[next..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_rpm2cpio_writes() {
        let mut a = Vec::new();
        let mut add = |name: &str, mode: u32, data: &[u8]| {
            let namesize = name.len() + 1;
            a.extend_from_slice(
                format!(
                    "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
                    1,
                    mode,
                    0,
                    0,
                    1,
                    42,
                    data.len(),
                    0,
                    0,
                    0,
                    0,
                    namesize,
                    0
                )
                .as_bytes(),
            );
            a.extend_from_slice(name.as_bytes());
            a.push(0);
            while a.len() % 4 != 0 {
                a.push(0);
            }
            a.extend_from_slice(data);
            while a.len() % 4 != 0 {
                a.push(0);
            }
        };
        add("./etc/x.conf", 0o100644, b"hello");
        add("TRAILER!!!", 0, b"");
        let m = read(&a).unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(
            (m[0].name.as_str(), m[0].mode, m[0].mtime, m[0].data),
            ("./etc/x.conf", 0o100644, 42, &b"hello"[..])
        );
        for cut in 0..a.len() - 1 {
            assert!(read(&a[..cut]).is_err() || cut >= a.len());
        }
    }

    #[test]
    fn cpio_reads_it_back() {
        // The oracle is GNU cpio itself.
        let mut w = Writer::new(Vec::new());
        let dir = Header { name: b".", mode: 0o040755, uid: 0, gid: 0, nlink: 2, mtime: 0, rdev: 0 };
        w.append(&dir, b"").unwrap();
        let f = Header { name: b"hello", mode: 0o100644, uid: 0, gid: 0, nlink: 1, mtime: 1, rdev: 0 };
        w.append(&f, b"hi there\n").unwrap();
        let l = Header { name: b"link", mode: 0o120777, uid: 0, gid: 0, nlink: 1, mtime: 1, rdev: 0 };
        w.append(&l, b"hello").unwrap();
        let data = w.finish().unwrap();
        let mut child = std::process::Command::new("cpio")
            .args(["-t", "-v", "--quiet"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("cpio (apt-get install cpio)");
        child.stdin.take().unwrap().write_all(&data).unwrap();
        let out = String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap();
        assert!(out.contains(" hello\n"), "{out}");
        assert!(out.contains("link -> hello"), "{out}");
        assert!(out.lines().any(|l| l.contains(" 9 ") && l.ends_with("hello")), "{out}");
    }
}
