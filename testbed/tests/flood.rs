//! Issue 7, acceptance 2: a super node under a flood of junk keeps serving. On the paper's
//! topology, sn2 (B's nearest SN) gets 100,000 malformed datagrams and 100,000 well-formed
//! but unsigned TxSubmits and Queries within 10 s of virtual time (`flood sn2 20000/s for
//! 10s`, from 1 s to 11 s), while B registers a new key with sn2 (2 s) and A calls B (3 s).
//! The registrations and the call complete; every flood datagram is accounted for by one of
//! sn2's counters; sn2's packet-growable structures stay within their limits (and far below
//! them); the event log stays small.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use binfm_roles::en::events::EnEvent;
use binfm_roles::sn::SnMemory;
use binfm_roles::sn::SuperNode;
use binfm_testbed::apps::wallet_for;
use binfm_testbed::driver::SETTLE;
use binfm_testbed::engine::Network;
use binfm_testbed::events::EventLog;
use binfm_testbed::flood::FloodStats;
use binfm_testbed::topology::flood_step::FloodKind;
use binfm_testbed::topology::{Action, Topology};
use common::root;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

/// What the peak of sn2's packet-growable state may be in this run, in bytes (the estimate
/// of `SnMemory::bytes`: every pending Tx and orphan at its largest size). The structural
/// limit (`SnMemory::bytes_bound`) is about 50 MB; the flood must leave almost nothing.
const PEAK_BYTES_BOUND: usize = 256 * 1024;

/// The paper's topology with B renewing its key (a new registration at sn2) at 2 s and A
/// calling B at 3 s; with or without the flood of sn2 from 1 s to 11 s.
fn topology(flood: bool) -> Topology {
    let text = std::fs::read_to_string(root().join("topologies/paper.toml")).unwrap();
    let base = &text[..text.find("# The paper's story").unwrap()];
    let mut t = base.replace("duration = \"30s\"", "duration = \"15s\"");
    let mut steps = vec![("2s", "rekey b"), ("3s", "call a b")];
    if flood {
        steps.insert(0, ("1s", "flood sn2 20000/s for 10s"));
    }
    for (at, what) in steps {
        t.push_str(&format!("\n[[scenario]]\nat = \"{at}\"\ndo = \"{what}\"\n"));
    }
    Topology::from_str(&t, Path::new("flood.toml")).unwrap()
}

/// Runs `topo` to its end (and the settle time) without sampling anything.
fn run(topo: &Topology) -> Network<std::io::Sink> {
    let mut net =
        Network::new(topo, topo.seed, None, EventLog::create(None).unwrap(), None).unwrap();
    let stop = AtomicBool::new(false);
    net.start().unwrap();
    net.run_until(topo.duration, &stop).unwrap();
    net.settle(SETTLE, &stop).unwrap();
    net
}

/// When B's registration `seq` was accepted, and the first call's pre-call time (ms).
fn honest_figures(topo: &Topology, net: &Network<std::io::Sink>) -> (Duration, f64) {
    let reg = net
        .events
        .records
        .iter()
        .find(|e| {
            e.host == "b"
                && matches!(
                    e.role_event::<EnEvent>(),
                    Some(EnEvent::Registered { seq: 2, .. })
                )
        })
        .expect("B's second registration")
        .t;
    let calls = binfm_testbed::results::call_results(topo, &net.view());
    (
        reg,
        calls["pre_call_ms"].as_f64().expect("pre-call measured"),
    )
}

