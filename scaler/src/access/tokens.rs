//! Bearer tokens, one per file (a mounted Secret), re-read when a file changes.
//!
//! Tokens are never taken from the command line, where `ps` and shell history show
//! them. A file that changes is read again; one that disappears or no longer holds a
//! valid token takes its identity's token away (that is how a token is revoked), and
//! the error is logged.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

/// Shorter tokens could be guessed; Kubernetes service-account tokens and `openssl rand
/// -hex 32` are far longer.
pub const MIN_TOKEN_LEN: usize = 16;
/// A token file is one line; anything larger is not one.
const MAX_TOKEN_FILE_BYTES: u64 = 8 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{path}: cannot read the token file: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

/// The token in a file's text: trimmed, at least [`MIN_TOKEN_LEN`] characters, and
/// only characters an HTTP header carries unchanged.
pub fn parse_token(text: &str) -> Result<String, String> {
    let token = text.trim();
    if token.len() < MIN_TOKEN_LEN {
        return Err(format!(
            "the token is {} characters; at least {MIN_TOKEN_LEN} are required",
            token.len()
        ));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the token must be one line of printable ASCII without spaces".into());
    }
    Ok(token.to_owned())
}

/// Reads one token file (also the client side: `spillway status --token-file`).
pub fn read_token_file(path: &Path) -> Result<String, TokenError> {
    let name = || path.display().to_string();
    let read = |source| TokenError::Read {
        path: name(),
        source,
    };
    let metadata = std::fs::metadata(path).map_err(read)?;
    if metadata.len() > MAX_TOKEN_FILE_BYTES {
        return Err(TokenError::Invalid {
            path: name(),
            message: format!("larger than {MAX_TOKEN_FILE_BYTES} bytes"),
        });
    }
    let text = std::fs::read_to_string(path).map_err(read)?;
    parse_token(&text).map_err(|message| TokenError::Invalid {
        path: name(),
        message,
    })
}

/// Compares without returning early, so the time taken says nothing about how much of
/// a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

type Stamp = Option<(SystemTime, u64, u64)>;

fn stamp(path: &Path) -> Stamp {
    // Follows symlinks: a mounted Secret swaps its `..data` link on update.
    let metadata = std::fs::metadata(path).ok()?;
    Some((metadata.modified().ok()?, metadata.len(), inode(&metadata)))
}

#[cfg(unix)]
fn inode(metadata: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(metadata)
}

#[cfg(not(unix))]
fn inode(_: &std::fs::Metadata) -> u64 {
    0
}

#[derive(Debug)]
struct TokenFile {
    identity: Arc<str>,
    path: PathBuf,
}

/// What one reload check did to one file.
#[derive(Debug)]
pub enum TokenReload {
    Reloaded {
        identity: Arc<str>,
    },
    /// The identity has no token until the file is fixed.
    Revoked {
        identity: Arc<str>,
        error: TokenError,
    },
}

/// Every identity's token, as its file last said.
#[derive(Debug, Default)]
pub struct Tokens {
    files: Vec<TokenFile>,
    reload_every: Duration,
    /// In `files` order; `None`: no valid token right now.
    current: RwLock<Vec<Option<String>>>,
    stamps: Mutex<Vec<Stamp>>,
}

impl Tokens {
    /// Reads every file; a process must not start with a token it cannot read.
    pub fn load(
        files: Vec<(Arc<str>, PathBuf)>,
        reload_every: Duration,
    ) -> Result<Self, TokenError> {
        let mut current = Vec::with_capacity(files.len());
        let mut stamps = Vec::with_capacity(files.len());
        let files: Vec<TokenFile> = files
            .into_iter()
            .map(|(identity, path)| TokenFile { identity, path })
            .collect();
        for file in &files {
            stamps.push(stamp(&file.path));
            current.push(Some(read_token_file(&file.path)?));
        }
        Ok(Self {
            files,
            reload_every,
            current: RwLock::new(current),
            stamps: Mutex::new(stamps),
        })
    }

    /// The identity whose token is `presented`, if any.
    pub fn identify(&self, presented: &str) -> Option<Arc<str>> {
        let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
        let mut found = None;
        // Every token is compared, so the time taken does not say which one matched.
        for (file, token) in self.files.iter().zip(current.iter()) {
            if let Some(token) = token
                && constant_time_eq(token.as_bytes(), presented.as_bytes())
                && found.is_none()
            {
                found = Some(file.identity.clone());
            }
        }
        found
    }

    /// Whether `identity` has a token file.
    pub fn has_file(&self, identity: &str) -> bool {
        self.files.iter().any(|file| &*file.identity == identity)
    }

    /// Re-reads the files whose stamps changed.
    pub fn check(&self) -> Vec<TokenReload> {
        let mut stamps = self.stamps.lock().unwrap_or_else(PoisonError::into_inner);
        let mut outcomes = Vec::new();
        for (index, file) in self.files.iter().enumerate() {
            let seen = stamp(&file.path);
            if seen == stamps[index] {
                continue;
            }
            stamps[index] = seen;
            let read = read_token_file(&file.path);
            let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
            match read {
                Ok(token) => {
                    if current[index].as_deref() != Some(token.as_str()) {
                        current[index] = Some(token);
                        outcomes.push(TokenReload::Reloaded {
                            identity: file.identity.clone(),
                        });
                    }
                }
                Err(error) => {
                    current[index] = None;
                    outcomes.push(TokenReload::Revoked {
                        identity: file.identity.clone(),
                        error,
                    });
                }
            }
        }
        outcomes
    }

