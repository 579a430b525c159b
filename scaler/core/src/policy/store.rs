//! Hot reload: the policy set in force, swapped whole when files change.
//!
//! Synchronous on purpose (no runtime dependency): the caller decides when to call
//! [`PolicyStore::reload`] (a timer, an inotify event, a SIGHUP).
//!
//! A panic while loading (a parser bug some file's content hits) must not take the
//! process down or leave half a reload in force: each file's parse is caught, and the
//! file is refused like an invalid one; the reload as a whole works on a copy of the
//! per-file state, committed only when it completes.

use std::any::Any;
use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use super::error::{PolicyError, PolicyErrors};
use super::load::{policy_files, read_limited};
use super::model::TenantPolicy;
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
    /// Set when the reload itself panicked: nothing of it took effect.
    pub panicked: Option<String>,
    /// Files whose parse panicked in this reload (also in `errors`).
    pub file_panics: u64,
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
    /// The files' part of `current`.
    from_files: RwLock<Arc<PolicySet>>,
    /// Policies from ScalingPolicy resources, served beside the files' (whose tenants
    /// they never take), and the resources' problems for `status`.
    from_resources: Mutex<(Vec<TenantPolicy>, Vec<FileStatus>)>,
    /// Called whenever `current` is replaced, so the decision loop re-decides at once
    /// instead of on its next tick.
    on_swap: SwapHooks,
    files: Mutex<BTreeMap<PathBuf, FileState>>,
    reload_errors: AtomicU64,
    reload_panics: AtomicU64,
    /// The directory and message of the last reload that panicked; cleared by the next
    /// one that completes.
    last_panic: Mutex<Option<(PathBuf, String)>>,
}

/// Told that the set in force was replaced.
pub type SwapHook = Box<dyn Fn() + Send + Sync>;

#[derive(Default)]
struct SwapHooks(Mutex<Vec<SwapHook>>);

impl std::fmt::Debug for SwapHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SwapHooks({})", lock(&self.0).len())
    }
}

/// How a policy file's text becomes a policy: [`parse_policy`] in production.
pub type ParsePolicy = dyn Fn(&str, &str) -> Result<TenantPolicy, PolicyErrors> + Sync;

fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

