//! Resource amounts (CPU, memory, pod slots) and Kubernetes quantity parsing.
//!
//! Amounts are integers: CPU in millicores, memory in bytes. Kubernetes itself rounds
//! quantities up to these units when it accounts requests against allocatable, so the
//! parser rounds up too: a request of `0.1m` CPU occupies 1m on the node, not 0.

use std::fmt;

use thiserror::Error;

/// An amount of schedulable resources.
///
/// `pods` is the pod-slot dimension (`allocatable.pods` on a node, 1 per replica), so a
/// node that is out of pod slots takes nothing even when CPU and memory are free.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Resources {
    /// CPU in millicores (`1` core = `1000`).
    pub cpu_millis: u64,
    /// Memory in bytes.
    pub memory_bytes: u64,
    /// Pod slots.
    pub pods: u64,
}

impl Resources {
    /// Nothing at all.
    pub const ZERO: Resources = Resources {
        cpu_millis: 0,
        memory_bytes: 0,
        pods: 0,
    };

    /// An amount with explicit pod slots (node allocatable or free capacity).
    pub const fn new(cpu_millis: u64, memory_bytes: u64, pods: u64) -> Self {
        Resources {
            cpu_millis,
            memory_bytes,
            pods,
        }
    }

    /// What one pod requests: CPU and memory, and always exactly one pod slot.
    pub const fn per_pod(cpu_millis: u64, memory_bytes: u64) -> Self {
        Resources::new(cpu_millis, memory_bytes, 1)
    }

    /// One pod's requests from Kubernetes quantity strings, e.g. `("500m", "1Gi")`.
    pub fn parse_pod(cpu: &str, memory: &str) -> Result<Self, QuantityError> {
        Ok(Resources::per_pod(parse_cpu(cpu)?, parse_memory(memory)?))
    }

    /// A node's `status.allocatable` from its quantity strings, e.g.
    /// `("3920m", "14Gi", "110")`.
    pub fn parse_allocatable(cpu: &str, memory: &str, pods: &str) -> Result<Self, QuantityError> {
        // A pod count is a plain quantity; memory parsing yields it in units of one.
        Ok(Resources::new(
            parse_cpu(cpu)?,
            parse_memory(memory)?,
            parse_memory(pods)?,
        ))
    }

    /// Component-wise sum, saturating: a sum of requests never wraps to a small number.
    pub fn saturating_add(&self, other: &Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.saturating_add(other.cpu_millis),
            memory_bytes: self.memory_bytes.saturating_add(other.memory_bytes),
            pods: self.pods.saturating_add(other.pods),
        }
    }

    /// Component-wise difference floored at zero: an over-committed node (static pods,
    /// requests admitted before allocatable shrank) has no room, not negative room.
    pub fn saturating_sub(&self, other: &Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.saturating_sub(other.cpu_millis),
            memory_bytes: self.memory_bytes.saturating_sub(other.memory_bytes),
            pods: self.pods.saturating_sub(other.pods),
        }
    }

    /// `self` repeated `n` times, saturating.
    pub fn times(&self, n: u64) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.saturating_mul(n),
            memory_bytes: self.memory_bytes.saturating_mul(n),
            pods: self.pods.saturating_mul(n),
        }
    }

    /// How many copies of `request` fit inside `self`. A dimension the request does not
    /// use does not limit it; a request using nothing at all fits `u64::MAX` times.
    pub fn copies_of(&self, request: &Resources) -> u64 {
        fn per_dim(free: u64, req: u64) -> u64 {
            free.checked_div(req).unwrap_or(u64::MAX)
        }
        per_dim(self.cpu_millis, request.cpu_millis)
            .min(per_dim(self.memory_bytes, request.memory_bytes))
            .min(per_dim(self.pods, request.pods))
    }
}

impl fmt::Display for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MI: u64 = 1 << 20;
        write!(f, "cpu={}m mem=", self.cpu_millis)?;
        if self.memory_bytes.is_multiple_of(MI) {
            write!(f, "{}Mi", self.memory_bytes / MI)?;
        } else {
            write!(f, "{}", self.memory_bytes)?;
        }
        write!(f, " pods={}", self.pods)
    }
}