    /// Checks the files every `reload_every` until the returned task is aborted.
    pub fn spawn_watch(self: &Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        if self.files.is_empty() || self.reload_every.is_zero() {
            return None;
        }
        let tokens = self.clone();
        Some(tokio::spawn(async move {
            let mut ticker = tokio::time::interval(tokens.reload_every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                let checking = tokens.clone();
                match tokio::task::spawn_blocking(move || checking.check()).await {
                    Ok(outcomes) => {
                        for outcome in outcomes {
                            match outcome {
                                TokenReload::Reloaded { identity } => {
                                    tracing::info!(%identity, "access token reloaded");
                                }
                                TokenReload::Revoked { identity, error } => {
                                    tracing::error!(%identity, %error, "access token file unusable: the identity has no token until it is fixed");
                                }
                            }
                        }
                    }
                    Err(error) => tracing::error!(%error, "access token reload check failed"),
                }
            }
        }))
    }
}

/// A token this process sends (to its collector shards), re-read when its file changes
/// so a rotated token is sent from the next call on.
#[derive(Debug)]
pub struct OutgoingToken {
    path: PathBuf,
    cached: Mutex<(Stamp, Option<String>)>,
}

impl OutgoingToken {
    /// Reads the file once: a process must not start without the token it needs.
    pub fn load(path: PathBuf) -> Result<Self, TokenError> {
        let seen = stamp(&path);
        let token = read_token_file(&path)?;
        Ok(Self {
            path,
            cached: Mutex::new((seen, Some(token))),
        })
    }

    /// The token as the file says now; `None` while the file is unusable.
    pub fn current(&self) -> Option<String> {
        let mut cached = self.cached.lock().unwrap_or_else(PoisonError::into_inner);
        let seen = stamp(&self.path);
        if seen != cached.0 {
            cached.0 = seen;
            cached.1 = match read_token_file(&self.path) {
                Ok(token) => Some(token),
                Err(error) => {
                    tracing::error!(%error, "outgoing token file unusable; calls go without a token until it is fixed");
                    None
                }
            };
        }
        cached.1.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN_A: &str = "a-token-of-thirty-two-characters";
    const TOKEN_B: &str = "b-token-of-thirty-two-characters";

    #[test]
    fn tokens_are_trimmed_and_must_be_long_and_printable() {
        assert_eq!(parse_token(&format!("  {TOKEN_A}\n")).unwrap(), TOKEN_A);
        assert!(parse_token("short").unwrap_err().contains("at least 16"));
        assert!(
            parse_token("a token with spaces inside it")
                .unwrap_err()
                .contains("printable")
        );
        assert!(parse_token("").is_err());
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }

    #[test]
    fn a_changed_file_is_reloaded_and_a_broken_one_revokes_its_token() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        spillway_tests::tls::replace(&a, TOKEN_A.as_bytes());
        spillway_tests::tls::replace(&b, TOKEN_B.as_bytes());
        let tokens = Tokens::load(
            vec![("agent".into(), a.clone()), ("grafana".into(), b.clone())],
            Duration::from_secs(1),
        )
        .unwrap();
        assert_eq!(tokens.identify(TOKEN_A).as_deref(), Some("agent"));
        assert_eq!(tokens.identify(TOKEN_B).as_deref(), Some("grafana"));
        assert_eq!(tokens.identify("not-a-token-at-all-really"), None);
        assert!(tokens.check().is_empty(), "nothing changed");

        let rotated = "a-rotated-token-of-thirty-two-ch";
        spillway_tests::tls::replace(&a, rotated.as_bytes());
        let outcomes = tokens.check();
        assert!(
            matches!(outcomes.as_slice(), [TokenReload::Reloaded { identity }] if &**identity == "agent")
        );
        assert_eq!(
            tokens.identify(TOKEN_A),
            None,
            "the old token no longer works"
        );
        assert_eq!(tokens.identify(rotated).as_deref(), Some("agent"));

        std::fs::remove_file(&b).unwrap();
        let outcomes = tokens.check();
        assert!(
            matches!(outcomes.as_slice(), [TokenReload::Revoked { identity, .. }] if &**identity == "grafana")
        );
        assert_eq!(tokens.identify(TOKEN_B), None, "a deleted file revokes");
        spillway_tests::tls::replace(&b, TOKEN_B.as_bytes());
        assert_eq!(tokens.check().len(), 1);
        assert_eq!(tokens.identify(TOKEN_B).as_deref(), Some("grafana"));
    }

    #[test]
    fn an_outgoing_token_follows_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shard");
        spillway_tests::tls::replace(&path, TOKEN_A.as_bytes());
        let token = OutgoingToken::load(path.clone()).unwrap();
        assert_eq!(token.current().as_deref(), Some(TOKEN_A));
        spillway_tests::tls::replace(&path, TOKEN_B.as_bytes());
        assert_eq!(token.current().as_deref(), Some(TOKEN_B));
        std::fs::remove_file(&path).unwrap();
        assert_eq!(token.current(), None);
    }

    #[test]
    fn a_missing_or_short_token_file_stops_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        let error = Tokens::load(vec![("x".into(), path.clone())], Duration::ZERO).unwrap_err();
        assert!(error.to_string().contains("cannot read"), "{error}");
        std::fs::write(&path, "short\n").unwrap();
        let error = Tokens::load(vec![("x".into(), path)], Duration::ZERO).unwrap_err();
        assert!(error.to_string().contains("at least 16"), "{error}");
    }
}
