//! The write gate: a `coordination.k8s.io` Lease. Only its holder writes, so several
//! Spillway replicas can run; a replica that cannot renew stops writing when its term
//! ends, and one that sees another holder stops at once.
//!
//! Liveness is judged as client-go's leader election judges it
//! (`tools/leaderelection/leaderelection.go`, `tryAcquireOrRenew` and `isLeaseValid`):
//! by when *this* replica last saw the record change, on its own clock, never by
//! comparing the holder's `renewTime` with the local clock. Two replicas' clocks may be
//! minutes apart; a holder whose clock runs ahead would otherwise keep the Lease long
//! after it died, and one whose clock runs behind would lose it while renewing.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};

use super::ApiCalls;

/// A moment as two clocks read it. The wall clock is what goes into the Lease
/// (`acquireTime`, `renewTime`) for people and other tools to read; the monotonic clock
/// is what terms are measured on, so setting the system clock neither ends a term early
/// nor stretches one (client-go measures on Go's monotonic clock for the same reason).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseNow {
    pub unix_ms: i64,
    /// Milliseconds on a clock that never goes back, from any fixed origin.
    pub monotonic_ms: i64,
}

/// Tests drive both clocks with one counter.
impl From<i64> for LeaseNow {
    fn from(ms: i64) -> Self {
        LeaseNow {
            unix_ms: ms,
            monotonic_ms: ms,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This replica's identity (the pod name in a cluster).
    pub identity: String,
    pub duration_secs: i32,
    /// Renew when our last renewal is at least this old.
    pub renew_after_secs: i64,
}

impl LeaseConfig {
    pub fn new(namespace: &str, name: &str, identity: &str) -> Self {
        LeaseConfig {
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            duration_secs: 15,
            renew_after_secs: 5,
        }
    }
}

/// What to do about the Lease, decided from its current state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseStep {
    /// No Lease yet: create it naming us.
    Create,
    /// Ours and fresh: write.
    Hold,
    /// Ours but due for renewal (or ours from before a restart: renewing proves it).
    Renew,
    /// Someone else's and unchanged for a whole term (or unnamed): take it over.
    TakeOver,
    /// Someone else's and changed within a term: do not write.
    Follow { holder: String },
}

/// The parts of a Lease whose change shows its holder alive: client-go compares the
/// whole election record; the resourceVersion also moves with any write to the object.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LeaseRecord {
    pub holder: String,
    /// `renewTime` exactly as written by the holder, on the holder's clock: only ever
    /// compared for change, never with a local time.
    pub renew_time: Option<String>,
    pub resource_version: Option<String>,
    pub duration_secs: Option<i32>,
}

impl LeaseRecord {
    pub fn from_lease(lease: &Lease) -> Self {
        let spec = lease.spec.as_ref();
        LeaseRecord {
            holder: spec
                .and_then(|s| s.holder_identity.clone())
                .unwrap_or_default(),
            renew_time: spec
                .and_then(|s| s.renew_time.as_ref())
                .map(|t| t.0.to_string()),
            resource_version: lease.metadata.resource_version.clone(),
            duration_secs: spec.and_then(|s| s.lease_duration_seconds),
        }
    }
}

/// Pure: what this replica has seen of the Lease, on its own clock, and the step that
/// follows from it. Every time is local milliseconds from the injected clock.
#[derive(Debug, Clone, Default)]
pub struct LeaseObserver {
    /// The record last seen and when it was first seen in that state.
    seen: Option<(LeaseRecord, i64)>,
    /// When our last successful write (create, renew, take-over) was sent.
    renewed_at: Option<i64>,
}

impl LeaseObserver {
    pub fn new() -> Self {
        Self::default()
    }

