//! `herdctl describe KIND NAME…` (or `KIND/NAME…`): one object in detail, with the events
//! about it (the ones whose `involvedObject` names it), oldest first, newest last.

use herd_crds::Event;
use herd_store::Store;

use crate::args::RefsArgs;
use crate::clock;
use crate::commands::Target;
use crate::commands::get::warn;
use crate::describe::Described;
use crate::failure::Failure;
use crate::fetch;
use crate::kinds::{Kind, parse_refs};
use crate::output::write_out;
use crate::view::{Shown, with_kind};

/// The most events shown for one object (the newest ones).
pub const MAX_EVENTS: usize = 50;

pub async fn run(target: &Target, args: RefsArgs) -> Result<(), Failure> {
    let refs = parse_refs(&args.objects).map_err(|e| Failure::new(e).with_code(2))?;
    if refs.iter().any(|r| r.kind == Kind::Event) {
        return Err(Failure::new(
            "events have nothing more to describe; use herdctl get events",
        ));
    }
    let store = target.connect().await?;
    let (_, snapshot) = fetch::read::<Event>(&store, None).await?;
    let (events, problems) = snapshot.all::<Event>();
    warn(&problems);
    let mut texts = Vec::new();
    for object in &refs {
        texts.push(
            with_kind!(object.kind, K => describe::<K>(&store, &object.name, &events).await?),
        );
    }
    write_out(&texts.join("\n\n"))
}

async fn describe<K: Shown>(
    store: &Store,
    name: &str,
    events: &[Event],
) -> Result<String, Failure> {
    let (_, snapshot) = fetch::read::<K>(store, Some(name)).await?;
    let object = snapshot
        .get::<K>(name)?
        .ok_or_else(|| Failure::new(format!("{} {name:?} not found", K::CLI_KIND)))?;
    let related = events_about(events, K::KIND, object.metadata());
    let now = clock::now();
    let mut described = Described::new(
        K::KIND,
        object.metadata(),
        &object,
        object.conditions(),
        related,
    )
    .map_err(|e| Failure::new(format!("cannot describe {name}: {e}")))?;
    for (key, text) in object.sections(now) {
        described = described.with_section(key, text);
    }
    Ok(described.render(now))
}

/// The newest [`MAX_EVENTS`] events about the object, oldest first. An event that carries a
/// uid must carry this object's (not one of an earlier object of the same name).
pub fn events_about(events: &[Event], kind: &str, meta: &herd_crds::ObjectMeta) -> Vec<Event> {
    let mut related: Vec<Event> = events
        .iter()
        .filter(|e| {
            let about = &e.involved_object;
            about.kind == kind
                && about.name == meta.name
                && (about.uid.is_none() || meta.uid.is_none() || about.uid == meta.uid)
        })
        .cloned()
        .collect();
    Event::sort(&mut related);
    let skip = related.len().saturating_sub(MAX_EVENTS);
    related.split_off(skip)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use herd_crds::{EventType, InvolvedObject, ObjectMeta};

    fn event(name: &str, about: &str, uid: Option<&str>, minute: u32) -> Event {
        let object = InvolvedObject {
            kind: "VirtualMachine".into(),
            name: about.into(),
            uid: uid.map(str::to_owned),
        };
        let time = Utc.with_ymd_and_hms(2026, 1, 1, 0, minute, 0).unwrap();
        Event::new(
            name,
            object,
            EventType::Normal,
            "Scheduled",
            "m",
            "herd-controller",
            time,
        )
    }

    #[test]
    fn only_events_about_this_object_newest_last() {
        let mut meta = ObjectMeta::named("small-1");
        meta.uid = Some("u1".into());
        let events = [
            event("late", "small-1", None, 9),
            event("other", "small-2", None, 1),
            event("early", "small-1", Some("u1"), 2),
            event("previous-life", "small-1", Some("u0"), 3),
        ];
        let related = events_about(&events, "VirtualMachine", &meta);
        let names: Vec<&str> = related.iter().map(|e| e.metadata.name.as_str()).collect();
        assert_eq!(names, ["early", "late"]);
        assert!(events_about(&events, "Node", &meta).is_empty());
    }
}