fn read<T: Clone>(lock: &RwLock<Arc<T>>) -> Arc<T> {
    match lock.read() {
        Ok(g) => Arc::clone(&g),
        Err(poisoned) => Arc::clone(&poisoned.into_inner()),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl PolicyStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// A store serving a fixed set that did not come from a directory (the demo's
    /// embedded policies). Calling [`Self::reload`] later replaces it.
    pub fn from_set(set: PolicySet) -> Self {
        let set = Arc::new(set);
        Self {
            current: RwLock::new(Arc::clone(&set)),
            from_files: RwLock::new(set),
            ..Self::default()
        }
    }

    /// Tenants the policy files serve; a ScalingPolicy resource cannot take them.
    pub fn file_tenants(&self) -> std::collections::BTreeSet<String> {
        read(&self.from_files)
            .tenants()
            .map(|t| t.tenant.clone())
            .collect()
    }

    /// Puts the ScalingPolicy resources' policies in force beside the files', whole,
    /// with the problems `status` reports for them.
    pub fn replace_resources(&self, policies: Vec<TenantPolicy>, problems: Vec<FileStatus>) {
        let mut resources = lock(&self.from_resources);
        *resources = (policies, problems);
        self.compose(&read(&self.from_files), &resources.0);
    }

    /// `current` = the files' set plus the resources' tenants the files do not serve.
    fn compose(&self, files: &PolicySet, resources: &[TenantPolicy]) {
        let all: Vec<TenantPolicy> = files
            .tenants()
            .cloned()
            .chain(
                resources
                    .iter()
                    .filter(|p| files.tenant(&p.tenant).is_none())
                    .cloned(),
            )
            .collect();
        // Tenants are unique by construction; keep what serves if that ever fails.
        if let Ok(set) = PolicySet::from_policies(all) {
            match self.current.write() {
                Ok(mut g) => *g = Arc::new(set),
                Err(p) => *p.into_inner() = Arc::new(set),
            }
            for hook in lock(&self.on_swap.0).iter() {
                hook();
            }
        }
    }

    /// Calls `hook` each time the set in force is replaced (it must not block).
    pub fn on_swap(&self, hook: SwapHook) {
        lock(&self.on_swap.0).push(hook);
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

    /// Panics caught while reloading (a file's parse, or the reload itself).
    pub fn reload_panics_total(&self) -> u64 {
        self.reload_panics.load(Ordering::Relaxed)
    }

    /// Per-file standing, in path order; a reload that panicked shows as its directory.
    pub fn status(&self) -> Vec<FileStatus> {
        let files = match self.files.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let panicked = match self.last_panic.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        };
        let reload = panicked.map(|(dir, message)| FileStatus {
            path: dir,
            serving_tenant: None,
            error: Some(format!(
                "the last reload failed ({message}); the policies in force keep serving"
            )),
        });
        let resources = lock(&self.from_resources).1.clone();
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
            .chain(reload)
            .chain(resources)
            .collect()
    }

    /// Re-reads `dir`. Changed files are parsed again; a file whose new content is invalid
    /// keeps its last good version serving and stays reported until fixed.
    pub fn reload(&self, dir: &Path) -> ReloadOutcome {
        self.reload_with(dir, &super::parse_policy)
    }

    /// [`Self::reload`] with the parser given; tests use it to make a parse panic.
    pub fn reload_with(&self, dir: &Path, parse: &ParsePolicy) -> ReloadOutcome {
        let mut files = match self.files.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let mut working = files.clone();
        let done = catch_unwind(AssertUnwindSafe(|| {
            self.reload_files(dir, &mut working, parse)
        }));
        let mut last_panic = match self.last_panic.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        match done {
            Ok((mut outcome, set)) => {
                *files = working;
                *last_panic = None;
                if let Some(set) = set {
                    let resources = lock(&self.from_resources);
                    self.compose(&set, &resources.0);
                    match self.from_files.write() {
                        Ok(mut g) => *g = Arc::new(set),
                        Err(p) => *p.into_inner() = Arc::new(set),
                    }
                    outcome.swapped = true;
                }
                outcome
            }
            Err(payload) => {
                self.reload_panics.fetch_add(1, Ordering::Relaxed);
                let message = panic_message(payload.as_ref());
                *last_panic = Some((dir.to_path_buf(), message.clone()));
                ReloadOutcome {
                    panicked: Some(message),
                    ..ReloadOutcome::default()
                }
            }
        }
    }

    /// One reload over `files`; returns the set to put in force, if it changed.
    fn reload_files(
        &self,
        dir: &Path,
        files: &mut BTreeMap<PathBuf, FileState>,
        parse: &ParsePolicy,
    ) -> (ReloadOutcome, Option<PolicySet>) {
        let mut outcome = ReloadOutcome::default();
        let paths = match policy_files(dir) {
            Ok(p) => p,
            Err(e) => {
                outcome.dir_error = Some(e);
                self.reload_errors.fetch_add(1, Ordering::Relaxed);
                return (outcome, None);
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
                        Some(self.parse_caught(parse, &name, &text, &mut outcome))
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
        let previous = read(&self.from_files);
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
        let set = if !outcome.changed.is_empty() || !same_sources {
            // Tenants are unique by construction above, so this cannot fail; keep the
            // previous set if it somehow does rather than serving nothing.
            PolicySet::from_policies(chosen).ok()
        } else {
            None
        };
        (outcome, set)
    }

    /// `parse`, with a panic turned into the file's refusal.
    fn parse_caught(
        &self,
        parse: &ParsePolicy,
        name: &str,
        text: &str,
        outcome: &mut ReloadOutcome,
    ) -> Result<TenantPolicy, PolicyErrors> {
        catch_unwind(AssertUnwindSafe(|| parse(name, text))).unwrap_or_else(|payload| {
            self.reload_panics.fetch_add(1, Ordering::Relaxed);
            outcome.file_panics += 1;
            Err(PolicyErrors::whole_file(
                name,
                format!(
                    "loading this file panicked ({}); the last good version keeps serving",
                    panic_message(payload.as_ref())
                ),
            ))
        })
    }
}
