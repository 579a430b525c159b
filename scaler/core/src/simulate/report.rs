//! The figures of one replay, per autoscaler, and the table they print as.

use std::fmt;

/// One autoscaler's figures over the whole trace.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Totals {
    /// Σ over seconds of max(0, demand − Ready replicas), demand in replicas.
    pub under_replica_seconds: f64,
    /// Σ over seconds of max(0, bound replicas − demand).
    pub over_replica_seconds: f64,
    /// Times the applied replica count changed.
    pub actions: u32,
    /// The largest applied replica count.
    pub peak_replicas: u32,
    /// Pods bound to regular nodes, in replica-hours.
    pub regular_replica_hours: f64,
    /// Pods bound to the virtual node, in replica-hours.
    pub burst_replica_hours: f64,
    /// What the bound pods cost.
    pub cost: f64,
}

/// One chart point: means over a bucket of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Sample {
    /// Seconds since the trace's start at the bucket's start.
    pub at: i64,
    /// Demand, requests/s.
    pub load_rps: f64,
    /// What Ready replicas serve, requests/s.
    pub capacity_rps: f64,
    /// Pods bound to regular nodes.
    pub regular: f64,
    /// Pods bound to the virtual node.
    pub burst: f64,
}

/// One autoscaler's replay.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub name: String,
    pub totals: Totals,
    pub timeline: Vec<Sample>,
}

/// Every autoscaler's replay of one trace.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Seconds replayed.
    pub seconds: usize,
    pub runs: Vec<Run>,
}

impl Report {
    /// The run named `name`.
    pub fn run(&self, name: &str) -> Option<&Run> {
        self.runs.iter().find(|r| r.name == name)
    }
}

/// A Markdown table, one row per autoscaler.
impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "| policy | under-provisioned replica·s | over-provisioned replica·s | scaling actions | peak replicas | regular replica·h | burst replica·h | cost |"
        )?;
        writeln!(f, "|---|---:|---:|---:|---:|---:|---:|---:|")?;
        for r in &self.runs {
            let t = &r.totals;
            writeln!(
                f,
                "| {} | {:.0} | {:.0} | {} | {} | {:.1} | {:.1} | {:.2} |",
                r.name,
                t.under_replica_seconds,
                t.over_replica_seconds,
                t.actions,
                t.peak_replicas,
                t.regular_replica_hours,
                t.burst_replica_hours,
                t.cost
            )?;
        }
        Ok(())
    }
}
