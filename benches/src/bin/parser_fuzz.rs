//! The long run of the parser property tests: every parser of outside input fed
//! arbitrary and mutated bytes, `--cases` each (the suite runs 256).
//!
//! `cargo run --release -p spillway-benches --bin parser_fuzz -- --cases 200000`
//!
//! Prints each parser's cases and rate; exits non-zero on the first panic or empty
//! refusal, with proptest's shrunk input.

use std::process::ExitCode;
use tokio::time::Instant;

use spillway_benches::parsers::{run, targets};

fn main() -> ExitCode {
    let mut cases: u32 = 100_000;
    let mut only: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--cases" => match args.next().and_then(|v| v.parse().ok()) {
                Some(n) => cases = n,
                None => return usage("--cases needs a number"),
            },
            "--only" => match args.next() {
                Some(name) => only = Some(name),
                None => return usage("--only needs part of a parser's name"),
            },
            other => return usage(&format!("unknown argument {other}")),
        }
    }
    // Panics are caught and reported by proptest; their default message would repeat
    // for every shrinking step.
    std::panic::set_hook(Box::new(|_| {}));
    let mut failed = false;
    for target in targets() {
        if only
            .as_deref()
            .is_some_and(|part| !target.name.contains(part))
        {
            continue;
        }
        let started = Instant::now();
        let outcome = run(&target, cases);
        let secs = started.elapsed().as_secs_f64();
        match outcome {
            Ok(()) => println!(
                "{:<52} {cases:>9} cases  {:>8.1} s  {:>10.0} cases/s  ok",
                target.name,
                secs,
                f64::from(cases) / secs.max(1e-9)
            ),
            Err(finding) => {
                println!("{:<52} FAILED: {}", finding.target, finding.message);
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn usage(problem: &str) -> ExitCode {
    eprintln!("parser_fuzz: {problem}\nusage: parser_fuzz [--cases N] [--only NAME-PART]");
    ExitCode::from(2)
}
