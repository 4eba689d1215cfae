//! Unit tests of the pure volume plan and status.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use chrono::TimeZone;
use herd_crds::condition::find_condition;
use herd_crds::volume::{Export, VolumeFormat};

use super::*;
use crate::storage::backend::MIB;

fn spec(size_mib: u64, exported: bool) -> VolumeSpec {
    VolumeSpec {
        size_mib,
        backend: VolumeBackend::File,
        format: VolumeFormat::Qcow2,
        image: None,
        export: exported.then(Export::default),
    }
}

fn backing(size_mib: u64, complete: bool) -> Backing {
    Backing {
        backend: VolumeBackend::File,
        path: PathBuf::from("/s/volumes/v.qcow2"),
        format: VolumeFormat::Qcow2,
        size_bytes: size_mib * MIB,
        complete,
    }
}

fn export() -> ExportRecord {
    ExportRecord {
        name: "v".into(),
        pid: 7,
        address: IpAddr::V4(Ipv4Addr::LOCALHOST),
        port: 10809,
        path: PathBuf::from("/s/volumes/v.qcow2"),
        format: VolumeFormat::Qcow2,
    }
}

fn observed(backing: Option<Backing>, export: Option<ExportRecord>) -> Observed {
    Observed {
        backing,
        elsewhere: None,
        export,
    }
}

#[test]
fn a_new_volume_is_created_then_exported() {
    let plan = plan(&spec(64, true), false, &Observed::default());
    assert_eq!(plan.steps, [Step::Create, Step::Export]);
    let local = super::plan(&spec(64, false), false, &Observed::default());
    assert_eq!(local.steps, [Step::Create]);
}

#[test]
fn a_ready_volume_needs_nothing() {
    let ready = observed(Some(backing(64, true)), Some(export()));
    assert_eq!(plan(&spec(64, true), false, &ready), Plan::default());
}

#[test]
fn an_incomplete_volume_is_discarded_and_made_again() {
    let crashed = observed(Some(backing(0, false)), None);
    assert_eq!(
        plan(&spec(64, true), false, &crashed).steps,
        [Step::Discard, Step::Create, Step::Export]
    );
}

#[test]
fn growing_an_exported_volume_restarts_its_export() {
    let ready = observed(Some(backing(64, true)), Some(export()));
    assert_eq!(
        plan(&spec(128, true), false, &ready).steps,
        [Step::Unexport, Step::Grow { to_mib: 128 }, Step::Export]
    );
    let not_exported = observed(Some(backing(64, true)), None);
    assert_eq!(
        plan(&spec(128, false), false, &not_exported).steps,
        [Step::Grow { to_mib: 128 }]
    );
}

#[test]
fn shrinking_is_refused_with_a_note() {
    let ready = observed(Some(backing(128, true)), Some(export()));
    let plan = plan(&spec(64, true), false, &ready);
    assert!(plan.steps.is_empty());
    assert_eq!(plan.notes[0].reason, "ShrinkRefused");
    // LVM's rounding up to whole extents is not a shrink.
    let mut lv = backing(68, true);
    lv.backend = VolumeBackend::Lvm;
    lv.format = VolumeFormat::Raw;
    let mut lvm = spec(66, false);
    lvm.backend = VolumeBackend::Lvm;
    lvm.format = VolumeFormat::Raw;
    assert_eq!(
        super::plan(&lvm, false, &observed(Some(lv), None)),
        Plan::default()
    );
}

#[test]
fn export_follows_the_spec() {
    let exported = observed(Some(backing(64, true)), Some(export()));
    assert_eq!(
        plan(&spec(64, false), false, &exported).steps,
        [Step::Unexport]
    );
    let mut stale = export();
    stale.path = PathBuf::from("/s/volumes/v.raw");
    let wrong_file = observed(Some(backing(64, true)), Some(stale));
    assert_eq!(
        plan(&spec(64, true), false, &wrong_file).steps,
        [Step::Export]
    );
}

