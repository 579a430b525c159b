//! `spillway simulate` as a user runs it: the real binary on the committed NASA slice,
//! printing the table and writing a chart.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_spillway");
const SLICE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/data/nasa_http_1995_slice_6h.csv"
);

const POLICY: &str = "apiVersion: spillway.io/v1
kind: ScalingPolicy
metadata: { tenant: nasa }
spec:
  namespaces: [nasa]
  defaults:
    replicas: { min: 1, max: 100 }
    signals: { window: 60s, qps: { targetPerReplica: 10 } }
    hysteresis: { scaleUpAbove: 1.0, scaleDownBelow: 0.75, upWindow: 0s, downWindow: 600s }
    limits: { up: { pods: 4, percent: 100, per: 15s }, down: { percent: 25, per: 60s } }
    hpaTolerance: 0
    placement: { burst: { enabled: true }, requests: { cpu: '1', memory: 2Gi } }
  apps:
    web: {}
";

/// Runs the binary with a bounded wait: a hung replay fails the test instead of the CI job.
fn spillway(args: &[&str]) -> Output {
    let mut child = match Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => panic!("starting {BIN}: {e}"),
    };
    // At most 120 s: 2,400 checks 50 ms apart.
    let mut checks = 0;
    loop {
        checks += 1;
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if checks < 2400 => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = child.kill();
                panic!("spillway simulate did not finish within 120 s");
            }
        }
    }
    match child.wait_with_output() {
        Ok(o) => o,
        Err(e) => panic!("collecting output: {e}"),
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    if let Err(e) = std::fs::write(&path, text) {
        panic!("writing {}: {e}", path.display());
    }
    path.display().to_string()
}

#[test]
fn simulate_prints_the_table_and_writes_a_chart() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let policy = write(dir.path(), "nasa.yaml", POLICY);
    let svg = dir.path().join("chart.svg");
    let svg_arg = svg.display().to_string();
    let out = spillway(&[
        "simulate", "--policy", &policy, "--trace", SLICE, "--scale", "60", "--svg", &svg_arg,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "exit {:?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{stdout}");
    assert!(stdout.contains("6.0 h"), "{stdout}");
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| policy"))
        .map(|l| l.trim_matches('|').split('|').map(str::trim).collect())
        .collect();
    let names: Vec<&str> = rows.iter().map(|r| r[0]).collect();
    assert_eq!(
        names,
        [
            "Spillway",
            "HPA (defaults)",
            "KEDA Prometheus + HPA",
            "Fixed at peak"
        ]
    );
    for row in &rows {
        assert_eq!(row.len(), 8, "{row:?}");
        for cell in &row[1..] {
            assert!(cell.parse::<f64>().is_ok(), "`{cell}` in {row:?}");
        }
    }
    // Fixed at peak never changes its count; the autoscalers do on a morning ramp.
    assert_eq!(rows[3][3], "0");
    assert!(rows[0][3].parse::<u32>().unwrap_or(0) > 0);

    let chart = std::fs::read_to_string(&svg).expect("the chart was written");
    assert!(chart.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert!(chart.trim_end().ends_with("</svg>"));
    // Well-formed enough for a browser: every element opened is closed.
    let opened = chart.matches("<text").count();
    assert_eq!(opened, chart.matches("</text>").count());
    assert!(chart.contains("<polyline") && chart.contains("<polygon"));
    assert!(chart.contains("Spillway: burst"));
}

#[test]
fn simulate_reports_a_bad_trace_line() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let policy = write(dir.path(), "nasa.yaml", POLICY);
    let trace = write(dir.path(), "bad.csv", "minute,requests\n0,5\n1,five\n");
    let out = spillway(&["simulate", "--policy", &policy, "--trace", &trace]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("line 3") && stderr.contains("`five`"),
        "{stderr}"
    );
}

/// `spillway … | head`: the reader goes away before the output is written. The command
/// must end as it would have (status and all), not panic on the broken pipe.
#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let policy = write(dir.path(), "nasa.yaml", POLICY);
    for args in [
        vec!["policy", "validate", policy.as_str()],
        vec!["simulate", "--policy", &policy, "--trace", SLICE],
    ] {
        let mut child = Command::new(BIN)
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {BIN}: {e}"));
        drop(child.stdout.take());
        let mut checks = 0;
        let status = loop {
            checks += 1;
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if checks < 2400 => std::thread::sleep(Duration::from_millis(50)),
                _ => {
                    let _ = child.kill();
                    panic!("{args:?} did not finish within 120 s");
                }
            }
        };
        let output = child.wait_with_output().expect("stderr");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            status.success() && !stderr.contains("panicked"),
            "{args:?}: {status:?}\n{stderr}"
        );
    }
}
