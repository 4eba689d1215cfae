//! A `Volume` that is ready without the storage role: tests that serve an image themselves
//! (see [`crate::serve_nbd`]) write the object and a `Ready` status naming their export.

use std::path::Path;

use anyhow::Result;
use herd_crds::Object;
use herd_crds::volume::{VolumePhase, VolumeSpec, VolumeStatus};
use herd_store::Store;
use herd_store::txn::Precondition;

/// Creates Volume `name` (1 MiB, the defaults) and its `Ready` status: `image` on this machine,
/// exported at `endpoint`.
pub async fn ready_volume(store: &Store, name: &str, image: &Path, endpoint: &str) -> Result<()> {
    let spec: VolumeSpec = herd_crds::yaml::from_str("sizeMiB: 1")?;
    store.create(&Object::new(name, spec)).await?;
    let status = VolumeStatus {
        phase: VolumePhase::Ready,
        path: Some(image.display().to_string()),
        endpoint: Some(endpoint.to_owned()),
        conditions: vec![],
    };
    store
        .put_status::<VolumeSpec>(name, &status, Precondition::Absent)
        .await?;
    Ok(())
}
