//! The store against a real etcd: compare-and-swap, transactions, watches, leases, election.

use std::time::Duration;

use anyhow::Result;
use herd_crds::node::NodeSpec;
use herd_crds::virtual_machine::VirtualMachineSpec;
use herd_crds::{Node, Object, Resource, VirtualMachine};
use herd_store::objects::DeleteOutcome;
use herd_store::txn::Precondition;
use herd_store::{Elector, Store, StoreError, WatchEvent};
use herd_tests::{EtcdServer, unique_prefix};

async fn store(etcd: &EtcdServer) -> Result<Store> {
    Ok(Store::connect(&etcd.endpoints(), &unique_prefix()).await?)
}

fn vm(name: &str, memory: u64) -> VirtualMachine {
    let spec: VirtualMachineSpec =
        herd_crds::yaml::from_str(&format!("memoryMiB: {memory}")).unwrap();
    Object::new(name, spec)
}

fn node(name: &str) -> Node {
    Object::new(name, NodeSpec::default())
}

/// Waits for the next watch event, failing the test after 10 s.
async fn next_event(watcher: &mut herd_store::Watcher) -> WatchEvent {
    tokio::time::timeout(Duration::from_secs(10), watcher.next())
        .await
        .expect("watch event within 10 s")
}

#[tokio::test]
async fn create_update_delete_round_trip() -> Result<()> {
    let etcd = EtcdServer::start()?;
    let store = store(&etcd).await?;
    let created = store.create(&vm("small-1", 512)).await?;
    assert_eq!(created.metadata.generation, 1);
    assert!(created.metadata.uid.is_some() && created.metadata.creation_timestamp.is_some());
    assert!(matches!(
        store.create(&vm("small-1", 512)).await,
        Err(StoreError::AlreadyExists { .. })
    ));

    let read: VirtualMachine = store.get_existing("small-1").await?;
    assert_eq!(read, created);

    let mut relabelled = read.clone();
    relabelled
        .metadata
        .labels
        .insert("app".into(), "web".into());
    let relabelled = store.update(&relabelled).await?;
    assert_eq!(relabelled.metadata.generation, 1, "labels are not the spec");

    let mut grown = relabelled.clone();
    grown.spec.memory_mib = 1024;
    let grown = store.update(&grown).await?;
    assert_eq!(
        grown.metadata.generation, 2,
        "a spec change bumps generation"
    );
    assert_eq!(grown.metadata.uid, created.metadata.uid);

    assert_eq!(
        store
            .delete::<VirtualMachine>("small-1", Precondition::None)
            .await?,
        DeleteOutcome::Deleted
    );
    assert!(store.get::<VirtualMachine>("small-1").await?.is_none());
    Ok(())
}

#[tokio::test]
async fn last_modified_is_the_newest_write_still_in_the_range() -> Result<()> {
    let etcd = EtcdServer::start()?;
    let store = store(&etcd).await?;
    let nodes = store.keys().objects(Node::PLURAL);
    assert_eq!(store.last_modified(&nodes).await?, 0, "an empty range");

    let ferby = store.create(&node("ferby")).await?;
    store.create(&node("gerby")).await?;
    let mut cordoned = ferby.clone();
    cordoned.spec.unschedulable = true;
    let cordoned = store.update(&cordoned).await?;
    store.create(&vm("small-1", 64)).await?;

    assert_eq!(
        store.last_modified(&nodes).await?,
        cordoned.metadata.revision().unwrap(),
        "the update of ferby is the newest node write; the later VM is another range"
    );
    Ok(())
}

#[tokio::test]
async fn cas_conflict_loses_and_the_losers_write_is_not_applied() -> Result<()> {
    let etcd = EtcdServer::start()?;
    let store = store(&etcd).await?;
    let original = store.create(&vm("small-1", 512)).await?;

    let mut first = original.clone();
    first.spec.memory_mib = 1024;
    let mut second = original.clone();
    second.spec.memory_mib = 2048;
    store.update(&first).await?;
    let error = store.update(&second).await.unwrap_err();
    assert!(error.is_conflict(), "{error}");
    assert!(
        error.to_string().contains("changed by someone else"),
        "{error}"
    );

    // Also at the transaction level, where no read precedes the compare.
    let error = store
        .transaction()
        .update(&second)?
        .commit()
        .await
        .unwrap_err();
    assert!(error.is_conflict(), "{error}");

    let stored: VirtualMachine = store.get_existing("small-1").await?;
    assert_eq!(
        stored.spec.memory_mib, 1024,
        "the winner's write stands, the loser's is absent"
    );
    Ok(())
}

