//! rpm boolean ("rich") dependencies: parsed, and followed against what is installed.

/// An rpm boolean ("rich") dependency, e.g. `(a >= 1 or (b if c else d))`.
#[derive(Debug, PartialEq)]
pub enum Rich {
    Atom(String),
    And(Box<Rich>, Box<Rich>),
    Or(Box<Rich>, Box<Rich>),
    /// `with` is treated as `and` (the same package must provide both; close enough for a
    /// closure), `without` as its left side.
    Without(Box<Rich>, Box<Rich>),
    If(Box<Rich>, Box<Rich>, Option<Box<Rich>>),
    Unless(Box<Rich>, Box<Rich>, Option<Box<Rich>>),
}

impl Rich {
    pub fn parse(s: &str) -> Result<Rich, String> {
        let spaced = s.replace('(', " ( ").replace(')', " ) ");
        let tokens: Vec<&str> = spaced.split_whitespace().collect();
        let mut pos = 0;
        let r = Rich::operand(&tokens, &mut pos, 0)?;
        if pos != tokens.len() {
            return Err(format!("unexpected {:?}", tokens[pos]));
        }
        Ok(r)
    }

    fn operand(t: &[&str], pos: &mut usize, depth: u32) -> Result<Rich, String> {
        if depth > 64 {
            return Err("nested too deeply".into());
        }
        let tok = *t.get(*pos).ok_or("unexpected end")?;
        *pos += 1;
        if tok != "(" {
            if tok == ")" || is_keyword(tok) {
                return Err(format!("unexpected {tok:?}"));
            }
            // `name [op version]`: versions are not checked (the installed set is consistent).
            if matches!(t.get(*pos), Some(&("<" | ">" | "=" | "<=" | ">=" | "==" | "!="))) {
                *pos += 2;
                if *pos > t.len() {
                    return Err("missing version".into());
                }
            }
            return Ok(Rich::Atom(tok.to_string()));
        }
        let mut left = Rich::operand(t, pos, depth + 1)?;
        loop {
            let op = *t.get(*pos).ok_or("missing ')'")?;
            *pos += 1;
            if op == ")" {
                return Ok(left);
            }
            let right = Box::new(Rich::operand(t, pos, depth + 1)?);
            let l = Box::new(left);
            left = match op {
                "and" | "with" => Rich::And(l, right),
                "or" => Rich::Or(l, right),
                "without" => Rich::Without(l, right),
                "if" | "unless" => {
                    let other = if t.get(*pos) == Some(&"else") {
                        *pos += 1;
                        Some(Box::new(Rich::operand(t, pos, depth + 1)?))
                    } else {
                        None
                    };
                    if op == "if" {
                        Rich::If(l, right, other)
                    } else {
                        Rich::Unless(l, right, other)
                    }
                }
                other => return Err(format!("unknown operator {other:?}")),
            };
        }
    }
}

fn is_keyword(t: &str) -> bool {
    matches!(t, "and" | "or" | "if" | "unless" | "else" | "with" | "without")
}

impl Rich {
    /// Whether some installed package satisfies it (`installed` answers for one capability;
    /// versions are ignored: the installed set is consistent).
    pub fn satisfied(&self, installed: &impl Fn(&str) -> bool) -> bool {
        match self {
            Rich::Atom(a) => installed(a),
            Rich::And(a, b) => a.satisfied(installed) && b.satisfied(installed),
            Rich::Or(a, b) => a.satisfied(installed) || b.satisfied(installed),
            Rich::Without(a, _) => a.satisfied(installed),
            Rich::If(a, c, e) => match (c.satisfied(installed), e) {
                (true, _) => a.satisfied(installed),
                (false, Some(e)) => e.satisfied(installed),
                (false, None) => true,
            },
            Rich::Unless(a, c, e) => match (c.satisfied(installed), e) {
                (false, _) => a.satisfied(installed),
                (true, Some(e)) => e.satisfied(installed),
                (true, None) => true,
            },
        }
    }

    /// The capabilities it asks for, given what is installed: both sides of `and`/`with`, the
    /// first satisfiable side of `or`, a conditional's branch.
    pub fn wants(&self, installed: &impl Fn(&str) -> bool, out: &mut Vec<String>) {
        let branch = |taken: bool, a: &Rich, e: &Option<Box<Rich>>, out: &mut Vec<String>| match (taken, e) {
            (true, _) => a.wants(installed, out),
            (false, Some(e)) => e.wants(installed, out),
            (false, None) => {}
        };
        match self {
            Rich::Atom(a) => out.push(a.clone()),
            Rich::And(a, b) => {
                a.wants(installed, out);
                b.wants(installed, out);
            }
            Rich::Or(a, b) if a.satisfied(installed) => a.wants(installed, out),
            Rich::Or(_, b) if b.satisfied(installed) => b.wants(installed, out),
            Rich::Or(..) => {}
            Rich::Without(a, _) => a.wants(installed, out),
            Rich::If(a, c, e) => branch(c.satisfied(installed), a, e, out),
            Rich::Unless(a, c, e) => branch(!c.satisfied(installed), a, e, out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rich_dependencies_parse() {
        use Rich::*;
        let a = |s: &str| Box::new(Atom(s.into()));
        assert_eq!(Rich::parse("(a >= 1.0 or b)").unwrap(), Or(a("a"), a("b")));
        assert_eq!(Rich::parse("(a or b or c)").unwrap(), Or(Box::new(Or(a("a"), a("b"))), a("c")));
        assert_eq!(
            Rich::parse("(a if (b and c) else d)").unwrap(),
            If(a("a"), Box::new(And(a("b"), a("c"))), Some(a("d")))
        );
        assert_eq!(Rich::parse("(a unless b)").unwrap(), Unless(a("a"), a("b"), None));
        for bad in ["(a or", "(a xor b)", "(or b)", "(a))", "()", "(a >=)", &"(".repeat(100)] {
            assert!(Rich::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn wanted_capabilities_follow_what_is_installed() {
        let installed = |c: &str| matches!(c, "b" | "c");
        let mut out = Vec::new();
        Rich::parse("((a or b) and (x if c else y) and (p unless c))").unwrap().wants(&installed, &mut out);
        assert_eq!(out, vec!["b", "x"]);
        assert!(!Rich::parse("(a and b)").unwrap().satisfied(&installed));
        assert!(Rich::parse("(a if z)").unwrap().satisfied(&installed));
    }
}