    /// Notes `record` (None: no Lease) as seen at `now_ms` and decides the step.
    pub fn step(
        &mut self,
        record: Option<&LeaseRecord>,
        config: &LeaseConfig,
        now_ms: i64,
    ) -> LeaseStep {
        let Some(record) = record else {
            self.seen = None;
            return LeaseStep::Create;
        };
        let seen_at = match &mut self.seen {
            // A local clock that went back leaves the elapsed time unknown: count from
            // now, so the wait is at most one term (client-go's monotonic clock cannot
            // go back, so it has no such case).
            Some((seen, at)) if seen == record => {
                *at = (*at).min(now_ms);
                *at
            }
            _ => {
                self.seen = Some((record.clone(), now_ms));
                now_ms
            }
        };
        if record.holder == config.identity {
            return match self.renewed_at {
                Some(at)
                    if at <= now_ms
                        && now_ms.saturating_sub(at) < config.renew_after_secs * 1000 =>
                {
                    LeaseStep::Hold
                }
                _ => LeaseStep::Renew,
            };
        }
        let duration_ms =
            i64::from(record.duration_secs.unwrap_or(config.duration_secs)).saturating_mul(1000);
        if record.holder.is_empty() || now_ms.saturating_sub(seen_at) >= duration_ms {
            LeaseStep::TakeOver
        } else {
            LeaseStep::Follow {
                holder: record.holder.clone(),
            }
        }
    }

    /// Our write of `written` (the server's answer, with its new resourceVersion) was
    /// accepted; `sent_ms` is when it was sent, so the term never outlasts the real one.
    pub fn wrote(&mut self, written: LeaseRecord, sent_ms: i64) {
        self.seen = Some((written, sent_ms));
        self.renewed_at = Some(sent_ms);
    }

    /// Whether our last accepted write still covers `now_ms`.
    pub fn term_runs(&self, config: &LeaseConfig, now_ms: i64) -> bool {
        let duration_ms = i64::from(config.duration_secs).saturating_mul(1000);
        self.renewed_at
            .is_some_and(|at| at <= now_ms && now_ms < at.saturating_add(duration_ms))
    }

    /// Whether we hold (or held until just now) the Lease.
    pub fn holding(&self) -> bool {
        self.renewed_at.is_some()
    }

    /// Forgets our term: another replica holds the Lease, or we handed it back.
    pub fn let_go(&mut self) {
        self.renewed_at = None;
    }
}

/// Checks (and when due, renews or takes) the Lease before a reconcile writes.
pub struct LeaseGate {
    api: Api<Lease>,
    config: LeaseConfig,
    observer: LeaseObserver,
}

fn stamp(now_ms: i64) -> Option<MicroTime> {
    Timestamp::from_millisecond(now_ms).ok().map(MicroTime)
}

impl LeaseGate {
    pub fn new(client: Client, config: LeaseConfig) -> Self {
        LeaseGate {
            api: Api::namespaced(client, &config.namespace),
            config,
            observer: LeaseObserver::new(),
        }
    }

    pub fn config(&self) -> &LeaseConfig {
        &self.config
    }

