//! An in-test gateway: serves `gateway_requests_total` counters the test advances, or a
//! failure mode (garbage, errors, hanging), and glitches of single series (left out of
//! a scrape, or served as NaN) for an exact number of scrapes.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

/// How the gateway answers a scrape.
#[derive(Clone, Debug, PartialEq)]
pub enum Mode {
    /// Real exposition of the counters.
    Healthy,
    /// 200 with a body that is not Prometheus text.
    Garbage,
    /// HTTP 500.
    Failing,
    /// Never answers within the scrape timeout.
    Hanging,
}

/// How one series is misrendered in the next scrapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Glitch {
    /// Left out of the page.
    Missing,
    /// Rendered with the value `NaN`.
    NaN,
}

#[derive(Default)]
struct Counters {
    values: Vec<(String, String, f64)>,
    /// (tenant, app, glitch, scrapes left).
    glitches: Vec<(String, String, Glitch, u32)>,
    /// Healthy pages served.
    scrapes: u64,
    /// Glitched series renderings served.
    glitched: u64,
}

/// A workload whose counter grows continuously at a settable rate.
struct Flow {
    tenant: String,
    app: String,
    qps: Arc<AtomicU64>,
    since: tokio::time::Instant,
}

#[derive(Clone)]
pub struct FakeGateway {
    counters: Arc<Mutex<Counters>>,
    flows: Arc<Mutex<Vec<Flow>>>,
    mode: Arc<Mutex<Mode>>,
    pub addr: SocketAddr,
}

impl FakeGateway {
    /// Starts serving `/metrics` on 127.0.0.1 with a free port.
    pub async fn start(mode: Mode) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let gateway = Self {
            counters: Arc::default(),
            flows: Arc::default(),
            mode: Arc::new(Mutex::new(mode)),
            addr,
        };
        let app = Router::new()
            .route("/metrics", get(metrics))
            .with_state(gateway.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        gateway
    }

    pub fn url(&self) -> String {
        format!("http://{}/metrics", self.addr)
    }

    /// Adds `requests` to a workload's counter.
    pub fn add(&self, tenant: &str, app: &str, requests: f64) {
        let mut counters = self.counters.lock().expect("counters lock");
        match counters
            .values
            .iter_mut()
            .find(|(t, a, _)| t == tenant && a == app)
        {
            Some(entry) => entry.2 += requests,
            None => counters.values.push((tenant.into(), app.into(), requests)),
        }
    }

    /// Sets a workload's counter to `value` (e.g. a gateway that has been up for long).
    pub fn set(&self, tenant: &str, app: &str, value: f64) {
        let mut counters = self.counters.lock().expect("counters lock");
        counters
            .values
            .retain(|(t, a, _)| !(t == tenant && a == app));
        counters.values.push((tenant.into(), app.into(), value));
    }

    /// Misrenders a workload's series in the next `scrapes` healthy pages.
    pub fn glitch(&self, tenant: &str, app: &str, glitch: Glitch, scrapes: u32) {
        let mut counters = self.counters.lock().expect("counters lock");
        counters
            .glitches
            .push((tenant.into(), app.into(), glitch, scrapes));
    }

    /// Healthy pages served so far.
    pub fn scrapes(&self) -> u64 {
        self.counters.lock().expect("counters lock").scrapes
    }

    /// Glitched series renderings served so far.
    pub fn glitched(&self) -> u64 {
        self.counters.lock().expect("counters lock").glitched
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.mode.lock().expect("mode lock") = mode;
    }

    /// Adds `qps × interval` every `interval` in the background: steady traffic of
    /// whole requests per second.
    pub fn drive(&self, tenant: &str, app: &str, qps: u64, interval: Duration) {
        self.drive_rate(tenant, app, Arc::new(AtomicU64::new(qps)), interval);
    }

    /// Traffic at exactly `qps` requests/s, whatever the scrape timing: the counter is
    /// brought up to date (rate × time since the last scrape) whenever it is scraped,
    /// so rates carry no tick jitter. A change of `qps` counts from the last scrape.
    pub fn drive_exact(&self, tenant: &str, app: &str, qps: Arc<AtomicU64>) {
        self.add(tenant, app, 0.0);
        self.flows.lock().expect("flows lock").push(Flow {
            tenant: tenant.into(),
            app: app.into(),
            qps,
            since: tokio::time::Instant::now(),
        });
    }

    fn advance_flows(&self) {
        let now = tokio::time::Instant::now();
        let mut flows = self.flows.lock().expect("flows lock");
        for flow in flows.iter_mut() {
            let requests =
                flow.qps.load(Ordering::Relaxed) as f64 * (now - flow.since).as_secs_f64();
            flow.since = now;
            self.add(&flow.tenant, &flow.app, requests);
        }
    }

    /// Like [`Self::drive`], at whatever whole requests/s `qps` holds when each tick
    /// comes: the test changes the rate while the traffic runs.
    pub fn drive_rate(&self, tenant: &str, app: &str, qps: Arc<AtomicU64>, interval: Duration) {
        let gateway = self.clone();
        let (tenant, app) = (tenant.to_owned(), app.to_owned());
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            loop {
                ticker.tick().await;
                let rate = qps.load(Ordering::Relaxed) as f64;
                gateway.add(&tenant, &app, rate * interval.as_secs_f64());
            }
        });
    }
}

async fn metrics(State(gateway): State<FakeGateway>) -> Response {
    let mode = gateway.mode.lock().expect("mode lock").clone();
    match mode {
        Mode::Healthy => {
            gateway.advance_flows();
            let mut counters = gateway.counters.lock().expect("counters lock");
            let counters = &mut *counters;
            counters.scrapes += 1;
            let mut body = String::from("# TYPE gateway_requests_total counter\n");
            for (tenant, app, value) in &counters.values {
                let glitch = counters
                    .glitches
                    .iter_mut()
                    .find(|(t, a, _, left)| t == tenant && a == app && *left > 0);
                let rendered = match glitch {
                    Some((_, _, glitch, left)) => {
                        *left -= 1;
                        counters.glitched += 1;
                        match glitch {
                            Glitch::Missing => continue,
                            Glitch::NaN => "NaN".to_owned(),
                        }
                    }
                    None => value.to_string(),
                };
                body.push_str(&format!(
                    "gateway_requests_total{{tenant=\"{tenant}\",app=\"{app}\",code=\"200\"}} {rendered}\n"
                ));
            }
            counters.glitches.retain(|(_, _, _, left)| *left > 0);
            body.into_response()
        }
        Mode::Garbage => "<html><body>502 Bad Gateway</body></html>\n".into_response(),
        Mode::Failing => (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response(),
        Mode::Hanging => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            "late".into_response()
        }
    }
}
