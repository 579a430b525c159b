//! What Spillway is compared against, implemented as upstream does it.
//!
//! - [`Hpa`]: the Kubernetes HPA's algorithm for one `AverageValue` external metric
//!   (`pkg/controller/podautoscaler`): 10 % tolerance, stabilization over recommendations
//!   (scale-up window 0 s, scale-down window 300 s), the default `behavior` rate policies
//!   with `periodStart` (up: max(4 pods, 100 %) per 15 s; down: 100 % per 15 s), min/max.
//!   The controller syncs every 15 s (`--horizontal-pod-autoscaler-sync-period`).
//! - [`PolledMetric`]: KEDA's Prometheus scaler in front of that HPA: the query result is
//!   refreshed once per `pollingInterval` (30 s by default) and the HPA reads the cached
//!   value (`useCachedMetrics`), so the HPA acts on a value up to 30 s old.
//! - Fixed provisioning at peak needs no model: a constant.

/// The HPA's knobs; [`HpaConfig::defaults`] are Kubernetes' defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HpaConfig {
    pub min: u32,
    pub max: u32,
    /// The `AverageValue` target per pod, in the metric's units.
    pub target: f64,
    pub tolerance: f64,
    pub down_window_secs: i64,
    pub up_pods: i64,
    pub up_percent: i64,
    pub up_period_secs: i64,
    pub down_percent: i64,
    pub down_period_secs: i64,
}

impl HpaConfig {
    /// Kubernetes' defaults for the given bounds and target.
    pub fn defaults(min: u32, max: u32, target: f64) -> Self {
        HpaConfig {
            min,
            max,
            target,
            tolerance: 0.1,
            down_window_secs: 300,
            up_pods: 4,
            up_percent: 100,
            up_period_secs: 15,
            down_percent: 100,
            down_period_secs: 15,
        }
    }
}

/// One HPA's state: its recommendations and its own scaling events.
#[derive(Debug, Clone)]
pub struct Hpa {
    pub config: HpaConfig,
    recommendations: Vec<(i64, u32)>,
    /// (time, replicas added (+) or removed (−)), for `periodStart`.
    events: Vec<(i64, i64)>,
}

impl Hpa {
    pub fn new(config: HpaConfig) -> Self {
        Hpa {
            config,
            recommendations: Vec::new(),
            events: Vec::new(),
        }
    }

    /// Replicas at the start of the last `period` seconds (upstream's
    /// `getReplicasChangePerPeriod`).
    fn period_start(&self, now: i64, current: u32, period: i64) -> i64 {
        let (mut added, mut deleted) = (0, 0);
        for &(t, delta) in &self.events {
            if t > now - period {
                if delta > 0 {
                    added += delta
                } else {
                    deleted -= delta
                }
            }
        }
        i64::from(current) - added + deleted
    }

    /// One sync: `sum` is the metric's total over all pods (what an external metric with
    /// an `AverageValue` target reports), `current` the scale's `status.replicas`.
    pub fn step(&mut self, sum: f64, current: u32, now: i64) -> u32 {
        let c = self.config;
        if self.recommendations.is_empty() {
            // maybeInitScaleDownStabilizationWindow
            self.recommendations.push((now, current));
        }
        // GetExternalPerPodMetricReplicas: ratio = sum / (target × statusReplicas)
        let ratio = sum / (c.target * f64::from(current.max(1)));
        let metric_desired = if (1.0 - c.tolerance) <= ratio && ratio <= (1.0 + c.tolerance) {
            current
        } else {
            (sum / c.target).ceil().max(0.0) as u32
        };
        // stabilizeRecommendationWithBehaviors: up window 0 s, down window 300 s
        let mut up_rec = metric_desired;
        let mut down_rec = metric_desired;
        for &(t, r) in &self.recommendations {
            if t > now {
                up_rec = up_rec.min(r);
            }
            if t > now - c.down_window_secs {
                down_rec = down_rec.max(r);
            }
        }
        self.recommendations
            .retain(|(t, _)| *t > now - c.down_window_secs);
        self.recommendations.push((now, metric_desired));
        let stabilized = current.max(up_rec).min(down_rec);
        // convertDesiredReplicasWithBehaviorRate, selectPolicy Max for both directions.
        let mut desired = stabilized;
        if stabilized > current {
            let start = self.period_start(now, current, c.up_period_secs);
            let by_pods = start + c.up_pods;
            let by_percent = (start as f64 * (1.0 + c.up_percent as f64 / 100.0)).ceil() as i64;
            let limit = by_pods.max(by_percent).max(i64::from(current));
            let limit = u32::try_from(limit).unwrap_or(u32::MAX).min(c.max);
            desired = stabilized.min(limit);
        } else if stabilized < current {
            let start = self.period_start(now, current, c.down_period_secs);
            let limit = (start as f64 * (1.0 - c.down_percent as f64 / 100.0)) as i64;
            let limit = limit.clamp(0, i64::from(current)) as u32;
            desired = stabilized.max(limit.max(c.min));
        }
        desired = desired.clamp(c.min, c.max.max(c.min));
        if desired != current {
            self.events
                .push((now, i64::from(desired) - i64::from(current)));
        }
        // Events older than the longest period no longer matter.
        let horizon = c.up_period_secs.max(c.down_period_secs);
        self.events.retain(|(t, _)| *t > now - horizon);
        desired
    }
}

/// A metric value refreshed once per polling interval and read from a cache in between.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PolledMetric {
    pub interval_secs: i64,
    last: Option<(i64, f64)>,
}

impl PolledMetric {
    pub fn new(interval_secs: i64) -> Self {
        PolledMetric {
            interval_secs: interval_secs.max(1),
            last: None,
        }
    }

    /// The cached value at `now`; `query` runs when the cache is empty or a full interval
    /// old.
    pub fn read(&mut self, now: i64, query: impl FnOnce() -> f64) -> f64 {
        match self.last {
            Some((at, v)) if now - at < self.interval_secs => v,
            _ => {
                let v = query();
                self.last = Some((now, v));
                v
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within_tolerance_nothing_changes() {
        let mut h = Hpa::new(HpaConfig::defaults(1, 100, 10.0));
        assert_eq!(h.step(105.0, 10, 0), 10);
        assert_eq!(h.step(94.0, 10, 15), 10);
    }

    #[test]
    fn scale_up_is_limited_to_double_or_four_pods_per_15s() {
        let mut h = Hpa::new(HpaConfig::defaults(1, 100, 10.0));
        assert_eq!(h.step(1000.0, 2, 0), 6, "max(2+4, 2×2)");
        assert_eq!(
            h.step(1000.0, 6, 5),
            6,
            "the period still counts the first step"
        );
        assert_eq!(h.step(1000.0, 6, 15), 12);
    }

    #[test]
    fn scale_down_waits_for_the_stabilization_window() {
        let mut h = Hpa::new(HpaConfig::defaults(1, 100, 10.0));
        assert_eq!(h.step(100.0, 10, 0), 10);
        let mut t = 15;
        while t < 300 {
            assert_eq!(h.step(20.0, 10, t), 10, "at {t}");
            t += 15;
        }
        assert_eq!(h.step(20.0, 10, 300), 2);
    }

    #[test]
    fn polled_metric_is_stale_between_polls() {
        let mut m = PolledMetric::new(30);
        assert_eq!(m.read(0, || 1.0), 1.0);
        assert_eq!(m.read(29, || 2.0), 1.0);
        assert_eq!(m.read(30, || 3.0), 3.0);
    }
}
