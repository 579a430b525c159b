//! The demo gateway: an HTTP endpoint exposing request counters in the Prometheus text
//! format, driven by a [`Profile`], as a real gateway's `/metrics` would.
//!
//! `PUT /traffic/{tenant}/{app}` with a number in the body overrides an app's rate from
//! that instant (`DELETE` returns it to the profile), so a person, or a test, can make a
//! traffic step happen at a known moment.

use std::fmt::Write as _;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use tokio::net::TcpListener;
use tokio::time::Instant;

use super::profile::{AppProfile, Profile};

struct AppCounter {
    profile: AppProfile,
    /// Fixed rate set through the control API, replacing the profile while set.
    pinned: Option<f64>,
    requests: f64,
}

struct Traffic {
    started: Instant,
    integrated_to: f64,
    apps: Vec<AppCounter>,
}

impl Traffic {
    /// Brings every counter up to now: the profile's exact integral, or the pinned rate.
    fn advance(&mut self) {
        let now = self.started.elapsed().as_secs_f64();
        let from = self.integrated_to;
        for app in &mut self.apps {
            app.requests += match app.pinned {
                Some(rate) => rate * (now - from),
                None => app.profile.requests_between(from, now),
            };
        }
        self.integrated_to = now;
    }

    fn rate(&self, app: &AppCounter) -> f64 {
        app.pinned
            .unwrap_or_else(|| app.profile.rate_at(self.started.elapsed().as_secs_f64()))
    }
}

/// Shared handle to the gateway's counters.
#[derive(Clone)]
pub struct DemoGateway {
    traffic: Arc<Mutex<Traffic>>,
}

impl DemoGateway {
    pub fn new(profile: Profile) -> Self {
        let apps = profile
            .apps
            .into_iter()
            .map(|profile| AppCounter {
                profile,
                pinned: None,
                requests: 0.0,
            })
            .collect();
        Self {
            traffic: Arc::new(Mutex::new(Traffic {
                started: Instant::now(),
                integrated_to: 0.0,
                apps,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Traffic> {
        self.traffic.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The exposition a scrape sees now.
    pub fn exposition(&self) -> String {
        let mut traffic = self.lock();
        traffic.advance();
        let mut out = String::with_capacity(256 + traffic.apps.len() * 96);
        out.push_str(
            "# HELP gateway_requests_total Requests the demo gateway routed, by tenant and app.\n",
        );
        out.push_str("# TYPE gateway_requests_total counter\n");
        for app in &traffic.apps {
            let _ = writeln!(
                out,
                "gateway_requests_total{{tenant=\"{}\",app=\"{}\",code=\"200\"}} {}",
                escape(&app.profile.tenant),
                escape(&app.profile.app),
                app.requests.floor()
            );
        }
        out.push_str(
            "# HELP gateway_demo_rate Requests per second the demo profile is sending now.\n",
        );
        out.push_str("# TYPE gateway_demo_rate gauge\n");
        for app in &traffic.apps {
            let _ = writeln!(
                out,
                "gateway_demo_rate{{tenant=\"{}\",app=\"{}\"}} {}",
                escape(&app.profile.tenant),
                escape(&app.profile.app),
                traffic.rate(app)
            );
        }
        out
    }

    /// Pins an app's rate from now on (`None` returns it to the profile). Returns false
    /// for an app the gateway does not serve.
    pub fn pin(&self, tenant: &str, app: &str, rate: Option<f64>) -> bool {
        let mut traffic = self.lock();
        traffic.advance();
        match traffic
            .apps
            .iter_mut()
            .find(|a| a.profile.tenant == tenant && a.profile.app == app)
        {
            Some(counter) => {
                counter.pinned = rate;
                true
            }
            None => false,
        }
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/metrics", get(metrics))
            .route("/traffic/{tenant}/{app}", put(pin_rate).delete(unpin_rate))
            .with_state(self.clone())
    }

    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

async fn metrics(State(gateway): State<DemoGateway>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        gateway.exposition(),
    )
        .into_response()
}

async fn pin_rate(
    State(gateway): State<DemoGateway>,
    Path((tenant, app)): Path<(String, String)>,
    body: String,
) -> Response {
    let rate = match body.trim().parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate >= 0.0 => rate,
        _ => {
            return (
                StatusCode::BAD_REQUEST,
                "body must be a requests-per-second number ≥ 0\n",
            )
                .into_response();
        }
    };
    if gateway.pin(&tenant, &app, Some(rate)) {
        format!("{tenant}/{app} pinned at {rate} qps\n").into_response()
    } else {
        (
            StatusCode::NOT_FOUND,
            format!("no app {tenant}/{app} in the demo profile\n"),
        )
            .into_response()
    }
}

async fn unpin_rate(
    State(gateway): State<DemoGateway>,
    Path((tenant, app)): Path<(String, String)>,
) -> Response {
    if gateway.pin(&tenant, &app, None) {
        format!("{tenant}/{app} follows the profile again\n").into_response()
    } else {
        (
            StatusCode::NOT_FOUND,
            format!("no app {tenant}/{app} in the demo profile\n"),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn counters_follow_the_profile_and_pins() {
        let profile =
            Profile::parse("apps:\n  - {tenant: acme, app: web, cycle: [{for: 10s, qps: 100}]}\n")
                .unwrap();
        let gateway = DemoGateway::new(profile);
        tokio::time::advance(std::time::Duration::from_secs(3)).await;
        assert!(
            gateway
                .exposition()
                .contains("gateway_requests_total{tenant=\"acme\",app=\"web\",code=\"200\"} 300\n")
        );
        assert!(gateway.pin("acme", "web", Some(0.0)));
        tokio::time::advance(std::time::Duration::from_secs(5)).await;
        let text = gateway.exposition();
        assert!(text.contains("code=\"200\"} 300\n"), "{text}");
        assert!(
            text.contains("gateway_demo_rate{tenant=\"acme\",app=\"web\"} 0\n"),
            "{text}"
        );
        assert!(!gateway.pin("acme", "nope", None));
    }
}
