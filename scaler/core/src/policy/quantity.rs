//! Kubernetes resource quantities: `500m`, `2`, `1.5`, `1Gi`, `512Mi`, `1G`.

/// Parses a quantity into its plain value (cores, bytes, …).
pub fn parse_quantity(text: &str) -> Result<f64, String> {
    let s = text.trim();
    let expected = || {
        format!(
            "expected a Kubernetes quantity such as `500m`, `2`, `1Gi` or `512Mi`, found `{text}`"
        )
    };
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
        return Err(expected());
    }
    let value: f64 = number.parse().map_err(|_| expected())?;
    let factor = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0f64.powi(4),
        "Pi" => 1024.0f64.powi(5),
        _ => return Err(expected()),
    };
    Ok(value * factor)
}

/// CPU in millicores; finer than 1m is refused, as Kubernetes does.
pub fn parse_cpu_millis(text: &str) -> Result<u64, String> {
    let cores = parse_quantity(text)?;
    let millis = cores * 1000.0;
    if (millis - millis.round()).abs() > 1e-6 {
        return Err(format!("CPU `{text}` is finer than 1m (one millicore)"));
    }
    if !(1.0..=1e9).contains(&millis.round()) {
        return Err(format!(
            "CPU `{text}` is out of range: expected at least 1m"
        ));
    }
    Ok(millis.round() as u64)
}

/// Memory in bytes; fractions of a byte round up, as Kubernetes does.
pub fn parse_memory_bytes(text: &str) -> Result<u64, String> {
    let bytes = parse_quantity(text)?.ceil();
    if !(1.0..=9.0e18).contains(&bytes) {
        return Err(format!(
            "memory `{text}` is out of range: expected at least 1 byte"
        ));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_forms() {
        assert_eq!(parse_cpu_millis("500m"), Ok(500));
        assert_eq!(parse_cpu_millis("2"), Ok(2_000));
        assert_eq!(parse_cpu_millis("1.5"), Ok(1_500));
        assert_eq!(parse_cpu_millis("0.1"), Ok(100));
        assert!(parse_cpu_millis("0.5m").is_err());
        assert!(parse_cpu_millis("0").is_err());
        assert!(parse_cpu_millis("2cores").is_err());
    }

    #[test]
    fn memory_forms() {
        assert_eq!(parse_memory_bytes("1Gi"), Ok(1 << 30));
        assert_eq!(parse_memory_bytes("512Mi"), Ok(512 << 20));
        assert_eq!(parse_memory_bytes("1G"), Ok(1_000_000_000));
        assert_eq!(parse_memory_bytes("128974848"), Ok(128_974_848));
        assert!(parse_memory_bytes("1GB").is_err());
        assert!(parse_memory_bytes("-1Gi").is_err());
        assert!(parse_memory_bytes(".5Gi").is_err());
    }
}
