//! The capacity study (issue 15, `binfm experiment FILE --only capacity`): how many Txs per
//! second the chain confirms and how fast, how many Replies are outdated, what the super node
//! spends, and what the full-fabric crowd costs, as blocks, crowds and churn grow.
//!
//! # What runs
//!
//! Parts (a)-(c) are points of the scale harness ([`super::scale`], read its module doc: one
//! real `SuperNode` mining in virtual time, N ENs with real wallets, a prober Querying at
//! `query_rate`), with the crowd spread over `crowd_addrs` source addresses (4,000 by
//! default, so each carries under 1 Tx/s and the SN's per-source Tx limit of 10/s never
//! binds; `sn_refused` in each point shows it) and registrations paced at 80% of what the
//! chain confirms (`register_window`), so every point starts with all N ENs registered:
//!
//! * **(a) blocks**: `load_ens` ENs (50,000) moving every `load_move_interval` (30 s: about
//!   1,667 Tx/s offered; an EN rarely moves again before its Tx is in a block) against every block size of `block_sizes` (the topology's, about
//!   142 Txs in 60 kB, then blocks holding 500, 1,000, 2,000 and 4,096 Txs) at every
//!   interval of `block_intervals` (1, 2, 5 s);
//! * **(b) ENs**: every N of `en_counts` (1,000, 10,000, 100,000) × every move interval of
//!   `move_intervals` (30, 120 s) × two block configurations at 1 s: blocks of
//!   `big_block_txs` (4,096, which keeps up with 100,000 ENs moving every 30 s) and the
//!   topology's (60 kB);
//! * **(c) the SN**: CPU and memory from the points of (b).
//!
//! Part (d) runs `binfm run` as a child process on a generated crowd topology per N of
//! `crowd` (`topologies/crowd.toml` resized to N ENs: as many networks and calls as keep its
//! ratios, everything else as in the file; `crowd::topology_text`), for `crowd_duration` of
//! virtual time, and reads back the child's `timing.json` (its wall time, CPU time and peak
//! RSS): each N is measured in a process of its own.
//!
//! Everything from the harness is deterministic for a seed except its wall-clock keys
//! ([`super::scale::WALL_CLOCK_KEYS`]), which go to `timing.json`; of (d) only the counts
//! (virtual time, packets, events) go to `results.json`.

mod crowd;
mod plots;
mod report;

pub use plots::write as write_plots;
pub use report::markdown;

use super::Progress;
use super::scale::{self, ScaleConfig, Wallets};
use crate::topology::Topology;
use binfm_roles::chain::{HEADER_LEN, MAX_BLOCK_TXS};
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A block size of the study.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockSize {
    /// The topology's `[chain] block_bytes` and `block_txs` (60 kB and 500 by default: about
    /// 142 Txs).
    Topology,
    /// Blocks of exactly this many Txs: `block_txs` = n, `block_bytes` just large enough.
    Holding(usize),
}

impl BlockSize {
    /// `(block_bytes, block_txs)` for Txs of `tx_len` bytes.
    pub fn resolve(self, topo: &Topology, tx_len: usize) -> (usize, usize) {
        match self {
            BlockSize::Topology => (topo.chain.block_bytes, topo.chain.block_txs),
            BlockSize::Holding(n) => (HEADER_LEN + 4 + n * (4 + tx_len), n),
        }
    }
}

/// Txs a block of `block_bytes` and `block_txs` holds at most, for Txs of `tx_len` bytes.
pub fn txs_per_block(block_bytes: usize, block_txs: usize, tx_len: usize) -> usize {
    let by_bytes = block_bytes.saturating_sub(HEADER_LEN + 4) / (4 + tx_len).max(1);
    by_bytes.min(block_txs).min(MAX_BLOCK_TXS)
}

