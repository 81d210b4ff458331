//! The two bits of Debian syntax dpkg's database needs: deb822 paragraphs and `Depends`.

/// A deb822 paragraph: field name → value (continuation lines joined with `\n`).
pub struct Paragraph<'a> {
    fields: Vec<(&'a str, String)>,
}

impl<'a> Paragraph<'a> {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Split a deb822 file (dpkg's `status`) into paragraphs.
pub fn parse_paragraphs(text: &str) -> Vec<Paragraph<'_>> {
    let mut out = Vec::new();
    let mut fields: Vec<(&str, String)> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !fields.is_empty() {
                out.push(Paragraph { fields: std::mem::take(&mut fields) });
            }
        } else if line.starts_with(' ') || line.starts_with('\t') {
            if let Some((_, value)) = fields.last_mut() {
                if !value.is_empty() {
                    value.push('\n');
                }
                value.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            fields.push((k, v.trim().to_string()));
        }
    }
    if !fields.is_empty() {
        out.push(Paragraph { fields });
    }
    out
}

/// `a (>= 1) | b:any, c` → `[[a, b:any], [c]]`: version constraints dropped (the installed
/// set is consistent, so versions need no checking); arch qualifiers kept, because the
/// original loses a dependency that has one ([`strip_qualifier`] before looking one up).
pub fn parse_depends(field: &str) -> Vec<Vec<String>> {
    field
        .split(',')
        .map(|group| {
            group
                .split('|')
                .filter_map(|alt| {
                    let name = alt.split(['(', '[', '<']).next()?.trim();
                    (!name.is_empty()).then(|| name.to_string())
                })
                .collect::<Vec<_>>()
        })
        .filter(|g| !g.is_empty())
        .collect()
}

/// `foo:any`, `foo:amd64` → `foo`.
pub fn strip_qualifier(name: &str) -> &str {
    name.split(':').next().unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depends_syntax() {
        assert_eq!(
            parse_depends("libc6 (>= 2.34), awk | mawk:any, perl:any (>= 5) [amd64], "),
            vec![vec!["libc6".to_string()], vec!["awk".into(), "mawk:any".into()], vec!["perl:any".into()]]
        );
        assert!(parse_depends("").is_empty());
    }

    #[test]
    fn paragraphs_with_continuations() {
        let text = "Package: a\nStatus: install ok installed\nConffiles:\n /etc/a 123\n /etc/b 456\n\n\nPackage: b\n";
        let p = parse_paragraphs(text);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].get("conffiles"), Some("/etc/a 123\n/etc/b 456"));
        assert_eq!(p[1].get("Package"), Some("b"));
    }
}
