//! The collector's integration tests in one binary: the exposition parser against its
//! grammar and against `prometheus-parse`, ingest, and each input over real sockets on
//! 127.0.0.1.

mod exposition_differential;
mod exposition_props;
mod exposition_syntax;
mod ingest_props;
mod ingest_push;
mod promql_source;
mod remote_write_http;
mod scrape_resources;
mod scrape_targets_change;
