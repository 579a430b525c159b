//! The emergency brake's model: what a freeze covers, holds and says, and which of the
//! freezes over a workload decides it. Pure: times are passed in. The freezes
//! themselves (set through the API, read from ScaledObjects) and their audit trail live
//! in `spillway-scaler`'s `freeze` module.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use spillway_model::WorkloadKey;

/// The longest freeze the API sets: a brake for an incident, not a configuration.
pub const MAX_FREEZE_MS: i64 = 7 * 24 * 3_600_000;
/// How long an expired API freeze stays listed (as expired) before it is forgotten.
pub const EXPIRED_KEPT_MS: i64 = 10 * 60_000;
/// The decision rule a frozen workload's decisions carry.
pub const RULE: &str = "frozen";

/// What a freeze covers.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Every workload of every tenant.
    All,
    Tenant(String),
    App {
        tenant: String,
        app: String,
    },
}

impl Scope {
    pub fn covers(&self, key: &WorkloadKey) -> bool {
        match self {
            Scope::All => true,
            Scope::Tenant(tenant) => **tenant == *key.tenant,
            Scope::App { tenant, app } => **tenant == *key.tenant && **app == *key.app,
        }
    }

    pub fn tenant(&self) -> Option<&str> {
        match self {
            Scope::All => None,
            Scope::Tenant(tenant) | Scope::App { tenant, .. } => Some(tenant),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Scope::All => "all",
            Scope::Tenant(_) => "tenant",
            Scope::App { .. } => "app",
        }
    }

    /// Narrower scopes win ties: an app's own freeze explains it better than its
    /// tenant's.
    fn specificity(&self) -> u8 {
        match self {
            Scope::All => 0,
            Scope::Tenant(_) => 1,
            Scope::App { .. } => 2,
        }
    }
}

impl From<&WorkloadKey> for Scope {
    fn from(key: &WorkloadKey) -> Self {
        Scope::App {
            tenant: key.tenant.to_string(),
            app: key.app.to_string(),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::All => f.write_str("*"),
            Scope::Tenant(tenant) => f.write_str(tenant),
            Scope::App { tenant, app } => write!(f, "{tenant}/{app}"),
        }
    }
}

impl FromStr for Scope {
    type Err = String;

    /// `*` (everything), `TENANT` or `TENANT/APP`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let valid = |part: &str| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        match text.split_once('/') {
            _ if text == "*" => Ok(Scope::All),
            None if valid(text) => Ok(Scope::Tenant(text.to_owned())),
            Some((tenant, app)) if valid(tenant) && valid(app) => Ok(Scope::App {
                tenant: tenant.to_owned(),
                app: app.to_owned(),
            }),
            _ => Err(format!(
                "`{text}` is not a freeze scope; write `*` (everything), TENANT or TENANT/APP"
            )),
        }
    }
}

impl Serialize for Scope {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Where a freeze was set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The status API (`spillway freeze`).
    Api,
    /// The ScaledObject's `spillway.io/freeze` annotation.
    Annotation,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Api => "api",
            Source::Annotation => "annotation",
        }
    }
}

/// One freeze.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Freeze {
    pub scope: Scope,
    pub source: Source,
    pub reason: String,
    /// Who set it: the caller's identity, or `annotation`.
    pub by: String,
    /// Hold at least this many replicas; `None`: hold what runs.
    #[serde(default)]
    pub floor: Option<u32>,
    pub since_ms: i64,
    /// When it stops holding; `None` (annotations only): while the annotation is there.
    #[serde(default)]
    pub until_ms: Option<i64>,
    /// Something in the freeze could not be read (an annotation's floor or expiry); it
    /// holds anyway, since the brake was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

impl Freeze {
    pub fn expired(&self, now_ms: i64) -> bool {
        self.until_ms.is_some_and(|until| now_ms >= until)
    }

    /// The replicas held for a workload that runs `current`.
    pub fn held(&self, current: u32) -> u32 {
        current.max(self.floor.unwrap_or(0))
    }

    /// One line for reasons and logs.
    pub fn describe(&self) -> String {
        let hold = match self.floor {
            Some(floor) => format!("held at no fewer than {floor} replicas"),
            None => "held where they are".to_owned(),
        };
        let until = match self.until_ms {
            Some(until) => format!("until {}", timestamp(until)),
            None => "until the annotation is removed".to_owned(),
        };
        let problem = self
            .problem
            .as_ref()
            .map_or(String::new(), |p| format!(" ({p})"));
        format!(
            "frozen ({} {}, by {}): {}; {hold}, {until}{problem}",
            self.source.as_str(),
            self.scope,
            self.by,
            self.reason
        )
    }
}

