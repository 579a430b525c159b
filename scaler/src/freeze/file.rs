//! API freezes kept in a file (`freezeFile:` in the serve config), so a brake pulled
//! through the API survives a restart of the process: a crash or an OOM kill in the
//! middle of an incident must not let scaling resume by itself. On Kubernetes the file
//! belongs on a volume that outlives the container (an `emptyDir` survives container
//! restarts, not a new pod); the ScaledObject annotation is the brake that outlives
//! everything.
//!
//! The file is the whole list of API freezes as JSON, rewritten through a temporary file
//! and a rename on every set or lift, so a crash mid-write leaves the old list whole.
//! Writes take the list under the file's lock, so of two freezes set at once the later
//! list is the one written last.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use super::{Freeze, Source};

/// Far above any real list (one freeze per scope), so a stray huge file is refused
/// instead of read.
const MAX_FREEZE_FILE_BYTES: u64 = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum FreezeFileError {
    #[error("reading the freeze file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the freeze file {path} is larger than {MAX_FREEZE_FILE_BYTES} bytes")]
    TooLarge { path: String },
    #[error("the freeze file {path} is not a list of freezes: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
    #[error("writing the freeze file {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

impl FreezeFileError {
    /// The `kind` field of the error's log line.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Read { .. } => "read",
            Self::TooLarge { .. } => "too_large",
            Self::Parse { .. } => "parse",
            Self::Write { .. } => "write",
        }
    }
}

#[derive(Debug)]
pub struct FreezeFile {
    path: PathBuf,
    writing: Mutex<()>,
}

impl FreezeFile {
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            writing: Mutex::new(()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn name(&self) -> String {
        self.path.display().to_string()
    }

    /// The API freezes the file holds: none when it does not exist yet. Annotation
    /// freezes in it are ignored (they are read from their ScaledObjects).
    pub fn load(&self) -> Result<Vec<Freeze>, FreezeFileError> {
        let read = |source| FreezeFileError::Read {
            path: self.name(),
            source,
        };
        let metadata = match std::fs::metadata(&self.path) {
            Ok(metadata) => metadata,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(read(e)),
        };
        if metadata.len() > MAX_FREEZE_FILE_BYTES {
            return Err(FreezeFileError::TooLarge { path: self.name() });
        }
        let text = std::fs::read_to_string(&self.path).map_err(read)?;
        let freezes: Vec<Freeze> =
            serde_json::from_str(&text).map_err(|source| FreezeFileError::Parse {
                path: self.name(),
                source,
            })?;
        Ok(freezes
            .into_iter()
            .filter(|f| f.source == Source::Api)
            .collect())
    }

    /// Replaces the file's list with the one `current` gives, whole or not at all;
    /// `current` is read under the lock, so no older list can be written after it.
    pub fn save(&self, current: impl FnOnce() -> Vec<Freeze>) -> Result<(), FreezeFileError> {
        let _writing = self.writing.lock().unwrap_or_else(PoisonError::into_inner);
        let write = |source| FreezeFileError::Write {
            path: self.name(),
            source,
        };
        let text = serde_json::to_string_pretty(&current()).map_err(|e| write(e.into()))?;
        let mut temporary = self.path.clone().into_os_string();
        temporary.push(".tmp");
        let temporary = PathBuf::from(temporary);
        std::fs::write(&temporary, text).map_err(write)?;
        std::fs::rename(&temporary, &self.path).map_err(write)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::freeze::Scope;

    fn freeze(scope: &str, source: Source) -> Freeze {
        Freeze {
            scope: scope.parse().expect("scope"),
            source,
            reason: "INC-1".into(),
            by: "sre".into(),
            floor: Some(4),
            since_ms: 1_000,
            until_ms: Some(60_000),
            problem: None,
        }
    }

    #[test]
    fn a_saved_list_loads_back_and_a_missing_file_is_an_empty_list() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = FreezeFile::new(dir.path().join("freezes.json"));
        assert!(file.load().expect("missing file").is_empty());
        let saved = vec![freeze("acme/web", Source::Api), freeze("*", Source::Api)];
        file.save(|| saved.clone()).expect("save");
        assert_eq!(file.load().expect("load"), saved);
        file.save(Vec::new).expect("save empty");
        assert!(file.load().expect("load").is_empty());
    }

    #[test]
    fn annotation_freezes_are_not_restored_and_a_broken_file_is_an_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = FreezeFile::new(dir.path().join("freezes.json"));
        file.save(|| {
            vec![
                freeze("acme/web", Source::Annotation),
                freeze("acme", Source::Api),
            ]
        })
        .expect("save");
        let loaded = file.load().expect("load");
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].scope, "acme".parse::<Scope>().expect("scope"));
        std::fs::write(file.path(), "{not json").expect("write");
        let error = file.load().expect_err("broken file");
        assert_eq!(error.label(), "parse");
        assert!(error.to_string().contains("freezes.json"), "{error}");
    }
}
