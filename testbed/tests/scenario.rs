//! Scenario steps that are not part of the paper's story: `leave` releases the lease (DHCP
//! RELEASE reaches the server) and detaches the host; `join` brings it back with a new lease
//! and a new registration.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use binfm_roles::echo::EchoEvent;
use binfm_testbed::topology::Topology;
use common::{memory_net, paper_with, root};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

#[test]
fn leave_releases_the_lease_and_join_registers_again() {
    let topo = paper_with(
        "[[scenario]]\nat = \"5s\"\ndo = \"leave b\"\n\n[[scenario]]\nat = \"8s\"\ndo = \"join b lan-b\"\n",
    );
    let mut net = memory_net(&topo);
    net.start().unwrap();
    net.run_until(Duration::from_secs(12), &AtomicBool::new(false))
        .unwrap();
    let ev = &net.events.json_records();
    let at = |host: &str, kind: &str| {
        ev.iter()
            .filter(|e| e.host == host && e.kind == kind)
            .map(|e| e.t)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        at("b", "dhcp.release"),
        vec![Duration::from_secs(5)],
        "B sends RELEASE when it leaves"
    );
    let released = at("nat-b", "dhcp.server.release");
    assert_eq!(released.len(), 1, "the server got the RELEASE");
    assert!(released[0] > Duration::from_secs(5) && released[0] < Duration::from_secs(6));
    let acks = at("b", "dhcp.ack");
    assert_eq!(
        acks.len(),
        2,
        "a lease at start and one after joining: {acks:?}"
    );
    assert!(acks[1] >= Duration::from_secs(8));
    let registered = at("b", "en.registered");
    assert!(
        registered.len() >= 2 && *registered.last().unwrap() > Duration::from_secs(8),
        "B registered again after joining: {registered:?}"
    );
}

#[test]
fn loss_step_changes_a_segments_loss_mid_run() {
    let text = std::fs::read_to_string(root().join("topologies/lan-nat.toml")).unwrap();
    // No random loss before the step, all lost during it, none after it.
    let text = text.replace("loss = \"1%\"", "loss = \"0%\"");
    let t = format!(
        "{text}\n[[scenario]]\nat = \"10s\"\ndo = \"loss public 100%\"\n\n[[scenario]]\nat = \"20s\"\ndo = \"loss public 0%\"\n"
    );
    let topo = Topology::from_str(&t, Path::new("loss.toml")).unwrap();
    let mut net = memory_net(&topo);
    net.start().unwrap();
    net.run_until(Duration::from_secs(30), &AtomicBool::new(false))
        .unwrap();
    let replies: Vec<Duration> = net
        .events
        .records
        .iter()
        .filter(|e| {
            e.host == "a" && matches!(e.role_event::<EchoEvent>(), Some(EchoEvent::Reply { .. }))
        })
        .map(|e| e.t)
        .collect();
    let (before, during, after) = (
        replies
            .iter()
            .filter(|t| **t < Duration::from_secs(10))
            .count(),
        replies
            .iter()
            .filter(|t| **t >= Duration::from_millis(10_100) && **t < Duration::from_secs(20))
            .count(),
        replies
            .iter()
            .filter(|t| **t >= Duration::from_millis(20_100))
            .count(),
    );
    assert!(
        before >= 9 && during == 0 && after >= 9,
        "replies before/during/after: {before}/{during}/{after}"
    );
    let lost = net
        .link_drops
        .get(&("public".to_owned(), "link_loss"))
        .copied()
        .unwrap_or(0);
    assert!(lost >= 10, "{lost} packets lost on public");
    assert!(net.events.records.iter().any(|e| e.kind() == "fault.loss"));
}
