//! The `\ooo` escapes that mountinfo and mtree use for unusual bytes in paths.

/// Replace each `\` followed by three octal digits by the byte they spell (a value over
/// 0o377 keeps its low 8 bits); everything else is copied as is.
pub fn unescape_octal(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let digits = s.get(i + 1..i + 4).filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match digits {
            Some(d) if s[i] == b'\\' => {
                let v = d.iter().fold(0u32, |v, c| v * 8 + u32::from(c - b'0'));
                out.push(v as u8);
                i += 4;
            }
            _ => {
                out.push(s[i]);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octal_escapes() {
        assert_eq!(unescape_octal(br"/mnt/a\040b"), b"/mnt/a b");
        assert_eq!(unescape_octal(br"/x\134y\"), b"/x\\y\\");
        assert_eq!(unescape_octal(br"\777\08"), b"\xff\\08");
        assert_eq!(unescape_octal(b"/plain"), b"/plain");
    }
}
