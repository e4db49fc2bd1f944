//! `OUT/results.json`: what a run measured, computed from the events and counters of the run
//! (never from formulas). Keys are sorted and nothing depends on the wall clock, so the same
//! topology and seed give a byte-identical file.

use crate::engine::RunView;
use crate::topology::{Model, Topology};
use binfm_roles::dhcp::events::DhcpClientEvent;
use binfm_roles::echo::{EchoClient, EchoEvent};
use binfm_roles::en::events::EnEvent;
use binfm_roles::role::CallView;
use binfm_roles::session::audio::FRAME_PERIOD;
use binfm_roles::sn::SuperNode;
use binfm_roles::sn::events::SnEvent;
use binfm_roles::util::hex;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddrV4;
use std::path::Path;

/// Nearest-rank quantile `q` (0 to 1) of an ascending sample; `None` when it is empty. The
/// one quantile rule of every result file (runs, experiments, the scale harness).
pub fn nearest_rank(sorted: &[f64], q: f64) -> Option<f64> {
    let n = sorted.len();
    (n > 0).then(|| sorted[((q * n as f64).ceil() as usize).clamp(1, n) - 1])
}

/// Median and p95 of a sample (nearest-rank), in the sample's unit.
pub fn quantiles(mut v: Vec<f64>) -> Option<(f64, f64)> {
    v.sort_by(f64::total_cmp);
    Some((nearest_rank(&v, 0.5)?, nearest_rank(&v, 0.95)?))
}

