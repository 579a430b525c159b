//! Errors a policy file can produce, each pinned to a place in the file.

use std::fmt;

/// One problem in one policy file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyError {
    /// The name the file was loaded under (usually its path).
    pub source_name: String,
    /// 1-based line; 0 when the problem concerns the file as a whole.
    pub line: u64,
    /// 1-based column; 0 when the problem concerns the file as a whole.
    pub column: u64,
    /// Dotted field path, e.g. `spec.apps.checkout.replicas.max`; empty for the document root.
    pub path: String,
    /// What is wrong and what is expected instead.
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.source_name, self.line, self.column)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in a policy (or a set of policies), in file order.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct PolicyErrors(pub Vec<PolicyError>);

impl PolicyErrors {
    pub fn single(error: PolicyError) -> Self {
        Self(vec![error])
    }

    /// A problem with the file as a whole (unreadable, too large).
    pub fn whole_file(source_name: &str, message: impl Into<String>) -> Self {
        Self::single(PolicyError {
            source_name: source_name.to_owned(),
            line: 0,
            column: 0,
            path: String::new(),
            message: message.into(),
        })
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &PolicyError> {
        self.0.iter()
    }
}

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}
