//! What the paper leaves out, measured on the same topology: (a) how long after a move a new
//! caller can find the EN, per block interval; (b) audio lost at a handover and (d) how long
//! each procedure takes, under 0, 1 and 5% loss on every link, for both models; (c) Query
//! latency and SN memory as the number of ENs grows.

use super::{Progress, one_run, summarise};
use crate::apps::wallet_for;
use crate::events::{Record, TestbedEvent};
use crate::results::ms;
use crate::topology::{Action, Model, Step, Topology};
use binfm_roles::dhcp::events::DhcpClientEvent;
use binfm_roles::en::events::EnEvent;
use binfm_roles::sn::events::SnEvent;
use binfm_roles::vertical::en::events::VerticalEvent;
use serde_json::{Map, Value, json};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Block intervals of sweep (a), in seconds.
pub const BLOCK_INTERVALS: [f64; 4] = [0.25, 0.5, 1.0, 2.0];
/// Loss on every link in sweeps (b) and (d).
pub const LOSSES: [f64; 3] = [0.0, 0.01, 0.05];
/// When the EN moves in sweep (a): late enough that the difficulty has retargeted to the
/// block interval (the first blocks follow the genesis difficulty).
const MOVE_AT: Duration = Duration::from_secs(40);
/// How long after the move the finder keeps looking.
const LOOK_FOR: Duration = Duration::from_secs(15);
/// Interval of the finder's Queries in sweep (a): the resolution of the measurement.
const LOOK_EVERY: Duration = Duration::from_millis(50);

/// Whether `e` is the `node.moved` of `host`.
fn moved(e: &Record, host: &str) -> bool {
    e.host == host && matches!(e.testbed(), Some(TestbedEvent::Moved { .. }))
}

/// The mover's new address until its new registration is acknowledged (BINFM: `en.registered`
/// from the SN; vertical: `vertical.registered` from the home location server), from the
/// first move of the scenario.
pub fn move_to_registered(topo: &Topology, events: &[Record]) -> Option<f64> {
    let (_, Some((mover, _))) = super::story(topo) else {
        return None;
    };
    let name = &topo.nodes[mover].name;
    let moved = events.iter().find(|e| moved(e, name))?;
    let registered = |e: &Record| match topo.model {
        Model::Binfm => matches!(e.role_event::<EnEvent>(), Some(EnEvent::Registered { .. })),
        Model::Vertical => matches!(
            e.role_event::<VerticalEvent>(),
            Some(VerticalEvent::Registered { .. })
        ),
    };
    let reg = events
        .iter()
        .find(|e| &e.host == name && registered(e) && e.t >= moved.t)?;
    Some(ms(reg.t - moved.t))
}

