//! The webhook: a git host's push notification makes the named repository sync at once.
//!
//! `POST /gitops/webhook/{name}` with the body signed the way GitHub, Gitea and Forgejo sign
//! it: header `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>` under the shared
//! secret. The signature is checked in constant time before anything else; the body is
//! otherwise ignored (the loop fetches the spec's reference itself, so a forged or replayed
//! body can at most cause an extra fetch). A valid call sets the requested-at annotation, so
//! it works on any controller replica: the leader's watch picks it up.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use herd_store::{Store, StoreError};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::control::request_sync;

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";
/// Largest body accepted (push payloads are a few KiB).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Whether `signature` (`sha256=<hex>`) is the HMAC-SHA256 of `body` under `secret`.
/// The comparison takes the same time wherever the first difference is.
pub fn signature_is_valid(secret: &[u8], body: &[u8], signature: &str) -> bool {
    let Some(hex) = signature.strip_prefix("sha256=") else {
        return false;
    };
    let Some(expected) = decode_hex(hex) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// The signature header value for `body` (for tests, tools and the benchmark).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() != 64 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[derive(Clone)]
struct Hook {
    store: Store,
    secret: Arc<Vec<u8>>,
}

/// The webhook's routes, to merge into the controller's HTTP server.
pub fn router(store: Store, secret: Vec<u8>) -> Router {
    let hook = Hook {
        store,
        secret: Arc::new(secret),
    };
    Router::new()
        .route("/gitops/webhook/{name}", post(receive))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(hook)
}

async fn receive(
    State(hook): State<Hook>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let signature = headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !signature_is_valid(&hook.secret, &body, signature) {
        return (
            StatusCode::UNAUTHORIZED,
            "bad or missing X-Hub-Signature-256\n".into(),
        );
    }
    if !herd_crds::names::is_dns_label(&name) {
        return (StatusCode::NOT_FOUND, "no such gitrepository\n".into());
    }
    match request_sync(&hook.store, &name).await {
        Ok(_) => (
            StatusCode::ACCEPTED,
            format!("sync of gitrepository/{name} requested\n"),
        ),
        Err(StoreError::NotFound { .. }) => {
            (StatusCode::NOT_FOUND, "no such gitrepository\n".into())
        }
        Err(error) => (StatusCode::SERVICE_UNAVAILABLE, format!("{error}\n")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_right_signature_passes() {
        let signature = sign(b"secret", b"{}");
        assert!(signature_is_valid(b"secret", b"{}", &signature));
        assert!(!signature_is_valid(b"other", b"{}", &signature));
        assert!(!signature_is_valid(b"secret", b"{ }", &signature));
        assert!(!signature_is_valid(
            b"secret",
            b"{}",
            signature.trim_start_matches("sha256=")
        ));
        assert!(!signature_is_valid(b"secret", b"{}", "sha256=zz"));
        assert!(!signature_is_valid(b"secret", b"{}", ""));
    }
}
