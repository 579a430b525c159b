//! Every parser of outside input in one table, fed arbitrary and mutated bytes: the
//! short run is this module's test (in the suite), the long run is the `parser_fuzz`
//! binary. A parser may refuse anything; it may not panic, and its refusal must say
//! something.
//!
//! Bounded proptest rather than cargo-fuzz: cargo-fuzz needs a nightly toolchain, which
//! Spillway's build does not use. Mutations start from a valid input of each format, so
//! they reach past the first byte of the grammar.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};
use spillway_collector::Signal;
use spillway_collector::promql::PromqlQuery;

/// One parser: its name, valid inputs to mutate, and a call that must not panic.
pub struct Target {
    pub name: &'static str,
    pub seeds: fn() -> Vec<Vec<u8>>,
    /// Parses `input`; `Err` carries the parser's refusal, which must not be empty.
    pub parse: fn(&[u8]) -> Result<(), String>,
}

fn text(input: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(input)
}

fn refusal(error: impl std::fmt::Display) -> String {
    error.to_string()
}

const EXPOSITION: &str = "# HELP gateway_requests_total Requests.\n# TYPE gateway_requests_total counter\ngateway_requests_total{tenant=\"acme\",app=\"web\",code=\"200\"} 1027 1700000000000\ngateway_requests_total{tenant=\"acme\",app=\"api\\\"x\",code=\"500\"} 3.5e2\n# EOF\n";

const POLICY: &str = "apiVersion: spillway.io/v1\nkind: ScalingPolicy\nmetadata: { tenant: acme }\nspec:\n  namespaces: [acme-prod]\n  defaults:\n    replicas: { min: 1, max: 50 }\n    signals: { window: 30s, qps: { targetPerReplica: 100 } }\n    hysteresis: { downWindow: 5m }\n    schedules:\n      - { name: mornings, cron: \"0 8 * * 1-5\", timezone: Europe/Berlin, duration: 2h, minReplicas: 10 }\n  apps:\n    web: { borrowable: true }\n    checkout: { replicas: { max: 80 } }\n";

const SERVE: &str = "listen: { grpc: 127.0.0.1:0, http: 127.0.0.1:0 }\npolicies: policies\nscrape: { interval: 1s, timeout: 500ms, targets: [http://127.0.0.1:9/metrics] }\nremoteWrite: { ha: { replicaLabels: [replica] } }\nmemory: { budget: 128Mi }\nhttpTls: { certFile: a.crt, keyFile: a.key, clientCaFile: ca.crt }\naccess:\n  insecure: [keda]\n  identities:\n    grafana: { role: reader, tenants: [acme], tokenFile: tokens/grafana }\n";

const PROMQL: &str = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"tenant":"acme","app":"web"},"value":[1700000000.5,"412.25"]},{"metric":{"tenant":"acme"},"value":[1700000000,"NaN"]}]}}"#;

fn query() -> PromqlQuery {
    PromqlQuery {
        signal: Signal::Qps,
        expr: "sum by (tenant, app) (rate(x[1m]))".into(),
        tenant_label: "tenant".into(),
        app_label: "app".into(),
    }
}

fn remote_write_seed() -> Vec<u8> {
    spillway_collector::remote_write::encode_write_request(&write_request())
}

fn raw_write_request() -> Vec<u8> {
    use prost::Message;
    write_request().encode_to_vec()
}

fn write_request() -> spillway_proto::prometheus::WriteRequest {
    use spillway_proto::prometheus::{Label, Sample, TimeSeries, WriteRequest};
    let label = |name: &str, value: &str| Label {
        name: name.into(),
        value: value.into(),
    };
    WriteRequest {
        timeseries: vec![TimeSeries {
            labels: vec![
                label("__name__", "gateway_requests_total"),
                label("tenant", "acme"),
                label("app", "web"),
            ],
            samples: vec![Sample {
                value: 1027.0,
                timestamp: 1_700_000_000_000,
            }],
        }],
        ..Default::default()
    }
}

fn certificate_seed() -> Vec<Vec<u8>> {
    let ca = spillway_tests::tls::Ca::new("fuzz CA");
    vec![ca.client("keda-operator").cert_der, ca.server().cert_der]
}

