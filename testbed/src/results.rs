//! `OUT/results.json`: what a run measured, computed from the events and counters of the run
//! (never from formulas). Keys are sorted and nothing depends on the wall clock, so the same
//! topology and seed give a byte-identical file.

use crate::driver::VirtualNet;
use crate::topology::Topology;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// Median and p95 of a sample (nearest-rank), in the sample's unit.
pub fn quantiles(mut v: Vec<f64>) -> Option<(f64, f64)> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let rank = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    Some((rank(0.5), rank(0.95)))
}

/// Gathers the results of a finished virtual run.
pub fn collect<W: Write>(
    topo: &Topology,
    seed: u64,
    net: &VirtualNet<W>,
    interrupted: bool,
) -> Value {
    let mut echo = Map::new();
    let mut rtts: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for r in &net.events.records {
        if r.kind == "echo.reply"
            && let Some(ns) = r.fields.get("rtt_ns").and_then(Value::as_u64)
        {
            rtts.entry(r.host.as_str())
                .or_default()
                .push(ns as f64 / 1e6);
        }
    }
    for node in &net.nodes {
        if let Some((sent, received)) = node.echo_counts() {
            let q = quantiles(rtts.remove(node.name.as_str()).unwrap_or_default());
            echo.insert(
                node.name.clone(),
                json!({
                    "sent": sent,
                    "received": received,
                    "rtt_ms_median": q.map(|q| q.0),
                    "rtt_ms_p95": q.map(|q| q.1),
                }),
            );
        }
    }
    let mut drops = Map::new();
    for node in &net.nodes {
        let mut d: BTreeMap<String, u64> = node
            .drops
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        for (reason, count) in node.nat_drops() {
            if count > 0 {
                d.insert(format!("nat_{reason}"), count);
            }
        }
        if !d.is_empty() {
            drops.insert(node.name.clone(), json!(d));
        }
    }
    let mut links: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for (seg, packets) in net.segments.iter().zip(&net.segment_packets) {
        links
            .entry(seg.name.clone())
            .or_default()
            .insert("packets".into(), *packets);
    }
    for ((seg, reason), count) in &net.link_drops {
        links
            .entry(seg.clone())
            .or_default()
            .insert((*reason).to_owned(), *count);
    }
    json!({
        "topology": topo.name,
        "seed": seed,
        "virtual_time_s": net.now().as_secs_f64(),
        "interrupted": interrupted,
        "events": net.events.counts(),
        "segments": links,
        "drops": drops,
        "echo": echo,
    })
}

/// Writes JSON to `path` through a temporary file and a rename, so a reader never sees half
/// a file (also on Ctrl-C).
pub fn write_json(path: &Path, value: &Value) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        serde_json::to_writer_pretty(&mut f, value)?;
        f.write_all(b"\n")?;
        f.flush()?;
    }
    std::fs::rename(&tmp, path)
}
