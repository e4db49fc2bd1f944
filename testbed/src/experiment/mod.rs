//! `binfm experiment`: runs BINFM and the vertical model on the same topology and seeds,
//! N runs each, and writes what a paper needs: `results.json` (every metric, median and
//! p5/p95 across runs; byte-identical for the same topology and seeds), `report.md` (the
//! paper's tables beside ours, then what the paper left out), and SVG plots.
//!
//! Every figure is measured from a run's events or capture (see [`crate::results`] and
//! [`signalling`]); nothing is computed from the paper's formulas. Wall-clock figures
//! (compute time of a DH agreement, wall time per part) go to `timing.json`, never into
//! `results.json`, so that file stays reproducible.

pub mod beyond;
pub mod capacity;
pub mod plots;
pub mod report;
pub mod scale;
pub mod signalling;
pub mod stats;

use crate::driver::{self, RunOptions, RunSummary};
use crate::topology::{Action, Model, Topology};
use anyhow::Context;
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// The paper's figures (Tables 1-3, section 4.3), for the comparison columns only.
pub const PAPER: [(&str, f64, f64); 4] = [
    ("pre_call_ms", 760.0, 1440.0),
    ("mid_call_ms", 200.0, 280.0),
    ("rekey_ms", 200.0, 400.0),
    ("signalling_s_i", 19.0, 36.0),
];

/// Which parts of the experiment to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parts {
    /// Tables 1-3 and the signalling overhead, N runs per model.
    pub paper: bool,
    /// (a) time until a moved EN can be found, per block interval.
    pub block_interval: bool,
    /// (b)+(d) both models under 0, 1 and 5% loss on every link.
    pub loss: bool,
    /// (c) Query latency and SN memory for 10 to 10,000 ENs.
    pub scale: bool,
    /// The capacity study (tens of minutes; not in `all`).
    pub capacity: bool,
}

impl Parts {
    /// What `all` runs: every part but the capacity study.
    pub const ALL: Parts = Parts {
        paper: true,
        block_interval: true,
        loss: true,
        scale: true,
        capacity: false,
    };

    /// Parses `paper,blocks,loss,scale,capacity` (any subset); `all` is the first four.
    pub fn parse(s: &str) -> Result<Parts, String> {
        let mut p = Parts {
            paper: false,
            block_interval: false,
            loss: false,
            scale: false,
            capacity: false,
        };
        for w in s.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            match w {
                "paper" => p.paper = true,
                "blocks" => p.block_interval = true,
                "loss" => p.loss = true,
                "scale" => p.scale = true,
                "capacity" => p.capacity = true,
                "all" => {
                    p = Parts {
                        capacity: p.capacity,
                        ..Parts::ALL
                    }
                }
                _ => {
                    return Err(format!(
                        "unknown part `{w}`; choose from paper, blocks, loss, scale, capacity, all"
                    ));
                }
            }
        }
        Ok(p)
    }
}

/// Options of an experiment.
#[derive(Debug, Clone)]
pub struct ExperimentOptions {
    /// Runs per model (and per point of the sweeps, capped at [`SWEEP_RUNS`]).
    pub runs: usize,
    /// Output folder.
    pub out_dir: PathBuf,
    /// Parts to run.
    pub parts: Parts,
    /// Keep every run's capture and audio (default: only the first run's of each model).
    pub keep_runs: bool,
    /// ENs per point of the scale part.
    pub scale_ens: Vec<usize>,
    /// The paper part runs once more with this compute table (skipped when zero).
    pub compute: crate::topology::compute::ComputeCosts,
    /// Sweeps of the capacity part.
    pub capacity: capacity::CapacityConfig,
}

/// Runs per point of the loss sweep at most (six points of full calls); the block-interval
/// sweep, whose spread is wide (block times are exponential), uses all the runs.
pub const SWEEP_RUNS: usize = 10;

/// What the caller's progress display hears.
#[derive(Debug, Clone)]
pub enum Progress {
    /// This many steps in all.
    Total(u64),
    /// One step finished (a run, a sweep point); the text says which.
    Step(String),
    /// A note while a long step runs.
    Note(String),
}

