//! A node's balancer points as herdctl shows them (pure): the `Balancer` section of
//! `herdctl describe node` and the POINTS cell of `get nodes -o wide`, from the section the
//! controller writes in the node's status (`NodeStatus.balancer`, see `docs/balancer.md`).

use chrono::{DateTime, Utc};
use herd_crds::balancing::{BalancerSample, NodeBalancerStatus};

use crate::table::{Table, age};

/// `3/5`: the points and the trigger.
pub fn cell(status: &NodeBalancerStatus) -> String {
    format!("{}/{}", status.points, status.points_to_trigger)
}

/// The `Balancer:` section, ending with a newline.
pub fn section(status: &NodeBalancerStatus, now: DateTime<Utc>) -> String {
    let mut out = String::from("Balancer:\n");
    let latest = status.history.last();
    let mut points = cell(status);
    if status.overloaded && status.points < status.points_to_trigger {
        points.push_str(" (started again: a VM was moved off when it was overloaded)");
    } else if status.overloaded {
        points.push_str(" (overloaded: it sheds a VM when another node can take one)");
    }
    let mut fields = vec![("Points", points)];
    if let Some(sample) = latest {
        fields.push(("Hot", why(status, sample)));
        let when = sample
            .time
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let ago = age((now - sample.time).num_seconds());
        fields.push(("Since", format!("{when} ({ago} ago)")));
    }
    for (label, value) in fields {
        out.push_str(&format!("  {:<8}{value}\n", format!("{label}:")));
    }
    if status.history.is_empty() {
        return out;
    }
    out.push_str("  History (changes, oldest first):\n");
    let mut table = Table::new(vec![
        "AGE",
        "POINTS",
        "HOT",
        "LOAD%",
        "DEMAND%",
        "BUSY-VCPUS",
    ]);
    for sample in &status.history {
        table.push(vec![
            age((now - sample.time).num_seconds()),
            sample.points.to_string(),
            yes_no(sample.hot).to_owned(),
            format!("{:.0}", sample.load_percent),
            format!("{:.0}", sample.demand_percent),
            format!("{} on {} CPUs", sample.busy_vcpus, sample.cpus),
        ]);
    }
    for row in table.render().lines() {
        out.push_str(&format!("    {}\n", row.trim_end()));
    }
    out
}

fn yes_no(flag: bool) -> &'static str {
    if flag { "yes" } else { "no" }
}

/// Why the node is hot or not: load against the threshold, then contention.
fn why(status: &NodeBalancerStatus, sample: &BalancerSample) -> String {
    let threshold = status.threshold_percent;
    let load = format!("load {:.0}%", sample.load_percent);
    let vcpus = format!(
        "{} busy vCPUs on {} CPUs, demand {:.0}%",
        sample.busy_vcpus, sample.cpus, sample.demand_percent
    );
    if sample.hot {
        let contention = if sample.busy_vcpus > sample.cpus {
            "more busy vCPUs than CPUs"
        } else {
            "demand above capacity"
        };
        format!("yes: {load} above the {threshold}% threshold, and {contention} ({vcpus})")
    } else if sample.load_percent > threshold {
        format!(
            "no: {load} above the {threshold}% threshold, but no contention ({vcpus}): \
             every busy vCPU has a CPU"
        )
    } else {
        format!("no: {load}, not above the {threshold}% threshold ({vcpus})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(second: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, second).unwrap()
    }

    fn sample(second: u32, points: u32, hot: bool) -> BalancerSample {
        BalancerSample {
            time: at(second),
            points,
            hot,
            load_percent: if hot { 100.0 } else { 40.0 },
            demand_percent: if hot { 125.0 } else { 40.0 },
            busy_vcpus: if hot { 5 } else { 2 },
            cpus: 4,
        }
    }

    fn status(history: Vec<BalancerSample>) -> NodeBalancerStatus {
        let last = history.last().cloned().unwrap_or_default();
        NodeBalancerStatus {
            points: last.points,
            points_to_trigger: 5,
            threshold_percent: 80.0,
            hot: last.hot,
            overloaded: last.hot && last.points >= 5,
            history,
            ..Default::default()
        }
    }

    #[test]
    fn a_hot_node_shows_its_points_why_and_history() {
        let hot = status((1..=3).map(|p| sample(p * 2, p, true)).collect());
        assert_eq!(cell(&hot), "3/5");
        let text = section(&hot, at(10));
        assert_eq!(
            text,
            "Balancer:\n  \
             Points: 3/5\n  \
             Hot:    yes: load 100% above the 80% threshold, and more busy vCPUs than CPUs \
             (5 busy vCPUs on 4 CPUs, demand 125%)\n  \
             Since:  2026-01-01T00:00:06Z (4s ago)\n  \
             History (changes, oldest first):\n    \
             AGE   POINTS   HOT   LOAD%   DEMAND%   BUSY-VCPUS\n    \
             8s    1        yes   100     125       5 on 4 CPUs\n    \
             6s    2        yes   100     125       5 on 4 CPUs\n    \
             4s    3        yes   100     125       5 on 4 CPUs\n"
        );
    }

    #[test]
    fn a_cool_node_says_why_it_is_not_hot() {
        let cool = status(vec![sample(0, 0, false)]);
        let text = section(&cool, at(0));
        assert!(
            text.contains("Hot:    no: load 40%, not above the 80% threshold (2 busy vCPUs on 4 CPUs, demand 40%)"),
            "{text}"
        );
        let mut busy = sample(0, 0, false);
        busy.load_percent = 95.0;
        let text = section(&status(vec![busy]), at(0));
        assert!(text.contains("but no contention"), "{text}");
    }

    #[test]
    fn an_overloaded_node_and_one_that_started_again() {
        let mut full = status((1..=5).map(|p| sample(p, p, true)).collect());
        assert!(section(&full, at(9)).contains("Points: 5/5 (overloaded"));
        full.points = 0;
        assert!(section(&full, at(9)).contains("Points: 0/5 (started again"));
    }
}