/// Every parser of outside input.
pub fn targets() -> Vec<Target> {
    vec![
        Target {
            name: "exposition (scraped pages)",
            seeds: || vec![EXPOSITION.as_bytes().to_vec()],
            parse: |input| {
                let summary = spillway_collector::exposition::parse_samples(input, |_| {});
                let _ = format!("{summary:?}");
                Ok(())
            },
        },
        Target {
            name: "remote-write (snappy protobuf)",
            seeds: || vec![remote_write_seed()],
            parse: |input| {
                spillway_collector::remote_write::decode_write_request(input, 1 << 20)
                    .map(drop)
                    .map_err(refusal)
            },
        },
        Target {
            name: "remote-write (borrowed decode of the raw protobuf)",
            seeds: || vec![raw_write_request()],
            parse: |input| {
                spillway_collector::remote_write::decode_borrowed(input)
                    .map(drop)
                    .map_err(refusal)
            },
        },
        Target {
            name: "push (gRPC SampleBatch)",
            seeds: || {
                use prost::Message;
                let batch = spillway_proto::ingest::SampleBatch {
                    source: "agent-1".into(),
                    timestamp_ms: 1_700_000_000_000,
                    samples: vec![spillway_proto::ingest::WorkloadSample {
                        tenant: "acme".into(),
                        app: "web".into(),
                        signal: spillway_proto::ingest::Signal::Qps as i32,
                        value: 412.0,
                    }],
                };
                vec![batch.encode_to_vec()]
            },
            parse: |input| {
                use prost::Message;
                spillway_proto::ingest::SampleBatch::decode(input)
                    .map(drop)
                    .map_err(refusal)
            },
        },
        Target {
            name: "policy YAML",
            seeds: || vec![POLICY.as_bytes().to_vec()],
            parse: |input| {
                spillway_scaler::policy::parse_policy("fuzz.yaml", &text(input))
                    .map(drop)
                    .map_err(refusal)
            },
        },
        Target {
            name: "serve config YAML",
            seeds: || vec![SERVE.as_bytes().to_vec()],
            parse: |input| {
                spillway_scaler::config::ServeConfig::parse("fuzz.yaml", &text(input))
                    .map(drop)
                    .map_err(refusal)
            },
        },
        Target {
            name: "PromQL instant-query response",
            seeds: || vec![PROMQL.as_bytes().to_vec()],
            parse: |input| {
                spillway_collector::promql::parse_vector(input, &query())
                    .map(drop)
                    .map_err(refusal)
            },
        },
        Target {
            name: "client certificate (DER)",
            seeds: certificate_seed,
            parse: |input| {
                let _ = spillway_scaler::access::certs::certificate_names(input);
                Ok(())
            },
        },
        Target {
            name: "token file",
            seeds: || vec![b"a-token-of-thirty-two-characters\n".to_vec()],
            parse: |input| {
                spillway_scaler::access::tokens::parse_token(&text(input))
                    .map(drop)
                    .map_err(refusal)
            },
        },
        Target {
            name: "durations and quantities",
            seeds: || vec![b"1h30m".to_vec(), b"250ms".to_vec(), b"1.5Gi".to_vec()],
            // Each grammar accepts its own part of the seeds; all must refuse with words.
            parse: |input| {
                let text = text(input);
                let results = [
                    spillway_scaler::durations::parse(&text)
                        .map(drop)
                        .map_err(refusal),
                    spillway_scaler::policy::parse_duration_secs(&text).map(drop),
                    spillway_scaler::policy::parse_quantity(&text).map(drop),
                    spillway_scaler::placement::parse_cpu(&text)
                        .map(drop)
                        .map_err(refusal),
                    spillway_scaler::placement::parse_memory(&text)
                        .map(drop)
                        .map_err(refusal),
                ];
                let silent = results
                    .into_iter()
                    .any(|result| result.is_err_and(|e| e.trim().is_empty()));
                if silent { Err(String::new()) } else { Ok(()) }
            },
        },
    ]
}

/// Bytes the grammars care about, so random edits land on structure.
const PUNCTUATION: &[u8] = b"{}[]\":,=#\\\n\r\t -.0123456789eE+*&!|>%@`'";

