//! RFC 9218 extensible priorities: the `priority` request header and the PRIORITY_UPDATE
//! frame's field value, both a Structured Fields dictionary (RFC 8941 3.2) of which only
//! `u` (urgency, integer 0..=7, default 3) and `i` (incremental, boolean, default false)
//! mean anything. Per RFC 9218 4 and RFC 8941 4.2: unknown keys and parameters are ignored,
//! a known key with a value of the wrong type or range is ignored (its default stays), and
//! a value that is not a valid dictionary at all is ignored as a whole. As in any
//! dictionary, a repeated key keeps its last value.

/// A stream's priority. Lower urgency is sent first; incremental streams of the same
/// urgency share the connection round-robin, others go one after another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Priority {
    pub urgency: u8,
    pub incremental: bool,
}

impl Default for Priority {
    fn default() -> Priority {
        Priority {
            urgency: 3,
            incremental: false,
        }
    }
}

impl Priority {
    /// Parses one field value (the `priority` header, or a PRIORITY_UPDATE payload).
    pub fn parse(value: &[u8]) -> Priority {
        Priority::parse_lines(&[value])
    }

    /// Parses a field that arrived as several lines: RFC 8941 4.2 joins them with commas.
    pub fn parse_lines(lines: &[&[u8]]) -> Priority {
        let mut p = Parser {
            lines,
            line: 0,
            pos: 0,
        };
        let mut u = None;
        let mut i = None;
        if p.dictionary(&mut u, &mut i).is_none() {
            return Priority::default();
        }
        let mut out = Priority::default();
        if let Some(Item::Int(n)) = u {
            if (0..=7).contains(&n) {
                out.urgency = n as u8;
            }
        }
        if let Some(Item::Bool(b)) = i {
            out.incremental = b;
        }
        out
    }
}

/// The bare-item types that matter here; everything else is `Other`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Item {
    Int(i64),
    Bool(bool),
    Other,
}

/// A cursor over field lines joined by commas, without copying them.
struct Parser<'a> {
    lines: &'a [&'a [u8]],
    line: usize,
    pos: usize,
}

