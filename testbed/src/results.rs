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
    let (chain, registration) = chain_results(topo, net);
    json!({
        "topology": topo.name,
        "seed": seed,
        "virtual_time_s": net.now().as_secs_f64(),
        "interrupted": interrupted,
        "events": net.events.counts(),
        "segments": links,
        "drops": drops,
        "echo": echo,
        "chain": chain,
        "registration": registration,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The chain's state at the end (per SN tip, agreement, block interval) and the registration
/// latency: an EN's new address (its `dhcp.ack`) until its nearest SN reports the Tx the EN
/// finally registered (`en.registered` seq) as confirmed in a block (`sn.tx_confirmed`).
fn chain_results<W: Write>(topo: &Topology, net: &VirtualNet<W>) -> (Value, Value) {
    let mut sns = Map::new();
    let mut tips = Vec::new();
    for node in &net.nodes {
        if let Some(app) = node.super_node() {
            let (tip, height) = app.sn.chain().tip();
            tips.push(tip);
            sns.insert(
                node.name.clone(),
                json!({ "height": height, "tip": hex(&tip), "up": node.up }),
            );
        }
    }
    if tips.is_empty() {
        return (Value::Null, Value::Null);
    }
    let first_sn = net
        .nodes
        .iter()
        .find(|n| n.super_node().is_some())
        .map(|n| n.name.clone())
        .unwrap_or_default();
    let mut last = (0.0f64, 0u64);
    let (mut mined, mut reorgs) = (0u64, 0u64);
    for r in &net.events.records {
        match r.kind.as_str() {
            "sn.block_mined" => mined += 1,
            "sn.reorg" => reorgs += 1,
            _ => {}
        }
        if r.host == first_sn
            && matches!(
                r.kind.as_str(),
                "sn.block_mined" | "sn.block_accepted" | "sn.reorg"
            )
            && let Some(h) = r.fields.get("height").and_then(Value::as_u64)
        {
            last = (r.t.as_secs_f64(), h);
        }
    }
    let mean_interval = (last.1 > 0).then(|| last.0 / last.1 as f64);
    let chain = json!({
        "configured_block_interval_s": topo.chain.block_interval.as_secs_f64(),
        "mean_block_interval_s": mean_interval,
        "measured_on": first_sn,
        "blocks_mined": mined,
        "reorgs": reorgs,
        "tips_agree": tips.windows(2).all(|w| w[0] == w[1]),
        "super_nodes": sns,
    });

    // Registration latency.
    let sn_name: BTreeMap<String, String> = (0..topo.nodes.len())
        .filter_map(|i| Some((topo.sn_addr(i)?.to_string(), topo.nodes[i].name.clone())))
        .filter(|(_, n)| {
            topo.nodes
                .iter()
                .any(|d| &d.name == n && d.super_node.is_some())
        })
        .collect();
    struct Pending {
        since: f64,
        hash: Option<String>,
        done: Option<(u64, String)>,
    }
    let mut pending: BTreeMap<&str, Pending> = BTreeMap::new();
    let mut samples: Vec<f64> = Vec::new();
    let mut per_en: Vec<Value> = Vec::new();
    for r in &net.events.records {
        let t = r.t.as_secs_f64() * 1e3;
        match r.kind.as_str() {
            "dhcp.ack"
                if topo
                    .node_index(&r.host)
                    .is_some_and(|i| topo.nodes[i].end_node.is_some()) =>
            {
                pending.insert(
                    &r.host,
                    Pending {
                        since: t,
                        hash: None,
                        done: None,
                    },
                );
            }
            "en.register" => {
                if let Some(p) = pending.get_mut(r.host.as_str()) {
                    p.hash = r
                        .fields
                        .get("hash_addr")
                        .and_then(Value::as_str)
                        .map(str::to_owned);
                }
            }
            "en.registered" => {
                let seq = r.fields.get("seq").and_then(Value::as_u64);
                let sn = r
                    .fields
                    .get("sn")
                    .and_then(Value::as_str)
                    .and_then(|a| sn_name.get(a))
                    .cloned();
                if let (Some(p), Some(seq), Some(sn)) = (pending.get_mut(r.host.as_str()), seq, sn)
                {
                    p.done = Some((seq, sn));
                }
            }
            "sn.tx_confirmed" => {
                let owner = r.fields.get("owner").and_then(Value::as_str);
                let seq = r.fields.get("seq").and_then(Value::as_u64).unwrap_or(0);
                let hit = pending.iter().find_map(|(en, p)| match &p.done {
                    Some((s, sn)) if *sn == r.host && seq >= *s && p.hash.as_deref() == owner => {
                        Some(*en)
                    }
                    _ => None,
                });
                if let Some(en) = hit
                    && let Some(p) = pending.remove(en)
                {
                    samples.push(t - p.since);
                    per_en.push(json!({ "en": en, "sn": r.host, "seq": seq, "latency_ms": t - p.since, "at_ms": t }));
                }
            }
            _ => {}
        }
    }
    let q = quantiles(samples.clone());
    let registration = json!({
        "definition": "EN's DHCP ack (new address) -> its nearest SN reports the registered Tx confirmed in a block",
        "samples": samples.len(),
        "median_ms": q.map(|q| q.0),
        "p95_ms": q.map(|q| q.1),
        "unconfirmed_at_end": pending.len(),
        "each": per_en,
    });
    (chain, registration)
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