/// Sweep (a): BINFM only (the vertical location server knows a new contact as soon as the
/// Register arrives; that is `move_to_registered_ms` of the paper part).
pub fn block_interval_sweep(
    topo: &Topology,
    runs: usize,
    out: &Path,
    stop: &AtomicBool,
    progress: &mut dyn FnMut(Progress),
) -> anyhow::Result<(Value, bool)> {
    let (Some((caller, callee)), Some((mover, seg))) = super::story(topo) else {
        return Ok((
            json!({"skipped": "the scenario needs a `call` and a `move` step"}),
            false,
        ));
    };
    let finder = if mover == caller { callee } else { caller };
    let mover_name = topo.nodes[mover].name.clone();
    let finder_name = topo.nodes[finder].name.clone();
    let mut points = Vec::new();
    for &iv in &BLOCK_INTERVALS {
        let mut t = topo.clone();
        t.set_model(Model::Binfm)
            .map_err(|e| anyhow::anyhow!("{}: {e}", topo.path.display()))?;
        t.chain.block_interval = Duration::from_secs_f64(iv);
        t.scenario = vec![Step {
            at: MOVE_AT,
            action: Action::Move(mover, seg),
            line: 0,
        }];
        t.duration = MOVE_AT + LOOK_FOR;
        if let Some(en) = t.nodes[finder].end_node.as_mut() {
            let mut at = MOVE_AT;
            while at < MOVE_AT + LOOK_FOR {
                en.lookups.push((mover, at));
                at += LOOK_EVERY;
            }
        }
        let mut rows: Vec<Map<String, Value>> = Vec::new();
        for i in 0..runs as u64 {
            if stop.load(Ordering::Relaxed) {
                return Ok((json!(points), true));
            }
            let seed = topo.seed + i;
            let mover_hash = binfm_roles::util::hex(&wallet_for(seed, &mover_name).hash_addr());
            let dir = out
                .join("beyond")
                .join(format!("blocks-{iv}s"))
                .join(format!("seed-{seed}"));
            let Some(r) = one_run(&t, seed, &dir, stop)? else {
                return Ok((json!(points), true));
            };
            let events = r.records;
            let _ = std::fs::remove_file(dir.join("capture.pcapng"));
            let mut row = Map::new();
            row.insert("seed".into(), json!(seed));
            let moved = events.iter().find(|e| moved(e, &mover_name)).map(|e| e.t);
            if let Some(m) = moved {
                let since = |e: &&Record| e.t >= m;
                let dhcp = events
                    .iter()
                    .filter(since)
                    .find(|e| {
                        e.host == mover_name
                            && matches!(
                                e.role_event::<DhcpClientEvent>(),
                                Some(DhcpClientEvent::Ack { .. })
                            )
                    })
                    .map(|e| ms(e.t - m));
                let reg = events.iter().filter(since).find_map(|e| {
                    match (e.host == mover_name, e.role_event::<EnEvent>()) {
                        (true, Some(EnEvent::Registered { seq, .. })) => Some((e.t, seq)),
                        _ => None,
                    }
                });
                let new_seq = reg.map(|r| r.1);
                let confirmed = events
                    .iter()
                    .filter(since)
                    .find(|e| {
                        matches!(e.role_event::<SnEvent>(),
                            Some(SnEvent::TxConfirmed { owner, seq, .. })
                                if *owner == mover_hash && Some(seq) == new_seq)
                    })
                    .map(|e| ms(e.t - m));
                let found = events
                    .iter()
                    .filter(since)
                    .find(|e| {
                        e.host == finder_name
                            && matches!(e.role_event::<EnEvent>(),
                                Some(EnEvent::LookupOk { peer, seq, .. })
                                    if *peer == mover_hash && new_seq.is_some_and(|n| seq >= n))
                    })
                    .map(|e| ms(e.t - m));
                row.insert("dhcp_ms".into(), json!(dhcp));
                row.insert("registered_ms".into(), json!(reg.map(|r| ms(r.0 - m))));
                row.insert("first_confirmed_ms".into(), json!(confirmed));
                row.insert("findable_ms".into(), json!(found));
            }
            rows.push(row);
            progress(Progress::Step(format!(
                "block interval {iv} s, run {}/{runs}",
                i + 1
            )));
        }
        let mut p = summarise(
            &rows,
            &[
                "dhcp_ms",
                "registered_ms",
                "first_confirmed_ms",
                "findable_ms",
            ],
        );
        p.insert("block_interval_s".into(), json!(iv));
        p.insert("runs".into(), json!(rows.len()));
        p.insert(
            "per_run".into(),
            Value::Array(rows.into_iter().map(Value::Object).collect()),
        );
        points.push(Value::Object(p));
    }
    Ok((json!(points), false))
}