/// What an experiment wrote.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// `results.json`.
    pub results: Value,
    /// The table printed first (also at the top of `report.md`).
    pub table: String,
    /// Files written.
    pub files: Vec<PathBuf>,
    /// Stopped by Ctrl-C (the finished runs are kept and reported).
    pub interrupted: bool,
}

/// One run of one model; returns what it did (results and typed events from memory, also in
/// `dir`), or `None` when Ctrl-C stopped it.
pub(crate) fn one_run(
    topo: &Topology,
    seed: u64,
    dir: &Path,
    stop: &AtomicBool,
) -> anyhow::Result<Option<RunSummary>> {
    let opts = RunOptions {
        out_dir: dir.to_path_buf(),
        seed: Some(seed),
        duration: None,
    };
    let s = driver::run_virtual(topo, &opts, stop)?;
    if s.interrupted {
        return Ok(None);
    }
    Ok(Some(s))
}

/// Two node indices, or a node and a segment index.
pub type Pair = Option<(usize, usize)>;

/// What [`model_runs`] did.
pub(crate) struct ModelRuns {
    /// Per-run metrics (with the seed), in seed order.
    pub rows: Vec<Map<String, Value>>,
    /// The first run's first call, as in its results.
    pub first_call: Option<Value>,
    /// `stop` ended it before all runs.
    pub interrupted: bool,
}

/// `runs` runs of `topo` (its model set) with seeds `topo.seed`, +1, ..., each into
/// `dir/seed-<n>/`, measured by [`run_metrics`]. Run `i` keeps its capture and audio when
/// `keep_files(i)`; the others keep results and events. `label(i)` names run `i` in the
/// progress display.
pub(crate) fn model_runs(
    topo: &Topology,
    runs: usize,
    dir: &Path,
    keep_files: &dyn Fn(u64) -> bool,
    stop: &AtomicBool,
    progress: &mut dyn FnMut(Progress),
    label: &dyn Fn(u64) -> String,
) -> anyhow::Result<ModelRuns> {
    let mut done = ModelRuns {
        rows: Vec::new(),
        first_call: None,
        interrupted: false,
    };
    for i in 0..runs as u64 {
        if stop.load(Ordering::Relaxed) {
            done.interrupted = true;
            break;
        }
        let seed = topo.seed + i;
        let run_dir = dir.join(format!("seed-{seed}"));
        let Some(r) = one_run(topo, seed, &run_dir, stop)? else {
            done.interrupted = true;
            break;
        };
        let mut row = run_metrics(topo, &r.results, &r.records, &run_dir)?;
        row.insert("seed".into(), json!(seed));
        if i == 0 {
            done.first_call = Some(r.results[topo.model.as_str()]["calls"][0].clone());
        }
        if !keep_files(i) {
            let _ = std::fs::remove_file(run_dir.join("capture.pcapng"));
            let _ = std::fs::remove_dir_all(run_dir.join("calls"));
        }
        done.rows.push(row);
        progress(Progress::Step(label(i)));
    }
    Ok(done)
}

/// The first call (caller, callee) and the first move (mover, segment) of the scenario.
pub fn story(topo: &Topology) -> (Pair, Pair) {
    let call = topo.scenario.iter().find_map(|s| match s.action {
        Action::Call(a, b) => Some((a, b)),
        _ => None,
    });
    let mv = topo.scenario.iter().find_map(|s| match s.action {
        Action::Move(a, seg) => Some((a, seg)),
        _ => None,
    });
    (call, mv)
}

/// Frames lost (both directions) that were due within 1 s of the mover's new address.
pub(crate) fn handover_loss(call: &Value) -> Option<f64> {
    let at = call["handovers"][0]["address_at_ms"].as_f64()?;
    let audio = call["audio"].as_object()?;
    let lost = audio
        .values()
        .filter_map(|d| d["missing_sent_at_ms"].as_array())
        .flatten()
        .filter_map(Value::as_f64)
        .filter(|t| (at - 1000.0..=at + 1000.0).contains(t))
        .count();
    Some(lost as f64)
}

