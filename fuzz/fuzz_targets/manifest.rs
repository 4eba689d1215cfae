//! Fuzz target `manifest`: any bytes given to `parse_manifests` must give objects or errors,
//! never a panic, a hang or a blow-up; and every object it accepts must survive being written
//! with `AnyObject::to_yaml()` and read back, unchanged.
//!
//! Run with `fuzz/run.sh` (or `cargo +nightly fuzz run manifest` in this folder).

#![no_main]

use herd_crds::parse_manifests;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(documents) = parse_manifests("fuzz", data) else {
        return;
    };
    for document in documents {
        let object = &document.object;
        let yaml = object
            .to_yaml()
            .unwrap_or_else(|e| panic!("an accepted {object:?} does not serialize: {e}"));
        let again = parse_manifests("fuzz-round-trip", yaml.as_bytes()).unwrap_or_else(|errors| {
            panic!("{object:?} was written as YAML that does not parse:\n{yaml}\n{errors:?}")
        });
        assert_eq!(
            again.len(),
            1,
            "one object became {} in:\n{yaml}",
            again.len()
        );
        // Compared through Debug rather than PartialEq: a status may hold NaN (YAML `.nan`),
        // which never equals itself, yet is written and read back faithfully.
        assert_eq!(
            format!("{:?}", again[0].object),
            format!("{object:?}"),
            "changed by a round trip through:\n{yaml}"
        );
    }
});