#[test]
fn sn2_flooded_with_200k_junk_datagrams_keeps_serving_and_counts_every_one() {
    let wall = Instant::now();
    let topo = topology(true);
    let flood = topo
        .scenario
        .iter()
        .find_map(|s| match &s.action {
            Action::Flood(f) => Some(f.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!((flood.packets(), flood.kind), (200_000, FloodKind::Mixed));
    let sn2 = topo.node_index("sn2").unwrap();
    let mut net: Network<std::io::Sink> = Network::new(
        &topo,
        topo.seed,
        None,
        EventLog::create(None).unwrap(),
        None,
    )
    .unwrap();
    let stop = AtomicBool::new(false);
    net.start().unwrap();
    // Run in 20 ms slices, sampling sn2's packet-growable structures after each.
    let mut peak = SnMemory::default();
    let mut peak_bytes = 0;
    let mut samples = 0;
    let mut t = Duration::ZERO;
    while t < topo.duration {
        t += Duration::from_millis(20);
        net.run_until(t, &stop).unwrap();
        let m = net.nodes[sn2].role::<SuperNode>().unwrap().memory();
        assert!(m.within_limits(), "at {t:?}: {m:?}");
        peak_bytes = peak_bytes.max(m.bytes());
        peak = SnMemory {
            mempool_txs: peak.mempool_txs.max(m.mempool_txs),
            mempool_rate_owners: peak.mempool_rate_owners.max(m.mempool_rate_owners),
            orphans: peak.orphans.max(m.orphans),
            reassembly_blocks: peak.reassembly_blocks.max(m.reassembly_blocks),
            reassembly_bytes: peak.reassembly_bytes.max(m.reassembly_bytes),
            tx_limit_sources: peak.tx_limit_sources.max(m.tx_limit_sources),
            query_limit_sources: peak.query_limit_sources.max(m.query_limit_sources),
            queued: peak.queued.max(m.queued),
            ..m
        };
        samples += 1;
    }
    net.settle(SETTLE, &stop).unwrap();
    let run_wall = wall.elapsed();

    // The flood: exactly what the step says, and nothing lost on the way (no loss configured).
    let floods = net.floods();
    assert_eq!(floods.len(), 1);
    let (target, _, stats): &(String, _, FloodStats) = &floods[0];
    assert_eq!(target, "sn2");
    assert_eq!(stats.sent, 200_000);
    assert_eq!(
        (stats.malformed, stats.unsigned_tx, stats.unsigned_query),
        (100_000, 50_000, 50_000)
    );
    assert_eq!(stats.link_dropped, 0);
    let ev = &net.events.json_records();
    let end = ev.iter().find(|e| e.kind == "fault.flood_end").unwrap();
    let start = ev.iter().find(|e| e.kind == "fault.flood").unwrap();
    assert_eq!(start.t, Duration::from_secs(1));
    assert!(
        end.t < Duration::from_secs(11),
        "sent within 10 s: {:?}",
        end.t
    );

    // sn2 counted every flood datagram that reached it, under exactly one reason; honest
    // traffic added nothing to these counters.
    let sn = &net.nodes[sn2].role::<SuperNode>().unwrap();
    let refused: BTreeMap<&str, u64> = sn.refused.clone();
    let r = |k: &str| refused.get(k).copied().unwrap_or(0);
    let reached = stats.sent - stats.link_dropped;
    assert_eq!(refused.values().sum::<u64>(), reached, "{refused:?}");
    assert_eq!(r("malformed"), stats.malformed);
    assert_eq!(
        r("tx_bad_signature") + r("tx_rate_limited"),
        stats.unsigned_tx
    );
    assert_eq!(
        r("query_unknown_address") + r("query_rate_limited"),
        stats.unsigned_query
    );
    assert!(
        net.nodes[sn2].drops.is_empty(),
        "sn2's stack dropped nothing: {:?}",
        net.nodes[sn2].drops
    );
    // Each verified junk Tx and each unknown-address Query got exactly one answer, back to
    // its spoofed source (the flood source holds those addresses); nothing else did.
    assert_eq!(
        stats.replies,
        r("tx_bad_signature") + r("query_unknown_address")
    );
    assert!(
        stats.reply_bytes < stats.bytes,
        "no amplification: {} bytes answered to {} sent",
        stats.reply_bytes,
        stats.bytes
    );

    // Refusals are reported at most once per reason per second.
    let mut drops: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for e in ev.iter().filter(|e| e.host == "sn2" && e.kind == "sn.drop") {
        let d = drops
            .entry(e.fields["reason"].as_str().unwrap().to_owned())
            .or_default();
        d.0 += 1;
        d.1 += e.fields["count"].as_u64().unwrap();
    }
    let secs = (topo.duration + SETTLE).as_secs() + 1;
    for (reason, (events, count)) in &drops {
        assert!(*events <= secs, "{reason}: {events} events");
        assert!(*count <= r(reason));
    }
    assert!(
        ev.len() < 20_000,
        "events.jsonl stays small: {} events",
        ev.len()
    );

    // The legitimate traffic went through: B's new registration (during the flood) was
    // accepted by sn2 and confirmed; A's too; the call came up and audio flowed both ways.
    let registered = |host: &str, seq: u64| {
        ev.iter()
            .find(|e| e.host == host && e.kind == "en.registered" && e.fields["seq"] == seq)
    };
    let b2 = registered("b", 2).expect("B's registration during the flood");
    assert!(b2.t > Duration::from_secs(2) && b2.t < Duration::from_secs(11));
    let sn2_addr = topo.sn_addr(sn2).unwrap().to_string();
    assert_eq!(b2.fields["sn"], Value::from(sn2_addr), "accepted by sn2");
    assert!(registered("a", 1).is_some());
    for (en, seq) in [("a", 1), ("b", 2)] {
        let (tx, _) = sn
            .chain()
            .lookup(&wallet_for(topo.seed, en).hash_addr())
            .unwrap_or_else(|| panic!("sn2 lost {en}"));
        assert_eq!(tx.out.seq, seq, "{en}");
    }
    for host in ["a", "b"] {
        assert!(
            ev.iter()
                .any(|e| e.host == host && e.kind == "call.first_frame"),
            "{host} got no audio"
        );
    }
    assert!(
        !ev.iter()
            .any(|e| e.kind == "en.sn_failover" || e.kind == "call.failed"),
        "no failover, no failed call"
    );
    // ... and exactly as fast as without the flood (virtual time models no CPU cost).
    let (reg_at, pre_call) = honest_figures(&topo, &net);
    let quiet = topology(false);
    let (quiet_reg_at, quiet_pre_call) = honest_figures(&quiet, &run(&quiet));
    assert_eq!((reg_at, pre_call), (quiet_reg_at, quiet_pre_call));

    // Memory: within every structural limit at every sample (checked above), and the flood
    // left nothing but rate state for its spoofed sources.
    assert!(peak_bytes <= peak.bytes_bound());
    assert!(
        peak_bytes <= PEAK_BYTES_BOUND,
        "peak {peak_bytes} B > {PEAK_BYTES_BOUND} B"
    );
    assert!(peak.mempool_txs <= 2, "only honest Txs: {peak:?}");
    assert_eq!(peak.orphans, 0);
    let (_, _, sources) =
        binfm_testbed::topology::flood_step::sources(&topo.segments, &topo.nodes, sn2).unwrap();
    let honest_sources = 3; // nat-a, nat-b, nat-c at most
    assert!(peak.tx_limit_sources <= sources.len() + honest_sources);
    assert!(peak.query_limit_sources <= sources.len() + honest_sources);

    println!(
        "flood: {} datagrams to sn2 ({} malformed, {} unsigned TxSubmit, {} Query) from {} spoofed sources, {} bytes; link drops {}",
        stats.sent,
        stats.malformed,
        stats.unsigned_tx,
        stats.unsigned_query,
        sources.len(),
        stats.bytes,
        stats.link_dropped
    );
    println!(
        "sn2 counted {} = {:?}",
        refused.values().sum::<u64>(),
        refused
    );
    println!(
        "answers to spoofed sources: {} packets, {} bytes ({:.2} bytes answered per byte sent)",
        stats.replies,
        stats.reply_bytes,
        stats.reply_bytes as f64 / stats.bytes as f64
    );
    println!(
        "sn.drop events on sn2 (events, datagrams reported) per reason: {drops:?}; {} events in the run",
        ev.len()
    );
    println!(
        "sn2 peak over {samples} samples: {peak:?}; peak bytes {peak_bytes} (test bound {PEAK_BYTES_BOUND}, structural bound {})",
        peak.bytes_bound()
    );
    println!(
        "call a -> b at 3 s: pre-call {pre_call:.1} ms; B registered seq 2 at {:?}",
        b2.t
    );
    println!("wall time of the run: {run_wall:?}");
}
