//! Byte classes and number parsing shared by the parser and the label re-scan.

const NAME_START: u8 = 1;
const NAME_CONT: u8 = 2;
const LABEL_START: u8 = 4;
const LABEL_CONT: u8 = 8;

/// One table lookup per byte instead of a chain of range checks in the hottest loops.
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        let alpha = b.is_ascii_alphabetic() || b == b'_';
        let digit = b.is_ascii_digit();
        let mut v = 0;
        if alpha || b == b':' {
            v |= NAME_START | NAME_CONT;
        }
        if digit {
            v |= NAME_CONT | LABEL_CONT;
        }
        if alpha {
            v |= LABEL_START | LABEL_CONT;
        }
        t[c] = v;
        c += 1;
    }
    t
};

#[inline]
pub(crate) fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

#[inline]
pub(crate) fn is_name_start(b: u8) -> bool {
    CLASS[b as usize] & NAME_START != 0
}

#[inline]
pub(crate) fn is_name_cont(b: u8) -> bool {
    CLASS[b as usize] & NAME_CONT != 0
}

#[inline]
pub(crate) fn is_label_start(b: u8) -> bool {
    CLASS[b as usize] & LABEL_START != 0
}

#[inline]
pub(crate) fn is_label_cont(b: u8) -> bool {
    CLASS[b as usize] & LABEL_CONT != 0
}

#[inline]
pub(crate) fn skip_blanks(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && is_blank(b[i]) {
        i += 1;
    }
    i
}

/// End of the token starting at `i`: the next blank or the end of the line.
#[inline]
pub(crate) fn token_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && !is_blank(b[i]) {
        i += 1;
    }
    i
}

/// `&s[a..b]` that can never panic. The parser only cuts at ASCII delimiters, which are
/// always char boundaries, so the empty fallback is unreachable on its own output.
#[inline]
pub(crate) fn sub(s: &str, a: usize, b: usize) -> &str {
    s.get(a..b).unwrap_or_default()
}

