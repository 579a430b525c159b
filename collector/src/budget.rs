//! One memory budget, and every limit derived from it.
//!
//! An operator sets how much memory the collector's tables and in-flight requests may
//! hold (the pod's limit, less what the process itself needs); the store's windows,
//! the remote-write series table, request bytes in flight, push streams, scrapes and
//! connections each get a share of it. A limit set explicitly in the configuration
//! still wins over the derived one. Per-entry costs are the ones measured in
//! `benches/benches/memory.rs` (BENCHMARKS.md, "Collector memory"), rounded up.

use std::fmt;

/// Measured heap bytes of a 1 s window, per second of horizon (an `f32` slot).
const WINDOW_BYTES_PER_SECOND: u64 = 4;
/// A window's map entry, key and bookkeeping besides its slots (measured 175 B).
const WINDOW_OVERHEAD_BYTES: u64 = 200;
/// A remote-write series' state, its share of the shard tables and their slack
/// (measured 129 B at 1 M series).
const SERIES_BYTES: u64 = 160;
/// One HTTP connection's buffers at most (headers are capped at this size).
pub const CONNECTION_BUFFER_BYTES: usize = 64 << 10;

/// Shares of the budget, in percent; what is left covers the process itself (runtime,
/// policies, decisions, KEDA's connections, allocator slack).
const STORE_PERCENT: u64 = 35;
const SERIES_PERCENT: u64 = 15;
const REMOTE_WRITE_IN_FLIGHT_PERCENT: u64 = 10;
const PUSH_IN_FLIGHT_PERCENT: u64 = 5;
const SCRAPE_IN_FLIGHT_PERCENT: u64 = 10;
const CONNECTIONS_PERCENT: u64 = 5;
/// Push agents each keep a stream open; this many may push at once at most.
const MAX_PUSH_STREAMS: usize = 64;

/// The memory the collector may use, and how much of the per-tenant limits one tenant
/// may take.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MemoryBudget {
    pub bytes: u64,
    /// Fraction (0, 1] of each table one tenant may fill.
    pub tenant_share: f64,
}

impl Default for MemoryBudget {
    /// Half the shipped pod's 1 GiB limit (deploy/base/deployment.yaml): the other half
    /// is headroom for the process, the allocator and bursts.
    fn default() -> Self {
        Self {
            bytes: 512 << 20,
            tenant_share: 0.25,
        }
    }
}

impl fmt::Display for MemoryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} MiB, {}% per tenant",
            self.bytes >> 20,
            (self.tenant_share * 100.0).round()
        )
    }
}

/// Limits derived from a [`MemoryBudget`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Derived {
    pub store_max_windows: usize,
    pub store_max_windows_per_tenant: usize,
    pub remote_write_max_series: usize,
    pub remote_write_max_series_per_tenant: usize,
    /// Compressed plus decoded bytes of remote-write requests being handled at once.
    pub remote_write_in_flight_bytes: usize,
    pub remote_write_max_body_bytes: usize,
    pub remote_write_max_decoded_bytes: usize,
    pub push_max_message_bytes: usize,
    pub push_max_streams: usize,
    pub scrape_max_concurrency: usize,
    pub scrape_max_body_bytes: usize,
    pub http_max_connections: usize,
}

impl MemoryBudget {
    fn share(&self, percent: u64) -> u64 {
        self.bytes / 100 * percent
    }

    fn per_tenant(&self, total: usize) -> usize {
        let share = self.tenant_share.clamp(f64::MIN_POSITIVE, 1.0);
        ((total as f64 * share).ceil() as usize).clamp(1, total.max(1))
    }

    /// Store limits for windows of `horizon_secs`.
    pub fn store(&self, horizon_secs: u32) -> crate::store::StoreLimits {
        let d = self.derive(horizon_secs);
        crate::store::StoreLimits {
            horizon_secs,
            max_windows: d.store_max_windows,
            max_windows_per_tenant: d.store_max_windows_per_tenant,
        }
    }

