//! Counters describing what the receiver did, for /metrics.

use std::sync::atomic::{AtomicU64, Ordering};

use super::{Applied, DecodeError};

#[derive(Debug, Default)]
pub struct RemoteWriteStats {
    pub requests: AtomicU64,
    /// Compressed body bytes received.
    pub bytes: AtomicU64,
    /// Requests refused 400 (not snappy, not a WriteRequest).
    pub bad_requests: AtomicU64,
    /// Requests refused 413.
    pub too_large: AtomicU64,
    /// Requests refused 415 (another encoding or protocol version).
    pub unsupported: AtomicU64,
    /// Requests answered 503: the bytes in flight were at their limit.
    pub busy: AtomicU64,
    /// Requests answered 408: the body did not arrive within the body timeout.
    pub body_timeouts: AtomicU64,
    /// Samples of new series refused at their tenant's series quota.
    pub samples_dropped_tenant_quota: AtomicU64,
    pub samples: AtomicU64,
    pub samples_used: AtomicU64,
    pub samples_ignored: AtomicU64,
    /// Samples of new series refused at the series limit.
    pub samples_dropped: AtomicU64,
    pub series_dropped: AtomicU64,
    pub out_of_order: AtomicU64,
    /// Samples refused for a timestamp too far in the past.
    pub too_old: AtomicU64,
    /// Samples refused for a timestamp too far ahead of the receiver's clock.
    pub too_new: AtomicU64,
    /// Samples refused for a value that is NaN, infinite or negative.
    pub invalid_value: AtomicU64,
    /// Samples of HA replicas that are not their cluster's elected one.
    pub ha_not_elected: AtomicU64,
    /// Samples of HA clusters beyond the tracked limit.
    pub ha_too_many_clusters: AtomicU64,
    /// Samples for a tenant the writer may not write.
    pub tenant_not_allowed: AtomicU64,
    /// Samples for a workload no policy names.
    pub unknown_workload: AtomicU64,
}

impl RemoteWriteStats {
    pub fn count_refusal(&self, error: &DecodeError) {
        let counter = match error.status_code() {
            413 => &self.too_large,
            415 => &self.unsupported,
            _ => &self.bad_requests,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_applied(&self, applied: &Applied) {
        for (counter, value) in [
            (&self.samples, applied.samples),
            (&self.samples_used, applied.used),
            (&self.samples_ignored, applied.ignored),
            (&self.samples_dropped, applied.dropped),
            (
                &self.samples_dropped_tenant_quota,
                applied.dropped_tenant_quota,
            ),
            (&self.series_dropped, applied.dropped_series),
            (&self.out_of_order, applied.out_of_order),
            (&self.too_old, applied.too_old),
            (&self.too_new, applied.too_new),
            (&self.invalid_value, applied.invalid_value),
            (&self.ha_not_elected, applied.ha_not_elected),
            (&self.ha_too_many_clusters, applied.ha_too_many_clusters),
            (&self.tenant_not_allowed, applied.tenant_not_allowed),
            (&self.unknown_workload, applied.unknown_workload),
        ] {
            counter.fetch_add(value, Ordering::Relaxed);
        }
    }
}