    /// One GET, plus one write when creating, renewing or taking over. True: this
    /// replica may write now. API errors count as "not leader" unless our term still runs.
    pub async fn check(&mut self, now: impl Into<LeaseNow>, calls: &mut ApiCalls) -> bool {
        let now = now.into();
        let now_ms = now.monotonic_ms;
        calls.reads += 1;
        let current = match self.api.get_opt(&self.config.name).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "reading the Lease failed");
                return self.observer.term_runs(&self.config, now_ms);
            }
        };
        let record = current.as_ref().map(LeaseRecord::from_lease);
        let step = self.observer.step(record.as_ref(), &self.config, now_ms);
        match step {
            LeaseStep::Hold => self.observer.term_runs(&self.config, now_ms),
            LeaseStep::Follow { holder } => {
                if self.observer.holding() {
                    tracing::warn!(%holder, "lost the Lease; writes stop");
                }
                self.observer.let_go();
                false
            }
            LeaseStep::Create | LeaseStep::Renew | LeaseStep::TakeOver => {
                calls.writes += 1;
                let mut lease = current.clone().unwrap_or_default();
                lease.metadata.name = Some(self.config.name.clone());
                lease.metadata.namespace = Some(self.config.namespace.clone());
                let mut spec: LeaseSpec = lease.spec.clone().unwrap_or_default();
                if step != LeaseStep::Renew {
                    spec.acquire_time = stamp(now.unix_ms);
                    if step == LeaseStep::TakeOver {
                        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                    }
                }
                spec.holder_identity = Some(self.config.identity.clone());
                spec.lease_duration_seconds = Some(self.config.duration_secs);
                spec.renew_time = stamp(now.unix_ms);
                lease.spec = Some(spec);
                // The resourceVersion read above makes the write a compare-and-swap:
                // two replicas racing for the same Lease cannot both win.
                let written = if current.is_some() {
                    self.api
                        .replace(&self.config.name, &PostParams::default(), &lease)
                        .await
                } else {
                    self.api.create(&PostParams::default(), &lease).await
                };
                match written {
                    Ok(written) => {
                        self.observer
                            .wrote(LeaseRecord::from_lease(&written), now_ms);
                        true
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "writing the Lease failed");
                        if step == LeaseStep::Renew {
                            self.observer.term_runs(&self.config, now_ms)
                        } else {
                            self.observer.let_go();
                            false
                        }
                    }
                }
            }
        }
    }

    /// Hands the Lease back (holder cleared) if we hold it, so another replica takes
    /// over at once instead of after the Lease expires. For shutdown; errors are only
    /// logged, since expiry hands it over anyway.
    pub async fn release(&mut self) {
        if !self.observer.holding() {
            return;
        }
        self.observer.let_go();
        let Ok(Some(mut lease)) = self.api.get_opt(&self.config.name).await else {
            return;
        };
        let ours = lease
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.as_deref())
            == Some(self.config.identity.as_str());
        if !ours {
            return;
        }
        if let Some(spec) = lease.spec.as_mut() {
            spec.holder_identity = None;
        }
        if let Err(e) = self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            tracing::warn!(error = %e, "handing the Lease back failed; it expires instead");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_800_000_000_000;
    const HOUR_MS: i64 = 3_600_000;

    fn config() -> LeaseConfig {
        LeaseConfig::new("ns", "spillway", "me")
    }

    /// A record as its holder writes it: `renewed_ms` on the holder's own clock,
    /// `version` the server's resourceVersion.
    fn record(holder: &str, renewed_ms: i64, version: u32) -> LeaseRecord {
        LeaseRecord {
            holder: holder.into(),
            renew_time: stamp(renewed_ms).map(|t| t.0.to_string()),
            resource_version: Some(version.to_string()),
            duration_secs: Some(15),
        }
    }

    fn follow(holder: &str) -> LeaseStep {
        LeaseStep::Follow {
            holder: holder.into(),
        }
    }

    /// One row: what the GET returned at a local time, and the step expected.
    struct Row {
        local_ms: i64,
        seen: Option<LeaseRecord>,
        expect: LeaseStep,
    }

    fn row(local_ms: i64, seen: Option<LeaseRecord>, expect: LeaseStep) -> Row {
        Row {
            local_ms,
            seen,
            expect,
        }
    }

    fn run(name: &str, rows: &[Row]) {
        let c = config();
        let mut observer = LeaseObserver::new();
        for (i, r) in rows.iter().enumerate() {
            let step = observer.step(r.seen.as_ref(), &c, r.local_ms);
            assert_eq!(step, r.expect, "{name}: row {i} at +{}ms", r.local_ms - T);
        }
    }

    #[test]
    fn another_holders_liveness_is_judged_by_when_its_record_last_changed_here() {
        // (holder's clock offset from ours, case)
        for (offset, case) in [
            (0, "clocks agree"),
            (HOUR_MS, "holder's clock an hour ahead"),
            (-HOUR_MS, "holder's clock an hour behind"),
            (-40 * 365 * 24 * HOUR_MS, "holder's clock decades behind"),
        ] {
            let theirs = |local: i64| local + offset;
            run(
                case,
                &[
                    // First sight: a full term from now, whatever renewTime says.
                    row(
                        T,
                        Some(record("other", theirs(T - 14_000), 1)),
                        follow("other"),
                    ),
                    // Renewed every 5 s: always live.
                    row(
                        T + 5_000,
                        Some(record("other", theirs(T + 5_000), 2)),
                        follow("other"),
                    ),
                    row(
                        T + 10_000,
                        Some(record("other", theirs(T + 10_000), 3)),
                        follow("other"),
                    ),
                    row(
                        T + 24_999,
                        Some(record("other", theirs(T + 10_000), 3)),
                        follow("other"),
                    ),
                    // Silent for a whole term since the change seen at +10 s: expired.
                    row(
                        T + 25_000,
                        Some(record("other", theirs(T + 10_000), 3)),
                        LeaseStep::TakeOver,
                    ),
                ],
            );
        }
    }

    #[test]
    fn a_change_of_resource_version_alone_shows_the_holder_alive() {
        let mut touched = record("other", T, 8);
        run(
            "resourceVersion",
            &[
                row(T, Some(record("other", T, 7)), follow("other")),
                row(T + 14_000, Some(touched.clone()), follow("other")),
                row(T + 28_999, Some(touched.clone()), follow("other")),
                row(T + 29_000, Some(touched.clone()), LeaseStep::TakeOver),
            ],
        );
        // The holder's own term, when it says so, is the one in force.
        touched.duration_secs = Some(60);
        run(
            "the record's duration",
            &[
                row(T, Some(touched.clone()), follow("other")),
                row(T + 59_999, Some(touched.clone()), follow("other")),
                row(T + 60_000, Some(touched), LeaseStep::TakeOver),
            ],
        );
    }

    #[test]
    fn a_released_or_missing_lease_is_taken_at_once() {
        run(
            "released",
            &[
                row(T, None, LeaseStep::Create),
                row(T, Some(record("", T + HOUR_MS, 1)), LeaseStep::TakeOver),
            ],
        );
    }

    #[test]
    fn a_local_clock_going_back_waits_at_most_one_term_from_the_jump() {
        let silent = record("other", T, 1);
        run(
            "local clock back an hour",
            &[
                row(T, Some(silent.clone()), follow("other")),
                row(T - HOUR_MS, Some(silent.clone()), follow("other")),
                row(T - HOUR_MS + 14_999, Some(silent.clone()), follow("other")),
                row(
                    T - HOUR_MS + 15_000,
                    Some(silent.clone()),
                    LeaseStep::TakeOver,
                ),
            ],
        );
        run(
            "local clock forward an hour",
            &[
                row(T, Some(silent.clone()), follow("other")),
                row(T + HOUR_MS, Some(silent), LeaseStep::TakeOver),
            ],
        );
    }

    #[test]
    fn our_own_term_runs_from_our_accepted_writes_on_our_clock() {
        let c = config();
        let mut observer = LeaseObserver::new();
        // Ours from before a restart: renew (a compare-and-swap) before writing.
        let ours = record("me", T - HOUR_MS, 4);
        assert_eq!(observer.step(Some(&ours), &c, T), LeaseStep::Renew);
        assert!(!observer.term_runs(&c, T));
        // The server's answer carries a renewTime from a clock we do not trust.
        let written = record("me", T + HOUR_MS, 5);
        observer.wrote(written.clone(), T);
        assert!(observer.term_runs(&c, T + 14_999));
        assert!(!observer.term_runs(&c, T + 15_000));
        assert_eq!(
            observer.step(Some(&written), &c, T + 4_999),
            LeaseStep::Hold
        );
        assert_eq!(
            observer.step(Some(&written), &c, T + 5_000),
            LeaseStep::Renew
        );
        // Our clock going back: the elapsed time is unknown, so renew now, and the term
        // no longer counts as running (API errors then stop writes).
        assert_eq!(
            observer.step(Some(&written), &c, T - HOUR_MS),
            LeaseStep::Renew
        );
        assert!(!observer.term_runs(&c, T - HOUR_MS));
        // Another replica took it: follow, and our term ends with it.
        let theirs = record("other", T, 6);
        assert_eq!(observer.step(Some(&theirs), &c, T + 6_000), follow("other"));
        observer.let_go();
        assert!(!observer.holding() && !observer.term_runs(&c, T + 6_000));
    }
}