    pub fn derive(&self, horizon_secs: u32) -> Derived {
        let window = u64::from(horizon_secs) * WINDOW_BYTES_PER_SECOND + WINDOW_OVERHEAD_BYTES;
        let store_max_windows = (self.share(STORE_PERCENT) / window).max(3) as usize;
        let remote_write_max_series = (self.share(SERIES_PERCENT) / SERIES_BYTES).max(1) as usize;
        let in_flight = self.share(REMOTE_WRITE_IN_FLIGHT_PERCENT).max(1 << 20) as usize;
        // A request costs its body, its decoded bytes and about as much again for the
        // decoded series: four requests of the largest size fit at once.
        let remote_write_max_decoded_bytes = (in_flight / 4 / 2).clamp(64 << 10, 32 << 20);
        let remote_write_max_body_bytes = (remote_write_max_decoded_bytes / 2).max(64 << 10);
        let push = self.share(PUSH_IN_FLIGHT_PERCENT) as usize;
        let push_max_message_bytes = (push / MAX_PUSH_STREAMS).clamp(64 << 10, 4 << 20);
        let push_max_streams = (push / push_max_message_bytes).clamp(1, MAX_PUSH_STREAMS);
        let scrape = self.share(SCRAPE_IN_FLIGHT_PERCENT) as usize;
        let scrape_max_body_bytes = (scrape / 8).clamp(1 << 20, 16 << 20);
        let scrape_max_concurrency = (scrape / scrape_max_body_bytes).clamp(1, 64);
        let http_max_connections =
            (self.share(CONNECTIONS_PERCENT) as usize / CONNECTION_BUFFER_BYTES).clamp(16, 4096);
        Derived {
            store_max_windows,
            store_max_windows_per_tenant: self.per_tenant(store_max_windows),
            remote_write_max_series,
            remote_write_max_series_per_tenant: self.per_tenant(remote_write_max_series),
            remote_write_in_flight_bytes: in_flight,
            remote_write_max_body_bytes,
            remote_write_max_decoded_bytes,
            push_max_message_bytes,
            push_max_streams,
            scrape_max_concurrency,
            scrape_max_body_bytes,
            http_max_connections,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_budget_fits_the_shipped_pod_and_its_parts_add_up() {
        let budget = MemoryBudget::default();
        let d = budget.derive(900);
        let window = 900 * WINDOW_BYTES_PER_SECOND + WINDOW_OVERHEAD_BYTES;
        let worst_case = d.store_max_windows as u64 * window
            + d.remote_write_max_series as u64 * SERIES_BYTES
            + d.remote_write_in_flight_bytes as u64
            + (d.push_max_streams * d.push_max_message_bytes) as u64
            + (d.scrape_max_concurrency * d.scrape_max_body_bytes) as u64
            + (d.http_max_connections * CONNECTION_BUFFER_BYTES) as u64;
        assert!(
            worst_case <= budget.bytes,
            "{worst_case} > {}",
            budget.bytes
        );
        assert!(budget.bytes <= 1 << 30, "under the pod's 1 GiB limit");
        // Enough for the design's 10,000 workloads with three signals each, and for a
        // Prometheus sending its default 2,000-sample batches.
        assert!(d.store_max_windows >= 30_000, "{d:?}");
        assert!(
            d.push_max_streams >= 32 && d.scrape_max_concurrency >= 8,
            "{d:?}"
        );
        assert!(d.remote_write_max_series >= 100_000, "{d:?}");
        assert!(d.remote_write_max_body_bytes >= 1 << 20, "{d:?}");
        assert!(
            4 * (d.remote_write_max_body_bytes + 2 * d.remote_write_max_decoded_bytes)
                <= 2 * d.remote_write_in_flight_bytes
        );
        assert_eq!(
            d.store_max_windows_per_tenant,
            (d.store_max_windows as f64 * 0.25).ceil() as usize
        );
    }

    #[test]
    fn limits_scale_with_the_budget_and_never_reach_zero() {
        let small = MemoryBudget {
            bytes: 1 << 20,
            tenant_share: 0.01,
        }
        .derive(900);
        assert!(small.store_max_windows >= 3 && small.store_max_windows_per_tenant >= 1);
        assert!(small.push_max_streams >= 1 && small.scrape_max_concurrency >= 1);
        let big = MemoryBudget {
            bytes: 8 << 30,
            tenant_share: 1.0,
        }
        .derive(900);
        let default = MemoryBudget::default().derive(900);
        assert!(big.store_max_windows > default.store_max_windows);
        assert_eq!(big.store_max_windows_per_tenant, big.store_max_windows);
    }
}
