//! A self-contained SVG chart of a replay, for a person to open in a browser.
//!
//! Top panel: load and the capacity each autoscaler's Ready replicas serve (requests/s).
//! Bottom panel: Spillway's pods on regular nodes and on the virtual node (stacked), with
//! the other autoscalers' total pods as lines.

use std::fmt::Write;

use super::report::{Report, Run, Sample};

const WIDTH: f64 = 1000.0;
const PANEL: f64 = 260.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const GAP: f64 = 60.0;
const COLOURS: [&str; 4] = ["#1b9e77", "#d95f02", "#7570b3", "#999999"];
const LOAD: &str = "#222222";
const REGULAR: &str = "#66a61e";
const BURST: &str = "#e7298a";

/// The chart for `report`, titled `title`.
pub fn chart(report: &Report, title: &str) -> String {
    let height = TOP + PANEL + GAP + PANEL + 50.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="22" font-size="15">{}</text>"#,
        escape(title)
    );
    let seconds = report.seconds.max(1) as f64;
    let x = |at: i64| LEFT + (at as f64 / seconds) * (WIDTH - LEFT - RIGHT);

    // Top panel: requests/s.
    let top = TOP;
    let all = |f: fn(&Sample) -> f64| {
        report
            .runs
            .iter()
            .flat_map(|r| r.timeline.iter().map(f))
            .fold(0.0, f64::max)
    };
    let ymax = nice(all(|p| p.load_rps).max(all(|p| p.capacity_rps)));
    axes(&mut s, top, ymax, "requests/s", report.seconds);
    let y = |v: f64| top + PANEL - v / ymax * PANEL;
    for (k, run) in report.runs.iter().enumerate() {
        line(&mut s, run, COLOURS[k % COLOURS.len()], 1.2, |p| {
            (x(p.at), y(p.capacity_rps))
        });
    }
    if let Some(run) = report.runs.first() {
        line(&mut s, run, LOAD, 1.0, |p| (x(p.at), y(p.load_rps)));
    }
    let mut legend: Vec<(String, &str)> = vec![("load".to_string(), LOAD)];
    legend.extend(
        report
            .runs
            .iter()
            .enumerate()
            .map(|(k, r)| (format!("capacity: {}", r.name), COLOURS[k % COLOURS.len()])),
    );
    legends(&mut s, top, &legend);

    // Bottom panel: pods.
    let bottom = TOP + PANEL + GAP;
    let pmax = nice(all(|p| p.regular + p.burst));
    axes(&mut s, bottom, pmax, "pods", report.seconds);
    let y = |v: f64| bottom + PANEL - v / pmax * PANEL;
    if let Some(run) = report.runs.first() {
        area(&mut s, run, REGULAR, |p| (x(p.at), y(0.0), y(p.regular)));
        area(&mut s, run, BURST, |p| {
            (x(p.at), y(p.regular), y(p.regular + p.burst))
        });
    }
    for (k, run) in report.runs.iter().enumerate().skip(1) {
        line(&mut s, run, COLOURS[k % COLOURS.len()], 1.2, |p| {
            (x(p.at), y(p.regular + p.burst))
        });
    }
    let mut legend: Vec<(String, &str)> = Vec::new();
    if let Some(run) = report.runs.first() {
        legend.push((format!("{}: regular", run.name), REGULAR));
        legend.push((format!("{}: burst", run.name), BURST));
    }
    legend.extend(
        report
            .runs
            .iter()
            .enumerate()
            .skip(1)
            .map(|(k, r)| (format!("{}: pods", r.name), COLOURS[k % COLOURS.len()])),
    );
    legends(&mut s, bottom, &legend);
    s.push_str("</svg>\n");
    s
}

/// A round axis maximum at or above `v`.
fn nice(v: f64) -> f64 {
    if v.is_nan() || v <= 0.0 {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * mag)
}

