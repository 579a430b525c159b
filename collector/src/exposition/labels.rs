//! Label values and the lazy re-scan of a validated label set.

use std::borrow::Cow;
use std::fmt;

use super::lex::{find2, is_blank, sub};

/// A label value as it appears between the quotes, escapes and all.
///
/// Almost no label value in a real exposition contains a backslash, so the parser only
/// records *whether* one does; the unescaped form is built on request, and comparisons
/// unescape on the fly instead of allocating.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct LabelValue<'a> {
    raw: &'a str,
    escaped: bool,
}

impl<'a> LabelValue<'a> {
    /// Wraps a raw (still escaped) label value. `escaped` must be true if `raw` contains a
    /// backslash; a false positive only costs speed, a false negative gives wrong values.
    pub fn new(raw: &'a str, escaped: bool) -> Self {
        Self { raw, escaped }
    }

    /// The value exactly as written between the quotes, escapes not processed.
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    /// Whether the raw value contains escape sequences.
    pub fn has_escapes(&self) -> bool {
        self.escaped
    }

    /// The value with `\\`, `\"` and `\n` unescaped. Borrows unless there were escapes.
    ///
    /// A backslash before any other character is kept literally, as Prometheus does.
    pub fn to_cow(&self) -> Cow<'a, str> {
        if !self.escaped {
            return Cow::Borrowed(self.raw);
        }
        let mut out = String::with_capacity(self.raw.len());
        let mut rest = self.raw;
        while let Some(p) = memchr::memchr(b'\\', rest.as_bytes()) {
            out.push_str(sub(rest, 0, p));
            let (replacement, consumed) = unescape_at(rest.as_bytes(), p);
            out.push_str(replacement);
            rest = sub(rest, p + consumed, rest.len());
        }
        out.push_str(rest);
        Cow::Owned(out)
    }

    /// Compares the unescaped value with `s` without allocating.
    pub fn eq_str(&self, s: &str) -> bool {
        if !self.escaped {
            return self.raw == s;
        }
        let mut want = s.as_bytes();
        let mut raw = self.raw.as_bytes();
        while let Some(p) = memchr::memchr(b'\\', raw) {
            let Some(tail) = want.strip_prefix(&raw[..p]) else {
                return false;
            };
            let (replacement, consumed) = unescape_at(raw, p);
            let Some(tail) = tail.strip_prefix(replacement.as_bytes()) else {
                return false;
            };
            want = tail;
            raw = raw.get(p + consumed..).unwrap_or_default();
        }
        want == raw
    }
}

/// What the backslash at `p` stands for, and how many bytes of `raw` it takes.
fn unescape_at(raw: &[u8], p: usize) -> (&'static str, usize) {
    match raw.get(p + 1) {
        Some(b'\\') => ("\\", 2),
        Some(b'"') => ("\"", 2),
        Some(b'n') => ("\n", 2),
        // Unknown escapes stay as written: the backslash here, the next char as text.
        _ => ("\\", 1),
    }
}

impl PartialEq<str> for LabelValue<'_> {
    fn eq(&self, other: &str) -> bool {
        self.eq_str(other)
    }
}

impl PartialEq<&str> for LabelValue<'_> {
    fn eq(&self, other: &&str) -> bool {
        self.eq_str(other)
    }
}

impl fmt::Debug for LabelValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.to_cow(), f)
    }
}

impl fmt::Display for LabelValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_cow())
    }
}

/// Iterator over the labels of a sample: a re-scan of the label set the parser already
/// validated, so it only has to find boundaries, not check them.
#[derive(Clone, Debug)]
pub struct Labels<'a> {
    raw: &'a str,
    pos: usize,
}

impl<'a> Labels<'a> {
    pub(crate) fn new(raw: &'a str) -> Self {
        Self { raw, pos: 0 }
    }
}

impl<'a> Iterator for Labels<'a> {
    type Item = (&'a str, LabelValue<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        let b = self.raw.as_bytes();
        let mut i = self.pos;
        while i < b.len() && (is_blank(b[i]) || b[i] == b',') {
            i += 1;
        }
        if i >= b.len() {
            self.pos = b.len();
            return None;
        }
        // The set was validated: the name runs to the first `=` (less any blanks before
        // it), the value from the next `"` to the first unescaped `"`.
        let name_start = i;
        let Some(eq) = find2(b, i, b'=', b'=') else {
            self.pos = b.len();
            return None;
        };
        let mut name_end = eq;
        while name_end > name_start && is_blank(b[name_end - 1]) {
            name_end -= 1;
        }
        let name = sub(self.raw, name_start, name_end);
        i = eq + 1;
        while i < b.len() && is_blank(b[i]) {
            i += 1;
        }
        // Unreachable for a set the parser validated; ending the iteration keeps the
        // re-scan panic-free whatever text it is given.
        if b.get(i) != Some(&b'"') {
            self.pos = b.len();
            return None;
        }
        i += 1;
        let value_start = i;
        let mut escaped = false;
        loop {
            match find2(b, i, b'"', b'\\') {
                Some(p) if b.get(p) == Some(&b'"') => {
                    i = p;
                    break;
                }
                Some(p) => {
                    escaped = true;
                    i = p + 2;
                }
                None => {
                    self.pos = b.len();
                    return None;
                }
            }
        }
        self.pos = i + 1;
        Some((
            name,
            LabelValue::new(sub(self.raw, value_start, i), escaped),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_known_sequences_and_keeps_unknown_ones() {
        let v = LabelValue::new(r#"a\\b\"c\nd\xe\"#, true);
        assert_eq!(v.to_cow(), "a\\b\"c\nd\\xe\\");
        assert!(v.eq_str("a\\b\"c\nd\\xe\\"));
        assert!(!v.eq_str("a\\b\"c\nd\\xe"));
        assert!(!v.eq_str(r#"a\\b\"c\nd\xe\"#));
    }

    #[test]
    fn unescaped_values_borrow() {
        let v = LabelValue::new("checkout", false);
        assert!(matches!(v.to_cow(), Cow::Borrowed("checkout")));
        assert!(v.eq_str("checkout"));
        assert!(!v.eq_str("checkou"));
        assert!(v == "checkout");
    }

    #[test]
    fn rescan_handles_specials_inside_values() {
        let got: Vec<_> = Labels::new(r#" a = "x,}{=\"" , b="" ,"#)
            .map(|(n, v)| (n, v.to_cow().into_owned()))
            .collect();
        assert_eq!(got, vec![("a", "x,}{=\"".to_owned()), ("b", String::new())]);
    }

    #[test]
    fn rescan_of_unvalidated_text_stops_without_panicking() {
        for raw in ["a", "a=", "a=\"", "a=\"\\", "=\"x\"", "a=\"x\\\""] {
            let _ = Labels::new(raw).count();
        }
    }
}
