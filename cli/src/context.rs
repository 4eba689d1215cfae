//! Where herdctl finds etcd: a flag, then `HERD_ETCD_ENDPOINTS`, then the context file that
//! `herdctl up` writes, then `http://127.0.0.1:2379`.

use std::path::PathBuf;

use herd_store::{Store, StoreError};
use serde::{Deserialize, Serialize};

use crate::failure::Failure;

/// The connection settings herdctl uses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Context {
    pub endpoints: Vec<String>,
    #[serde(default = "default_prefix")]
    pub prefix: String,
}

fn default_prefix() -> String {
    "/herd".to_owned()
}

/// The context file: `$HERD_CONTEXT`, else `$XDG_CONFIG_HOME/herd/context.yaml`, else
/// `~/.config/herd/context.yaml`.
pub fn context_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("HERD_CONTEXT") {
        return Some(PathBuf::from(path));
    }
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))?;
    Some(config.join("herd").join("context.yaml"))
}

/// Resolves the context from the flags given (each `None` when absent).
pub fn resolve(endpoints_flag: Option<&str>, prefix_flag: Option<&str>) -> Result<Context, String> {
    let from_file = match context_path() {
        Some(path) if path.exists() => {
            let text =
                std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            Some(
                herd_crds::yaml::from_str::<Context>(&text)
                    .map_err(|e| format!("{}: {e}; fix or delete the file", path.display()))?,
            )
        }
        _ => None,
    };
    let env_endpoints = std::env::var("HERD_ETCD_ENDPOINTS").ok();
    let endpoints = endpoints_flag
        .map(split_endpoints)
        .or_else(|| env_endpoints.as_deref().map(split_endpoints))
        .or_else(|| from_file.as_ref().map(|c| c.endpoints.clone()))
        .unwrap_or_else(|| vec!["http://127.0.0.1:2379".to_owned()]);
    let prefix = prefix_flag
        .map(str::to_owned)
        .or_else(|| std::env::var("HERD_PREFIX").ok())
        .or_else(|| from_file.map(|c| c.prefix))
        .unwrap_or_else(default_prefix);
    Ok(Context { endpoints, prefix })
}

/// Connects to the etcd that the flags, the environment or the context file name, and checks
/// that it answers (so that an unreachable etcd is one clear sentence, not a transport dump).
pub async fn connect(
    endpoints_flag: Option<&str>,
    prefix_flag: Option<&str>,
) -> Result<Store, Failure> {
    let context = resolve(endpoints_flag, prefix_flag)?;
    let unreachable = |error: &StoreError| {
        Failure::new(format!(
            "cannot reach etcd at {}: {}; start it, or point herdctl at it with --etcd, \
             HERD_ETCD_ENDPOINTS or the context file",
            context.endpoints.join(","),
            reason(error)
        ))
    };
    let store = Store::connect(&context.endpoints, &context.prefix)
        .await
        .map_err(|e| unreachable(&e))?;
    store
        .current_revision()
        .await
        .map_err(|e| unreachable(&e))?;
    Ok(store)
}

/// Why etcd could not be reached, in a few words: the innermost error of the chain, such as
/// `Connection refused (os error 111)`, not the transport's debug dump.
pub fn reason(error: &StoreError) -> String {
    let inner: &dyn std::error::Error = match error {
        StoreError::Etcd(etcd_client::Error::GRpcStatus(status)) => status,
        StoreError::Etcd(etcd_client::Error::TransportError(transport)) => transport,
        other => return other.to_string(),
    };
    let mut cause = inner;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

fn split_endpoints(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(str::to_owned)
        .collect()
}