fn axes(s: &mut String, top: f64, ymax: f64, unit: &str, seconds: usize) {
    let (x0, x1, y1) = (LEFT, WIDTH - RIGHT, top + PANEL);
    let _ = writeln!(
        s,
        r##"<path d="M{x0},{top} V{y1} H{x1}" fill="none" stroke="#444"/>"##
    );
    for k in 0..=4 {
        let v = ymax * f64::from(k) / 4.0;
        let y = y1 - PANEL * f64::from(k) / 4.0;
        let _ = writeln!(
            s,
            r##"<line x1="{x0}" y1="{y:.1}" x2="{x1}" y2="{y:.1}" stroke="#eee"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            x0 - 6.0,
            y + 4.0,
            trim(v)
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="12" y="{:.1}" transform="rotate(-90 12 {:.1})" text-anchor="middle">{unit}</text>"#,
        top + PANEL / 2.0,
        top + PANEL / 2.0
    );
    let hours = seconds as f64 / 3600.0;
    for k in 0..=5 {
        let h = hours * f64::from(k) / 5.0;
        let x = x0 + (x1 - x0) * f64::from(k) / 5.0;
        let _ = writeln!(
            s,
            r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{}h</text>"#,
            y1 + 16.0,
            trim(h)
        );
    }
}

fn legends(s: &mut String, top: f64, items: &[(String, &str)]) {
    for (k, (name, colour)) in items.iter().enumerate() {
        let y = top + 14.0 + 16.0 * k as f64;
        let x = LEFT + 12.0;
        let _ = writeln!(
            s,
            r#"<rect x="{x}" y="{:.1}" width="12" height="4" fill="{colour}"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            y - 4.0,
            x + 18.0,
            y,
            escape(name)
        );
    }
}

fn line(s: &mut String, run: &Run, colour: &str, width: f64, at: impl Fn(&Sample) -> (f64, f64)) {
    if run.timeline.is_empty() {
        return;
    }
    s.push_str("<polyline fill=\"none\" stroke=\"");
    s.push_str(colour);
    let _ = write!(s, "\" stroke-width=\"{width}\" points=\"");
    for p in &run.timeline {
        let (x, y) = at(p);
        let _ = write!(s, "{x:.1},{y:.1} ");
    }
    s.push_str("\"/>\n");
}

/// A band between a lower and an upper value per point.
fn area(s: &mut String, run: &Run, colour: &str, at: impl Fn(&Sample) -> (f64, f64, f64)) {
    if run.timeline.is_empty() {
        return;
    }
    let pts: Vec<(f64, f64, f64)> = run.timeline.iter().map(at).collect();
    s.push_str("<polygon stroke=\"none\" fill-opacity=\"0.6\" fill=\"");
    s.push_str(colour);
    s.push_str("\" points=\"");
    for (x, _, hi) in &pts {
        let _ = write!(s, "{x:.1},{hi:.1} ");
    }
    for (x, lo, _) in pts.iter().rev() {
        let _ = write!(s, "{x:.1},{lo:.1} ");
    }
    s.push_str("\"/>\n");
}

fn trim(v: f64) -> String {
    if v.fract() == 0.0 || v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::Totals;

    #[test]
    fn nice_maxima() {
        assert_eq!(nice(0.0), 1.0);
        assert_eq!(nice(7.0), 10.0);
        assert_eq!(nice(130.0), 200.0);
        assert_eq!(nice(240.0), 250.0);
    }

    #[test]
    fn chart_has_every_run_and_escapes_names() {
        let sample = Sample {
            at: 0,
            load_rps: 5.0,
            capacity_rps: 6.0,
            regular: 1.0,
            burst: 1.0,
        };
        let run = |name: &str| Run {
            name: name.to_string(),
            totals: Totals::default(),
            timeline: vec![sample, Sample { at: 60, ..sample }],
        };
        let report = Report {
            seconds: 120,
            runs: vec![run("A"), run("B<&>")],
        };
        let svg = chart(&report, "t");
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("B&lt;&amp;&gt;: pods"));
        assert_eq!(svg.matches("<polygon").count(), 2);
    }
}