impl Parser<'_> {
    /// The next byte; the join between two lines reads as ','.
    fn peek(&self) -> Option<u8> {
        let l = self.lines.get(self.line)?;
        match l.get(self.pos) {
            Some(&b) => Some(b),
            None if self.line + 1 < self.lines.len() => Some(b','),
            None => None,
        }
    }

    fn bump(&mut self) {
        let len = self.lines.get(self.line).map_or(0, |l| l.len());
        if self.pos < len {
            self.pos += 1;
        } else if self.line + 1 < self.lines.len() {
            self.line += 1;
            self.pos = 0;
        }
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.bump();
            return true;
        }
        false
    }

    fn skip_sp(&mut self) {
        while self.peek() == Some(b' ') {
            self.bump();
        }
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.bump();
        }
    }

    /// RFC 8941 4.2.2, keeping the last value of `u` and `i`.
    fn dictionary(&mut self, u: &mut Option<Item>, i: &mut Option<Item>) -> Option<()> {
        self.skip_ows();
        if self.peek().is_none() {
            return Some(());
        }
        loop {
            let (is_u, is_i) = self.key()?;
            let item = if self.eat(b'=') {
                self.item_or_inner_list()?
            } else {
                self.parameters()?;
                Item::Bool(true)
            };
            if is_u {
                *u = Some(item);
            } else if is_i {
                *i = Some(item);
            }
            self.skip_ows();
            if self.peek().is_none() {
                return Some(());
            }
            if !self.eat(b',') {
                return None;
            }
            self.skip_ows();
            // A trailing comma is an error.
            self.peek()?;
        }
    }

    /// A key (RFC 8941 4.2.3.3); says whether it is `u` or `i`.
    fn key(&mut self) -> Option<(bool, bool)> {
        let first = self.peek()?;
        if !(first.is_ascii_lowercase() || first == b'*') {
            return None;
        }
        self.bump();
        let mut len = 1;
        while let Some(b) = self.peek() {
            if !(b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.*".contains(&b)) {
                break;
            }
            self.bump();
            len += 1;
        }
        Some((len == 1 && first == b'u', len == 1 && first == b'i'))
    }

    fn item_or_inner_list(&mut self) -> Option<Item> {
        if self.eat(b'(') {
            loop {
                self.skip_sp();
                if self.eat(b')') {
                    break;
                }
                self.bare_item()?;
                self.parameters()?;
                if !matches!(self.peek(), Some(b' ' | b')')) {
                    return None;
                }
            }
            self.parameters()?;
            return Some(Item::Other);
        }
        let item = self.bare_item()?;
        self.parameters()?;
        Some(item)
    }

    fn parameters(&mut self) -> Option<()> {
        while self.eat(b';') {
            self.skip_sp();
            self.key()?;
            if self.eat(b'=') {
                self.bare_item()?;
            }
        }
        Some(())
    }

    fn bare_item(&mut self) -> Option<Item> {
        match self.peek()? {
            b'-' | b'0'..=b'9' => self.number(),
            b'"' => {
                self.bump();
                loop {
                    match self.peek()? {
                        b'\\' => {
                            self.bump();
                            if !matches!(self.peek()?, b'"' | b'\\') {
                                return None;
                            }
                            self.bump();
                        }
                        b'"' => {
                            self.bump();
                            return Some(Item::Other);
                        }
                        0x20..=0x7e => self.bump(),
                        _ => return None,
                    }
                }
            }
            b':' => {
                self.bump();
                while let Some(b) = self.peek() {
                    if b == b':' {
                        self.bump();
                        return Some(Item::Other);
                    }
                    if !(b.is_ascii_alphanumeric() || b"+/=".contains(&b)) {
                        return None;
                    }
                    self.bump();
                }
                None
            }
            b'?' => {
                self.bump();
                let v = match self.peek()? {
                    b'0' => false,
                    b'1' => true,
                    _ => return None,
                };
                self.bump();
                Some(Item::Bool(v))
            }
            b if b.is_ascii_alphabetic() || b == b'*' => {
                self.bump();
                while let Some(b) = self.peek() {
                    if !(crate::http::token::is_tchar(b) || b == b':' || b == b'/') {
                        break;
                    }
                    self.bump();
                }
                Some(Item::Other)
            }
            _ => None,
        }
    }

    /// Integer (at most 15 digits) or decimal (at most 12 + 3 digits), RFC 8941 4.2.4.
    fn number(&mut self) -> Option<Item> {
        let neg = self.eat(b'-');
        let mut v: i64 = 0;
        let mut digits = 0;
        while let Some(b @ b'0'..=b'9') = self.peek() {
            self.bump();
            digits += 1;
            if digits > 15 {
                return None;
            }
            v = v * 10 + i64::from(b - b'0');
        }
        if digits == 0 {
            return None;
        }
        if self.eat(b'.') {
            if digits > 12 {
                return None;
            }
            let mut frac = 0;
            while let Some(b'0'..=b'9') = self.peek() {
                self.bump();
                frac += 1;
            }
            if !(1..=3).contains(&frac) {
                return None;
            }
            return Some(Item::Other);
        }
        Some(Item::Int(if neg { -v } else { v }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> (u8, bool) {
        let v = Priority::parse(s.as_bytes());
        (v.urgency, v.incremental)
    }

    #[test]
    fn defaults_and_the_two_keys() {
        assert_eq!(p(""), (3, false));
        assert_eq!(p("u=0"), (0, false));
        assert_eq!(p("u=7, i"), (7, true));
        assert_eq!(p("i=?1"), (3, true));
        assert_eq!(p("i=?0, u=5"), (5, false));
        assert_eq!(p("  u=2,i  "), (2, true));
        assert_eq!(p("i;foo=1"), (3, true));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_ignored() {
        assert_eq!(
            p("u=1, x=\"s\", y=(a b);q=1, z=:AAA=:, w=1.5, v=tok/en"),
            (1, false)
        );
        assert_eq!(p("u=8"), (3, false));
        assert_eq!(p("u=-1, i"), (3, true));
        assert_eq!(p("u=1.0"), (3, false));
        assert_eq!(p("u=\"1\""), (3, false));
        assert_eq!(p("i=1"), (3, false));
        assert_eq!(p("u=?1"), (3, false));
        assert_eq!(p("u=1;i=?1"), (1, false), "a parameter, not the key");
        // The last value of a repeated key counts, even when it is invalid.
        assert_eq!(p("u=1, u=4"), (4, false));
        assert_eq!(p("u=1, u=9"), (3, false));
    }

    #[test]
    fn an_invalid_dictionary_is_ignored_whole() {
        for bad in [
            "u=1,", "u=1 i", "U=1", "u=", "u=1, =2", "u=\"open", "u=1;", "u=(1", "1",
        ] {
            assert_eq!(p(bad), (3, false), "{bad:?}");
        }
        assert_eq!(p("u=1234567890123456"), (3, false));
    }

    #[test]
    fn several_lines_join_with_commas() {
        let v = Priority::parse_lines(&[b"u=1", b"i"]);
        assert_eq!((v.urgency, v.incremental), (1, true));
        let v = Priority::parse_lines(&[b"u=1", b""]);
        assert_eq!(
            v,
            Priority::default(),
            "an empty line leaves a trailing comma"
        );
    }
}
