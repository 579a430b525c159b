//! Freezes on the status API:
//!
//! - `GET /api/v1/freezes`: the freezes over the caller's tenants (status role).
//! - `POST /api/v1/freezes` with `{"scope": "acme/web", "reason": "...", "for": "30m",
//!   "floor": 10}`: sets one (admin role only, input `control`); a freeze of the same
//!   scope is replaced.
//! - `DELETE /api/v1/freezes?scope=acme/web`: lifts one (admin role only).
//!
//! A freeze takes effect at the next decision (within one decision tick). In HA mode a
//! freeze set here would reach only the replica that took the call, so it is refused
//! with the annotation to use instead.

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};

use super::{Freeze, FreezeRequest, Scope, annotation};
use crate::access::{HttpCredentials, Input, TenantScope};
use crate::audit::AuditEntry;
use crate::http::HttpState;
use crate::serve::workloads::Workloads;

pub fn router() -> Router<HttpState> {
    Router::new().route("/api/v1/freezes", get(list).post(set).delete(lift))
}

/// What setting or lifting a freeze answers.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FreezeAnswer {
    pub freeze: Freeze,
    /// Workloads it covers now (0: the scope names nothing Spillway decides, yet).
    pub covers: usize,
    /// Kept in the freeze file, so it outlasts a restart; false: in memory only (no
    /// `freezeFile:`, or writing it failed; the server log says why).
    #[serde(default)]
    pub durable: bool,
}

/// Writes the API freezes to the freeze file, if there is one; whether they are there.
fn persist(state: &HttpState) -> bool {
    let Some(file) = state.freeze_file.as_ref() else {
        return false;
    };
    match file.save(|| state.workloads.freezes().api_freezes()) {
        Ok(()) => true,
        Err(error) => {
            tracing::error!(
                kind = error.label(),
                "{error}; the freeze holds until a restart only"
            );
            false
        }
    }
}

#[derive(Deserialize)]
struct LiftQuery {
    scope: String,
}

/// The freezes over tenants the caller may read; freezes of everything to everyone.
pub fn visible_freezes(workloads: &Workloads, tenants: &TenantScope) -> Vec<Freeze> {
    workloads
        .freezes()
        .list()
        .into_iter()
        .filter(|f| f.scope.tenant().is_none_or(|t| tenants.allows(t)))
        .collect()
}

/// The audit entries of tenants the caller may read; entries about every tenant (the
/// policy directory, a freeze of everything) to callers that read them all, except a
/// freeze of everything, which concerns everyone.
pub fn visible_audit(workloads: &Workloads, tenants: &TenantScope) -> Vec<AuditEntry> {
    workloads
        .audit()
        .list()
        .into_iter()
        .filter(|e| match &e.tenant {
            Some(t) => tenants.allows(t),
            None => tenants.is_all() || e.subject == Scope::All.to_string(),
        })
        .collect()
}

fn covers(workloads: &Workloads, scope: &Scope) -> usize {
    workloads
        .all()
        .iter()
        .filter(|e| scope.covers(&e.key))
        .count()
}

async fn list(State(state): State<HttpState>, credentials: HttpCredentials) -> Response {
    match state.access.authorize_http(Input::Status, &credentials) {
        Ok(permit) => {
            axum::Json(visible_freezes(&state.workloads, &permit.tenants)).into_response()
        }
        Err(refused) => refused.into_response(),
    }
}

/// In HA mode a freeze set on one replica would not hold on the others: the CLI reaches
/// one replica through the Service. This holds even when every writer feeds every
/// replica (`ha.writesReachEveryReplica`), since a freeze is not such a write.
fn ha_refusal(state: &HttpState) -> Option<Response> {
    state.ha_mode.then(|| {
        (
            StatusCode::CONFLICT,
            format!(
                "freezes are not set through the API in HA mode (`ha:` in the serve config): this replica alone would hold it; annotate the ScaledObject instead, which every replica reads: kubectl annotate scaledobject NAME {}=REASON [{}=N] [{}=RFC3339]\n",
                annotation::FREEZE,
                annotation::FLOOR,
                annotation::UNTIL
            ),
        )
            .into_response()
    })
}

async fn set(
    State(state): State<HttpState>,
    credentials: HttpCredentials,
    body: String,
) -> Response {
    let permit = match state.access.authorize_http(Input::Control, &credentials) {
        Ok(permit) => permit,
        Err(refused) => return refused.into_response(),
    };
    if let Some(refused) = ha_refusal(&state) {
        return refused;
    }
    let request: FreezeRequest = match serde_json::from_str(&body) {
        Ok(request) => request,
        Err(error) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("not a freeze request: {error}\n"),
            )
                .into_response();
        }
    };
    let now_ms = spillway_collector::clock::unix_ms();
    let freeze = match request.into_freeze(&permit.name(), now_ms) {
        Ok(freeze) => freeze,
        Err(error) => return (StatusCode::BAD_REQUEST, format!("{error}\n")).into_response(),
    };
    let covers = covers(&state.workloads, &freeze.scope);
    state
        .workloads
        .freezes()
        .set(freeze.clone(), state.workloads.audit());
    let durable = persist(&state);
    (
        StatusCode::CREATED,
        axum::Json(FreezeAnswer {
            freeze,
            covers,
            durable,
        }),
    )
        .into_response()
}

async fn lift(
    State(state): State<HttpState>,
    credentials: HttpCredentials,
    query: Result<Query<LiftQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let permit = match state.access.authorize_http(Input::Control, &credentials) {
        Ok(permit) => permit,
        Err(refused) => return refused.into_response(),
    };
    if let Some(refused) = ha_refusal(&state) {
        return refused;
    }
    let Ok(Query(query)) = query else {
        return (
            StatusCode::BAD_REQUEST,
            "name the freeze to lift: DELETE /api/v1/freezes?scope=TENANT/APP (or TENANT, or *)\n",
        )
            .into_response();
    };
    let scope: Scope = match query.scope.parse() {
        Ok(scope) => scope,
        Err(error) => return (StatusCode::BAD_REQUEST, format!("{error}\n")).into_response(),
    };
    let now_ms = spillway_collector::clock::unix_ms();
    match state.workloads.freezes().lift(
        &scope,
        &permit.name(),
        state.workloads.audit(),
        now_ms,
    ) {
        Some(freeze) => axum::Json(FreezeAnswer {
            covers: covers(&state.workloads, &scope),
            durable: persist(&state),
            freeze,
        })
        .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            format!(
                "no freeze of `{scope}` was set through the API (a freeze on a ScaledObject is lifted by removing its {} annotation)\n",
                annotation::FREEZE
            ),
        )
            .into_response(),
    }
}