#[test]
fn a_changed_backend_keeps_the_volume_where_it_is() {
    let mut moved = spec(64, true);
    moved.backend = VolumeBackend::Lvm;
    moved.format = VolumeFormat::Raw;
    let where_it_is = Observed {
        backing: None,
        elsewhere: Some(backing(64, true)),
        export: Some(export()),
    };
    let plan = plan(&moved, false, &where_it_is);
    assert!(plan.steps.is_empty(), "{plan:?}");
    assert_eq!(plan.notes[0].reason, "BackendChanged");
    assert!(
        plan.notes[0].message.contains("file/qcow2"),
        "{}",
        plan.notes[0].message
    );
}

#[test]
fn deletion_stops_the_export_then_removes_the_volume() {
    let ready = observed(Some(backing(64, true)), Some(export()));
    assert_eq!(
        plan(&spec(64, true), true, &ready).steps,
        [Step::Unexport, Step::Remove]
    );
    assert!(
        plan(&spec(64, true), true, &Observed::default())
            .steps
            .is_empty()
    );
}

fn at(minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, minute, 0).unwrap()
}

#[test]
fn a_usable_volume_is_ready_with_its_endpoint() {
    let outcome = Outcome {
        observed: observed(Some(backing(64, true)), Some(export())),
        wants_export: true,
        ..Outcome::default()
    };
    let status = status(&VolumeStatus::default(), 3, &outcome, at(0));
    assert_eq!(status.phase, VolumePhase::Ready);
    assert_eq!(status.endpoint.as_deref(), Some("nbd://127.0.0.1:10809/v"));
    assert_eq!(status.path.as_deref(), Some("/s/volumes/v.qcow2"));
    let ready = find_condition(&status.conditions, "Ready").unwrap();
    assert_eq!(
        (ready.status, ready.observed_generation),
        (ConditionStatus::True, 3)
    );
    let reconciled = find_condition(&status.conditions, "Reconciled").unwrap();
    assert_eq!(reconciled.status, ConditionStatus::True);
}

#[test]
fn a_failure_says_why_and_offers_no_endpoint() {
    let outcome = Outcome {
        observed: Observed::default(),
        wants_export: true,
        error: Some(("InsufficientSpace", "1048576 MiB does not fit".into())),
        ..Outcome::default()
    };
    let status = status(&VolumeStatus::default(), 1, &outcome, at(0));
    assert_eq!(status.phase, VolumePhase::Failed);
    assert_eq!(status.endpoint, None);
    let ready = find_condition(&status.conditions, "Ready").unwrap();
    assert_eq!(ready.reason, "InsufficientSpace");
    assert_eq!(ready.message, "1048576 MiB does not fit");
}

#[test]
fn a_refused_shrink_keeps_the_volume_ready_but_not_reconciled() {
    let outcome = Outcome {
        observed: observed(Some(backing(128, true)), Some(export())),
        wants_export: true,
        notes: vec![Note {
            reason: "ShrinkRefused",
            message: "no".into(),
        }],
        ..Outcome::default()
    };
    let first = status(&VolumeStatus::default(), 2, &outcome, at(0));
    assert_eq!(first.phase, VolumePhase::Ready);
    let reconciled = find_condition(&first.conditions, "Reconciled").unwrap();
    assert_eq!(
        (reconciled.status, reconciled.reason.as_str()),
        (ConditionStatus::False, "ShrinkRefused")
    );
    // Nothing changed: the transition time stays.
    let again = status(&first, 2, &outcome, at(5));
    assert_eq!(again, first);
}

#[test]
fn an_exported_volume_without_its_export_is_not_ready() {
    let outcome = Outcome {
        observed: observed(Some(backing(64, true)), None),
        wants_export: true,
        error: Some(("ExportFailed", "qemu-nbd failed".into())),
        ..Outcome::default()
    };
    let status = status(&VolumeStatus::default(), 1, &outcome, at(0));
    assert_eq!(status.phase, VolumePhase::Failed);
    assert_eq!(status.path.as_deref(), Some("/s/volumes/v.qcow2"));
    assert_eq!(status.endpoint, None);
    let creating = creating(&status, 1, "building bookworm", at(1));
    assert_eq!(creating.phase, VolumePhase::Creating);
    assert_eq!(
        find_condition(&creating.conditions, "Ready")
            .unwrap()
            .reason,
        "Creating"
    );
}
