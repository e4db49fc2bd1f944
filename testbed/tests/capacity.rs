//! The capacity part of `binfm experiment` (`--only capacity`, issue 15) on tiny sweeps: its
//! results.json holds every sweep with finite figures, the plots and the report's section are
//! written, a full-fabric crowd runs as a child `binfm run` with its own timing.json, and two
//! runs with the same seed write byte-identical results.json.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use binfm_testbed::experiment::capacity::{BlockSize, CapacityConfig};
use binfm_testbed::experiment::{ExperimentOptions, Parts, run_experiment};
use binfm_testbed::topology::Topology;
use common::root;
use serde_json::Value;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

fn tiny(crowd: Vec<usize>) -> CapacityConfig {
    CapacityConfig {
        duration: Duration::from_secs(4),
        query_rate: 20.0,
        load_ens: 30,
        load_move_interval: Duration::from_secs(1),
        block_sizes: vec![BlockSize::Topology, BlockSize::Holding(10)],
        block_intervals: vec![Duration::from_secs(1), Duration::from_secs(2)],
        en_counts: vec![10, 40],
        move_intervals: vec![Duration::from_secs(2)],
        big_block_txs: 64,
        crowd,
        crowd_duration: Duration::from_secs(4),
        binfm_exe: Some(env!("CARGO_BIN_EXE_binfm").into()),
        ..CapacityConfig::default()
    }
}

fn run(dir: &Path, crowd: Vec<usize>) -> Value {
    let topo = Topology::load(&root().join("topologies/paper.toml")).unwrap();
    let opts = ExperimentOptions {
        runs: 1,
        out_dir: dir.to_path_buf(),
        parts: Parts::parse("capacity").unwrap(),
        keep_runs: false,
        scale_ens: Vec::new(),
        compute: binfm_testbed::topology::compute::ComputeCosts::ZERO,
        capacity: tiny(crowd),
    };
    let mut steps = 0;
    let o = run_experiment(&topo, &opts, &AtomicBool::new(false), &mut |p| {
        if matches!(p, binfm_testbed::experiment::Progress::Step(_)) {
            steps += 1;
        }
    })
    .unwrap();
    assert!(!o.interrupted);
    assert_eq!(steps, opts.capacity.steps(), "one step per point");
    o.results
}

fn finite(p: &Value, key: &str) -> f64 {
    let v = key
        .split('.')
        .fold(p, |v, k| &v[k])
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number: {p}"));
    assert!(v.is_finite(), "{key} = {v}");
    v
}