/// Settings of the capacity study (defaults: the run of record, docs/scale.md).
#[derive(Debug, Clone, PartialEq)]
pub struct CapacityConfig {
    /// Measurement time of each harness point, after its warm-up (default 60 s).
    pub duration: Duration,
    /// Prober Queries per second (default 40, under the SN's per-source Query limit).
    pub query_rate: f64,
    /// Source addresses the crowd is spread over (default 4,000).
    pub crowd_addrs: u32,
    /// (a): ENs of every point (default 50,000).
    pub load_ens: usize,
    /// (a): their mean move interval (default 30 s: about 1,667 Tx/s offered).
    pub load_move_interval: Duration,
    /// (a): block sizes (default the topology's, then 500, 1,000, 2,000, 4,096 Txs).
    pub block_sizes: Vec<BlockSize>,
    /// (a): block intervals (default 1, 2, 5 s).
    pub block_intervals: Vec<Duration>,
    /// (b), (c): crowd sizes (default 1,000, 10,000, 100,000).
    pub en_counts: Vec<usize>,
    /// (b), (c): mean move intervals (default 30 s, 120 s).
    pub move_intervals: Vec<Duration>,
    /// (b), (c): the block size that keeps up, besides the topology's (default 4,096 Txs).
    pub big_block_txs: usize,
    /// (d): crowd sizes on the full fabric (default none; `--capacity-crowd`).
    pub crowd: Vec<usize>,
    /// (d): virtual time of each crowd run (default 120 s).
    pub crowd_duration: Duration,
    /// (d): the `binfm` program to run (default: this program).
    pub binfm_exe: Option<PathBuf>,
}

impl Default for CapacityConfig {
    fn default() -> Self {
        CapacityConfig {
            duration: Duration::from_secs(60),
            query_rate: 40.0,
            crowd_addrs: 4000,
            load_ens: 50_000,
            load_move_interval: Duration::from_secs(30),
            block_sizes: vec![
                BlockSize::Topology,
                BlockSize::Holding(500),
                BlockSize::Holding(1000),
                BlockSize::Holding(2000),
                BlockSize::Holding(MAX_BLOCK_TXS),
            ],
            block_intervals: [1, 2, 5].map(Duration::from_secs).to_vec(),
            en_counts: vec![1000, 10_000, 100_000],
            move_intervals: [30, 120].map(Duration::from_secs).to_vec(),
            big_block_txs: MAX_BLOCK_TXS,
            crowd: Vec::new(),
            crowd_duration: Duration::from_secs(120),
            binfm_exe: None,
        }
    }
}

impl CapacityConfig {
    /// Harness points of (a) and (b).
    pub fn harness_points(&self) -> usize {
        self.block_sizes.len() * self.block_intervals.len()
            + self.en_counts.len() * self.move_intervals.len() * 2
    }

    /// Every step of the study (harness points and crowd runs), for the progress bar.
    pub fn steps(&self) -> usize {
        self.harness_points() + self.crowd.len()
    }
}

/// One harness point to run.
#[derive(Debug, Clone)]
struct Plan {
    /// `blocks` or `ens`.
    sweep: &'static str,
    /// What the plots and tables call its block configuration.
    blocks_label: String,
    ens: usize,
    move_interval: Duration,
    block_interval: Duration,
    block_bytes: usize,
    block_txs: usize,
}

/// The label of a block size: `60 kB (topology)` or `4096 Txs`.
fn label(size: BlockSize, bytes: usize) -> String {
    match size {
        BlockSize::Topology => format!("{} kB (topology)", bytes / 1000),
        BlockSize::Holding(n) => format!("{n} Txs"),
    }
}

fn plans(cfg: &CapacityConfig, topo: &Topology, tx_len: usize) -> Vec<Plan> {
    let mut out = Vec::new();
    for &interval in &cfg.block_intervals {
        for &size in &cfg.block_sizes {
            let (bytes, txs) = size.resolve(topo, tx_len);
            out.push(Plan {
                sweep: "blocks",
                blocks_label: label(size, bytes),
                ens: cfg.load_ens,
                move_interval: cfg.load_move_interval,
                block_interval: interval,
                block_bytes: bytes,
                block_txs: txs,
            });
        }
    }
    let second = Duration::from_secs(1);
    for &n in &cfg.en_counts {
        for &mv in &cfg.move_intervals {
            for size in [BlockSize::Holding(cfg.big_block_txs), BlockSize::Topology] {
                let (bytes, txs) = size.resolve(topo, tx_len);
                out.push(Plan {
                    sweep: "ens",
                    blocks_label: label(size, bytes),
                    ens: n,
                    move_interval: mv,
                    block_interval: second,
                    block_bytes: bytes,
                    block_txs: txs,
                });
            }
        }
    }
    out
}

