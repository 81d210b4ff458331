//! Writing `newc` cpio archives, the format the Linux kernel unpacks as an initramfs.

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

#[cfg(test)]
mod tests {
    use super::*;

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