/// Sweeps (b) and (d): the paper's scenario with `loss` on every segment and path.
pub fn loss_sweep(
    topo: &Topology,
    runs: usize,
    out: &Path,
    stop: &AtomicBool,
    progress: &mut dyn FnMut(Progress),
) -> anyhow::Result<(Value, bool)> {
    let mut points = Vec::new();
    for &loss in &LOSSES {
        let mut point = Map::new();
        point.insert("loss".into(), json!(loss));
        for model in [Model::Binfm, Model::Vertical] {
            let mut t = topo.clone();
            t.set_model(model)
                .map_err(|e| anyhow::anyhow!("{}: {e}", topo.path.display()))?;
            for s in &mut t.segments {
                s.params.loss = loss;
                for p in &mut s.paths {
                    p.2.loss = loss;
                }
            }
            let done = super::model_runs(
                &t,
                runs,
                &out.join("beyond")
                    .join(format!("loss-{}pct", loss * 100.0))
                    .join(model.as_str()),
                &|_| false,
                stop,
                progress,
                &|i| {
                    format!(
                        "{} at {}% loss, run {}/{runs}",
                        model.as_str(),
                        loss * 100.0,
                        i + 1
                    )
                },
            )?;
            if done.interrupted {
                points.push(Value::Object(point));
                return Ok((json!(points), true));
            }
            let mut rows = done.rows;
            for row in &mut rows {
                for k in ["signalling", "handover_signalling", "rekey_signalling"] {
                    row.shift_remove(k);
                }
            }
            let completed = rows
                .iter()
                .filter(|r| r.get("pre_call_ms").is_some_and(Value::is_number))
                .count();
            let mut m = summarise(&rows, &super::PAPER_KEYS);
            m.insert("runs".into(), json!(rows.len()));
            m.insert("calls_completed".into(), json!(completed));
            m.insert(
                "per_run".into(),
                Value::Array(rows.into_iter().map(Value::Object).collect()),
            );
            point.insert(model.as_str().into(), Value::Object(m));
        }
        points.push(Value::Object(point));
    }
    Ok((json!(points), false))
}

/// Sweep (c): Query latency and SN memory for each crowd size (see [`super::scale`]; a
/// role-level harness: one SN, N ENs registering and moving, a prober Querying). Returns the
/// deterministic part (for `results.json`), the full points with their wall-clock figures
/// (for `timing.json`), and whether it was stopped.
pub fn scale(
    topo: &Topology,
    ens: &[usize],
    stop: &AtomicBool,
    progress: &mut dyn FnMut(Progress),
) -> anyhow::Result<(Value, Value, bool)> {
    let mut det = Vec::new();
    let mut wall = Vec::new();
    for &n in ens {
        if stop.load(Ordering::Relaxed) {
            return Ok((json!(det), json!(wall), true));
        }
        let cfg = super::scale::ScaleConfig {
            en_counts: vec![n],
            seed: topo.seed,
            block_interval: topo.chain.block_interval,
            block_bytes: topo.chain.block_bytes,
            block_txs: topo.chain.block_txs,
            // First registrations at about 500/s in all (2/s per crowd address), under the
            // SN's per-source Tx limit.
            register_window: Duration::from_secs_f64((n as f64 / 500.0).max(5.0)),
            // At most 25 ENs a source address (moving every 30 s: under 1 Tx/s each, as
            // behind a small NAT), so the SN's per-source Tx limit refuses none.
            crowd_addrs: u32::try_from(n.div_ceil(25))
                .unwrap_or(u32::MAX)
                .max(super::scale::DEFAULT_CROWD_ADDRS),
            ..super::scale::ScaleConfig::default()
        };
        let mut r =
            super::scale::run_scale(&cfg, &mut |s| progress(Progress::Note(s.to_owned())), stop)?;
        let stopped = r["stopped"].as_bool().unwrap_or(false);
        let full: Vec<Value> = r["points"].as_array().cloned().unwrap_or_default();
        super::scale::strip_wall_clock(&mut r);
        det.extend(r["points"].as_array().cloned().unwrap_or_default());
        wall.extend(full);
        if stopped {
            return Ok((json!(det), json!(wall), true));
        }
        progress(Progress::Step(format!("scale: {n} ENs")));
    }
    Ok((json!(det), json!(wall), false))
}
