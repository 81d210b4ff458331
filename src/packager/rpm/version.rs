//! rpm's version order.

use std::cmp::Ordering;

/// rpm's version comparison (`rpmvercmp`): alternating runs of digits (numeric) and letters
/// (byte order), separators ignored, a digit run newer than a letter run, `~` older than
/// anything (even the end), `^` newer than the end but older than anything else.
pub fn vercmp(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let (mut x, mut y) = (a.as_bytes(), b.as_bytes());
    let skip = |s: &mut &[u8]| {
        while let Some(&c) = s.first() {
            if c.is_ascii_alphanumeric() || c == b'~' || c == b'^' {
                break;
            }
            *s = &s[1..];
        }
    };
    loop {
        skip(&mut x);
        skip(&mut y);
        let (cx, cy) = (x.first().copied(), y.first().copied());
        if cx == Some(b'~') || cy == Some(b'~') {
            if cx != Some(b'~') {
                return Ordering::Greater;
            }
            if cy != Some(b'~') {
                return Ordering::Less;
            }
            x = &x[1..];
            y = &y[1..];
            continue;
        }
        if cx == Some(b'^') || cy == Some(b'^') {
            if cx.is_none() {
                return Ordering::Less;
            }
            if cy.is_none() {
                return Ordering::Greater;
            }
            if cx != Some(b'^') {
                return Ordering::Greater;
            }
            if cy != Some(b'^') {
                return Ordering::Less;
            }
            x = &x[1..];
            y = &y[1..];
            continue;
        }
        let (Some(c), Some(_)) = (cx, cy) else { break };
        let numeric = c.is_ascii_digit();
        let run = |s: &[u8]| {
            s.iter()
                .position(|&c| if numeric { !c.is_ascii_digit() } else { !c.is_ascii_alphabetic() })
                .unwrap_or(s.len())
        };
        let (nx, ny) = (run(x), run(y));
        let (sx, sy) = (&x[..nx], &y[..ny]);
        if ny == 0 {
            // Different kinds of run: numeric is newer.
            return if numeric { Ordering::Greater } else { Ordering::Less };
        }
        let ord = if numeric {
            let tx = trim_zeros(sx);
            let ty = trim_zeros(sy);
            tx.len().cmp(&ty.len()).then_with(|| tx.cmp(ty))
        } else {
            sx.cmp(sy)
        };
        if ord != Ordering::Equal {
            return ord;
        }
        x = &x[nx..];
        y = &y[ny..];
    }
    match (x.is_empty(), y.is_empty()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        _ => Ordering::Greater,
    }
}

fn trim_zeros(s: &[u8]) -> &[u8] {
    let n = s.iter().position(|&c| c != b'0').unwrap_or(s.len());
    &s[n..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpm_version_order() {
        use Ordering::*;
        for (a, b, o) in [
            ("1.0", "1.0", Equal),
            ("1.0", "2.0", Less),
            ("2.0.1", "2.0", Greater),
            ("1.10", "1.9", Greater),
            ("1.0a", "1.0", Greater),
            ("1.0", "1.0a", Less),
            ("a", "1", Less),
            ("1", "a", Greater),
            ("1.0~rc1", "1.0", Less),
            ("1.0~rc1", "1.0~rc2", Less),
            ("1.0^git1", "1.0", Greater),
            ("1.0^git1", "1.0.1", Less),
            ("010", "10", Equal),
            ("1_0", "1.0", Equal),
            ("fc38", "fc39", Less),
        ] {
            assert_eq!(vercmp(a, b), o, "{a} vs {b}");
        }
    }
}
