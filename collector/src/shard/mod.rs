//! Sharded collectors: past one machine, N `spillway collector --shard I/N` processes
//! each scrape the targets whose hash falls in their shard, and every scaler polls all
//! shards and sums their answers.
//!
//! - [`ownership`]: which shard owns a target: Prometheus' `hashmod` over the target's
//!   address, so Prometheus relabelling and Spillway can split one target list alike.
//! - [`server`]: the shard side, `spillway.shard.v1.Shard/Snapshot`.
//! - [`merge`]: pure: the shards' latest answers → per-workload sums, complete or not.
//! - [`fanout`]: the scaler side: polls every shard, merges, feeds [`crate::ingest`].
//!
//! A lost shard must never read as traffic vanishing. While a shard is lost (no warm
//! answer for `lostAfter`), every sum it last contributed to (every sum, if it never
//! answered) is stored as a lower bound: the engine may still scale up on it, never
//! down. Workloads the lost shard never reported keep complete sums.

pub mod fanout;
pub mod merge;
pub mod ownership;
pub mod server;

pub use fanout::{FanOut, FanOutConfig, FanOutStats, ShardStatus};
pub use ownership::{ShardSpec, ShardSpecError};
pub use server::{ShardServer, ShardServerStats};