/// Frames lost in both directions over the whole call.
pub(crate) fn total_loss(call: &Value) -> Option<f64> {
    let audio = call["audio"].as_object()?;
    Some(
        audio
            .values()
            .filter_map(|d| d["lost"].as_u64())
            .sum::<u64>() as f64,
    )
}

/// The per-run metrics of one model's run, with the signalling measured from its capture.
pub(crate) fn run_metrics(
    topo: &Topology,
    results: &Value,
    events: &[crate::events::Record],
    dir: &Path,
) -> anyhow::Result<Map<String, Value>> {
    let capture = dir.join("capture.pcapng");
    let capture = capture.as_path();
    let m = &results[topo.model.as_str()];
    let call = &m["calls"][0];
    let mut out = Map::new();
    out.insert(
        "move_to_registered_ms".into(),
        json!(beyond::move_to_registered(topo, events)),
    );
    for k in [
        "pre_call_ms",
        "caller_has_key_ms",
        "first_audio_both_ways_ms",
        "mid_call_ms",
        "rekey_ms",
    ] {
        out.insert(k.into(), m[k].clone());
    }
    out.insert("handover_lost_frames".into(), json!(handover_loss(call)));
    out.insert("total_lost_frames".into(), json!(total_loss(call)));
    let ns = |ms: f64| binfm_roles::Time::from_nanos((ms * 1e6).round() as u64);
    let caller_ssrc = call["caller_ssrc"]
        .as_u64()
        .and_then(|s| u32::try_from(s).ok());
    // (procedure, key prefix, start, end): end is the procedure's end point, plus 1 s for
    // the acknowledgements that complete a move or a rekey (TxAck, ControlAck, RegisterAck).
    let mut windows = Vec::new();
    if let (Some(start), Some(pre)) = (call["started_at_ms"].as_f64(), m["pre_call_ms"].as_f64()) {
        windows.push((
            signalling::Procedure::CallSetup,
            "signalling",
            start,
            start + pre,
        ));
    }
    if let (Some(at), Some(took)) = (
        call["handovers"][0]["address_at_ms"].as_f64(),
        call["handovers"][0]["mid_call_ms"].as_f64(),
    ) {
        windows.push((
            signalling::Procedure::Handover,
            "handover_signalling",
            at,
            at + took + 1000.0,
        ));
    }
    if let (Some(at), Some(took)) = (
        call["rekeys"][0]["sent_at_ms"].as_f64(),
        call["rekeys"][0]["rekey_ms"].as_f64(),
    ) {
        windows.push((
            signalling::Procedure::Rekey,
            "rekey_signalling",
            at,
            at + took + 1000.0,
        ));
    }
    let spans: Vec<signalling::Window> = windows
        .iter()
        .map(|&(procedure, _, start, end)| signalling::Window {
            procedure,
            start: ns(start),
            end: ns(end),
            caller_ssrc,
        })
        .collect();
    let measured = if spans.is_empty() {
        Vec::new()
    } else {
        signalling::measure(topo, capture, &spans)?
    };
    for ((_, key, _, _), sig) in windows.into_iter().zip(measured) {
        out.insert(format!("{key}_s_i"), sig["s_i"].clone());
        out.insert(format!("{key}_messages"), sig["messages"].clone());
        out.insert(format!("{key}_bytes_x_links"), sig["bytes_x_links"].clone());
        out.insert(key.into(), sig);
    }
    Ok(out)
}

/// Metrics summarised across runs.
pub(crate) fn summarise(runs: &[Map<String, Value>], keys: &[&str]) -> Map<String, Value> {
    keys.iter()
        .map(|k| {
            let v: Vec<f64> = runs.iter().filter_map(|r| r.get(*k)?.as_f64()).collect();
            ((*k).to_owned(), stats::summary(&v))
        })
        .collect()
}

