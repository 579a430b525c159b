//! The real peers: a Kubernetes control plane (etcd, kube-apiserver,
//! kube-controller-manager with the HPA and ReplicaSet controllers, kube-scheduler), kwok
//! for nodes without kubelets, and KEDA's operator and metrics adapter, all on 127.0.0.1,
//! built from their Go modules by `tests/peers/build.sh`.
//!
//! - [`pki`]: the cluster's certificates and keys, generated per run.
//! - [`cluster`]: starting the peers in order, waiting for each, stopping them all.
//! - [`kubectl`]: the test's hands on the cluster, through the real `kubectl`.
//!
//! Tests find the binaries through `SPILLWAY_PEERS_DIR` (what `build.sh` prints). Without
//! it they say SKIPPED with the command to run; with `SPILLWAY_REQUIRE_PEERS=1` (CI) a
//! missing peer fails the test instead.

pub mod cluster;
pub mod kubectl;
pub mod pki;
pub mod stage;

use std::path::{Path, PathBuf};

pub use cluster::{Cluster, ClusterOptions};
pub use kubectl::Kubectl;

/// Where the peers' binaries and the files taken from their modules are.
#[derive(Debug, Clone)]
pub struct PeerDir {
    root: PathBuf,
}

/// The binaries a cluster needs, checked before anything starts.
const BINARIES: [&str; 8] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kwok",
    "keda-operator",
    "keda-adapter",
];

impl PeerDir {
    /// The built peers, or `None` (after printing why and how to get them) when this
    /// machine has none and the run does not require them.
    pub fn locate(test: &str) -> Option<Self> {
        let found = std::env::var_os("SPILLWAY_PEERS_DIR")
            .map(PathBuf::from)
            .ok_or_else(|| "SPILLWAY_PEERS_DIR is not set".to_owned())
            .and_then(|root| {
                let dir = Self { root };
                dir.check().map(|()| dir)
            });
        match found {
            Ok(dir) => Some(dir),
            Err(why) if std::env::var_os("SPILLWAY_REQUIRE_PEERS").is_some() => {
                panic!("{test}: the real peers are required (SPILLWAY_REQUIRE_PEERS) but {why}")
            }
            Err(why) => {
                eprintln!(
                    "SKIPPED {test}: {why}; build the real peers (needs Go) and point the \
                     tests at them: export SPILLWAY_PEERS_DIR=$(tests/peers/build.sh)"
                );
                None
            }
        }
    }

    fn check(&self) -> Result<(), String> {
        for name in BINARIES {
            if !self.bin(name).is_file() {
                return Err(format!("{} is missing", self.bin(name).display()));
            }
        }
        for file in ["keda-crds.yaml", "kwok-stages.yaml"] {
            if !self.root.join(file).is_file() {
                return Err(format!("{} is missing", self.root.join(file).display()));
            }
        }
        Ok(())
    }

    pub fn bin(&self, name: &str) -> PathBuf {
        self.root.join("bin").join(name)
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

/// A free TCP port on 127.0.0.1 for a peer that must be told its port up front. The
/// port is released before the peer binds it; [`cluster`] starts peers one at a time and
/// checks each is listening, so a lost race shows as a clear start-up failure.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}