#[derive(Clone, Debug)]
enum Edit {
    Flip(usize, u8),
    Insert(usize, u8),
    Remove(usize, usize),
    Repeat(usize, usize),
    Truncate(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let byte = prop_oneof![any::<u8>(), prop::sample::select(PUNCTUATION)];
    prop_oneof![
        (any::<usize>(), byte.clone()).prop_map(|(at, b)| Edit::Flip(at, b)),
        (any::<usize>(), byte).prop_map(|(at, b)| Edit::Insert(at, b)),
        (any::<usize>(), 1..16usize).prop_map(|(at, n)| Edit::Remove(at, n)),
        (any::<usize>(), 1..64usize).prop_map(|(at, n)| Edit::Repeat(at, n)),
        any::<usize>().prop_map(Edit::Truncate),
    ]
}

fn apply(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for edit in edits {
        let len = bytes.len();
        let at = |i: usize| if len == 0 { 0 } else { i % (len + 1) };
        match *edit {
            Edit::Flip(i, b) if len > 0 => bytes[i % len] = b,
            Edit::Flip(..) => {}
            Edit::Insert(i, b) => bytes.insert(at(i), b),
            Edit::Remove(i, n) => {
                let start = at(i).min(len);
                bytes.drain(start..(start + n).min(len));
            }
            Edit::Repeat(i, n) => {
                let start = at(i).min(len);
                let piece: Vec<u8> = bytes[start..(start + n).min(len)].to_vec();
                let place = (start + piece.len()).min(bytes.len());
                bytes.splice(place..place, piece);
            }
            Edit::Truncate(i) => bytes.truncate(at(i)),
        }
    }
    bytes
}

/// Arbitrary bytes, or a seed with a few edits.
pub fn inputs(seeds: Vec<Vec<u8>>) -> BoxedStrategy<Vec<u8>> {
    let arbitrary = prop::collection::vec(any::<u8>(), 0..512);
    if seeds.is_empty() {
        return arbitrary.boxed();
    }
    let mutated = (
        prop::sample::select(seeds),
        prop::collection::vec(edit(), 0..8),
    )
        .prop_map(|(seed, edits)| apply(seed, &edits));
    prop_oneof![1 => arbitrary, 3 => mutated].boxed()
}

/// A parser that panicked (proptest's shrunk input and the panic) or refused with an
/// empty message.
#[derive(Debug)]
pub struct Finding {
    pub target: &'static str,
    pub message: String,
}

/// Runs `cases` inputs through `target`; the seeds must parse.
pub fn run(target: &Target, cases: u32) -> Result<(), Finding> {
    let finding = |message: String| Finding {
        target: target.name,
        message,
    };
    for seed in (target.seeds)() {
        (target.parse)(&seed).map_err(|e| finding(format!("a valid seed was refused: {e}")))?;
    }
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let parse = target.parse;
    runner
        .run(&inputs((target.seeds)()), move |input| {
            match parse(&input) {
                Err(message) if message.trim().is_empty() => {
                    Err(TestCaseError::fail("refused without saying why"))
                }
                _ => Ok(()),
            }
        })
        .map_err(|error| match error {
            TestError::Fail(reason, input) => finding(format!("{reason} on {:?}", text(&input))),
            TestError::Abort(reason) => finding(reason.to_string()),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_stay_in_bounds() {
        let edits = [
            Edit::Remove(5, 100),
            Edit::Repeat(1, 64),
            Edit::Flip(1000, b'x'),
            Edit::Truncate(3),
            Edit::Insert(99, b'y'),
        ];
        let out = apply(b"abcdef".to_vec(), &edits);
        assert!(out.len() <= 6, "{out:?}");
        assert!(apply(Vec::new(), &edits).len() <= 1);
    }

    /// The short run: every parser, a few hundred cases each (the long run is
    /// `cargo run --release -p spillway-benches --bin parser_fuzz`).
    #[test]
    fn no_parser_panics_on_arbitrary_or_mutated_input() {
        for target in targets() {
            if let Err(finding) = run(&target, 256) {
                panic!("{}: {}", finding.target, finding.message);
            }
        }
    }
}
