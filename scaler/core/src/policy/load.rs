//! Reading policy files from disk: a directory (as a ConfigMap mounts it) or a list of
//! files given on the command line.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::error::PolicyErrors;
use super::model::TenantPolicy;
use super::parse_policy;
use super::yaml::MAX_POLICY_BYTES;

/// The outcome for one file.
#[derive(Clone, Debug)]
pub struct FileReport {
    pub path: PathBuf,
    pub result: Result<TenantPolicy, PolicyErrors>,
}

impl std::fmt::Display for FileReport {
    /// `PATH: ok (tenant acme, 3 apps)`, or every error on its own line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.result {
            Ok(p) => write!(
                f,
                "{}: ok (tenant {}, {} app{})",
                self.path.display(),
                p.tenant,
                p.apps.len(),
                if p.apps.len() == 1 { "" } else { "s" }
            ),
            Err(e) => write!(f, "{e}"),
        }
    }
}

/// The outcome for a directory: one report per policy file found, in path order.
#[derive(Clone, Debug, Default)]
pub struct LoadReport {
    pub files: Vec<FileReport>,
    /// Set when the directory itself could not be listed.
    pub dir_error: Option<String>,
}

impl LoadReport {
    pub fn policies(&self) -> impl Iterator<Item = &TenantPolicy> {
        self.files.iter().filter_map(|f| f.result.as_ref().ok())
    }

    pub fn errors(&self) -> impl Iterator<Item = (&Path, &PolicyErrors)> {
        self.files
            .iter()
            .filter_map(|f| f.result.as_ref().err().map(|e| (f.path.as_path(), e)))
    }
}

/// Reads a file as UTF-8, refusing anything larger than the policy size limit without
/// reading it all.
pub(crate) fn read_limited(path: &Path) -> Result<String, String> {
    let file = fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_POLICY_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() > MAX_POLICY_BYTES {
        return Err(format!(
            "file is larger than {MAX_POLICY_BYTES} bytes, the limit for a policy file"
        ));
    }
    String::from_utf8(bytes)
        .map_err(|e| format!("not valid UTF-8 (at byte {})", e.utf8_error().valid_up_to()))
}

/// Policy files in `dir`: `*.yaml` / `*.yml`, following symlinks (a ConfigMap volume's
/// visible files link into `..data/`), skipping dotfiles (`..data`, `..2024_…`).
pub(crate) fn policy_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || !(name.ends_with(".yaml") || name.ends_with(".yml")) {
            continue;
        }
        let path = entry.path();
        // fs::metadata follows the symlink; a dangling link or a directory is skipped.
        if fs::metadata(&path).map(|m| m.is_file()).unwrap_or(false) {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

pub(crate) fn load_file(path: &Path) -> Result<TenantPolicy, PolicyErrors> {
    let name = path.display().to_string();
    let text = read_limited(path).map_err(|m| PolicyErrors::whole_file(&name, m))?;
    parse_policy(&name, &text)
}

/// Loads every policy file in `dir`; each file succeeds or fails on its own.
pub fn load_dir(dir: &Path) -> LoadReport {
    match policy_files(dir) {
        Err(e) => LoadReport {
            files: Vec::new(),
            dir_error: Some(e),
        },
        Ok(paths) => LoadReport {
            files: paths
                .into_iter()
                .map(|path| FileReport {
                    result: load_file(&path),
                    path,
                })
                .collect(),
            dir_error: None,
        },
    }
}

/// Checks files for `spillway policy validate FILE...`: every problem in every file, plus
/// tenants defined by more than one of the files.
pub fn validate_files(paths: &[PathBuf]) -> Vec<FileReport> {
    let mut reports: Vec<FileReport> = paths
        .iter()
        .map(|path| FileReport {
            path: path.clone(),
            result: load_file(path),
        })
        .collect();
    let mut seen: Vec<(String, PathBuf)> = Vec::new();
    for report in &mut reports {
        let Ok(policy) = &report.result else { continue };
        if let Some((_, first)) = seen.iter().find(|(t, _)| *t == policy.tenant) {
            let err = super::error::PolicyError {
                source_name: report.path.display().to_string(),
                line: policy.tenant_line,
                column: policy.tenant_column,
                path: "metadata.tenant".into(),
                message: format!(
                    "tenant `{}` is already defined in {}; expected one policy file per tenant",
                    policy.tenant,
                    first.display()
                ),
            };
            report.result = Err(PolicyErrors::single(err));
        } else {
            seen.push((policy.tenant.clone(), report.path.clone()));
        }
    }
    reports
}
