//! What a plan costs: a price per replica-second on regular and on virtual nodes.
//!
//! Regular capacity is paid for whether used or not, so its marginal price is often set
//! near zero; virtual capacity bills per second. Prices are in an arbitrary currency unit
//! chosen by the operator.

use super::plan::Plan;

/// Prices per replica-second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CostModel {
    /// Price of one replica on a regular node for one second.
    pub regular_per_replica_second: f64,
    /// Price of one replica on a virtual node for one second.
    pub burst_per_replica_second: f64,
}

impl CostModel {
    /// What one burst replica moved to a regular node saves per hour (negative if regular
    /// is dearer, which stops drain-back from moving anything).
    pub fn saving_per_move_per_hour(&self) -> f64 {
        (self.burst_per_replica_second - self.regular_per_replica_second) * 3600.0
    }

    /// The cost rate of running `regular` and `burst` replicas.
    pub fn rate(&self, regular: u32, burst: u32) -> CostRate {
        let per_second = f64::from(regular) * self.regular_per_replica_second
            + f64::from(burst) * self.burst_per_replica_second;
        CostRate { per_second }
    }
}

impl Default for CostModel {
    /// A 0.5-CPU / 1 GiB replica: roughly what an ECS share and an ECI pod of that size
    /// cost per second, in US dollars; replace with real prices.
    fn default() -> Self {
        CostModel {
            regular_per_replica_second: 0.000_007,
            burst_per_replica_second: 0.000_016,
        }
    }
}

/// A cost rate.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CostRate {
    /// Per second.
    pub per_second: f64,
}

impl CostRate {
    /// Per hour.
    pub fn per_hour(&self) -> f64 {
        self.per_second * 3600.0
    }
}

/// The cost rate of a plan's placed replicas (the shortfall runs nowhere and costs nothing).
pub fn cost_rate(model: &CostModel, plan: &Plan) -> CostRate {
    model.rate(plan.regular, plan.burst)
}

/// Integrates replica counts over time into replica-seconds and cost.
///
/// Counts are piecewise constant: the counts given at `t` hold until the next call.
/// Time is whatever the caller uses (unix seconds, simulated seconds); a call with a time
/// before the last one is ignored.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CostAccumulator {
    last: Option<(i64, u32, u32)>,
    /// Replica-seconds spent on regular nodes.
    pub regular_replica_seconds: u64,
    /// Replica-seconds spent on virtual nodes.
    pub burst_replica_seconds: u64,
}

impl CostAccumulator {
    /// An empty accumulator.
    pub fn new() -> Self {
        CostAccumulator::default()
    }

    /// Records that from `now` on, `regular` and `burst` replicas are running.
    pub fn observe(&mut self, now: i64, regular: u32, burst: u32) {
        if let Some((t, r, b)) = self.last {
            if now < t {
                // A stray old sample must neither count a span twice nor rewrite the past.
                return;
            }
            let dt = u64::try_from(now.saturating_sub(t)).unwrap_or(0);
            self.regular_replica_seconds = self
                .regular_replica_seconds
                .saturating_add(dt.saturating_mul(u64::from(r)));
            self.burst_replica_seconds = self
                .burst_replica_seconds
                .saturating_add(dt.saturating_mul(u64::from(b)));
        }
        self.last = Some((now, regular, burst));
    }

    /// Total cost so far under `model`.
    pub fn total(&self, model: &CostModel) -> f64 {
        self.regular_replica_seconds as f64 * model.regular_per_replica_second
            + self.burst_replica_seconds as f64 * model.burst_per_replica_second
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accumulates_piecewise_constant_counts() {
        let model = CostModel {
            regular_per_replica_second: 1.0,
            burst_per_replica_second: 10.0,
        };
        let mut acc = CostAccumulator::new();
        acc.observe(100, 2, 0);
        acc.observe(110, 3, 1); // 10 s of 2 regular
        acc.observe(115, 0, 0); // 5 s of 3 regular + 1 burst
        acc.observe(200, 0, 0);
        assert_eq!(acc.regular_replica_seconds, 35);
        assert_eq!(acc.burst_replica_seconds, 5);
        assert!((acc.total(&model) - 85.0).abs() < 1e-9);
        acc.observe(150, 9, 9); // out of order: ignored
        acc.observe(210, 0, 0);
        assert_eq!(acc.regular_replica_seconds, 35);
    }

    #[test]
    fn rate_per_hour() {
        let model = CostModel {
            regular_per_replica_second: 0.001,
            burst_per_replica_second: 0.002,
        };
        let r = model.rate(10, 5);
        assert!((r.per_second - 0.02).abs() < 1e-12);
        assert!((r.per_hour() - 72.0).abs() < 1e-9);
        assert!((model.saving_per_move_per_hour() - 3.6).abs() < 1e-9);
    }
}