/// RFC 3339 in UTC, to the second.
pub fn timestamp(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| format!("{ms} ms"))
}

/// A freeze as asked for through the API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FreezeRequest {
    pub scope: Scope,
    pub reason: String,
    /// How long it holds, e.g. `30m`.
    #[serde(rename = "for")]
    pub duration: String,
    #[serde(default)]
    pub floor: Option<u32>,
}

impl FreezeRequest {
    /// The freeze this request sets, or why it is refused.
    pub fn into_freeze(self, by: &str, now_ms: i64) -> Result<Freeze, String> {
        let reason = self.reason.trim().to_owned();
        if reason.is_empty() {
            return Err("a freeze needs a reason (who asked, and why)".to_owned());
        }
        if reason.len() > 512 {
            return Err("a freeze's reason is at most 512 bytes".to_owned());
        }
        let duration = crate::durations::parse(&self.duration).map_err(|e| e.to_string())?;
        let ms = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        if ms <= 0 || ms > MAX_FREEZE_MS {
            return Err(format!(
                "a freeze lasts more than 0s and at most 168h, not {}",
                self.duration
            ));
        }
        Ok(Freeze {
            scope: self.scope,
            source: Source::Api,
            reason,
            by: by.to_owned(),
            floor: self.floor,
            since_ms: now_ms,
            until_ms: Some(now_ms.saturating_add(ms)),
            problem: None,
        })
    }
}

/// What the freezes say about one workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// This freeze holds it (the one with the highest floor, the narrowest on a tie).
    Holding(Freeze),
    /// Only expired freezes apply: scaling goes on, and the freeze is still listed.
    Expired(Freeze),
}

impl Verdict {
    pub fn freeze(&self) -> &Freeze {
        match self {
            Verdict::Holding(f) | Verdict::Expired(f) => f,
        }
    }
}

/// The freezes over one workload, decided.
pub fn verdict<'a>(applying: impl IntoIterator<Item = &'a Freeze>, now_ms: i64) -> Option<Verdict> {
    let (live, expired): (Vec<&Freeze>, Vec<&Freeze>) =
        applying.into_iter().partition(|f| !f.expired(now_ms));
    if let Some(holding) = live
        .into_iter()
        .max_by_key(|f| (f.floor.unwrap_or(0), f.scope.specificity()))
    {
        return Some(Verdict::Holding(holding.clone()));
    }
    expired
        .into_iter()
        .max_by_key(|f| f.until_ms)
        .map(|f| Verdict::Expired(f.clone()))
}

/// A freeze as a decision publishes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FreezeView {
    /// False: the freeze expired and no longer holds.
    pub holding: bool,
    pub freeze: Freeze,
    /// What the engine decided meanwhile, and why.
    pub engine_desired: u32,
    pub engine_rule: String,
}

/// What a frozen workload is served: `held`, as a plan the HPA seam serves
/// ([`crate::published::serve_plan`]). No burst cap, warm-up floor or `replicas.max`
/// applies (the brake overrides the policy); a floor within the HPA's tolerance of what
/// runs may be raised to the first count the HPA applies, so the floor is reached.
pub fn frozen_plan(held: u32) -> crate::published::ServePlan {
    crate::published::ServePlan {
        desired: held,
        ceiling: u32::MAX,
        max: held,
        warming_up: false,
        frozen: true,
    }
}

/// The verdict as a decision publishes it, next to what the engine decided.
pub fn view(verdict: Verdict, decision: &crate::engine::Decision) -> FreezeView {
    let holding = matches!(verdict, Verdict::Holding(_));
    let freeze = match verdict {
        Verdict::Holding(f) | Verdict::Expired(f) => f,
    };
    FreezeView {
        holding,
        freeze,
        engine_desired: decision.desired,
        engine_rule: decision.rule.label().to_owned(),
    }
}

/// The rule and reason of a frozen decision: the freeze, the count held, and what the
/// engine would do (`engine_reason`) once it goes.
pub fn explain(view: &FreezeView, engine_reason: &str, held: u32) -> (&'static str, String) {
    (
        RULE,
        format!(
            "{}; serving {held}; without the freeze: {} ({}): {engine_reason}",
            view.freeze.describe(),
            view.engine_desired,
            view.engine_rule
        ),
    )
}