#[tokio::test]
async fn a_transaction_with_one_bad_precondition_writes_nothing() -> Result<()> {
    let etcd = EtcdServer::start()?;
    let store = store(&etcd).await?;
    let existing = store.create(&node("ferby")).await?;
    let before = store.current_revision().await?;

    let mut stale = existing.clone();
    stale.metadata.resource_version = Some((existing.metadata.revision().unwrap() - 1).to_string());
    stale.spec.unschedulable = true;
    let error = store
        .transaction()
        .create(&node("gerby"))?
        .create(&vm("small-1", 512))?
        .update(&stale)?
        .commit()
        .await
        .unwrap_err();
    assert!(
        matches!(&error, StoreError::Conflict { name, .. } if name == "ferby"),
        "{error}"
    );

    assert!(store.get::<Node>("gerby").await?.is_none());
    assert!(store.get::<VirtualMachine>("small-1").await?.is_none());
    assert!(
        !store
            .get_existing::<Node>("ferby")
            .await?
            .spec
            .unschedulable
    );
    assert_eq!(
        store.current_revision().await?,
        before,
        "nothing at all was written"
    );

    // The same three writes with good preconditions all land, in one revision.
    let revision = store
        .transaction()
        .create(&node("gerby"))?
        .create(&vm("small-1", 512))?
        .update(&Node {
            spec: NodeSpec {
                unschedulable: true,
                ..NodeSpec::default()
            },
            ..existing
        })?
        .commit()
        .await?;
    for name in ["ferby", "gerby"] {
        assert_eq!(
            store.get_existing::<Node>(name).await?.metadata.revision(),
            Some(revision)
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_watch_from_revision_r_sees_every_later_change_in_order() -> Result<()> {
    let etcd = EtcdServer::start()?;
    let store = store(&etcd).await?;
    let start = store.current_revision().await? + 1;
    let prefix = store.keys().objects(VirtualMachine::PLURAL);

    let mut expected = Vec::new();
    for i in 0..20 {
        let created = store.create(&vm(&format!("vm-{i}"), 64)).await?;
        expected.push((
            "put",
            created.metadata.name.clone(),
            created.metadata.revision().unwrap(),
        ));
    }
    for i in (0..20).step_by(3) {
        store
            .delete::<VirtualMachine>(&format!("vm-{i}"), Precondition::None)
            .await?;
        expected.push(("delete", format!("vm-{i}"), 0));
    }

    let mut watcher = store.watch_prefix(&prefix, Some(start));
    for (what, name, revision) in &expected {
        match next_event(&mut watcher).await {
            WatchEvent::Put(entry) if *what == "put" => {
                assert_eq!(entry.key, format!("{prefix}{name}"));
                assert_eq!(entry.mod_revision, *revision);
            }
            WatchEvent::Delete { key, .. } if *what == "delete" => {
                assert_eq!(key, format!("{prefix}{name}"))
            }
            other => panic!("expected {what} of {name}, got {other:?}"),
        }
    }
    Ok(())
}

#[tokio::test]
async fn after_compaction_the_reflector_relists_and_misses_no_delete() -> Result<()> {
    let etcd = EtcdServer::start()?;
    let store = store(&etcd).await?;
    let prefix = store.keys().objects(VirtualMachine::PLURAL);
    for name in ["keep", "doomed", "changed"] {
        store.create(&vm(name, 64)).await?;
    }
    // The reflector last saw the state at `seen`; then it was away.
    let seen = store.current_revision().await?;
    store
        .delete::<VirtualMachine>("doomed", Precondition::None)
        .await?;
    let mut changed: VirtualMachine = store.get_existing("changed").await?;
    changed.spec.memory_mib = 128;
    store.update(&changed).await?;
    store.create(&vm("new", 64)).await?;
    let now = store.current_revision().await?;
    etcd.etcdctl(&["compact", &now.to_string()])?;

    // Seed the cache with what it held at `seen`, then resume the watch from `seen + 1`.
    let watcher = store.watch_prefix(&prefix, Some(seen + 1));
    let (mut reflector, mut reader) = herd_store::Reflector::new(
        watcher,
        &prefix,
        herd_store::codec::decode_object::<VirtualMachine>,
    );
    let (old, _) = store.list_raw(&prefix, None).await?;
    let mut stale_entries: Vec<_> = old
        .into_iter()
        .map(|(key, value, mod_revision)| herd_store::Entry {
            key,
            value,
            mod_revision,
        })
        .collect();
    stale_entries.push(herd_store::Entry {
        key: format!("{prefix}doomed"),
        value: herd_crds::yaml::to_string(&vm("doomed", 64))?.into_bytes(),
        mod_revision: seen,
    });
    reflector.apply(WatchEvent::Restarted {
        entries: stale_entries,
        revision: seen,
    });
    assert!(reader.get("doomed").is_some());

    tokio::spawn(reflector.run());
    tokio::time::timeout(Duration::from_secs(10), reader.wait_for(now)).await?;
    let names: Vec<String> = reader.list().into_iter().map(|(name, _)| name).collect();
    assert_eq!(
        names,
        ["changed", "keep", "new"],
        "the delete made during the gap is seen"
    );
    assert_eq!(reader.get("changed").unwrap().spec.memory_mib, 128);

    // And it keeps following live changes after the re-list.
    store
        .delete::<VirtualMachine>("keep", Precondition::None)
        .await?;
    let after = store.current_revision().await?;
    tokio::time::timeout(Duration::from_secs(10), reader.wait_for(after)).await?;
    assert!(reader.get("keep").is_none());
    Ok(())
}

#[tokio::test]
async fn a_watch_survives_an_etcd_restart() -> Result<()> {
    let mut etcd = EtcdServer::start()?;
    let store = store(&etcd).await?;
    let prefix = store.keys().objects(VirtualMachine::PLURAL);
    let mut watcher = store.watch_prefix(&prefix, None);
    assert!(
        matches!(next_event(&mut watcher).await, WatchEvent::Restarted { ref entries, .. } if entries.is_empty())
    );

    store.create(&vm("before", 64)).await?;
    assert!(
        matches!(next_event(&mut watcher).await, WatchEvent::Put(ref e) if e.key.ends_with("/before"))
    );

    etcd.kill();
    let pending = tokio::spawn(async move {
        let mut events = Vec::new();
        for _ in 0..3 {
            events.push(watcher.next().await);
        }
        events
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    etcd.restart()?;
    for name in ["after-1", "after-2", "after-3"] {
        let object = vm(name, 64);
        retry(|| store.create(&object)).await?;
    }
    let events = tokio::time::timeout(Duration::from_secs(20), pending).await??;
    let keys: Vec<String> = events
        .into_iter()
        .map(|event| match event {
            WatchEvent::Put(entry) => entry.key.rsplit('/').next().unwrap().to_owned(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(keys, ["after-1", "after-2", "after-3"]);
    Ok(())
}

/// Retries a store call for a few seconds while etcd comes back.
async fn retry<T, F, Fut>(mut call: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut last = None;
    for _ in 0..50 {
        match call().await {
            Ok(value) => return Ok(value),
            Err(StoreError::Etcd(error)) => last = Some(error),
            Err(other) => return Err(other.into()),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(last.expect("retried").into())
}

#[tokio::test]
async fn a_lease_bound_key_vanishes_when_its_holder_stops_renewing() -> Result<()> {
    let etcd = EtcdServer::start()?;
    let store = store(&etcd).await?;
    let key = store.keys().heartbeat("ferby")?;
    let lease = store.grant_lease(Duration::from_secs(2)).await?;
    store
        .transaction()
        .put_raw(
            key.clone(),
            "alive".into(),
            Some(lease.id()),
            Precondition::None,
        )
        .commit()
        .await?;

    // Renewed, it outlives its TTL.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        store.list_raw(&key, None).await?.0.len(),
        1,
        "a renewed lease keeps its key"
    );

    lease.abandon();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !store.list_raw(&key, None).await?.0.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "key still there 10 s after renewal stopped"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

#[tokio::test]
async fn leadership_hands_over_when_the_leaders_lease_ends_and_old_fences_fail() -> Result<()> {
    let etcd = EtcdServer::start()?;
    let store = store(&etcd).await?;
    let ttl = Duration::from_secs(2);
    let first = Elector::new(&store, "controller", "controller-a", ttl)?;
    let second = Elector::new(&store, "controller", "controller-b", ttl)?;

    let leader = first.campaign().await?;
    assert_eq!(first.leader().await?.as_deref(), Some("controller-a"));
    let old_fence = leader.fence().clone();
    store
        .transaction()
        .create(&node("ferby"))?
        .fenced(&old_fence)
        .commit()
        .await?;

    let challenger = tokio::spawn(async move { second.campaign().await });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!challenger.is_finished(), "only one leader at a time");

    let stopped = tokio::time::Instant::now();
    leader.abandon();
    let new_leader = tokio::time::timeout(Duration::from_secs(15), challenger).await???;
    assert!(
        stopped.elapsed() <= ttl + Duration::from_secs(3),
        "took over within the TTL: {:?}",
        stopped.elapsed()
    );
    assert_eq!(first.leader().await?.as_deref(), Some("controller-b"));

    let error = store
        .transaction()
        .create(&node("gerby"))?
        .fenced(&old_fence)
        .commit()
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::FenceLost), "{error}");
    assert!(
        store.get::<Node>("gerby").await?.is_none(),
        "the fenced write was not applied"
    );
    store
        .transaction()
        .create(&node("gerby"))?
        .fenced(new_leader.fence())
        .commit()
        .await?;
    assert!(new_leader.is_held().await?);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_concurrent_updaters_lose_no_write() -> Result<()> {
    let etcd = EtcdServer::start()?;
    let store = store(&etcd).await?;
    store.create(&vm("shared", 64)).await?;
    let mut tasks = Vec::new();
    for i in 0..100 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0u32;
            loop {
                let mut current: VirtualMachine = store.get_existing("shared").await?;
                current
                    .metadata
                    .labels
                    .insert(format!("updater-{i}"), "done".into());
                match store.update(&current).await {
                    Ok(_) => return Ok::<u32, StoreError>(conflicts),
                    Err(error) if error.is_conflict() => conflicts += 1,
                    Err(error) => return Err(error),
                }
            }
        }));
    }
    let mut conflicts = 0;
    for task in tasks {
        conflicts += task.await??;
    }
    let last: VirtualMachine = store.get_existing("shared").await?;
    assert_eq!(
        last.metadata.labels.len(),
        100,
        "every update is in the final object"
    );
    assert!(
        conflicts > 0,
        "the updaters really raced (no conflict at all means no concurrency)"
    );
    Ok(())
}

#[tokio::test]
async fn finalizers_hold_deletion_and_status_lives_apart() -> Result<()> {
    let etcd = EtcdServer::start()?;
    let store = store(&etcd).await?;
    let mut guarded = vm("guarded", 64);
    guarded.metadata.finalizers.push("herd.dev/domain".into());
    store.create(&guarded).await?;

    let status = herd_crds::VirtualMachineStatus {
        node_name: Some("ferby".into()),
        ..Default::default()
    };
    let written = store
        .put_status::<VirtualMachineSpec>("guarded", &status, Precondition::Absent)
        .await?;
    let error = store
        .put_status::<VirtualMachineSpec>("guarded", &status, Precondition::Absent)
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::AlreadyExists { .. }), "{error}");
    store
        .put_status::<VirtualMachineSpec>("guarded", &status, Precondition::Revision(written))
        .await?;

    let full = store
        .get_with_status::<VirtualMachineSpec>("guarded")
        .await?
        .unwrap();
    assert_eq!(full.status.unwrap().node_name.as_deref(), Some("ferby"));

    assert_eq!(
        store
            .delete::<VirtualMachine>("guarded", Precondition::None)
            .await?,
        DeleteOutcome::Marked
    );
    let mut marked: VirtualMachine = store.get_existing("guarded").await?;
    assert!(marked.metadata.deletion_timestamp.is_some());
    marked.metadata.finalizers.clear();
    store.update(&marked).await?;
    assert_eq!(
        store
            .delete::<VirtualMachine>("guarded", Precondition::None)
            .await?,
        DeleteOutcome::Deleted
    );
    assert!(
        store
            .get_status::<VirtualMachineSpec>("guarded")
            .await?
            .is_none(),
        "status goes with the object"
    );
    Ok(())
}