/// The harness settings of a point: registrations spread so they arrive at 80% of what the
/// chain confirms (at most 500/s, at least over 5 s), and a warm-up cap 1.5 times that plus
/// 60 s.
fn scale_config(cfg: &CapacityConfig, topo: &Topology, plan: &Plan, tx_len: usize) -> ScaleConfig {
    let per_block = txs_per_block(plan.block_bytes, plan.block_txs, tx_len).max(1);
    let confirmable = per_block as f64 / plan.block_interval.as_secs_f64().max(1e-3);
    let rate = (0.8 * confirmable).min(500.0);
    let window = (plan.ens as f64 / rate).max(5.0);
    ScaleConfig {
        en_counts: vec![plan.ens],
        seed: topo.seed,
        duration: cfg.duration,
        move_interval: plan.move_interval,
        query_rate: cfg.query_rate,
        block_interval: plan.block_interval,
        block_bytes: plan.block_bytes,
        block_txs: plan.block_txs,
        register_window: Duration::from_secs_f64(window),
        max_warmup: Duration::from_secs_f64(window * 1.5 + 60.0),
        crowd_addrs: cfg.crowd_addrs,
        ..ScaleConfig::default()
    }
}

/// The encoded size of a ToALL Tx of the crowd's wallets.
fn tx_len(seed: u64) -> usize {
    let mut w = crate::apps::wallet_for(seed, "capacity-tx-size");
    w.next_tx(0).to_bytes().len()
}

