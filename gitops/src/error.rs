//! Why a sync run did not apply a commit.

use herd_crds::ManifestError;
use herd_store::StoreError;

/// What stopped a sync run; each variant maps to a condition reason and a history result.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("Cannot fetch the repository: {0}")]
    Fetch(String),
    #[error("Cannot use the cache at {path}: {message}")]
    Cache { path: String, message: String },
    #[error("The repository has no {0}; push it or fix spec.ref")]
    RefNotFound(String),
    #[error("The commit has no directory {0:?}; fix spec.path or add it")]
    PathNotFound(String),
    #[error("Cannot read the commit: {0}")]
    Tree(String),
    #[error("The commit is too large: {0}")]
    TooLarge(String),
    #[error("The commit holds a path herd refuses: {0}")]
    BadPath(String),
    #[error("{}", invalid_message(.0))]
    Invalid(Vec<ManifestError>),
    #[error("{0}")]
    Refused(String),
    #[error("Cannot write to the store: {0}")]
    Store(#[from] StoreError),
}

/// The first problems, one a line (the whole list can be long).
fn invalid_message(errors: &[ManifestError]) -> String {
    let shown: Vec<String> = errors.iter().take(5).map(ToString::to_string).collect();
    let more = errors.len().saturating_sub(shown.len());
    let tail = if more > 0 {
        format!("\n… and {more} more")
    } else {
        String::new()
    };
    format!(
        "{} problem(s) in the commit; nothing was applied:\n{}{tail}",
        errors.len(),
        shown.join("\n")
    )
}

impl SyncError {
    /// The condition reason for this failure.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Fetch(_) | Self::Cache { .. } => "FetchFailed",
            Self::RefNotFound(_) => "RefNotFound",
            Self::PathNotFound(_) => "PathNotFound",
            Self::Tree(_) | Self::TooLarge(_) | Self::BadPath(_) => "ArtifactFailed",
            Self::Invalid(_) => "ValidationFailed",
            Self::Refused(_) => "Refused",
            Self::Store(_) => "WriteFailed",
        }
    }

    /// Whether retrying the same commit cannot help (Stalled): the commit itself is at fault.
    pub fn is_stalled(&self) -> bool {
        matches!(
            self,
            Self::PathNotFound(_)
                | Self::TooLarge(_)
                | Self::BadPath(_)
                | Self::Invalid(_)
                | Self::Refused(_)
        )
    }
}
