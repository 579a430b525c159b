//! The tests act on the cluster with the real `kubectl` of the same release, as a user
//! would: what it accepts is what the API server accepts.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// `kubectl` bound to one kubeconfig (and so one identity).
#[derive(Debug, Clone)]
pub struct Kubectl {
    bin: PathBuf,
    kubeconfig: PathBuf,
}

/// What kubectl said when it failed.
#[derive(Debug, Clone)]
pub struct KubectlError(pub String);

impl std::fmt::Display for KubectlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Each call is bounded: a hung API server fails the test instead of stalling CI.
const CALL_TIMEOUT: &str = "--request-timeout=20s";

impl Kubectl {
    pub fn new(bin: &Path, kubeconfig: &Path) -> Self {
        Self {
            bin: bin.to_owned(),
            kubeconfig: kubeconfig.to_owned(),
        }
    }

    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The same binary as another identity.
    pub fn as_user(&self, kubeconfig: &Path) -> Self {
        Self::new(&self.bin, kubeconfig)
    }

    /// Runs `kubectl ARGS` with `stdin`, returning stdout, or stderr as the error.
    pub fn run_with_input(
        &self,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Result<String, KubectlError> {
        let mut child = Command::new(&self.bin)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg(CALL_TIMEOUT)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| KubectlError(format!("cannot start kubectl: {e}")))?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes())
                .map_err(|e| KubectlError(format!("writing kubectl's input: {e}")))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| KubectlError(format!("kubectl: {e}")))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(KubectlError(format!(
                "kubectl {}: {}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim(),
                String::from_utf8_lossy(&out.stdout).trim()
            )))
        }
    }

    pub fn run(&self, args: &[&str]) -> Result<String, KubectlError> {
        self.run_with_input(args, None)
    }

    /// `kubectl apply --server-side -f -`: the manifests as the API server takes them.
    pub fn apply(&self, yaml: &str) -> Result<String, KubectlError> {
        self.run_with_input(
            &["apply", "--server-side", "--force-conflicts", "-f", "-"],
            Some(yaml),
        )
    }

    /// Applies or panics with kubectl's words.
    pub fn must_apply(&self, yaml: &str) {
        if let Err(e) = self.apply(yaml) {
            panic!("{e}\n--- manifest ---\n{yaml}");
        }
    }

    /// One object as JSON, `None` when it does not exist.
    pub fn get(&self, resource: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
        let mut args = vec!["get", resource, name, "-o", "json"];
        if let Some(ns) = namespace {
            args.extend(["-n", ns]);
        }
        match self.run(&args) {
            Ok(text) => serde_json::from_str(&text).ok(),
            Err(KubectlError(e)) if e.contains("NotFound") || e.contains("not found") => None,
            Err(e) => panic!("{e}"),
        }
    }

    /// Every object of a resource in a namespace (`None`: all namespaces) matching the
    /// label `selector` (may be empty).
    pub fn list(&self, resource: &str, namespace: Option<&str>, selector: &str) -> Vec<Value> {
        let mut args = vec!["get", resource, "-o", "json"];
        match namespace {
            Some(ns) => args.extend(["-n", ns]),
            None => args.push("-A"),
        }
        if !selector.is_empty() {
            args.extend(["-l", selector]);
        }
        let text = self.run(&args).unwrap_or_else(|e| panic!("{e}"));
        serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.get("items").and_then(Value::as_array).cloned())
            .unwrap_or_default()
    }

    /// A number at a JSON pointer of an object (`None` if the object or field is absent).
    pub fn number(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
        pointer: &str,
    ) -> Option<i64> {
        self.get(resource, Some(namespace), name)?
            .pointer(pointer)?
            .as_i64()
    }

    /// `kubectl create token`: a bound service-account token, as a pod would mount.
    pub fn token(&self, namespace: &str, service_account: &str, lifetime: Duration) -> String {
        let duration = format!("--duration={}s", lifetime.as_secs());
        self.run(&[
            "create",
            "token",
            service_account,
            "-n",
            namespace,
            &duration,
        ])
        .unwrap_or_else(|e| panic!("{e}"))
        .trim()
        .to_owned()
    }
}

/// A kubeconfig for `server`, trusting `ca`, with the user's credentials as YAML
/// (`client-certificate: …` / `token: …`).
pub fn kubeconfig(server: &str, ca: &Path, user: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: peers\n  cluster:\n    server: {server}\n    \
         certificate-authority: {ca}\nusers:\n- name: user\n  user:\n{user}\ncontexts:\n- name: peers\n  \
         context: {{ cluster: peers, user: user }}\ncurrent-context: peers\n",
        ca = ca.display()
    )
}