/// Why a quantity string was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum QuantityError {
    /// The string was empty or only whitespace.
    #[error("empty quantity")]
    Empty,
    /// The numeric part is not a decimal number.
    #[error("quantity {input:?}: {detail}")]
    InvalidNumber {
        /// The text as given.
        input: String,
        /// What is wrong with it.
        detail: &'static str,
    },
    /// The suffix is not one Kubernetes knows.
    #[error(
        "quantity {input:?}: unknown suffix {suffix:?} (expected one of n u m k M G T P E Ki Mi Gi Ti Pi Ei)"
    )]
    UnknownSuffix {
        /// The text as given.
        input: String,
        /// The part after the number.
        suffix: String,
    },
    /// Requests and capacities cannot be negative.
    #[error("quantity {input:?} is negative")]
    Negative {
        /// The text as given.
        input: String,
    },
    /// The value does not fit in 64 bits of the target unit.
    #[error("quantity {input:?} is too large")]
    Overflow {
        /// The text as given.
        input: String,
    },
}

/// Parses a CPU quantity into millicores, rounding up: `"500m"` → 500, `"2"` → 2000,
/// `"1.5"` → 1500, `"1e3"` → 1 000 000, `"0.1m"` → 1.
pub fn parse_cpu(input: &str) -> Result<u64, QuantityError> {
    parse_scaled(input, 3)
}

/// Parses a memory quantity into bytes, rounding up: `"1Gi"` → 1 073 741 824,
/// `"512Mi"`, `"1G"` → 10⁹, `"1e3"` → 1000.
pub fn parse_memory(input: &str) -> Result<u64, QuantityError> {
    parse_scaled(input, 0)
}

