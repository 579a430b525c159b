//! Traffic profiles for the demo gateway: per app, a repeating cycle of segments, each
//! holding a rate or ramping linearly to another. Counters are the exact integral of
//! the profile, so what Spillway scrapes is what the profile says, to the request.

use std::time::Duration;

use serde::Deserialize;

/// One stretch of a cycle: `qps` for `for`, or a linear ramp from `qps` to `to`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Segment {
    #[serde(rename = "for", deserialize_with = "crate::durations::deserialize")]
    pub length: Duration,
    pub qps: f64,
    #[serde(default)]
    pub to: Option<f64>,
}

impl Segment {
    fn rate_at(&self, offset: f64) -> f64 {
        match self.to {
            Some(to) => self.qps + (to - self.qps) * (offset / self.length.as_secs_f64()),
            None => self.qps,
        }
    }

    /// Requests between `a` and `b` seconds into the segment.
    fn integral(&self, a: f64, b: f64) -> f64 {
        (b - a) * (self.rate_at(a) + self.rate_at(b)) / 2.0
    }
}

/// One app's traffic.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AppProfile {
    pub tenant: String,
    pub app: String,
    pub cycle: Vec<Segment>,
}

/// The whole demo gateway's traffic.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub apps: Vec<AppProfile>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("traffic profile: {0}")]
    Parse(String),
    #[error("traffic profile: app {tenant}/{app}: {problem}")]
    Invalid {
        tenant: String,
        app: String,
        problem: String,
    },
}

/// The profile `spillway demo` runs when given none: a checkout app that goes quiet,
/// ramps, spikes 6× and comes back; a search app whose noise stays inside its band;
/// a cart app that sleeps at zero and wakes up.
pub const DEFAULT_PROFILE: &str = include_str!("default_profile.yaml");

impl Profile {
    pub fn parse(text: &str) -> Result<Self, ProfileError> {
        let profile: Profile =
            serde_saphyr::from_str(text).map_err(|e| ProfileError::Parse(e.to_string()))?;
        for app in &profile.apps {
            let invalid = |problem: &str| ProfileError::Invalid {
                tenant: app.tenant.clone(),
                app: app.app.clone(),
                problem: problem.to_owned(),
            };
            if app.cycle.is_empty() {
                return Err(invalid("cycle has no segments"));
            }
            if app.cycle.iter().any(|s| s.length.is_zero()) {
                return Err(invalid("a segment lasts 0s"));
            }
            let bad_rate = |q: f64| !q.is_finite() || q < 0.0;
            if app
                .cycle
                .iter()
                .any(|s| bad_rate(s.qps) || s.to.is_some_and(bad_rate))
            {
                return Err(invalid("rates must be finite and ≥ 0"));
            }
        }
        Ok(profile)
    }
}

impl AppProfile {
    fn cycle_secs(&self) -> f64 {
        self.cycle.iter().map(|s| s.length.as_secs_f64()).sum()
    }

    /// The rate `t` seconds after the demo started.
    pub fn rate_at(&self, t: f64) -> f64 {
        let mut offset = t.rem_euclid(self.cycle_secs());
        for segment in &self.cycle {
            let length = segment.length.as_secs_f64();
            if offset < length {
                return segment.rate_at(offset);
            }
            offset -= length;
        }
        0.0
    }

    /// Requests served between `t0` and `t1` seconds after the start.
    pub fn requests_between(&self, t0: f64, t1: f64) -> f64 {
        if t1 <= t0 {
            return 0.0;
        }
        let cycle = self.cycle_secs();
        let whole_cycles = ((t1 - t0) / cycle).floor();
        let per_cycle: f64 = self
            .cycle
            .iter()
            .map(|s| s.integral(0.0, s.length.as_secs_f64()))
            .sum();
        let mut total = whole_cycles * per_cycle;
        let mut t = t0 + whole_cycles * cycle;
        // What is left spans less than one cycle: walk the segments it crosses.
        while t < t1 {
            let mut offset = t.rem_euclid(cycle);
            let mut advanced = false;
            for segment in &self.cycle {
                let length = segment.length.as_secs_f64();
                if offset < length {
                    let end = (offset + (t1 - t)).min(length);
                    total += segment.integral(offset, end);
                    t += end - offset;
                    advanced = true;
                    break;
                }
                offset -= length;
            }
            if !advanced {
                break;
            }
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(cycle: &str) -> AppProfile {
        let text = format!("apps:\n  - tenant: t\n    app: a\n    cycle: {cycle}\n");
        Profile::parse(&text).unwrap().apps.remove(0)
    }

    #[test]
    fn steps_and_ramps_integrate_exactly() {
        let app = app("[{for: 10s, qps: 0}, {for: 10s, qps: 0, to: 100}, {for: 10s, qps: 100}]");
        assert_eq!(app.rate_at(5.0), 0.0);
        assert_eq!(app.rate_at(15.0), 50.0);
        assert_eq!(app.rate_at(25.0), 100.0);
        assert_eq!(app.rate_at(35.0), 0.0, "the cycle repeats");
        assert_eq!(app.requests_between(0.0, 10.0), 0.0);
        assert_eq!(app.requests_between(10.0, 20.0), 500.0);
        assert_eq!(app.requests_between(0.0, 30.0), 1_500.0);
        // 25–30 s at 100/s, two whole 30 s cycles, then 90–95 s in the quiet step.
        assert_eq!(app.requests_between(25.0, 95.0), 500.0 + 2.0 * 1_500.0);
    }

    #[test]
    fn the_default_profile_parses() {
        let profile = Profile::parse(DEFAULT_PROFILE).unwrap();
        assert!(profile.apps.len() >= 3);
    }

    #[test]
    fn bad_profiles_are_refused_with_the_app_named() {
        let error = Profile::parse("apps:\n  - {tenant: t, app: a, cycle: []}\n").unwrap_err();
        assert!(error.to_string().contains("t/a"), "{error}");
        let error = Profile::parse("apps:\n  - {tenant: t, app: a, cycle: [{for: 1s, qps: -1}]}\n")
            .unwrap_err();
        assert!(error.to_string().contains("≥ 0"), "{error}");
        assert!(Profile::parse("apps: [{tenant: t, app: a, cycle: [], extra: 1}]").is_err());
    }
}
