//! Per-target health and scrape-wide statistics.

use std::sync::Mutex;
use std::sync::PoisonError;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;

use super::target::{ScrapeError, ScrapeOutcome};

/// What an SRE needs to know about one target.
#[derive(Clone, Debug)]
pub struct TargetHealth {
    pub url: String,
    pub up: bool,
    pub last_scrape_ms: Option<i64>,
    pub last_success_ms: Option<i64>,
    pub last_duration: Duration,
    pub last_error: Option<String>,
    /// How many scrapes in a row failed with an error.
    pub consecutive_failures: u64,
    pub samples: u64,
    pub malformed_lines: u64,
}

impl TargetHealth {
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            up: false,
            last_scrape_ms: None,
            last_success_ms: None,
            last_duration: Duration::ZERO,
            last_error: None,
            consecutive_failures: 0,
            samples: 0,
            malformed_lines: 0,
        }
    }

    pub fn update(
        &mut self,
        outcome: &Result<ScrapeOutcome, ScrapeError>,
        duration: Duration,
        at_ms: i64,
    ) {
        self.last_scrape_ms = Some(at_ms);
        self.last_duration = duration;
        match outcome {
            Ok(scraped) => {
                self.up = true;
                self.last_success_ms = Some(at_ms);
                self.consecutive_failures = 0;
                self.samples = scraped.samples;
                self.malformed_lines = scraped.malformed_lines;
                self.last_error = scraped.first_malformed.as_ref().map(|first| {
                    format!(
                        "{} malformed lines skipped (first: {first})",
                        scraped.malformed_lines
                    )
                });
            }
            Err(error) => {
                self.up = false;
                self.consecutive_failures += 1;
                self.last_error = Some(error.to_string());
            }
        }
    }
}

/// Totals across all targets, with a scrape-duration histogram for quantiles.
#[derive(Debug)]
pub struct ScrapeStats {
    pub scrapes: AtomicU64,
    pub failures: AtomicU64,
    pub samples: AtomicU64,
    pub malformed_lines: AtomicU64,
    /// Samples of new series refused at a target's series limit.
    pub dropped_samples: AtomicU64,
    durations_us: Mutex<Histogram<u64>>,
}

impl ScrapeStats {
    pub fn new() -> Self {
        Self {
            scrapes: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            samples: AtomicU64::new(0),
            malformed_lines: AtomicU64::new(0),
            dropped_samples: AtomicU64::new(0),
            // 1 µs to 10 min at 3 significant digits: a fixed, small allocation.
            durations_us: Mutex::new(
                Histogram::new_with_bounds(1, 600_000_000, 3)
                    .expect("constant histogram bounds are valid"),
            ),
        }
    }

    pub fn record(&self, duration: Duration, outcome: &Result<ScrapeOutcome, ScrapeError>) {
        self.scrapes.fetch_add(1, Ordering::Relaxed);
        match outcome {
            Ok(scraped) => {
                self.samples.fetch_add(scraped.samples, Ordering::Relaxed);
                self.malformed_lines
                    .fetch_add(scraped.malformed_lines, Ordering::Relaxed);
            }
            Err(_) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
            }
        }
        let micros = duration.as_micros().clamp(1, 600_000_000) as u64;
        let mut histogram = self
            .durations_us
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        histogram.saturating_record(micros);
    }

    /// Scrape duration at quantile `q` (0..=1).
    pub fn duration_quantile(&self, q: f64) -> Duration {
        let histogram = self
            .durations_us
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Duration::from_micros(histogram.value_at_quantile(q))
    }
}

impl Default for ScrapeStats {
    fn default() -> Self {
        Self::new()
    }
}
