//! `[[crowd]]` (docs/topology.md): end nodes over NATed networks with moves and calls drawn
//! from the seed, expanded into ordinary tables. A small crowd on the full fabric registers,
//! moves and calls, and a run of it is reproducible byte for byte.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use binfm_testbed::driver::RunOptions;
use binfm_testbed::driver::run_virtual;
use binfm_testbed::topology::{Action, Topology};
use std::sync::atomic::AtomicBool;

/// topologies/crowd.toml with a smaller crowd (`n` ENs over `m` networks) and `extra` keys.
fn crowd(n: u32, m: u32, duration: &str, extra: &str) -> Topology {
    Topology::from_str(
        &crowd_text(n, m, duration, extra),
        std::path::Path::new("crowd-test.toml"),
    )
    .unwrap()
}

/// The text of [`crowd`]'s topology.
fn crowd_text(n: u32, m: u32, duration: &str, extra: &str) -> String {
    std::fs::read_to_string(common::root().join("topologies/crowd.toml"))
        .unwrap()
        .replace("end_nodes = 10000", &format!("end_nodes = {n}"))
        .replace("networks = 100", &format!("networks = {m}"))
        .replace("duration = \"180s\"", &format!("duration = \"{duration}\""))
        .replace("from = \"60s\"", &format!("from = \"10s\"\n{extra}"))
}

/// Runs `topo` in virtual time into a temporary folder, which is returned.
fn run_in_tempdir(topo: &Topology) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let opts = RunOptions {
        out_dir: dir.path().to_path_buf(),
        seed: None,
        duration: None,
    };
    run_virtual(topo, &opts, &AtomicBool::new(false)).unwrap();
    dir
}

#[test]
fn a_crowd_expands_into_networks_nats_end_nodes_and_steps_drawn_from_the_seed() {
    let t = crowd(40, 4, "60s", "");
    let lans: Vec<_> = t
        .segments
        .iter()
        .filter(|s| s.name.starts_with("c-lan"))
        .collect();
    assert_eq!(lans.len(), 4);
    assert_eq!(lans[2].subnet.to_string(), "10.200.2.0/24");
    let ens = t.nodes.iter().filter(|n| n.end_node.is_some()).count();
    assert_eq!(ens, 40);
    assert!(t.nodes.iter().any(|n| n.name == "c-nat4"));
    assert!(t.nodes.iter().any(|n| n.name == "c40"));
    let moves = t
        .scenario
        .iter()
        .filter(|s| matches!(s.action, Action::Move(..)))
        .count();
    let calls = t
        .scenario
        .iter()
        .filter(|s| matches!(s.action, Action::Call(..)))
        .count();
    // 40 ENs moving every 120 s on average for 50 s: about 17 moves; 80 calls a minute for
    // 50 s: about 66 draws, fewer calls (an EN in a call skips a draw).
    assert!((8..=45).contains(&moves), "{moves} moves");
    assert!((10..=80).contains(&calls), "{calls} calls");
    assert!(
        t.scenario
            .iter()
            .all(|s| s.at >= std::time::Duration::from_secs(10))
    );
    // The same file gives the same steps; another seed others.
    let again = crowd(40, 4, "60s", "");
    let steps = |t: &Topology| {
        t.scenario
            .iter()
            .map(|s| format!("{:?} {:?}", s.at, s.action))
            .collect::<Vec<_>>()
    };
    assert_eq!(steps(&t), steps(&again));
    let other = Topology::from_str(
        &std::fs::read_to_string(common::root().join("topologies/crowd.toml"))
            .unwrap()
            .replace("end_nodes = 10000", "end_nodes = 40")
            .replace("networks = 100", "networks = 4")
            .replace("duration = \"180s\"", "duration = \"60s\"")
            .replace("from = \"60s\"", "from = \"10s\"")
            .replace("seed = 1", "seed = 2"),
        std::path::Path::new("crowd-test.toml"),
    )
    .unwrap();
    assert_ne!(steps(&other), steps(&again), "the seed draws the behaviour");
}

