//! The blockchain control plane on real packets (paper sections 2.1, 3.1, 3.2): ENs register
//! their ToALL Txs, the three SNs mine and agree, a Query returns the peer's current Tx; the
//! chain survives a partition (no Tx lost) and an SN restart from its data directory.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use binfm_roles::sn::SuperNode;
use binfm_roles::sn::events::SnEvent;
use binfm_roles::util::hex;
use binfm_testbed::apps::EnApp;
use binfm_testbed::apps::wallet_for;
use binfm_testbed::driver::SETTLE;
use binfm_testbed::engine::Network;
use binfm_testbed::events::{EventLog, JsonRecord as Record, TestbedEvent};
use binfm_testbed::topology::Topology;
use common::*;
use rand::SeedableRng;
use serde_json::Value;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

fn field<'a>(e: &'a Record, k: &str) -> &'a Value {
    e.fields.get(k).unwrap_or(&Value::Null)
}

#[test]
fn paper_scenario_registers_mines_agrees_and_answers_queries() {
    let (dir, _) = run("paper.toml", None, None);
    let events = read_events(&dir.path().join("events.jsonl"));
    let results: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("results.json")).unwrap())
            .unwrap();
    let topo = Topology::load(&root().join("topologies/paper.toml")).unwrap();
    let hash = |n: &str| hex(&wallet_for(topo.seed, n).hash_addr());

    for en in ["a", "b"] {
        let reg = events
            .iter()
            .find(|e| e.host == en && e.kind == "en.registered")
            .unwrap_or_else(|| panic!("{en} never registered"));
        let seq = field(reg, "seq").as_u64().unwrap();
        for sn in ["sn1", "sn2", "sn3"] {
            assert!(
                events.iter().any(|e| e.host == sn
                    && e.kind == "sn.tx_confirmed"
                    && field(e, "owner") == &Value::from(hash(en))
                    && field(e, "seq").as_u64() == Some(seq)),
                "{en}'s Tx (seq {seq}) not confirmed in a block at {sn}"
            );
        }
    }
    assert_eq!(
        results["chain"]["tips_agree"],
        Value::Bool(true),
        "{}",
        results["chain"]
    );
    let heights: Vec<u64> = ["sn1", "sn2", "sn3"]
        .iter()
        .map(|s| {
            results["chain"]["super_nodes"][s]["height"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert!(heights[0] >= 15, "30 s at 1 s blocks: {heights:?}");

    // A's Query for B's hash address returns B's current Tx, with B's real public endpoint.
    let b_reg = events
        .iter()
        .rev()
        .find(|e| e.host == "b" && e.kind == "en.registered")
        .unwrap();
    let ok = events
        .iter()
        .find(|e| e.host == "a" && e.kind == "en.lookup_ok")
        .expect("A's lookup answered");
    assert_eq!(field(ok, "peer"), &Value::from(hash("b")));
    assert_eq!(field(ok, "seq"), field(b_reg, "seq"));
    assert_eq!(
        field(ok, "nat"),
        field(b_reg, "observed"),
        "the Tx carries the endpoint the SN saw"
    );
    assert!(field(ok, "confirmations").as_u64().unwrap() >= 1);

    // A and B at start, A again after its move.
    assert!(
        results["registration"]["samples"].as_u64().unwrap() >= 2,
        "{}",
        results["registration"]
    );
    assert!(
        results["registration"]["median_ms"].as_f64().unwrap() >= 80.0,
        "a registration needs at least the EN-SN round trip"
    );
}

/// Builds the paper network in memory for scripted fault scenarios.
fn paper_net(
    data: Option<&std::path::Path>,
    sn_with_data: Option<&str>,
) -> (Topology, Network<std::io::Sink>) {
    let mut topo = Topology::load(&root().join("topologies/paper.toml")).unwrap();
    // These tests script their own faults; the paper's call scenario would only interfere.
    topo.scenario.clear();
    if let (Some(dir), Some(sn)) = (data, sn_with_data) {
        let i = topo.node_index(sn).unwrap();
        topo.nodes[i].super_node.as_mut().unwrap().data_dir = Some(dir.to_path_buf());
    }
    let net = Network::new(
        &topo,
        topo.seed,
        None,
        EventLog::create(None).unwrap(),
        None,
    )
    .unwrap();
    (topo, net)
}

fn tip(net: &Network<std::io::Sink>, topo: &Topology, sn: &str) -> ([u8; 32], u64) {
    net.nodes[topo.node_index(sn).unwrap()]
        .role::<SuperNode>()
        .unwrap()
        .chain()
        .tip()
}

#[test]
fn partition_heals_to_the_heavier_chain_and_loses_no_tx() {
    let (topo, mut net) = paper_net(None, None);
    let stop = AtomicBool::new(false);
    let idx = |n: &str| topo.node_index(n).unwrap();
    net.start().unwrap();
    net.run_until(Duration::from_secs(10), &stop).unwrap();
    // sn1 alone (a third of the hash rate) against sn2 + sn3, for 30 s.
    net.partition(&[vec![idx("sn1")], vec![idx("sn2"), idx("sn3")]]);
    net.run_until(Duration::from_secs(15), &stop).unwrap();
    // During the partition both ENs register a new key: A's Tx reaches only sn1 (the
    // lighter side), B's only sn2 and sn3.
    let now = net.now();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    net.nodes[idx("a")]
        .role_mut::<EnApp>()
        .unwrap()
        .en
        .renew_key(now, &mut rng);
    net.nodes[idx("b")]
        .role_mut::<EnApp>()
        .unwrap()
        .en
        .renew_key(now, &mut rng);
    net.kick(idx("a")).unwrap();
    net.kick(idx("b")).unwrap();
    net.run_until(Duration::from_secs(40), &stop).unwrap();
    let (light, heavy) = (tip(&net, &topo, "sn1"), tip(&net, &topo, "sn2"));
    assert_ne!(light.0, heavy.0, "both sides mined their own chain");
    assert!(
        light.1 > 12 && heavy.1 > light.1,
        "sn1 height {} vs sn2 height {}",
        light.1,
        heavy.1
    );
    net.heal();
    net.run_until(Duration::from_secs(60), &stop).unwrap();
    net.settle(SETTLE, &stop).unwrap();

    let tips: Vec<_> = ["sn1", "sn2", "sn3"]
        .iter()
        .map(|s| tip(&net, &topo, s))
        .collect();
    assert!(
        tips.iter().all(|t| *t == tips[0]),
        "SNs did not converge: {tips:?}"
    );
    assert!(tips[0].1 >= heavy.1, "converged on the heavier chain");
    let reorged = net.events.records.iter().any(|e| {
        e.host == "sn1" && matches!(e.role_event::<SnEvent>(), Some(SnEvent::Reorg { .. }))
    });
    assert!(reorged, "sn1 reorganised to the heavier chain");
    // Every Tx of the lighter side is confirmed again: A's seq-2 Tx is in the final chain,
    // found by every SN's Tx Search Table.
    for en in ["a", "b"] {
        let want = wallet_for(topo.seed, en).hash_addr();
        for sn in ["sn1", "sn2", "sn3"] {
            let app = net.nodes[idx(sn)].role::<SuperNode>().unwrap();
            let (tx, _) = app
                .chain()
                .lookup(&want)
                .unwrap_or_else(|| panic!("{sn} lost {en}"));
            assert_eq!(
                tx.out.seq, 2,
                "{sn} has {en}'s seq {} instead of the Tx registered during the partition",
                tx.out.seq
            );
        }
    }
}

#[test]
fn restarted_sn_recovers_from_its_data_directory_and_catches_up() {
    let data = tempfile::tempdir().unwrap();
    let (topo, mut net) = paper_net(Some(data.path()), Some("sn2"));
    let stop = AtomicBool::new(false);
    let sn2 = topo.node_index("sn2").unwrap();
    net.start().unwrap();
    net.run_until(Duration::from_secs(20), &stop).unwrap();
    let before = tip(&net, &topo, "sn2").1;
    assert!(before >= 8, "sn2 height {before} at 20 s");
    net.crash(sn2);
    net.run_until(Duration::from_secs(40), &stop).unwrap();
    net.restart(sn2).unwrap();
    // Recovered from disk, not from peers: right after the restart it is at its old height.
    let recovered = net
        .events
        .records
        .iter()
        .rev()
        .find_map(|e| match e.testbed() {
            Some(TestbedEvent::Recovered { height, .. }) if e.host == "sn2" => Some(*height),
            _ => None,
        })
        .expect("sn.recovered event");
    assert!(recovered >= before.saturating_sub(1), "{recovered}");
    net.run_until(Duration::from_secs(55), &stop).unwrap();
    net.settle(SETTLE, &stop).unwrap();
    let tips: Vec<_> = ["sn1", "sn2", "sn3"]
        .iter()
        .map(|s| tip(&net, &topo, s))
        .collect();
    assert!(
        tips.iter().all(|t| *t == tips[0]),
        "sn2 did not catch up: {tips:?}"
    );
    assert!(
        tips[0].1 >= before + 20,
        "the others kept mining while sn2 was down"
    );

    // sn2 answers a real Query for A with A's current Tx.
    let a_hash = wallet_for(topo.seed, "a").hash_addr();
    let a_tx = net.nodes[topo.node_index("a").unwrap()]
        .role_mut::<EnApp>()
        .unwrap()
        .en
        .registered()
        .cloned()
        .unwrap();
    let query = binfm_stack::wire::binfm::Message::Query {
        request_id: 77,
        hash_addr: a_hash,
        want_unconfirmed: false,
    }
    .to_bytes();
    let sn2_addr = topo.sn_addr(sn2).unwrap();
    let b = topo.node_index("b").unwrap();
    net.nodes[b].ports[0]
        .stack
        .bind_udp(9999, 256 * 1024)
        .unwrap();
    net.nodes[b].ports[0]
        .stack
        .send_udp(None, 9999, sn2_addr, &query)
        .unwrap();
    net.kick(b).unwrap();
    let t = net.now() + Duration::from_secs(1);
    net.run_until(t, &stop).unwrap();
    let q = net
        .events
        .records
        .iter()
        .rev()
        .find_map(|e| match e.role_event::<SnEvent>() {
            Some(SnEvent::Query { found, .. }) if e.host == "sn2" => Some(*found),
            _ => None,
        })
        .expect("sn2 got the query");
    assert!(q, "found");
    let (tx, _) = net.nodes[sn2]
        .role::<SuperNode>()
        .unwrap()
        .chain()
        .lookup(&a_hash)
        .unwrap();
    assert_eq!(tx, &a_tx, "sn2 serves A's current Tx");
    assert_eq!(
        net.nodes[b].drops.get("udp_no_service"),
        Some(&1),
        "the Reply came back to the asker"
    );
}

#[test]
fn ten_minutes_keep_the_configured_block_interval_and_report_registration_latency() {
    let (dir, _) = run("paper.toml", None, Some(Duration::from_secs(600)));
    let results: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("results.json")).unwrap())
            .unwrap();
    let mean = results["chain"]["mean_block_interval_s"].as_f64().unwrap();
    assert!(
        (0.9..=1.1).contains(&mean),
        "mean block interval {mean} s, configured 1 s"
    );
    assert_eq!(results["chain"]["tips_agree"], Value::Bool(true));
    let reg = &results["registration"];
    assert!(
        reg["median_ms"].as_f64().is_some() && reg["p95_ms"].as_f64().is_some(),
        "{reg}"
    );
}
