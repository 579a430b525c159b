//! A real Prometheus server for tests: started on a free loopback port with a generated
//! config and a temporary data directory, stopped and cleaned up on drop.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

/// Finds an executable on `PATH`.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// A Prometheus tool, or `None` after saying SKIPPED (a failure when
/// `SPILLWAY_REQUIRE_PROMETHEUS=1`).
pub fn tool(name: &str) -> Option<PathBuf> {
    if let Some(path) = find_on_path(name) {
        return Some(path);
    }
    assert!(
        std::env::var("SPILLWAY_REQUIRE_PROMETHEUS").as_deref() != Ok("1"),
        "{name} is not on PATH and SPILLWAY_REQUIRE_PROMETHEUS=1 (install Debian's `prometheus` package)"
    );
    eprintln!("SKIPPED: {name} is not on PATH (Debian's `prometheus` package has it)");
    None
}

/// Series written into the TSDB before Prometheus starts, as OpenMetrics text (ending
/// in `# EOF`), by `promtool tsdb create-blocks-from openmetrics`.
pub struct Backfill<'a> {
    pub promtool: &'a Path,
    pub openmetrics: &'a str,
}

/// A running Prometheus, killed and its directory removed on drop.
pub struct Prometheus {
    child: Child,
    dir: PathBuf,
    pub addr: SocketAddr,
    client: reqwest::Client,
}

fn free_port() -> std::io::Result<u16> {
    // Prometheus takes its address as a flag, so the port is picked here and released;
    // a collision with another process in the gap is retried by the caller.
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn config(target: SocketAddr, interval: &str, rules: &[PathBuf]) -> String {
    let rule_files: String = rules
        .iter()
        .map(|rule| format!("  - '{}'\n", rule.display()))
        .collect();
    let rule_files = if rule_files.is_empty() {
        String::new()
    } else {
        format!("rule_files:\n{rule_files}")
    };
    format!(
        "global:\n  scrape_interval: {interval}\n  scrape_timeout: {interval}\n  evaluation_interval: {interval}\n{rule_files}scrape_configs:\n  - job_name: spillway\n    metrics_path: /metrics\n    static_configs:\n      - targets: ['{target}']\n"
    )
}

impl Prometheus {
    /// Starts `binary` scraping `target` every `interval` (e.g. `"1s"`), and waits
    /// (bounded) until it reports ready.
    pub async fn start(binary: &Path, target: SocketAddr, interval: &str) -> Self {
        Self::start_with_rules(binary, target, interval, &[]).await
    }

    /// [`Self::start`] with alerting `rules` files, evaluated every `interval`.
    pub async fn start_with_rules(
        binary: &Path,
        target: SocketAddr,
        interval: &str,
        rules: &[PathBuf],
    ) -> Self {
        Self::start_full(binary, target, interval, rules, None).await
    }

    /// [`Self::start`] with a past already in its TSDB, kept for two days.
    pub async fn start_with_history(
        binary: &Path,
        target: SocketAddr,
        interval: &str,
        backfill: Backfill<'_>,
    ) -> Self {
        Self::start_full(binary, target, interval, &[], Some(&backfill)).await
    }

    async fn start_full(
        binary: &Path,
        target: SocketAddr,
        interval: &str,
        rules: &[PathBuf],
        backfill: Option<&Backfill<'_>>,
    ) -> Self {
        let mut last_error = String::new();
        for attempt in 0..3 {
            match Self::try_start(binary, target, interval, rules, backfill, attempt).await {
                Ok(prometheus) => return prometheus,
                Err(error) => last_error = error,
            }
        }
        panic!("Prometheus did not start in 3 attempts: {last_error}");
    }

    async fn try_start(
        binary: &Path,
        target: SocketAddr,
        interval: &str,
        rules: &[PathBuf],
        backfill: Option<&Backfill<'_>>,
        attempt: u32,
    ) -> Result<Self, String> {
        // A fresh directory per attempt (removed on drop): a reused one would hand
        // Prometheus an older run's data.
        let dir = tempfile::Builder::new()
            .prefix(&format!("spillway-prometheus-{attempt}-"))
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?
            .keep();
        std::fs::create_dir_all(dir.join("data")).map_err(|e| format!("temp dir: {e}"))?;
        if let Some(backfill) = backfill {
            let input = dir.join("backfill.om");
            std::fs::write(&input, backfill.openmetrics)
                .map_err(|e| format!("writing the backfill: {e}"))?;
            let output = Command::new(backfill.promtool)
                .args(["tsdb", "create-blocks-from", "openmetrics"])
                .arg(&input)
                .arg(dir.join("data"))
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("starting {}: {e}", backfill.promtool.display()))?;
            if !output.status.success() {
                return Err(format!(
                    "promtool backfill failed: {}",
                    String::from_utf8_lossy(&output.stderr)
                ));
            }
        }
        let retention = if backfill.is_some() { "2d" } else { "1h" };
        let config_path = dir.join("prometheus.yml");
        std::fs::write(&config_path, config(target, interval, rules))
            .map_err(|e| format!("writing config: {e}"))?;
        let port = free_port().map_err(|e| format!("free port: {e}"))?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let log = std::fs::File::create(dir.join("prometheus.log"))
            .map_err(|e| format!("log file: {e}"))?;
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg(format!("--storage.tsdb.retention.time={retention}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", binary.display()))?;
        let client = crate::http();
        let mut prometheus = Self {
            child,
            dir,
            addr,
            client,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = prometheus.child.try_wait() {
                return Err(format!(
                    "Prometheus exited with {status}: {}",
                    prometheus.log()
                ));
            }
            let ready = prometheus
                .client
                .get(format!("http://{addr}/-/ready"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return Ok(prometheus);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!(
            "Prometheus not ready within 30s: {}",
            prometheus.log()
        ))
    }

    /// What Prometheus logged so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// Runs an instant query; `Ok` holds the result series (vector or matrix), `Err` the
    /// error Prometheus returned or why the call failed.
    pub async fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let response = self
            .client
            .post(format!("http://{}/api/v1/query", self.addr))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("query={}", form_encode(expr)))
            .send()
            .await
            .map_err(|e| format!("query request failed: {e}"))?;
        let body: Value = response
            .json()
            .await
            .map_err(|e| format!("query answer is not JSON: {e}"))?;
        if body["status"] != "success" {
            return Err(format!(
                "{}: {}",
                body["errorType"].as_str().unwrap_or("error"),
                body["error"].as_str().unwrap_or("no message")
            ));
        }
        match &body["data"]["result"] {
            Value::Array(series) => Ok(series.clone()),
            // A scalar or string result is one value.
            other if !other.is_null() => Ok(vec![other.clone()]),
            _ => Err(format!("no result in {body}")),
        }
    }

    /// Health of the scrape targets as Prometheus sees them (`up`, last error).
    pub async fn targets(&self) -> String {
        match self
            .client
            .get(format!("http://{}/api/v1/targets", self.addr))
            .send()
            .await
        {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(e) => format!("targets request failed: {e}"),
        }
    }
}

/// `application/x-www-form-urlencoded` value encoding.
fn form_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(byte))
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding_escapes_promql() {
        assert_eq!(
            form_encode(r#"sum by (le) (x{a=~"b.+"}[15s])"#),
            "sum+by+%28le%29+%28x%7Ba%3D~%22b.%2B%22%7D%5B15s%5D%29"
        );
    }
}
