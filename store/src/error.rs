//! What can go wrong when reading or writing the store.

/// One error of the store, phrased for the person who will read it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A compare-and-swap lost: someone else changed the object first.
    #[error(
        "{kind} {name:?} was changed by someone else (expected revision {expected}, found {found}); read it again and retry"
    )]
    Conflict {
        kind: String,
        name: String,
        expected: i64,
        found: i64,
    },
    #[error("{kind} {name:?} not found")]
    NotFound { kind: String, name: String },
    #[error("{kind} {name:?} already exists")]
    AlreadyExists { kind: String, name: String },
    /// A fenced write was refused because the writer no longer holds leadership.
    #[error("leadership was lost; the write was not applied")]
    FenceLost,
    /// An update was asked for without the revision to compare against.
    #[error("{kind} {name:?} has no resourceVersion; read it from the store before updating")]
    MissingRevision { kind: String, name: String },
    #[error("{0:?} is not a valid object name")]
    InvalidName(String),
    /// What is stored under a key is not what its kind should be.
    #[error("cannot decode {key}: {message}")]
    Decode { key: String, message: String },
    #[error("cannot encode {kind} {name:?}: {message}")]
    Encode {
        kind: String,
        name: String,
        message: String,
    },
    /// The watch's revision was compacted away; the watcher re-lists by itself.
    #[error("revision {requested} was compacted (oldest kept: {compacted})")]
    Compacted { requested: i64, compacted: i64 },
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
}

impl StoreError {
    /// Whether re-reading and retrying could succeed.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Conflict { .. })
    }
}