#[test]
fn crowd_errors_name_their_line() {
    let text = std::fs::read_to_string(common::root().join("topologies/crowd.toml")).unwrap();
    let line_of = |needle: &str| {
        text.lines()
            .position(|l| l.starts_with(needle))
            .map(|i| i + 1)
            .unwrap()
    };
    for (from, to, key, message) in [
        (
            "subnets = \"10.200.0.0/16\"",
            "subnets = \"192.0.2.0/24\"",
            "subnets",
            "must be a /16 inside 10.0.0.0/8",
        ),
        (
            "networks = 100",
            "networks = 30",
            "networks",
            "leave too few addresses",
        ),
        (
            "public = \"public\"",
            "public = \"nowhere\"",
            "public",
            "public segment `nowhere` is not defined",
        ),
        (
            "end_nodes = 10000",
            "end_nodes = 200000",
            "end_nodes",
            "end_nodes must be 1 to 100000",
        ),
    ] {
        let bad = text.replace(from, to);
        let e = Topology::from_str(&bad, std::path::Path::new("c.toml")).unwrap_err();
        let line = line_of(key);
        assert!(
            e.diagnostics
                .iter()
                .any(|d| d.line == Some(line) && d.message.contains(message)),
            "{to}: {e}"
        );
    }
    // 200 NATs need 200 free public addresses; the /24 has 250 less the SNs': fine; 300
    // networks are more than a crowd takes.
    let e = Topology::from_str(
        &text.replace("networks = 100", "networks = 300"),
        std::path::Path::new("c.toml"),
    )
    .unwrap_err();
    assert!(e.to_string().contains("networks must be 1 to 256"), "{e}");
}

#[test]
fn a_small_crowd_registers_moves_and_calls_reproducibly() {
    let topo = crowd(60, 3, "50s", "");
    let run = || {
        let dir = run_in_tempdir(&topo);
        let results = std::fs::read(dir.path().join("results.json")).unwrap();
        let events = common::read_events(&dir.path().join("events.jsonl"));
        (results, events)
    };
    let (results, events) = run();
    let v: serde_json::Value = serde_json::from_slice(&results).unwrap();
    // Every EN registered (its first Tx confirmed).
    let firsts = v["registration"]["each"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["seq"] == 1 && e["latency_ms"].is_number())
        .count();
    assert_eq!(firsts, 60, "{}", v["registration"]);
    let moved = events.iter().filter(|e| e.kind == "node.moved").count();
    let planned = topo
        .scenario
        .iter()
        .filter(|s| matches!(s.action, Action::Move(..)))
        .count();
    assert_eq!(moved, planned);
    assert!(moved > 5, "{moved} moves");
    let calls = v["binfm"]["calls"].as_array().unwrap();
    assert!(calls.len() > 10, "{} calls", calls.len());
    let set_up = calls
        .iter()
        .filter(|c| c["pre_call_ms"].is_number())
        .count();
    assert!(
        set_up * 10 >= calls.len() * 8,
        "{set_up} of {} calls set up",
        calls.len()
    );
    // The same file and seed: the same results.json.
    let (again, _) = run();
    assert!(results == again, "results.json differs between two runs");
}

#[test]
fn super_node_per_source_limits_come_from_the_topology() {
    // 60 ENs behind one NAT share one source address: at the default 10 TxSubmits a second
    // (bursts of 20) their first registrations hit the limit; at 100 a second they do not.
    let limited = |sn_table: &str| {
        let text = crowd_text(60, 1, "8s", "").replace(
            "super_node = { tx_per_source = 200, queries_per_source = 500 }",
            sn_table,
        );
        let topo = Topology::from_str(&text, std::path::Path::new("crowd-test.toml")).unwrap();
        let dir = run_in_tempdir(&topo);
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("results.json")).unwrap())
                .unwrap();
        (1..=3)
            .map(|i| {
                v["chain"]["super_nodes"][format!("sn{i}")]["refused"]["tx_rate_limited"]
                    .as_u64()
                    .unwrap_or(0)
            })
            .sum::<u64>()
    };
    let default = limited("super_node = {}");
    let raised = limited("super_node = { tx_per_source = 100 }");
    assert!(default > 0, "the default limit refused nothing");
    assert_eq!(raised, 0);
}
