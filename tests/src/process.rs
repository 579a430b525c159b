//! Starting and stopping the real `spillway` binary.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A running `spillway`, killed on drop.
pub struct Spillway {
    child: Child,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    /// The demo gateway's address when running `spillway demo`.
    pub gateway: Option<SocketAddr>,
    lines: mpsc::Receiver<String>,
}

impl Spillway {
    /// `spillway demo` on free ports, with extra arguments.
    pub fn demo(binary: &str, extra: &[&str]) -> Self {
        let mut args = vec![
            "demo",
            "--grpc",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--gateway",
            "127.0.0.1:0",
        ];
        args.extend_from_slice(extra);
        Self::start(binary, &args, true)
    }

    /// `spillway serve --config FILE`; the config must listen on 127.0.0.1:0.
    pub fn serve(binary: &str, config: &std::path::Path) -> Self {
        Self::serve_with_env(binary, config, &[])
    }

    /// [`Self::serve`] with extra environment (a `KUBECONFIG`, a `POD_NAME`).
    pub fn serve_with_env(binary: &str, config: &std::path::Path, env: &[(&str, &str)]) -> Self {
        let config = config.to_string_lossy().into_owned();
        Self::start_with_env(binary, &["serve", "--config", &config], false, env)
    }

    /// `spillway collector --shard SHARD --config FILE`, its gRPC port at `grpc`
    /// (`127.0.0.1:0` for a free one; a fixed one to restart a shard where the scalers
    /// expect it) and HTTP on a free port.
    pub fn collector(binary: &str, config: &std::path::Path, shard: &str, grpc: &str) -> Self {
        let config = config.to_string_lossy().into_owned();
        Self::start(
            binary,
            &[
                "collector",
                "--shard",
                shard,
                "--config",
                &config,
                "--grpc",
                grpc,
                "--http",
                "127.0.0.1:0",
            ],
            false,
        )
    }

    fn start(binary: &str, args: &[&str], demo: bool) -> Self {
        Self::start_with_env(binary, args, demo, &[])
    }

    fn start_with_env(binary: &str, args: &[&str], demo: bool, env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(binary)
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {binary}: {e}"));
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut grpc = None;
        let mut http = None;
        let mut gateway = None;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while grpc.is_none() || http.is_none() || (demo && gateway.is_none()) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let line = rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("spillway printed no listen addresses within 60s"));
            for word in line.split_whitespace() {
                if let Some(addr) = word.strip_prefix("grpc=") {
                    grpc = addr.parse().ok();
                } else if let Some(addr) = word.strip_prefix("http=") {
                    http = addr.parse().ok();
                } else if let Some(addr) = word.strip_prefix("gateway=") {
                    gateway = addr.parse().ok();
                }
            }
        }
        Self {
            child,
            grpc: grpc.expect("grpc address"),
            http: http.expect("http address"),
            gateway,
            lines: rx,
        }
    }

    /// Lines printed since the addresses (decision lines in the demo).
    pub fn drain_lines(&self) -> Vec<String> {
        self.lines.try_iter().collect()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory of the process now, from `/proc/PID/status` (Linux).
    pub fn rss_bytes(&self) -> u64 {
        self.proc_status_bytes("VmRSS:")
    }

    /// The most resident memory the process has had (`VmHWM`): what a flood drove it to
    /// at its worst, however briefly.
    pub fn peak_rss_bytes(&self) -> u64 {
        self.proc_status_bytes("VmHWM:")
    }

    fn proc_status_bytes(&self, field: &str) -> u64 {
        let pid = self.child.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
        status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map(|kib| kib * 1024)
            .unwrap_or_else(|| panic!("{field} in /proc status"))
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

/// Writes what `spillway serve` needs into `dir`: each `(file, text)` of `policies` under
/// `policies/`, and `spillway.yaml` listening on 127.0.0.1:0 (free ports) with `rest`
/// appended (scrape targets and the like). Returns the config file's path.
pub fn write_serve_config(
    dir: &std::path::Path,
    policies: &[(&str, &str)],
    rest: &str,
) -> std::path::PathBuf {
    write_serve_config_on(dir, policies, rest, "127.0.0.1:0")
}

/// [`write_serve_config`] with the gRPC port at `grpc`: a restarted process comes back
/// where KEDA's `scalerAddress` points.
pub fn write_serve_config_on(
    dir: &std::path::Path,
    policies: &[(&str, &str)],
    rest: &str,
    grpc: &str,
) -> std::path::PathBuf {
    let policy_dir = dir.join("policies");
    std::fs::create_dir_all(&policy_dir).expect("policy dir");
    for (file, text) in policies {
        std::fs::write(policy_dir.join(file), text).expect("policy file");
    }
    let path = dir.join("spillway.yaml");
    // Tests of the access rules bring their own section; every other test runs on
    // loopback with its inputs open, said explicitly as `serve` requires.
    let access = if rest.lines().any(|line| line.starts_with("access:")) {
        ""
    } else {
        INSECURE_ACCESS
    };
    std::fs::write(
        &path,
        format!(
            "listen: {{ grpc: {grpc}, http: 127.0.0.1:0 }}\npolicies: policies\n{rest}\n{access}"
        ),
    )
    .expect("config");
    path
}

/// Every input open to anyone: loopback tests that are not about access.
pub const INSECURE_ACCESS: &str = "access: { insecure: [keda, write, status, metrics, shard] }\n";

impl Drop for Spillway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