/// Gathers the results of a finished virtual run.
pub fn collect(topo: &Topology, seed: u64, net: &RunView<'_>, interrupted: bool) -> Value {
    let mut echo = Map::new();
    let mut rtts: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for r in &net.events.records {
        if let Some(EchoEvent::Reply { rtt_ns: ns, .. }) = r.role_event::<EchoEvent>() {
            rtts.entry(r.host.as_str())
                .or_default()
                .push(*ns as f64 / 1e6);
        }
    }
    for node in net.nodes {
        if let Some((sent, received)) = node.role::<EchoClient>().map(EchoClient::counts) {
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
    for node in net.nodes {
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
    for (seg, packets) in net.segments.iter().zip(net.segment_packets) {
        links
            .entry(seg.name.clone())
            .or_default()
            .insert("packets".into(), *packets);
    }
    for ((seg, reason), count) in net.link_drops {
        links
            .entry(seg.clone())
            .or_default()
            .insert((*reason).to_owned(), *count);
    }
    let (chain, registration) = chain_results(topo, net);
    let mut results = json!({
        "topology": topo.name,
        "seed": seed,
        "virtual_time_s": net.now.as_secs_f64(),
        "interrupted": interrupted,
        "events": net.events.counts(),
        "segments": links,
        "drops": drops,
        "echo": echo,
                "chain": chain,
        "registration": registration,
        "model": topo.model.as_str(),
        "binfm": if topo.model == Model::Binfm { call_results(topo, net) } else { Value::Null },
        "vertical": if topo.model == Model::Vertical { call_results(topo, net) } else { Value::Null },
        "floods": flood_results(net),
    });
    // Only runs with attack steps have the key, so other runs' files are unchanged.
    if !net.attacks.is_empty()
        && let Some(o) = results.as_object_mut()
    {
        o.insert("attacks".into(), Value::Array(net.attacks.clone()));
    }
    // Only runs that charge compute have the key, so the paper's runs are unchanged.
    if !net.compute.is_zero()
        && let Some(o) = results.as_object_mut()
    {
        o.insert("compute".into(), compute_results(net));
        let dh_ms: f64 = net
            .charged
            .iter()
            .map(|(w, _)| {
                ms(net.compute.cost(&only(
                    w,
                    &[binfm_roles::Op::DhKeygen, binfm_roles::Op::DhAgree],
                )))
            })
            .sum();
        if let Some(m) = o
            .get_mut(topo.model.as_str())
            .and_then(Value::as_object_mut)
        {
            m.insert("dh_in_virtual_time_ms".into(), json!(dh_ms));
        }
    }
    results
}

/// The part of `w` that counts `ops`.
fn only(w: &binfm_roles::Work, ops: &[binfm_roles::Op]) -> binfm_roles::Work {
    let mut v = binfm_roles::Work::NONE;
    for &op in ops {
        v.add_n(op, w.count(op));
    }
    v
}

/// `compute` in results.json: the table charged (ms per operation) and, per node that did
/// any, the operations charged and the virtual time they took.
fn compute_results(net: &RunView<'_>) -> Value {
    let nodes: Map<String, Value> = net
        .nodes
        .iter()
        .zip(net.charged)
        .filter(|(_, (w, _))| !w.is_empty())
        .map(|(node, (w, t))| {
            let ops: Map<String, Value> = w
                .iter()
                .map(|(op, n)| (op.name().to_owned(), json!(n)))
                .collect();
            (
                node.name.clone(),
                json!({ "ops": ops, "charged_ms": ms(*t) }),
            )
        })
        .collect();
    json!({ "table_ms": net.compute.to_json(), "nodes": nodes })
}

/// What each `flood` step sent and what came back to its spoofed sources.
fn flood_results(net: &RunView<'_>) -> Value {
    net.floods
        .iter()
        .map(|(target, spec, stats)| {
            let mut v = stats.to_json();
            if let Some(o) = v.as_object_mut() {
                o.insert("target".into(), json!(target));
                o.insert("rate".into(), json!(spec.rate));
                o.insert("duration_s".into(), json!(spec.duration.as_secs_f64()));
                o.insert("kind".into(), json!(spec.kind.as_str()));
            }
            v
        })
        .collect()
}

/// A super node's packet-growable structures at the end of the run, with their limits.
fn sn_memory(sn: &binfm_roles::sn::SuperNode) -> Value {
    let m = sn.memory();
    json!({
        "mempool_txs": { "now": m.mempool_txs, "limit": m.mempool_max },
        "mempool_rate_owners": { "now": m.mempool_rate_owners, "limit": m.mempool_rate_owners_max },
        "orphans": { "now": m.orphans, "limit": m.orphans_max },
        "reassembly_blocks": { "now": m.reassembly_blocks, "limit": m.reassembly_blocks_max },
        "tx_limit_sources": { "now": m.tx_limit_sources, "limit": m.tx_limit_sources_max },
        "query_limit_sources": { "now": m.query_limit_sources, "limit": m.query_limit_sources_max },
        "subscribers": { "now": m.subscribers, "limit": m.subscribers_max },
        "known_keys": { "now": m.known_keys, "limit": m.known_keys_max },
        "bytes_estimate": m.bytes(),
        "bytes_bound": m.bytes_bound(),
    })
}

/// A run time in milliseconds, in one division from nanoseconds (so 1640 ms prints as 1640.0):
/// every time in results and reports.
pub fn ms(t: binfm_roles::Time) -> f64 {
    t.as_nanos() as f64 / 1e6
}

/// The chain's state at the end (per SN tip, agreement, block interval) and the registration
/// latency: an EN's new address (its `dhcp.ack`) until its nearest SN reports the Tx the EN
/// finally registered (`en.registered` seq) as confirmed in a block (`sn.tx_confirmed`).
fn chain_results(topo: &Topology, net: &RunView<'_>) -> (Value, Value) {
    let mut sns = Map::new();
    let mut tips = Vec::new();
    for node in net.nodes {
        if let Some(sn) = node.role::<SuperNode>() {
            let (tip, height) = sn.chain().tip();
            tips.push(tip);
            sns.insert(
                node.name.clone(),
                json!({ "height": height, "tip": hex(&tip), "up": node.up,
                        "refused": sn.refused, "memory": sn_memory(sn) }),
            );
        }
    }
    if tips.is_empty() {
        return (Value::Null, Value::Null);
    }
    let first_sn = net
        .nodes
        .iter()
        .find(|n| n.role::<SuperNode>().is_some())
        .map(|n| n.name.clone())
        .unwrap_or_default();
    let mut last = (0.0f64, 0u64);
    let (mut mined, mut reorgs) = (0u64, 0u64);
    for r in &net.events.records {
        let height = match r.role_event::<SnEvent>() {
            Some(SnEvent::BlockMined { height, .. }) => {
                mined += 1;
                Some(*height)
            }
            Some(SnEvent::Reorg { height, .. }) => {
                reorgs += 1;
                Some(*height)
            }
            Some(SnEvent::BlockAccepted { height, .. }) => Some(*height),
            _ => None,
        };
        if r.host == first_sn
            && let Some(h) = height
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
    let sn_name: BTreeMap<SocketAddrV4, String> = (0..topo.nodes.len())
        .filter_map(|i| Some((topo.sn_addr(i)?, topo.nodes[i].name.clone())))
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
        match (
            r.role_event::<DhcpClientEvent>(),
            r.role_event::<SnEvent>(),
            r.role_event::<EnEvent>(),
        ) {
            (Some(DhcpClientEvent::Ack { .. }), _, _)
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
            (_, _, Some(EnEvent::Register { hash_addr, .. })) => {
                if let Some(p) = pending.get_mut(r.host.as_str()) {
                    p.hash = Some(hash_addr.clone());
                }
            }
            (_, _, Some(EnEvent::Registered { seq, sn, .. })) => {
                if let (Some(p), Some(sn)) = (pending.get_mut(r.host.as_str()), sn_name.get(sn)) {
                    p.done = Some((*seq, sn.clone()));
                }
            }
            (_, Some(SnEvent::TxConfirmed { owner, seq, .. }), _) => {
                let (owner, seq) = (Some(owner.as_str()), *seq);
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

/// A step of a call that the results measure, in either model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// The caller starts the call (`ssrc` is known).
    Started,
    /// A side decrypted its first frame.
    FirstFrame,
    /// The caller holds the session key.
    CallerHasKey,
    /// The peer of a moved EN switches to its new address.
    MovedAccepted,
    /// A key renewal's first message.
    RekeySent,
    /// Both ends hold the new key (on the side [`Milestones::rekey_done_own_side`] says).
    RekeyDone,
}

/// How each model's events mark its call milestones.
#[derive(Debug)]
struct Milestones {
    /// The event kind of each step (every one names the peer in `peer`; `Started` carries
    /// the caller's `ssrc`; `CallerHasKey` is the kind with `role: "caller"`).
    kinds: [(&'static str, Step); 6],
    /// Whether [`Step::RekeyDone`] is reported by the initiator (vertical) rather than by
    /// the peer (BINFM).
    rekey_done_own_side: bool,
    /// Whether the paper's pre-call end point is the caller holding the key (vertical) rather
    /// than the callee decrypting the caller's first frame (BINFM's step (g)).
    paper_end_is_caller_key: bool,
}

/// BINFM: `call.*`.
const BINFM_MILESTONES: Milestones = Milestones {
    kinds: [
        ("call.started", Step::Started),
        ("call.first_frame", Step::FirstFrame),
        ("call.active", Step::CallerHasKey),
        ("call.handover_accepted", Step::MovedAccepted),
        ("call.rekey_sent", Step::RekeySent),
        ("call.rekey_accepted", Step::RekeyDone),
    ],
    rekey_done_own_side: false,
    paper_end_is_caller_key: false,
};

/// Vertical: `vertical.*`.
const VERTICAL_MILESTONES: Milestones = Milestones {
    kinds: [
        ("vertical.call_started", Step::Started),
        ("vertical.first_frame", Step::FirstFrame),
        ("vertical.active", Step::CallerHasKey),
        ("vertical.reinvite_accepted", Step::MovedAccepted),
        ("vertical.rekey_sent", Step::RekeySent),
        ("vertical.rekey_done", Step::RekeyDone),
    ],
    rekey_done_own_side: true,
    paper_end_is_caller_key: true,
};

/// What a record means for the call figures.
#[derive(Debug, Clone, PartialEq)]
enum Marked {
    /// A call step naming a peer (its name, if it is a known end node).
    Step {
        step: Step,
        peer: Option<String>,
        ssrc: Option<u64>,
    },
    /// The host moved to another segment (`node.moved`).
    Moved,
    /// The host's end node has its new address: `dhcp.ack` of a virtual end node; for a
    /// daemon in a kernel host, its `en.register` for a new address (when it read the lease).
    Address,
    /// A kernel host's DHCP ACK passed into its namespace (`kernel.lease`): its DHCP client
    /// then configures the address and writes the lease file the daemon reads.
    LeaseAcked,
}

/// A record the call figures read, from the run's own log or a daemon's.
#[derive(Debug, Clone)]
struct Mark {
    t: binfm_roles::Time,
    host: String,
    what: Marked,
}

impl Milestones {
    /// The mark of an event of `kind` (fields read only when the kind marks something), with
    /// peers named by `name_of`. The run's own records and a daemon's JSON lines are read
    /// the same way, by their kind and fields as `events.jsonl` shows them.
    fn mark(
        &self,
        kind: &str,
        fields: impl FnOnce() -> Map<String, Value>,
        name_of: &dyn Fn(&str) -> Option<String>,
    ) -> Option<Marked> {
        match kind {
            "node.moved" => return Some(Marked::Moved),
            "dhcp.ack" => return Some(Marked::Address),
            "kernel.lease" => return Some(Marked::LeaseAcked),
            _ => {}
        }
        let &(_, step) = self.kinds.iter().find(|(k, _)| *k == kind)?;
        let fields = fields();
        if step == Step::CallerHasKey
            && fields.get("role").and_then(Value::as_str) != Some("caller")
        {
            return None;
        }
        let peer = fields.get("peer").and_then(Value::as_str)?;
        Some(Marked::Step {
            step,
            peer: name_of(peer),
            ssrc: fields.get("ssrc").and_then(Value::as_u64),
        })
    }
}

/// The calls of node `n`, whichever model its end node runs.
fn calls_of(node: &crate::node::Node) -> Vec<CallView<'_>> {
    node.roles().flat_map(|r| r.calls()).collect()
}

/// Per-call measurements (`binfm` or `vertical` in results.json, by the model that ran).
/// Every figure is a difference of two event times of the run, never a formula:
///
/// - `pre_call_ms`: the paper's end point for the model that ran. BINFM: the caller's
///   `call.started` (its first Query goes out at that instant) until the callee decrypts the
///   caller's first audio frame (step (g) of Figure 8). Vertical: the caller's
///   `vertical.call_started` (its STUN request goes out) until it holds the session key
///   (step (11) of Figure 1, `vertical.active`).
/// - `caller_has_key_ms`: the same start until the caller holds the session key (both models).
/// - `first_audio_both_ways_ms`: until both sides have decrypted a first frame (both models).
/// - `mid_call_ms`: the moved EN's new address (`dhcp.ack` after `node.moved`) until the
///   peer accepts its Handover Request / ReInvite and sends to the new address.
/// - `rekey_ms`: the rekey's first message until both ends hold the new key (BINFM: the
///   peer's `call.rekey_accepted`, the sender derived its key before sending; vertical: the
///   initiator's `vertical.rekey_done` when the reply arrives).
/// - audio per direction from the receiver's state: frames sent (by the sender), received,
///   lost, duplicates, RFC 3550 jitter, one-way delay (arrival - the sender's schedule), and
///   the longest gap between decrypted frames (the handover gap).
pub fn call_results(topo: &Topology, net: &RunView<'_>) -> Value {
    let m = match topo.model {
        Model::Binfm => &BINFM_MILESTONES,
        Model::Vertical => &VERTICAL_MILESTONES,
    };
    let names: Vec<(String, String, String)> = topo
        .nodes
        .iter()
        .filter(|n| n.end_node.is_some())
        .map(|n| {
            let h = crate::apps::wallet_of(topo, &n.name).hash_addr();
            (n.name.clone(), hex(&h), hex(&h[..8]))
        })
        .chain(
            // A daemon's own key: its registrations name it.
            net.events.imported.iter().filter_map(|r| {
                let h = r.fields.get("hash_addr")?.as_str()?;
                (r.kind == "en.register" && h.len() == 64)
                    .then(|| (r.host.clone(), h.to_owned(), h[..16].to_owned()))
            }),
        )
        .collect();
    // Hash address (full or short hex) -> end node, first name wins (a crowd has 10,000).
    let mut by_hash: std::collections::HashMap<&str, &str> = std::collections::HashMap::new();
    for (n, full, short) in &names {
        by_hash.entry(full.as_str()).or_insert(n.as_str());
        by_hash.entry(short.as_str()).or_insert(n.as_str());
    }
    let name_of = |h: &str| by_hash.get(h).map(|n| (*n).to_owned());
    let mut recs: Vec<Mark> = net
        .events
        .records
        .iter()
        .filter_map(|r| {
            let what = m.mark(r.kind(), || r.event.fields_json(), &name_of)?;
            Some(Mark {
                t: r.t,
                host: r.host.clone(),
                what,
            })
        })
        .collect();
    if !net.events.imported.is_empty() {
        recs.extend(net.events.imported.iter().filter_map(|r| {
            let new_address = r.kind == "en.register"
                && r.fields.get("why").and_then(Value::as_str) == Some("new_address");
            let what = if new_address {
                Marked::Address
            } else {
                m.mark(&r.kind, || r.fields.clone(), &name_of)?
            };
            Some(Mark {
                t: r.t,
                host: r.host.clone(),
                what,
            })
        }));
        recs.sort_by_key(|r| r.t); // stable: the run's own records first at equal times
    }
    // Whether `r` marks `step` and names `peer`.
    let at = |r: &Mark, step: Step, peer: &str| matches!(&r.what, Marked::Step { step: s, peer: Some(p), .. } if *s == step && p == peer);
    let mut calls = Vec::new();
    for (i, start, ssrc, callee) in recs.iter().enumerate().filter_map(|(i, r)| match &r.what {
        Marked::Step {
            step: Step::Started,
            peer,
            ssrc,
        } => Some((i, r, *ssrc, peer.clone())),
        _ => None,
    }) {
        let caller = start.host.clone();
        let Some(callee) = callee else {
            continue;
        };
        let t0 = start.t;
        let later = || recs[i..].iter();
        let first = |host: &str, peer: &str| {
            later()
                .find(|r| r.host == host && at(r, Step::FirstFrame, peer))
                .map(|r| r.t)
        };
        let at_callee = first(&callee, &caller);
        let at_caller = first(&caller, &callee);
        let caller_key = later()
            .find(|r| r.host == caller && at(r, Step::CallerHasKey, &callee))
            .map(|r| r.t);
        let pre_call = if m.paper_end_is_caller_key {
            caller_key
        } else {
            at_callee
        }
        .map(|t| ms(t - t0));
        let both = match (at_callee, at_caller) {
            (Some(a), Some(b)) => Some(ms(a.max(b) - t0)),
            _ => None,
        };
        // Handover: each move of either end during the call.
        let mut mid = Vec::new();
        for (j, mv) in recs
            .iter()
            .enumerate()
            .skip(i)
            .filter(|(_, r)| r.what == Marked::Moved && (r.host == caller || r.host == callee))
        {
            let mover = &mv.host;
            let peer = if *mover == caller { &callee } else { &caller };
            let Some(ack) = recs[j..]
                .iter()
                .find(|r| &r.host == mover && r.what == Marked::Address)
            else {
                continue;
            };
            let accepted = recs[j..]
                .iter()
                .find(|r| &r.host == peer && r.t >= ack.t && at(r, Step::MovedAccepted, mover));
            let mut h = json!({ "moved": mover, "address_at_ms": ms(ack.t), "mid_call_ms": accepted.map(|a| ms(a.t - ack.t)) });
            // A kernel host: when its DHCP ACK went in, and what its DHCP client took until
            // the daemon had the address (not part of the scheme's mid-call time).
            if let Some(lease) = recs[j..]
                .iter()
                .take_while(|r| r.t <= ack.t)
                .find(|r| &r.host == mover && r.what == Marked::LeaseAcked)
                && let Some(o) = h.as_object_mut()
            {
                o.insert("lease_acked_at_ms".into(), json!(ms(lease.t)));
                o.insert("dhcp_client_ms".into(), json!(ms(ack.t - lease.t)));
                o.insert(
                    "mid_call_from_lease_ms".into(),
                    json!(accepted.map(|a| ms(a.t - lease.t))),
                );
            }
            mid.push(h);
        }
        // Key renewals of this call: each end's renewals name the other end as peer (an EN in
        // two calls renews both, and each renewal belongs to one call).
        let mut rekeys = Vec::new();
        for (j, rk) in recs.iter().enumerate().skip(i).filter(|(_, r)| {
            (r.host == caller && at(r, Step::RekeySent, &callee))
                || (r.host == callee && at(r, Step::RekeySent, &caller))
        }) {
            let peer = if rk.host == caller { &callee } else { &caller };
            // Both ends hold the new key: the initiator's own event naming the peer, or the
            // peer's event naming the initiator.
            let (who, about) = if m.rekey_done_own_side {
                (&rk.host, peer)
            } else {
                (peer, &rk.host)
            };
            let acc = recs[j..]
                .iter()
                .find(|r| &r.host == who && at(r, Step::RekeyDone, about));
            rekeys.push(json!({ "by": rk.host, "sent_at_ms": ms(rk.t), "rekey_ms": acc.map(|a| ms(a.t - rk.t)) }));
        }
        let mut audio = Map::new();
        for (from, to) in [(&caller, &callee), (&callee, &caller)] {
            audio.insert(format!("{from}->{to}"), direction(topo, net, from, to));
        }
        calls.push(json!({
            "caller": caller,
            "callee": callee,
            "started_at_ms": ms(t0),
            "caller_ssrc": ssrc,
            "pre_call_ms": pre_call,
            "caller_has_key_ms": caller_key.map(|t| ms(t - t0)),
            "first_audio_both_ways_ms": both,
            "handovers": mid,
            "rekeys": rekeys,
            "audio": audio,
        }));
    }
    let first = calls.first().cloned().unwrap_or(Value::Null);
    json!({
        "pre_call_ms": first.get("pre_call_ms").cloned().unwrap_or(Value::Null),
        "pre_call_end": if m.paper_end_is_caller_key { "caller holds the session key (step 11)" } else { "callee decrypts the caller's first frame (step g)" },
        "caller_has_key_ms": first.get("caller_has_key_ms").cloned().unwrap_or(Value::Null),
        "mid_call_ms": first.get("handovers").and_then(|h| h.get(0)).and_then(|h| h.get("mid_call_ms")).cloned().unwrap_or(Value::Null),
        "rekey_ms": first.get("rekeys").and_then(|h| h.get(0)).and_then(|h| h.get("rekey_ms")).cloned().unwrap_or(Value::Null),
        "first_audio_both_ways_ms": first.get("first_audio_both_ways_ms").cloned().unwrap_or(Value::Null),
        "dh_in_virtual_time_ms": 0.0,
        "calls": calls,
    })
}

/// Frames checked for the list of missing ones (one hour of audio).
const MAX_MISSING_LISTED: u64 = 180_000;

/// Timeline bins kept (one hour at 100 ms).
const MAX_TIMELINE_BINS: usize = 36_000;

/// Audio statistics of one direction, from the receiving EN's call state.
fn direction(topo: &Topology, net: &RunView<'_>, from: &str, to: &str) -> Value {
    let hash = |n: &str| crate::apps::wallet_of(topo, n).hash_addr();
    let (Some(fi), Some(ti)) = (topo.node_index(from), topo.node_index(to)) else {
        return Value::Null;
    };
    let (sender_calls, receiver_calls) = (calls_of(&net.nodes[fi]), calls_of(&net.nodes[ti]));
    let Some(tx) = sender_calls
        .iter()
        .find(|c| c.peer == hash(to))
        .map(|c| c.media)
    else {
        return Value::Null;
    };
    let Some(rx) = receiver_calls
        .iter()
        .find(|c| c.peer == hash(from))
        .map(|c| c.media)
    else {
        return Value::Null;
    };
    let s = rx.rx_stats.summary();
    let first_index = u64::from(tx.ssrc() >> 16);
    let mut delays = Vec::new();
    if let Some(start) = tx.media_start {
        for &(index, arrival) in &rx.rx_log {
            let frame = index.saturating_sub(first_index);
            let sent = start + FRAME_PERIOD * u32::try_from(frame).unwrap_or(u32::MAX);
            delays.push(arrival.saturating_sub(sent).as_secs_f64() * 1e3);
        }
    }
    let mut longest_gap = 0.0f64;
    let mut gap_at = None;
    for w in rx.rx_log.windows(2) {
        let g = (w[1].1.saturating_sub(w[0].1)).as_secs_f64() * 1e3;
        if g > longest_gap {
            longest_gap = g;
            gap_at = Some(w[0].1.as_secs_f64() * 1e3);
        }
    }
    let (d50, d99) = quantile_pair(&delays, 0.5, 0.99);
    // When each frame that never arrived was due to be sent (handover-loss windows).
    let mut missing_sent_at_ms = Vec::new();
    if let Some(start) = tx.media_start {
        let got: std::collections::BTreeSet<u64> = rx.rx_log.iter().map(|r| r.0).collect();
        for frame in 0..tx.frames_sent.min(MAX_MISSING_LISTED) {
            if !got.contains(&(first_index + frame)) {
                let sent = start + FRAME_PERIOD * u32::try_from(frame).unwrap_or(u32::MAX);
                missing_sent_at_ms.push(ms(sent));
            }
        }
    }
    // Frames decrypted per 100 ms of run time (the call's timeline).
    let mut per_100ms: Vec<u32> = Vec::new();
    for &(_, arrival) in &rx.rx_log {
        let bin = usize::try_from(arrival.as_millis() / 100).unwrap_or(usize::MAX);
        if bin < MAX_TIMELINE_BINS {
            if per_100ms.len() <= bin {
                per_100ms.resize(bin + 1, 0);
            }
            per_100ms[bin] += 1;
        }
    }
    json!({
        "received_per_100ms": per_100ms,
        "missing_sent_at_ms": missing_sent_at_ms,
        "frames_sent": tx.frames_sent,
        "frames_unsent_no_address": tx.frames_unsent,
        "received": s.received,
        "lost": s.lost,
        "duplicates": s.duplicates,
        "jitter_ms": s.jitter_ms,
        "delay_ms_median": d50,
        "delay_ms_p99": d99,
        "longest_gap_ms": longest_gap,
        "longest_gap_starts_at_ms": gap_at,
        "refused": rx.media_refused.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<Map<String, Value>>(),
    })
}

fn quantile_pair(v: &[f64], a: f64, b: f64) -> (Option<f64>, Option<f64>) {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    (nearest_rank(&v, a), nearest_rank(&v, b))
}

/// Writes each received direction of each call as `calls/<from>-to-<to>.wav` (8 kHz mono,
/// silence where frames were lost). Returns the files written.
pub fn write_call_audio(
    topo: &Topology,
    net: &RunView<'_>,
    out_dir: &Path,
) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut written = Vec::new();
    // End nodes by hash address, derived once (a wallet costs a DH key generation).
    let mut names: Option<std::collections::HashMap<[u8; 32], &str>> = None;
    for node in net.nodes {
        for call in calls_of(node) {
            if call.media.recording.frames() == 0 {
                continue;
            }
            let names = names.get_or_insert_with(|| {
                let mut m = std::collections::HashMap::new();
                for n in topo.nodes.iter().filter(|n| n.end_node.is_some()) {
                    m.entry(crate::apps::wallet_of(topo, &n.name).hash_addr())
                        .or_insert(n.name.as_str());
                }
                m
            });
            let from = names
                .get(&call.peer)
                .map_or_else(|| "unknown".to_owned(), |n| (*n).to_owned());
            let dir = out_dir.join("calls");
            std::fs::create_dir_all(&dir)?;
            let path = dir.join(format!("{from}-to-{}.wav", node.name));
            binfm_roles::session::audio::write_wav(&path, &call.media.recording.samples())?;
            written.push(path);
        }
    }
    Ok(written)
}