/// Parses a quantity and returns `ceil(value × 10^extra_pow10)`.
///
/// Exact integer arithmetic throughout: floats would turn `"0.3"` CPU into 299m.
fn parse_scaled(input: &str, extra_pow10: i32) -> Result<u64, QuantityError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(QuantityError::Empty);
    }
    let invalid = |detail| QuantityError::InvalidNumber {
        input: input.to_string(),
        detail,
    };
    let overflow = || QuantityError::Overflow {
        input: input.to_string(),
    };

    let (negative, body) = match s.as_bytes()[0] {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };

    // Mantissa: digits with at most one decimal point.
    let mut mantissa: u128 = 0;
    let mut pow10: i32 = 0;
    let mut digits = 0usize;
    let mut seen_point = false;
    let mut end = body.len();
    for (i, c) in body.char_indices() {
        match c {
            '0'..='9' => {
                digits += 1;
                let d = u128::from(c as u8 - b'0');
                match mantissa.checked_mul(10).and_then(|m| m.checked_add(d)) {
                    Some(m) => {
                        mantissa = m;
                        if seen_point {
                            pow10 -= 1;
                        }
                    }
                    // Beyond 38 significant digits: drop integer digits into the
                    // exponent, and fractional ones are below any unit we keep.
                    None if !seen_point => pow10 = pow10.checked_add(1).ok_or_else(overflow)?,
                    None => {}
                }
            }
            '.' if !seen_point => seen_point = true,
            '.' => return Err(invalid("more than one decimal point")),
            _ => {
                end = i;
                break;
            }
        }
    }
    if digits == 0 {
        return Err(invalid("no digits"));
    }

    // Suffix: a decimal exponent (`e3`, `E-2`) or a unit suffix, never both.
    let suffix = &body[end..];
    let mut pow2: u32 = 0;
    match suffix {
        "" => {}
        "n" => pow10 -= 9,
        "u" => pow10 -= 6,
        "m" => pow10 -= 3,
        "k" => pow10 += 3,
        "M" => pow10 += 6,
        "G" => pow10 += 9,
        "T" => pow10 += 12,
        "P" => pow10 += 15,
        "E" => pow10 += 18,
        "Ki" => pow2 = 10,
        "Mi" => pow2 = 20,
        "Gi" => pow2 = 30,
        "Ti" => pow2 = 40,
        "Pi" => pow2 = 50,
        "Ei" => pow2 = 60,
        _ if suffix.starts_with(['e', 'E']) && suffix.len() > 1 => {
            let exp: i32 = suffix[1..]
                .parse()
                .map_err(|_| invalid("exponent is not an integer"))?;
            pow10 = pow10.checked_add(exp).ok_or_else(overflow)?;
        }
        _ => {
            return Err(QuantityError::UnknownSuffix {
                input: input.to_string(),
                suffix: suffix.to_string(),
            });
        }
    }
    if negative && mantissa != 0 {
        return Err(QuantityError::Negative {
            input: input.to_string(),
        });
    }
    if mantissa == 0 {
        return Ok(0);
    }
    pow10 = pow10.checked_add(extra_pow10).ok_or_else(overflow)?;

    let value = mantissa.checked_shl(pow2).filter(|v| v >> pow2 == mantissa);
    let mut value = value.ok_or_else(overflow)?;
    if pow10 >= 0 {
        for _ in 0..pow10 {
            value = value.checked_mul(10).ok_or_else(overflow)?;
            if value > u128::from(u64::MAX) {
                return Err(overflow());
            }
        }
    } else {
        // Dividing by more than 10^38 leaves less than one unit: round a positive
        // amount up to the smallest unit rather than to zero.
        let neg = pow10.unsigned_abs();
        value = match 10u128.checked_pow(neg) {
            Some(div) => value.div_ceil(div),
            None => 1,
        };
    }
    u64::try_from(value).map_err(|_| overflow())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_table() {
        let ok: &[(&str, u64)] = &[
            ("500m", 500),
            ("2", 2000),
            ("1.5", 1500),
            ("0.3", 300),
            ("1e3", 1_000_000),
            ("1E-3", 1),
            ("0.1m", 1),
            ("100u", 1),
            ("250000000n", 250),
            ("0", 0),
            ("-0", 0),
            ("+1", 1000),
            (" 4 ", 4000),
            ("1k", 1_000_000),
            (".5", 500),
            ("5.", 5000),
        ];
        for (input, want) in ok {
            assert_eq!(parse_cpu(input), Ok(*want), "cpu {input:?}");
        }
    }

    #[test]
    fn memory_table() {
        let ok: &[(&str, u64)] = &[
            ("1Gi", 1 << 30),
            ("512Mi", 512 << 20),
            ("1.5Gi", 3 << 29),
            ("1G", 1_000_000_000),
            ("1e3", 1000),
            ("128974848", 128_974_848),
            ("129e6", 129_000_000),
            ("123Mi", 123 << 20),
            ("1Ki", 1024),
            ("0.5", 1),
            ("8Ei", 8 << 60),
        ];
        for (input, want) in ok {
            assert_eq!(parse_memory(input), Ok(*want), "memory {input:?}");
        }
    }

    fn kind(e: &QuantityError) -> &'static str {
        match e {
            QuantityError::Empty => "empty",
            QuantityError::InvalidNumber { .. } => "number",
            QuantityError::UnknownSuffix { .. } => "suffix",
            QuantityError::Negative { .. } => "negative",
            QuantityError::Overflow { .. } => "overflow",
        }
    }

    #[test]
    fn error_table() {
        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            ("   ", "empty"),
            ("abc", "number"),
            ("m", "number"),
            ("1.2.3", "number"),
            ("1ex", "number"),
            ("1e99999999999", "number"),
            ("1Xi", "suffix"),
            ("1gi", "suffix"),
            ("1 Gi", "suffix"),
            ("1e", "suffix"),
            ("-1", "negative"),
            ("-500m", "negative"),
            ("16Ei", "overflow"),
            ("1e30", "overflow"),
        ];
        for (input, want) in cases {
            match parse_memory(input) {
                Err(e) => assert_eq!(kind(&e), *want, "{input:?}: {e}"),
                Ok(v) => panic!("{input:?}: expected an error, got {v}"),
            }
        }
        // CPU scales by 1000, so it overflows sooner than memory.
        assert!(matches!(
            parse_cpu("1E"),
            Err(QuantityError::Overflow { .. })
        ));
        assert_eq!(parse_memory("1E"), Ok(1_000_000_000_000_000_000));
    }

    #[test]
    fn node_and_pod_amounts() {
        assert_eq!(
            Resources::parse_allocatable("3920m", "14Gi", "110"),
            Ok(Resources::new(3920, 14 << 30, 110))
        );
        assert_eq!(
            Resources::parse_pod("500m", "1Gi"),
            Ok(Resources::per_pod(500, 1 << 30))
        );
        assert!(matches!(
            Resources::parse_pod("500m", "1GB"),
            Err(QuantityError::UnknownSuffix { .. })
        ));
    }

    #[test]
    fn errors_name_the_input() {
        let e = parse_cpu("12x").map(|_| ()).unwrap_err();
        assert!(e.to_string().contains("\"12x\""), "{e}");
    }

    #[test]
    fn copies_is_bin_packing_per_node_not_a_sum() {
        let free = Resources::new(600, 4 << 30, 110);
        let one_cpu = Resources::per_pod(1000, 1 << 30);
        assert_eq!(free.copies_of(&one_cpu), 0);
        assert_eq!(free.copies_of(&Resources::per_pod(200, 0)), 3);
        assert_eq!(
            Resources::new(10_000, 1 << 40, 2).copies_of(&Resources::per_pod(1, 1)),
            2,
            "pod slots limit too"
        );
        assert_eq!(Resources::ZERO.copies_of(&Resources::ZERO), u64::MAX);
    }
}
