//! Durations as tenants write them: `15s`, `5m`, `1h30m`, `2d`, or a bare `0`.

/// Parses a duration into whole seconds. Units: `d`, `h`, `m`, `s`, in that order, each at
/// most once. Sub-second units are refused because the engine works at 1 s resolution.
pub fn parse_duration_secs(text: &str) -> Result<u32, String> {
    let s = text.trim();
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(
            "expected a duration such as `15s`, `5m` or `1h30m`, found an empty string".into(),
        );
    }
    const UNITS: [(char, u64); 4] = [('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)];
    let mut total: u64 = 0;
    let mut next_unit = 0usize;
    let mut digits = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let Some(pos) = UNITS.iter().position(|(u, _)| *u == c) else {
            return Err(format!(
                "expected a duration such as `15s`, `5m` or `1h30m` (units d, h, m, s), found `{text}`"
            ));
        };
        if digits.is_empty() || pos < next_unit {
            return Err(format!(
                "expected a duration such as `15s`, `5m` or `1h30m` (a number before each unit, units in the order d, h, m, s), found `{text}`"
            ));
        }
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("duration `{text}` is too large"))?;
        total = n
            .checked_mul(UNITS[pos].1)
            .and_then(|v| v.checked_add(total))
            .ok_or_else(|| format!("duration `{text}` is too large"))?;
        digits.clear();
        next_unit = pos + 1;
    }
    if !digits.is_empty() {
        return Err(format!(
            "expected a unit after `{digits}` in duration `{text}` (for example `{digits}s`)"
        ));
    }
    u32::try_from(total).map_err(|_| format!("duration `{text}` is too large"))
}

/// Formats seconds the way tenants write them, for messages: `90` → `1m30s`.
pub fn format_secs(secs: u32) -> String {
    if secs == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut rest = secs;
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if rest >= size {
            out.push_str(&format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_usual_forms() {
        assert_eq!(parse_duration_secs("15s"), Ok(15));
        assert_eq!(parse_duration_secs("5m"), Ok(300));
        assert_eq!(parse_duration_secs("1h30m"), Ok(5_400));
        assert_eq!(parse_duration_secs("2d"), Ok(172_800));
        assert_eq!(parse_duration_secs("0s"), Ok(0));
        assert_eq!(parse_duration_secs("0"), Ok(0));
    }

    #[test]
    fn refuses_bad_forms() {
        for bad in [
            "",
            "15",
            "s",
            "1m1h",
            "5x",
            "500ms",
            "1.5s",
            "-5s",
            "99999999999d",
        ] {
            assert!(parse_duration_secs(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn formats_round_trip() {
        for s in [0, 1, 59, 60, 61, 3_600, 5_400, 90_061] {
            assert_eq!(parse_duration_secs(&format_secs(s)), Ok(s));
        }
    }
}