/// Index of the first `x` or `y` at or after `i`.
///
/// Label values and names are scanned a word at a time (SWAR): eight bytes are tested
/// for either byte with a handful of integer operations instead of eight compare-and-
/// branch steps. `memchr` does the same with SIMD, but its setup costs more than it saves
/// on values a few bytes long, which is what label values mostly are.
#[inline]
pub(crate) fn find2(b: &[u8], mut i: usize, x: u8, y: u8) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let (xs, ys) = (LO * u64::from(x), LO * u64::from(y));
    while let Some(chunk) = b.get(i..i + 8) {
        let Ok(word) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let w = u64::from_le_bytes(word);
        let (a, c) = (w ^ xs, w ^ ys);
        // A zero byte in `a` or `c` marks a match. The expression can also flag bytes
        // *after* a real match (borrows run upwards), never before one, so the lowest
        // flagged byte is the first match.
        let m = ((a.wrapping_sub(LO) & !a) | (c.wrapping_sub(LO) & !c)) & HI;
        if m != 0 {
            return Some(i + (m.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    while let Some(&c) = b.get(i) {
        if c == x || c == y {
            return Some(i);
        }
        i += 1;
    }
    None
}

const POW10: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

/// Parses a sample value as Go's `strconv.ParseFloat` (which Prometheus uses) would, for
/// the forms exporters write: decimals, exponents, `NaN`, `Inf`, `+Inf`, `-Inf`.
///
/// Counters are mostly short integers or short decimals; those take a fast path that is
/// exact: with at most 15 significant digits the mantissa and the power of ten are both
/// exact doubles, so one IEEE division rounds correctly (Clinger's fast path). Everything
/// else goes to the standard library's correctly rounded parser.
#[inline]
pub(crate) fn parse_value(tok: &str) -> Option<f64> {
    fast_decimal(tok.as_bytes()).or_else(|| slow_float(tok))
}

#[inline]
fn fast_decimal(b: &[u8]) -> Option<f64> {
    let (neg, mut i) = match b.first()? {
        b'-' => (true, 1),
        b'+' => (false, 1),
        _ => (false, 0),
    };
    let mut mantissa: u64 = 0;
    let mut digits = 0usize;
    let mut frac = 0usize;
    while i < b.len() && b[i].is_ascii_digit() {
        mantissa = mantissa * 10 + u64::from(b[i] - b'0');
        digits += 1;
        i += 1;
        if digits > 15 {
            return None;
        }
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        while i < b.len() && b[i].is_ascii_digit() {
            mantissa = mantissa * 10 + u64::from(b[i] - b'0');
            digits += 1;
            frac += 1;
            i += 1;
            if digits > 15 {
                return None;
            }
        }
    }
    if i != b.len() || digits == 0 {
        return None;
    }
    let mut v = mantissa as f64;
    if frac > 0 {
        v /= POW10[frac];
    }
    Some(if neg { -v } else { v })
}

#[cold]
fn slow_float(tok: &str) -> Option<f64> {
    // Rust's parser also takes "inf", "infinity" and "nan" in any case, as Go's does. It
    // additionally takes a sign on NaN; a signed NaN is still NaN, so that is harmless.
    tok.parse::<f64>().ok()
}

/// Timestamp handling.
///
/// The text format 0.0.4 writes integer milliseconds. OpenMetrics writes seconds, possibly
/// fractional. An integer is read as milliseconds unless the caller said the input is
/// OpenMetrics; a number with a fraction or exponent can only be OpenMetrics seconds and
/// is converted to milliseconds (rounded to the nearest) in either mode.
pub(crate) fn parse_timestamp(tok: &str, integer_is_seconds: bool) -> Option<i64> {
    let is_float = tok.bytes().any(|c| matches!(c, b'.' | b'e' | b'E'));
    if !is_float {
        let n = tok.parse::<i64>().ok()?;
        return if integer_is_seconds {
            n.checked_mul(1000)
        } else {
            Some(n)
        };
    }
    let secs = tok.parse::<f64>().ok()?;
    let ms = (secs * 1000.0).round();
    // i64::MAX is not exactly representable; the bound is the largest double under it.
    // NaN and infinities fall outside the range too.
    const LIMIT: f64 = 9.223_372_036_854_775e18;
    if (-LIMIT..=LIMIT).contains(&ms) {
        Some(ms as i64)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn find2_agrees_with_a_plain_search(
            b in proptest::collection::vec(proptest::sample::select(b"ab\"\\=\x80\xff\x00 ".to_vec()), 0..40),
            start in 0usize..44,
        ) {
            let want = b.iter().enumerate().skip(start).find(|&(_, &c)| c == b'"' || c == b'\\').map(|(k, _)| k);
            proptest::prop_assert_eq!(find2(&b, start, b'"', b'\\'), want);
            let want_eq = b.iter().enumerate().skip(start).find(|&(_, &c)| c == b'=').map(|(k, _)| k);
            proptest::prop_assert_eq!(find2(&b, start, b'=', b'='), want_eq);
        }
    }

    #[test]
    fn fast_path_agrees_with_std() {
        for s in [
            "0",
            "-0",
            "+7",
            "12345",
            "1.5",
            "-0.001",
            "123456789012345",
            "0.1",
            "3.14159",
            "999999999999999",
            "1.",
            ".5",
            "99999.99999",
        ] {
            let want: f64 = s.parse().unwrap();
            let got = parse_value(s).unwrap();
            assert_eq!(got.to_bits(), want.to_bits(), "{s}");
        }
    }

    #[test]
    fn special_and_long_values() {
        assert!(parse_value("NaN").unwrap().is_nan());
        assert_eq!(parse_value("+Inf"), Some(f64::INFINITY));
        assert_eq!(parse_value("Inf"), Some(f64::INFINITY));
        assert_eq!(parse_value("-Inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_value("1e3"), Some(1000.0));
        assert_eq!(parse_value("-1.5E-3"), Some(-0.0015));
        assert_eq!(
            parse_value("12345678901234567890"),
            Some(1.2345678901234567e19)
        );
        // Too many digits for the fast path: the slow path must round the same way.
        let long = "0.1234567890123456789";
        assert_eq!(parse_value(long), long.parse().ok());
        for bad in [
            "", "-", "+", ".", "1.2.3", "abc", "1,5", "0x10", "1e", "--1",
        ] {
            assert_eq!(parse_value(bad), None, "{bad}");
        }
    }

    #[test]
    fn timestamps() {
        assert_eq!(
            parse_timestamp("1700000000000", false),
            Some(1_700_000_000_000)
        );
        assert_eq!(parse_timestamp("-5", false), Some(-5));
        assert_eq!(parse_timestamp("1700000000", true), Some(1_700_000_000_000));
        assert_eq!(
            parse_timestamp("1700000000.123", false),
            Some(1_700_000_000_123)
        );
        assert_eq!(parse_timestamp("1.5e3", true), Some(1_500_000));
        assert_eq!(parse_timestamp("9223372036854775807", true), None);
        assert_eq!(parse_timestamp("1e300", false), None);
        assert_eq!(parse_timestamp("NaN", false), None);
        assert_eq!(parse_timestamp("12a", false), None);
    }
}
