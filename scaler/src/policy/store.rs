//! Hot reload: the policy set in force, swapped whole when files change.
//!
//! Synchronous on purpose (no runtime dependency): the caller decides when to call
//! [`PolicyStore::reload`] (a timer, an inotify event, a SIGHUP).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use super::error::{PolicyError, PolicyErrors};
use super::load::{policy_files, read_limited};
use super::model::TenantPolicy;
use super::parse_policy;
use super::set::PolicySet;

#[derive(Clone, Debug, Default)]
struct FileState {
    /// The bytes last read, to tell whether the file changed.
    content: String,
    /// The last version of this file that was valid; it keeps serving while the file is bad.
    good: Option<TenantPolicy>,
    /// Why the current content is refused; cleared once the file is fixed.
    error: Option<PolicyErrors>,
    /// Set while another file serves the same tenant; recomputed on every reload.
    conflict: Option<PolicyError>,
}

impl FileState {
    fn problem(&self) -> Option<PolicyErrors> {
        self.error
            .clone()
            .or_else(|| self.conflict.clone().map(PolicyErrors::single))
    }
}

/// What one reload did.
#[derive(Clone, Debug, Default)]
pub struct ReloadOutcome {
    /// Files new since the last reload, whose content changed, or that disappeared.
    pub changed: Vec<PathBuf>,
    pub removed: Vec<PathBuf>,
    /// Every file currently refused (newly or still), with why.
    pub errors: Vec<(PathBuf, PolicyErrors)>,
    /// Set when the directory could not be listed; the previous set keeps serving.
    pub dir_error: Option<String>,
    /// Whether the set in force was replaced.
    pub swapped: bool,
}

/// One file's standing, for status pages and `spillway status`.
#[derive(Clone, Debug)]
pub struct FileStatus {
    pub path: PathBuf,
    /// The tenant this file serves now (from its last good version), if any.
    pub serving_tenant: Option<String>,
    /// Set while the file's current content is refused.
    pub error: Option<String>,
}

/// Holds the policy set in force and reloads it from a directory.
#[derive(Debug, Default)]
pub struct PolicyStore {
    current: RwLock<Arc<PolicySet>>,
    files: Mutex<BTreeMap<PathBuf, FileState>>,
    reload_errors: AtomicU64,
}

impl PolicyStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// A store serving a fixed set that did not come from a directory (the demo's
    /// embedded policies). Calling [`Self::reload`] later replaces it.
    pub fn from_set(set: PolicySet) -> Self {
        Self {
            current: RwLock::new(Arc::new(set)),
            ..Self::default()
        }
    }

    /// The set in force. Cheap: one reference-count increment.
    pub fn current(&self) -> Arc<PolicySet> {
        match self.current.read() {
            Ok(g) => Arc::clone(&g),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Failed file loads so far: counted once each time a changed file is refused.
    pub fn reload_errors_total(&self) -> u64 {
        self.reload_errors.load(Ordering::Relaxed)
    }

    /// Per-file standing, in path order.
    pub fn status(&self) -> Vec<FileStatus> {
        let files = match self.files.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        files
            .iter()
            .map(|(path, st)| FileStatus {
                path: path.clone(),
                serving_tenant: st
                    .good
                    .as_ref()
                    .filter(|_| st.conflict.is_none())
                    .map(|g| g.tenant.clone()),
                error: st.problem().map(|e| e.to_string()),
            })
            .collect()
    }

    /// Re-reads `dir`. Changed files are parsed again; a file whose new content is invalid
    /// keeps its last good version serving and stays reported until fixed.
    pub fn reload(&self, dir: &Path) -> ReloadOutcome {
        let mut outcome = ReloadOutcome::default();
        let mut files = match self.files.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let paths = match policy_files(dir) {
            Ok(p) => p,
            Err(e) => {
                outcome.dir_error = Some(e);
                self.reload_errors.fetch_add(1, Ordering::Relaxed);
                return outcome;
            }
        };
        let before: Vec<PathBuf> = files.keys().cloned().collect();
        for gone in before.iter().filter(|p| !paths.contains(p)) {
            files.remove(gone);
            outcome.removed.push(gone.clone());
            outcome.changed.push(gone.clone());
        }
        for path in &paths {
            let name = path.display().to_string();
            let (content, parsed) = match read_limited(path) {
                Ok(text) => {
                    let parsed = if files.get(path).is_some_and(|st| st.content == text) {
                        None
                    } else {
                        Some(parse_policy(&name, &text))
                    };
                    (text, parsed)
                }
                // An unreadable file is a change of content: report it, keep the last good.
                Err(msg) => (
                    String::new(),
                    Some(Err(PolicyErrors::whole_file(&name, msg))),
                ),
            };
            let Some(parsed) = parsed else { continue };
            let st = files.entry(path.clone()).or_default();
            if st.content == content && st.error.is_some() && content.is_empty() {
                // Still unreadable: already reported and counted.
                continue;
            }
            st.content = content;
            outcome.changed.push(path.clone());
            match parsed {
                Ok(policy) => {
                    st.good = Some(policy);
                    st.error = None;
                }
                Err(e) => {
                    st.error = Some(e);
                    self.reload_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }

        // A tenant claimed by two files: the file that served it before keeps it (or the
        // first in path order); the other is refused and falls back to its last good version.
        let previous = self.current();
        let mut chosen: Vec<TenantPolicy> = Vec::new();
        let mut owners: BTreeMap<String, PathBuf> = BTreeMap::new();
        let order: Vec<PathBuf> = {
            let mut v: Vec<PathBuf> = files.keys().cloned().collect();
            v.sort_by_key(|p| {
                let served_before = files
                    .get(p)
                    .and_then(|st| st.good.as_ref())
                    .and_then(|g| previous.tenant(&g.tenant))
                    .is_some_and(|t| t.source_name == p.display().to_string());
                (!served_before, p.clone())
            });
            v
        };
        for path in order {
            let Some(st) = files.get_mut(&path) else {
                continue;
            };
            let had_conflict = st.conflict.take().is_some();
            let Some(good) = &st.good else { continue };
            if let Some(owner) = owners.get(&good.tenant) {
                if !had_conflict {
                    self.reload_errors.fetch_add(1, Ordering::Relaxed);
                }
                st.conflict = Some(PolicyError {
                    source_name: path.display().to_string(),
                    line: good.tenant_line,
                    column: good.tenant_column,
                    path: "metadata.tenant".into(),
                    message: format!(
                        "tenant `{}` is already defined in {}; expected one policy file per tenant",
                        good.tenant,
                        owner.display()
                    ),
                });
                continue;
            }
            owners.insert(good.tenant.clone(), path.clone());
            chosen.push(good.clone());
        }
        for (path, st) in files.iter() {
            if let Some(e) = st.problem() {
                outcome.errors.push((path.clone(), e));
            }
        }
        // A conflict resolved elsewhere (the other file removed) changes what is served
        // even when no file of this one changed.
        let same_sources = chosen.len() == previous.tenants().count()
            && chosen.iter().all(|p| {
                previous
                    .tenant(&p.tenant)
                    .is_some_and(|q| q.source_name == p.source_name)
            });
        if !outcome.changed.is_empty() || !same_sources {
            // Tenants are unique by construction above, so this cannot fail; keep the
            // previous set if it somehow does rather than serving nothing.
            if let Ok(set) = PolicySet::from_policies(chosen) {
                match self.current.write() {
                    Ok(mut g) => *g = Arc::new(set),
                    Err(p) => *p.into_inner() = Arc::new(set),
                }
                outcome.swapped = true;
            }
        }
        outcome
    }
}