/// The metrics reported per model in the paper part.
pub const PAPER_KEYS: [&str; 17] = [
    "handover_signalling_s_i",
    "handover_signalling_messages",
    "handover_signalling_bytes_x_links",
    "rekey_signalling_s_i",
    "rekey_signalling_messages",
    "rekey_signalling_bytes_x_links",
    "move_to_registered_ms",
    "pre_call_ms",
    "caller_has_key_ms",
    "first_audio_both_ways_ms",
    "mid_call_ms",
    "rekey_ms",
    "signalling_s_i",
    "signalling_messages",
    "signalling_bytes_x_links",
    "handover_lost_frames",
    "total_lost_frames",
];

/// Median wall time of a DH key generation plus agreement (what live mode adds to a call
/// setup per side, and what virtual time leaves out).
pub fn dh_compute_ms() -> f64 {
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let mut v = Vec::new();
    for _ in 0..9 {
        let t = Instant::now();
        let a = binfm_roles::dh::DhSecret::generate(&mut rng);
        let b = binfm_roles::dh::DhSecret::generate(&mut rng);
        let _ = a.agree(&b.public());
        v.push(t.elapsed().as_secs_f64() * 1e3 / 2.0);
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The operations a compute table charges on the critical path of a paper figure of `model`
/// (`pre_call_ms`, `mid_call_ms`, `rekey_ms`) on `topologies/paper.toml`: what separates
/// the figure with compute charged from the exact one. Events are logged when the input that
/// produced them is done, so work before a figure's start event is not in it.
///
/// - BINFM pre-call: the caller's SN answers its Query; the caller verifies the Reply's Tx,
///   makes two ephemerals and signs the Session Request; the callee verifies it, its SN
///   answers its Query, it verifies the Reply's Tx, agrees three times and makes two
///   ephemerals; the caller agrees three times and sends its first frame.
/// - BINFM mid-call: none (the lease event comes after the mover signed its new Tx; the
///   peer checks a MAC only). Rekey: the peer agrees once and makes its next ephemeral.
/// - Vertical pre-call: the caller's key generation, the callee's generation and
///   agreement, the caller's agreement. Mid-call: none. Rekey: the peer's generation and
///   agreement, the initiator's agreement.
pub fn critical_path(model: Model, metric: &str) -> Option<binfm_roles::Work> {
    use binfm_roles::Op::{DhAgree, DhKeygen, Query, Sign, Verify};
    let ops: &[(binfm_roles::Op, u32)] = match (model, metric) {
        (Model::Binfm, "pre_call_ms") => &[
            (Query, 2),
            (Verify, 3),
            (Sign, 1),
            (DhKeygen, 4),
            (DhAgree, 6),
        ],
        (Model::Binfm, "rekey_ms") => &[(DhAgree, 1), (DhKeygen, 1)],
        (Model::Vertical, "pre_call_ms") => &[(DhKeygen, 2), (DhAgree, 2)],
        (Model::Vertical, "rekey_ms") => &[(DhKeygen, 1), (DhAgree, 2)],
        (_, "mid_call_ms") => &[],
        _ => return None,
    };
    let mut w = binfm_roles::Work::NONE;
    for &(op, n) in ops {
        w.add_n(op, n);
    }
    Some(w)
}

/// The metrics of the paper part's second pass, with compute time charged.
pub const COMPUTE_KEYS: [&str; 5] = [
    "pre_call_ms",
    "caller_has_key_ms",
    "first_audio_both_ways_ms",
    "mid_call_ms",
    "rekey_ms",
];

/// The paper part once more, `runs` runs per model with `opts.compute` charged
/// (`results.json` `with_compute`: the table and each model's figures); returns whether
/// `stop` ended it.
fn compute_pass(
    topo: &Topology,
    opts: &ExperimentOptions,
    runs: usize,
    stop: &AtomicBool,
    progress: &mut dyn FnMut(Progress),
) -> anyhow::Result<(Value, bool)> {
    let mut out = Map::new();
    out.insert("table_ms".into(), opts.compute.to_json());
    out.insert("runs".into(), json!(runs));
    let mut interrupted = false;
    for model in [Model::Binfm, Model::Vertical] {
        let mut topo_m = topo.clone();
        topo_m
            .set_model(model)
            .map_err(|e| anyhow::anyhow!("{}: {e}", topo.path.display()))?;
        topo_m.compute = opts.compute;
        let done = model_runs(
            &topo_m,
            runs,
            &opts.out_dir.join("runs-compute").join(model.as_str()),
            &|_| opts.keep_runs,
            stop,
            progress,
            &|i| format!("{} with compute, run {}/{runs}", model.as_str(), i + 1),
        )?;
        interrupted |= done.interrupted;
        let mut m = summarise(&done.rows, &COMPUTE_KEYS);
        m.insert(
            "per_run".into(),
            Value::Array(
                done.rows
                    .iter()
                    .map(|r| {
                        let mut keep: Map<String, Value> = COMPUTE_KEYS
                            .iter()
                            .map(|k| ((*k).to_owned(), r.get(*k).cloned().unwrap_or(Value::Null)))
                            .collect();
                        keep.insert("seed".into(), r.get("seed").cloned().unwrap_or(Value::Null));
                        Value::Object(keep)
                    })
                    .collect(),
            ),
        );
        out.insert(model.as_str().into(), Value::Object(m));
        if interrupted {
            break;
        }
    }
    Ok((Value::Object(out), interrupted))
}

/// Runs the experiment on `topo`. `stop` (Ctrl-C) ends it after the current run; what
/// finished is written and reported.
pub fn run_experiment(
    topo: &Topology,
    opts: &ExperimentOptions,
    stop: &AtomicBool,
    progress: &mut dyn FnMut(Progress),
) -> anyhow::Result<Outcome> {
    topo.require_virtual().map_err(anyhow::Error::msg)?;
    let needs_call = opts.parts.paper || opts.parts.block_interval || opts.parts.loss;
    if needs_call && story(topo).0.is_none() {
        anyhow::bail!(
            "{}: the experiment needs a `call A B` step in the scenario (and a `move` and a `rekey` for the mid-call and key-renewal figures); see topologies/paper.toml",
            topo.path.display()
        );
    }
    if needs_call {
        // Both models must be able to run the file; say why not before any run.
        topo.clone()
            .set_model(Model::Vertical)
            .map_err(|e| anyhow::anyhow!("{}: {e}", topo.path.display()))?;
    }
    std::fs::create_dir_all(&opts.out_dir)
        .with_context(|| format!("creating output folder {}", opts.out_dir.display()))?;
    let runs = opts.runs.max(1);
    let sweep = runs.min(SWEEP_RUNS);
    let mut total = 0u64;
    let compute_runs = if opts.compute.is_zero() { 0 } else { sweep };
    if opts.parts.paper {
        total += 2 * (runs + compute_runs) as u64;
    }
    if opts.parts.block_interval {
        total += (beyond::BLOCK_INTERVALS.len() * runs) as u64;
    }
    if opts.parts.loss {
        total += (2 * beyond::LOSSES.len() * sweep) as u64;
    }
    if opts.parts.scale {
        total += opts.scale_ens.len() as u64;
    }
    if opts.parts.capacity {
        total += opts.capacity.steps() as u64;
    }
    progress(Progress::Total(total));
    let mut timing = Map::new();
    let mut results = Map::new();
    results.insert("topology".into(), json!(topo.name));
    results.insert("runs".into(), json!(runs));
    results.insert(
        "seeds".into(),
        json!((0..runs as u64).map(|i| topo.seed + i).collect::<Vec<_>>()),
    );
    results.insert(
        "paper".into(),
        Value::Object(
            PAPER
                .iter()
                .map(|(k, b, v)| ((*k).to_owned(), json!({"binfm": b, "vertical": v})))
                .collect(),
        ),
    );
    let mut interrupted = false;
    let mut per_model = Map::new();
    let mut first_runs = Map::new();
    if opts.parts.paper {
        let t = Instant::now();
        for model in [Model::Binfm, Model::Vertical] {
            let mut topo_m = topo.clone();
            topo_m
                .set_model(model)
                .map_err(|e| anyhow::anyhow!("{}: {e}", topo.path.display()))?;
            let done = model_runs(
                &topo_m,
                runs,
                &opts.out_dir.join("runs").join(model.as_str()),
                &|i| i == 0 || opts.keep_runs,
                stop,
                progress,
                &|i| format!("{} run {}/{runs}", model.as_str(), i + 1),
            )?;
            if let Some(call) = done.first_call {
                first_runs.insert(model.as_str().into(), call);
            }
            interrupted |= done.interrupted;
            let rows = done.rows;
            let mut m = summarise(&rows, &PAPER_KEYS);
            m.insert(
                "per_run".into(),
                Value::Array(rows.into_iter().map(Value::Object).collect()),
            );
            per_model.insert(model.as_str().into(), Value::Object(m));
            if interrupted {
                break;
            }
        }
        results.insert("models".into(), Value::Object(per_model));
        results.insert("first_run".into(), Value::Object(first_runs));
        if compute_runs > 0 && !interrupted {
            let (v, stopped) = compute_pass(topo, opts, compute_runs, stop, progress)
                .map_err(|e| anyhow::anyhow!("the paper part with compute time charged: {e:#}"))?;
            results.insert("with_compute".into(), v);
            interrupted |= stopped;
        }
        timing.insert("paper_wall_s".into(), json!(t.elapsed().as_secs_f64()));
    }
    let mut beyond_results = Map::new();
    if opts.parts.block_interval && !interrupted {
        let t = Instant::now();
        let (v, stopped) = beyond::block_interval_sweep(topo, runs, &opts.out_dir, stop, progress)?;
        beyond_results.insert("block_interval".into(), v);
        interrupted |= stopped;
        timing.insert(
            "block_interval_wall_s".into(),
            json!(t.elapsed().as_secs_f64()),
        );
    }
    if opts.parts.loss && !interrupted {
        let t = Instant::now();
        let (v, stopped) = beyond::loss_sweep(topo, sweep, &opts.out_dir, stop, progress)?;
        beyond_results.insert("loss".into(), v);
        interrupted |= stopped;
        timing.insert("loss_wall_s".into(), json!(t.elapsed().as_secs_f64()));
    }
    if opts.parts.scale && !interrupted {
        let t = Instant::now();
        let (v, wall, stopped) = beyond::scale(topo, &opts.scale_ens, stop, progress)?;
        beyond_results.insert("scale".into(), v);
        timing.insert("scale".into(), wall);
        interrupted |= stopped;
        timing.insert("scale_wall_s".into(), json!(t.elapsed().as_secs_f64()));
    }
    if opts.parts.capacity && !interrupted {
        let t = Instant::now();
        let (v, wall, stopped) =
            capacity::run(topo, &opts.capacity, &opts.out_dir, stop, progress)?;
        beyond_results.insert("capacity".into(), v);
        timing.insert("capacity".into(), wall);
        interrupted |= stopped;
        timing.insert("capacity_wall_s".into(), json!(t.elapsed().as_secs_f64()));
    }
    if !beyond_results.is_empty() {
        results.insert("beyond".into(), Value::Object(beyond_results));
    }
    results.insert("interrupted".into(), json!(interrupted));
    timing.insert(
        "dh_keygen_plus_agree_ms_median".into(),
        json!(dh_compute_ms()),
    );
    let results = Value::Object(results);
    let timing = Value::Object(timing);
    let mut files = Vec::new();
    let rpath = opts.out_dir.join("results.json");
    crate::results::write_json(&rpath, &results)?;
    files.push(rpath);
    let tpath = opts.out_dir.join("timing.json");
    crate::results::write_json(&tpath, &timing)?;
    files.push(tpath);
    files.extend(plots::write_all(&results, topo, &opts.out_dir)?);
    files.extend(capacity::write_plots(&results, &timing, &opts.out_dir)?);
    let table = report::table(&results, &timing);
    let md = report::markdown(topo, &results, &timing, &table);
    let mpath = opts.out_dir.join("report.md");
    write_atomic(&mpath, md.as_bytes())?;
    files.push(mpath);
    Ok(Outcome {
        results,
        table,
        files,
        interrupted,
    })
}

/// Writes `path` through a temporary file and a rename, so Ctrl-C never leaves half a file.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