#[test]
fn tiny_sweeps_write_every_figure_and_are_reproducible() {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let r = run(d1.path(), vec![20]);
    let c = &r["beyond"]["capacity"];
    assert_eq!(c["stopped"], false);
    assert!(c["config"]["tx_bytes"].as_u64().unwrap() > 300);

    // (a): 2 block sizes x 2 intervals, labelled, with the chain's figures.
    let blocks = c["blocks"].as_array().unwrap();
    assert_eq!(blocks.len(), 4);
    for p in blocks {
        for k in [
            "block_interval_s",
            "txs_per_block",
            "chain_tx_per_s",
            "offered_tx_per_s",
            "confirmed_tx_per_s",
            "confirm_delay_ms.median",
            "confirm_delay_ms.p99",
            "block_fill",
            "tx_fate.window_s",
        ] {
            finite(p, k);
        }
        assert_eq!(p["ens"], 30);
        assert!(finite(p, "offered_tx_per_s") > 0.0, "{p}");
        assert_eq!(p["members_confirmed"], 30, "all registered before: {p}");
        assert!(p["sn_refused"].as_object().unwrap().is_empty(), "{p}");
        let fate = &p["tx_fate"];
        assert_eq!(
            fate["sent"].as_u64().unwrap(),
            fate["confirmed"].as_u64().unwrap()
                + fate["superseded"].as_u64().unwrap()
                + fate["pending"].as_u64().unwrap(),
            "{p}"
        );
        assert!((0.0..=1.0).contains(&finite(p, "block_fill")), "{p}");
        // Wall-clock figures stay out of results.json.
        assert!(p.get("sn_cpu_s").is_none() && p.get("wall_s").is_none());
    }
    let holding_10: Vec<&Value> = blocks.iter().filter(|p| p["block_txs"] == 10).collect();
    assert_eq!(holding_10.len(), 2);
    for p in holding_10 {
        assert_eq!(p["txs_per_block"], 10, "{p}");
        assert!(p["sn_accounted"]["largest_block_txs"].as_u64().unwrap() <= 10);
    }

    // (b): 2 EN counts x 1 move interval x 2 block configurations.
    let ens = c["ens"].as_array().unwrap();
    assert_eq!(ens.len(), 4);
    for p in ens {
        finite(p, "confirmed_tx_per_s");
        finite(p, "sn_accounted_bytes");
        assert!(p["replies_outdated"].as_u64().unwrap() <= p["queries"].as_u64().unwrap());
        assert!(p["queries"].as_u64().unwrap() > 0, "{p}");
    }

    // (d): the crowd's counts here, its wall-clock figures in timing.json.
    let crowd = c["crowd"].as_array().unwrap();
    assert_eq!(crowd.len(), 1);
    assert_eq!(crowd[0]["ens"], 20);
    assert!(crowd[0]["packets"].as_u64().unwrap() > 0, "{}", crowd[0]);
    let timing: Value =
        serde_json::from_str(&std::fs::read_to_string(d1.path().join("timing.json")).unwrap())
            .unwrap();
    let t = &timing["capacity"];
    assert_eq!(t["ens"].as_array().unwrap().len(), 4);
    for p in t["ens"].as_array().unwrap() {
        assert!(finite(p, "sn_measure_cpu_s") > 0.0);
        finite(p, "sn_tx_cpu_us.median");
        finite(p, "wall_s");
    }
    let tc = &t["crowd"][0];
    assert!(finite(tc, "wall_s") > 0.0);
    assert!(finite(tc, "peak_resident_bytes") > 1e6, "{tc}");
    let run_dir = d1.path().join("capacity/crowd/crowd-20");
    assert!(run_dir.join("results.json").exists());
    assert!(!run_dir.join("capture.pcapng").exists(), "capture deleted");

    // Plots and the report's section.
    for f in [
        "capacity_blocks",
        "capacity_outdated",
        "capacity_sn",
        "capacity_crowd",
    ] {
        let svg = std::fs::read_to_string(d1.path().join(format!("plots/{f}.svg"))).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("</svg>"), "{f}");
    }
    let md = std::fs::read_to_string(d1.path().join("report.md")).unwrap();
    for s in [
        "## Capacity",
        "(a) Confirmed Tx/s",
        "(b) Outdated Replies",
        "(c) SN CPU",
        "(d) The full-fabric crowd",
        "plots/capacity_blocks.svg",
        "Block parameters a deployment would need",
    ] {
        assert!(md.contains(s), "report.md lacks {s}");
    }

    // Same seed, same bytes (the crowd run included).
    let r2 = run(d2.path(), vec![20]);
    assert_eq!(r, r2);
    assert!(
        std::fs::read(d1.path().join("results.json")).unwrap()
            == std::fs::read(d2.path().join("results.json")).unwrap()
    );
}

#[test]
fn all_leaves_the_capacity_study_out_unless_named() {
    let all = Parts::parse("all").unwrap();
    assert!(all.paper && all.block_interval && all.loss && all.scale && !all.capacity);
    for s in ["capacity,all", "all,capacity"] {
        let p = Parts::parse(s).unwrap();
        assert!(p.capacity && p.paper && p.scale, "{s}");
    }
    let only = Parts::parse("capacity").unwrap();
    assert!(only.capacity && !only.paper && !only.scale);
    assert!(Parts::parse("capacit").is_err());
}