/// Runs the study. Returns the deterministic part (for `results.json`), the wall-clock part
/// (for `timing.json`) and whether `stop` ended it; what finished is in both.
pub fn run(
    topo: &Topology,
    cfg: &CapacityConfig,
    out: &Path,
    stop: &AtomicBool,
    progress: &mut dyn FnMut(Progress),
) -> anyhow::Result<(Value, Value, bool)> {
    if cfg.query_rate.is_nan() || cfg.duration.is_zero() {
        anyhow::bail!("capacity: duration and query_rate must be above zero");
    }
    let tx_len = tx_len(topo.seed);
    let plans = plans(cfg, topo, tx_len);
    let mut det: Map<String, Value> = Map::new();
    det.insert(
        "config".into(),
        json!({
            "seed": topo.seed,
            "duration_s": cfg.duration.as_secs_f64(),
            "query_rate": cfg.query_rate,
            "crowd_addrs": cfg.crowd_addrs,
            "tx_bytes": tx_len,
            "load_ens": cfg.load_ens,
            "load_move_interval_s": cfg.load_move_interval.as_secs_f64(),
            "block_intervals_s": cfg.block_intervals.iter().map(Duration::as_secs_f64).collect::<Vec<_>>(),
            "en_counts": cfg.en_counts,
            "move_intervals_s": cfg.move_intervals.iter().map(Duration::as_secs_f64).collect::<Vec<_>>(),
            "big_block_txs": cfg.big_block_txs,
            "crowd": cfg.crowd,
            "crowd_duration_s": cfg.crowd_duration.as_secs_f64(),
        }),
    );
    let mut wall: Map<String, Value> = Map::new();
    let mut sweeps: Map<String, Value> = Map::new();
    let mut wall_sweeps: Map<String, Value> = Map::new();
    for s in ["blocks", "ens"] {
        sweeps.insert(s.into(), json!([]));
        wall_sweeps.insert(s.into(), json!([]));
    }
    let mut wallets = Wallets::new(topo.seed);
    let mut stopped = false;
    let total = plans.len();
    for (index, plan) in plans.iter().enumerate() {
        if stop.load(Ordering::Relaxed) {
            stopped = true;
            break;
        }
        let sc = scale_config(cfg, topo, plan, tx_len);
        let name = format!(
            "capacity {}/{total}: {} ENs moving every {} s, {} blocks every {} s",
            index + 1,
            plan.ens,
            plan.move_interval.as_secs_f64(),
            plan.blocks_label,
            plan.block_interval.as_secs_f64()
        );
        progress(Progress::Note(name.clone()));
        let point_seed = topo.seed ^ (index as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let t = Instant::now();
        let r = scale::run_point_with(
            &sc,
            plan.ens,
            point_seed,
            &mut wallets,
            &mut |s| progress(Progress::Note(format!("{name}: {s}"))),
            stop,
        )?;
        let Some(mut point) = r else {
            stopped = true;
            break;
        };
        if let Some(obj) = point.as_object_mut() {
            let per_block = txs_per_block(plan.block_bytes, plan.block_txs, tx_len);
            let mut head = Map::new();
            head.insert("block_config".into(), json!(plan.blocks_label));
            head.insert(
                "block_interval_s".into(),
                json!(plan.block_interval.as_secs_f64()),
            );
            head.insert("block_bytes".into(), json!(plan.block_bytes));
            head.insert("block_txs".into(), json!(plan.block_txs));
            head.insert("txs_per_block".into(), json!(per_block));
            head.insert(
                "chain_tx_per_s".into(),
                json!(per_block as f64 / plan.block_interval.as_secs_f64()),
            );
            head.insert(
                "move_interval_s".into(),
                json!(plan.move_interval.as_secs_f64()),
            );
            head.insert(
                "register_window_s".into(),
                json!(sc.register_window.as_secs_f64()),
            );
            head.append(obj);
            *obj = head;
        }
        let mut stripped = point.clone();
        scale::strip_point(&mut stripped);
        let keep_wall: Map<String, Value> = point
            .as_object()
            .map(|o| {
                o.iter()
                    .filter(|(k, _)| {
                        scale::WALL_CLOCK_KEYS.contains(&k.as_str())
                            || [
                                "ens",
                                "block_config",
                                "block_interval_s",
                                "move_interval_s",
                                "txs_submitted",
                                "txs_per_block",
                            ]
                            .contains(&k.as_str())
                    })
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        if let Some(a) = sweeps.get_mut(plan.sweep).and_then(Value::as_array_mut) {
            a.push(stripped);
        }
        if let Some(a) = wall_sweeps
            .get_mut(plan.sweep)
            .and_then(Value::as_array_mut)
        {
            a.push(Value::Object(keep_wall));
        }
        progress(Progress::Step(format!(
            "{name}: {:.0} of {:.0} Tx/s confirmed ({:.1} s)",
            point["confirmed_tx_per_s"].as_f64().unwrap_or(0.0),
            point["offered_tx_per_s"].as_f64().unwrap_or(0.0),
            t.elapsed().as_secs_f64()
        )));
    }
    drop(wallets);
    det.extend(sweeps);
    wall.extend(wall_sweeps);
    let mut crowd_det = Vec::new();
    let mut crowd_wall = Vec::new();
    if !stopped {
        for (i, &n) in cfg.crowd.iter().enumerate() {
            if stop.load(Ordering::Relaxed) {
                stopped = true;
                break;
            }
            let name = format!("capacity crowd {}/{}: {n} ENs", i + 1, cfg.crowd.len());
            progress(Progress::Note(name.clone()));
            let r = crowd::run(topo.seed, n, cfg, out, stop, &mut |s| {
                progress(Progress::Note(format!("{name}: {s}")))
            })?;
            let Some((d, w)) = r else {
                stopped = true;
                break;
            };
            progress(Progress::Step(format!(
                "{name}: {:.0} s wall, peak RSS {:.2} GB",
                w["wall_s"].as_f64().unwrap_or(f64::NAN),
                w["peak_resident_bytes"].as_f64().unwrap_or(f64::NAN) / 1e9
            )));
            crowd_det.push(d);
            crowd_wall.push(w);
        }
    }
    det.insert("crowd".into(), json!(crowd_det));
    wall.insert("crowd".into(), json!(crowd_wall));
    det.insert("stopped".into(), json!(stopped));
    Ok((Value::Object(det), Value::Object(wall), stopped))
}
