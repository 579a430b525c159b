//! Which shard owns a target.
//!
//! Prometheus' `hashmod` relabel action: MD5 of the value, the last 8 bytes read as a
//! big-endian u64, modulo N. The value hashed is the target's address (`host:port`, what
//! Prometheus calls `__address__`), so a Prometheus shard configured with
//! `source_labels: [__address__]`, `modulus: N`, `action: hashmod` takes the same
//! targets as `spillway collector --shard I/N`. Stable across processes, versions and
//! restarts, unlike the std `RandomState`.

use std::fmt;
use std::str::FromStr;

use md5::{Digest, Md5};

use crate::scrape::Target;

/// This process's shard: index `index` of `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ShardSpec {
    pub index: u32,
    pub count: u32,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ShardSpecError {
    #[error("shard '{0}' is not of the form I/N (e.g. 0/3)")]
    Form(String),
    #[error("shard '{0}': I and N must be whole numbers")]
    Number(String),
    #[error("shard {index}/{count}: N must be at least 1 and I below N")]
    Range { index: u32, count: u32 },
}

impl ShardSpec {
    pub fn new(index: u32, count: u32) -> Result<Self, ShardSpecError> {
        if count == 0 || index >= count {
            return Err(ShardSpecError::Range { index, count });
        }
        Ok(Self { index, count })
    }

    /// Whether this shard scrapes `target`.
    pub fn owns(&self, target: &Target) -> bool {
        hashmod(address(&target.url), u64::from(self.count)) == u64::from(self.index)
    }
}

impl FromStr for ShardSpec {
    type Err = ShardSpecError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (index, count) = text
            .split_once('/')
            .ok_or_else(|| ShardSpecError::Form(text.to_owned()))?;
        let number = |part: &str| {
            part.trim()
                .parse::<u32>()
                .map_err(|_| ShardSpecError::Number(text.to_owned()))
        };
        Self::new(number(index)?, number(count)?)
    }
}

impl fmt::Display for ShardSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Prometheus' `hashmod`.
pub fn hashmod(value: &str, modulus: u64) -> u64 {
    let digest = Md5::digest(value.as_bytes());
    let mut low = [0u8; 8];
    low.copy_from_slice(&digest[8..16]);
    u64::from_be_bytes(low) % modulus.max(1)
}

/// The `host:port` of a target URL (the whole text if it has no scheme).
pub fn address(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    // Credentials are not part of Prometheus' __address__.
    authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashmod_matches_prometheus() {
        // Expected values from an independent MD5 (Python's hashlib), last 8 bytes
        // big-endian, as Prometheus' relabel.go computes it.
        assert_eq!(
            hashmod("localhost:9100", u64::MAX),
            9_302_587_803_962_748_751
        );
        assert_eq!(hashmod("localhost:9100", 7), 1);
        assert_eq!(hashmod("10.0.0.1:9113", 2), 0);
        assert_eq!(hashmod("10.0.0.1:9113", 7), 5);
        assert_eq!(hashmod("127.0.0.1:8080", 3), 2);
    }

    #[test]
    fn the_address_is_host_and_port() {
        assert_eq!(address("http://10.0.0.1:9113/metrics"), "10.0.0.1:9113");
        assert_eq!(address("https://u:p@gw.acme:443/m?x=1"), "gw.acme:443");
        assert_eq!(address("http://[::1]:9113"), "[::1]:9113");
        assert_eq!(address("gw:80"), "gw:80");
    }

    #[test]
    fn every_target_has_exactly_one_owner() {
        let shards: Vec<ShardSpec> = (0..5).map(|i| ShardSpec::new(i, 5).unwrap()).collect();
        let mut per_shard = [0u32; 5];
        for n in 0..1000 {
            let target = Target::new(format!("http://10.1.{}.{}:9113/metrics", n / 256, n % 256));
            let owners: Vec<&ShardSpec> = shards.iter().filter(|s| s.owns(&target)).collect();
            assert_eq!(owners.len(), 1, "{}", target.url);
            per_shard[owners[0].index as usize] += 1;
        }
        // MD5 spreads 1,000 addresses evenly enough that no shard is starved.
        assert!(
            per_shard.iter().all(|n| (150..=250).contains(n)),
            "{per_shard:?}"
        );
    }

    #[test]
    fn shard_specs_parse_and_refuse_nonsense() {
        assert_eq!("2/3".parse(), Ok(ShardSpec { index: 2, count: 3 }));
        assert_eq!(
            "3/3".parse::<ShardSpec>(),
            Err(ShardSpecError::Range { index: 3, count: 3 })
        );
        assert_eq!(
            "0/0".parse::<ShardSpec>(),
            Err(ShardSpecError::Range { index: 0, count: 0 })
        );
        assert!(matches!(
            "1".parse::<ShardSpec>(),
            Err(ShardSpecError::Form(_))
        ));
        assert!(matches!(
            "a/3".parse::<ShardSpec>(),
            Err(ShardSpecError::Number(_))
        ));
        assert_eq!(ShardSpec::new(1, 4).unwrap().to_string(), "1/4");
    }
}
