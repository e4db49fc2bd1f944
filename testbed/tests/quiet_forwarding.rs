//! A quiet node that forwards a packet is not polled (`Network::forwarded`): a shortcut for
//! speed that must change nothing. Each scenario runs with and without it; the captures
//! (every packet on every segment, with its time), the event logs and the nodes' drop
//! counters must match.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use binfm_stack::capture::Capture;
use binfm_testbed::engine::Network;
use binfm_testbed::events::EventLog;
use binfm_testbed::topology::Topology;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

fn topology(file: &str) -> Topology {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../topologies")
        .join(file);
    Topology::load(&path).unwrap()
}

fn run(topo: &Topology, quiet_forwarding: bool) -> (Vec<u8>, Vec<u8>, String) {
    let dir = tempfile::tempdir().unwrap();
    let events_path = dir.path().join("events.jsonl");
    let names: Vec<String> = topo.segments.iter().map(|s| s.name.clone()).collect();
    let capture = Capture::new(Vec::new(), "capture.pcapng", &names).unwrap();
    let events = EventLog::create(Some(&events_path)).unwrap();
    let mut net = Network::new(topo, topo.seed, Some(capture), events, None).unwrap();
    net.set_quiet_forwarding(quiet_forwarding);
    let stop = AtomicBool::new(false);
    net.start().unwrap();
    net.run_until(topo.duration, &stop).unwrap();
    net.settle(Duration::from_secs(2), &stop).unwrap();
    let drops = format!(
        "{:?}",
        net.nodes
            .iter()
            .map(|n| (&n.name, &n.drops, n.nat_drops()))
            .collect::<Vec<_>>()
    );
    let capture = net.finish().unwrap().unwrap();
    (capture, std::fs::read(&events_path).unwrap(), drops)
}

fn same_both_ways(topo: &Topology) {
    let name = &topo.name;
    let (with, with_events, with_drops) = run(topo, true);
    let (without, without_events, without_drops) = run(topo, false);
    assert!(with.len() > 10_000, "{name}: the run captured little");
    assert!(with == without, "{name}: captures differ");
    assert!(with_events == without_events, "{name}: event logs differ");
    assert_eq!(with_drops, without_drops, "{name}: drop counters differ");
}

#[test]
fn quiet_forwarding_changes_nothing_in_the_papers_scenario() {
    same_both_ways(&topology("paper.toml"));
}

#[test]
fn quiet_forwarding_changes_nothing_on_a_lossy_natted_lan() {
    same_both_ways(&topology("lan-nat.toml"));
}

/// The NATs' timers matter here: mappings expire between the echo probes (their idle
/// timeout is shorter than the probe interval) and leases renew every few seconds, so
/// forwarding NATs have mapping expiries and DHCP timers coming due between packets.
#[test]
fn quiet_forwarding_changes_nothing_with_nat_and_lease_timers_due_between_packets() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../topologies/lan-nat.toml"),
    )
    .unwrap()
    .replace("lease = \"1h\"", "lease = \"4s\"")
    .replace(
        "outside = { segment = \"public\", address = \"198.51.100.1\" }",
        "outside = { segment = \"public\", address = \"198.51.100.1\" }\nmapping_timeout = \"700ms\"",
    )
    .replace(
        "filtering = \"address-dependent\"",
        "filtering = \"address-dependent\"\nmapping_timeout = \"450ms\"",
    );
    let topo = Topology::from_str(&text, Path::new("lan-nat-timers.toml")).unwrap();
    same_both_ways(&topo);
}
