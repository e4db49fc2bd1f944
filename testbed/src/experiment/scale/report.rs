//! What a point reports: latency summaries, the SN's accounted and resident memory, and the
//! point's JSON object.

use super::{Harness, ScaleConfig, Wallets};
use crate::procstat::resident_bytes;
use binfm_stack::wire::toall::ToallTx;
use serde_json::{Value, json};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

/// Median and 99th percentile (nearest rank) of nanosecond samples, in `unit` nanoseconds.
fn summary(samples: &mut [u64], unit: f64) -> Value {
    if samples.is_empty() {
        return json!({ "median": null, "p99": null });
    }
    samples.sort_unstable();
    // Nanosecond counts are exact in an f64 (below 2^53), so the order is kept.
    let sorted: Vec<f64> = samples.iter().map(|&n| n as f64).collect();
    let rank = |p: f64| crate::results::nearest_rank(&sorted, p).map(|v| v / unit);
    json!({
        "median": rank(0.5),
        "p99": rank(0.99),
    })
}

/// The end of the measurement left out of `tx_fate`: three block intervals, at most half
/// the measurement.
pub(super) fn fate_tail(cfg: &ScaleConfig) -> Duration {
    (cfg.block_interval * 3).min(cfg.duration / 2)
}

/// In-memory size of a Tx (struct plus its heap-allocated Y).
fn tx_mem(tx: &ToallTx) -> u64 {
    (std::mem::size_of::<ToallTx>() + tx.out.y.capacity()) as u64
}

impl Harness<'_> {
    /// What became of the Txs sent during the measurement but before its last
    /// [`fate_tail`] (so each had time to reach a block): in a block, superseded (never in a
    /// block, but a later Tx of the same EN is), or still pending at the end.
    fn tx_fate(&self) -> Value {
        let Some(from) = self.measure_from else {
            return Value::Null;
        };
        let tail = fate_tail(self.cfg);
        let until = self
            .measure_until
            .checked_sub(tail)
            .unwrap_or(from)
            .max(from);
        let (mut sent, mut confirmed, mut superseded) = (0u64, 0u64, 0u64);
        for m in &self.members {
            for (i, (&at, &in_block)) in m.sent_at.iter().zip(&m.in_block).enumerate() {
                if at < from || at >= until {
                    continue;
                }
                sent += 1;
                if in_block {
                    confirmed += 1;
                } else if m.confirmed_seq > i as u64 + 1 {
                    superseded += 1;
                }
            }
        }
        json!({
            "window_s": until.saturating_sub(from).as_secs_f64(),
            "sent": sent,
            "confirmed": confirmed,
            "superseded": superseded,
            "pending": sent - confirmed - superseded,
        })
    }

    /// The SN's memory estimated from its own structures.
    fn accounted(&self) -> (u64, Value) {
        let chain = self.sn.chain();
        let (_, tip) = chain.tip();
        let mut blocks = 0u64;
        let mut largest = 0u64;
        let mut block_txs = 0u64;
        let mut wire = 0u64;
        let mut blocks_bytes = 0u64;
        let mut tst_tx_bytes = 0u64;
        for h in 0..=tip {
            let Some(block) = chain
                .store()
                .best_hash_at(h)
                .and_then(|hash| chain.block(&hash))
            else {
                continue;
            };
            blocks += 1;
            block_txs += block.txs.len() as u64;
            largest = largest.max(block.txs.len() as u64);
            wire += block.encoded_len() as u64;
            let txs: u64 = block.txs.iter().map(tx_mem).sum();
            // Block struct + its hash key, height and work in the store's map.
            blocks_bytes += std::mem::size_of_val(block) as u64 + 32 + 8 + 16 + txs;
            // The search table keeps a clone of every best-chain Tx (latest inline, older
            // ones on a per-address stack with their height).
            tst_tx_bytes += txs + 8 * block.txs.len() as u64;
        }
        let tst_entries = chain.store().search_table().len() as u64;
        // Per address: key, height, stack header.
        let tst_bytes = tst_tx_bytes + tst_entries * (32 + 8 + 24);
        let mut mempool_txs = 0u64;
        let mut mempool_bytes = 0u64;
        for m in &self.members {
            if let Some(tx) = chain.mempool().pending(&m.wallet.hash_addr()) {
                mempool_txs += 1;
                // Tx, owner key, arrival; arrival -> owner in the order map.
                mempool_bytes += tx_mem(tx) + 32 + 8 + 8 + 32;
            }
        }
        let total = blocks_bytes + tst_bytes + mempool_bytes;
        (
            total,
            json!({
                "blocks": blocks,
                "block_txs": block_txs,
                "largest_block_txs": largest,
                "block_wire_bytes": wire,
                "blocks_bytes": blocks_bytes,
                "tst_entries": tst_entries,
                "tst_bytes": tst_bytes,
                "mempool_txs": mempool_txs,
                "mempool_bytes": mempool_bytes,
                "side_or_orphan_blocks": (chain.store().len() as u64).saturating_sub(blocks)
                    + chain.store().orphan_count() as u64,
            }),
        )
    }
}

/// Runs point number `index` of a [`super::run_scale`] run (its wallets made for it alone);
/// `None` if stopped.
pub(super) fn run_point(
    cfg: &ScaleConfig,
    n: usize,
    index: usize,
    progress: &mut dyn FnMut(&str),
    stop: &AtomicBool,
) -> anyhow::Result<Option<Value>> {
    let point_seed = cfg.seed ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let wall = Instant::now();
    let rss_before = resident_bytes();
    progress(&format!("scale {n} ENs: making {n} wallets"));
    let Some(crowd) = Wallets::new(cfg.seed).into_first(n, progress, stop) else {
        return Ok(None);
    };
    run_crowd(cfg, crowd, point_seed, (wall, rss_before), progress, stop)
}

/// Runs one point of `n` ENs with `point_seed` (registration and move times, Query targets,
/// the SN's nonces), its wallets copied from `wallets` (made there first if missing; their
/// seed must be `cfg.seed`); `None` if stopped. The point's object is described in the
/// module documentation; `cfg.en_counts` is not used.
pub fn run_point_with(
    cfg: &ScaleConfig,
    n: usize,
    point_seed: u64,
    wallets: &mut Wallets,
    progress: &mut dyn FnMut(&str),
    stop: &AtomicBool,
) -> anyhow::Result<Option<Value>> {
    super::check(cfg)?;
    if wallets.seed() != cfg.seed {
        anyhow::bail!(
            "scale: wallets of seed {} for a run of seed {}",
            wallets.seed(),
            cfg.seed
        );
    }
    let wall = Instant::now();
    let rss_before = resident_bytes();
    if wallets.len() < n {
        progress(&format!("scale {n} ENs: making {n} wallets"));
    }
    let Some(crowd) = wallets.first(n, progress, stop) else {
        return Ok(None);
    };
    run_crowd(cfg, crowd, point_seed, (wall, rss_before), progress, stop)
}

/// Runs a point of these fresh wallets; `start` is when the point started (wall clock, RSS).
fn run_crowd(
    cfg: &ScaleConfig,
    crowd: Vec<binfm_roles::wallet::Wallet>,
    point_seed: u64,
    start: (Instant, Option<u64>),
    progress: &mut dyn FnMut(&str),
    stop: &AtomicBool,
) -> anyhow::Result<Option<Value>> {
    let (wall, rss_before) = start;
    let n = crowd.len();
    let mut h = Harness::new(cfg, crowd, point_seed)?;
    let rss_crowd = resident_bytes();
    if !h.run(progress, stop) {
        return Ok(None);
    }
    let rss_after = resident_bytes();
    let (accounted_bytes, accounted) = h.accounted();
    let (_, blocks) = h.sn.chain().tip();
    let warmup = h.measure_from.unwrap_or(h.now);
    let measured_s = cfg.duration.as_secs_f64();
    let delta = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) => json!(a.saturating_sub(b)),
        _ => Value::Null,
    };
    let point = json!({
        "ens": n,
        "warmup_s": warmup.as_secs_f64(),
        "txs_submitted": h.txs_submitted,
        "txs_accepted": h.txs_accepted,
        "txs_rejected": h.txs_rejected,
        "endpoint_corrections": h.endpoint_corrections,
        "txs_confirmed": h.txs_confirmed,
        "members_confirmed": h.confirmed_members.len(),
        "moves": h.moves,
        "moves_confirmed": h.moves_confirmed,
        "offered_tx_per_s": h.moves as f64 / measured_s,
        "confirmed_tx_per_s": h.measured_confirmed as f64 / measured_s,
        "confirm_delay_ms": summary(&mut h.confirm_delay_ns, 1e6),
        "tx_fate": h.tx_fate(),
        "measure_blocks": h.measure_blocks,
        "block_fill": if h.measure_blocks > 0 {
            json!(h.fill_sum / h.measure_blocks as f64)
        } else {
            Value::Null
        },
        "blocks": blocks,
        "mempool_at_end": h.sn.chain().mempool().len(),
        "mempool_evicted": h.sn.chain().mempool().evicted(),
        "queries": h.queries,
        "replies_found": h.replies_found,
        "replies_not_found": h.replies_not_found,
        "replies_outdated": h.replies_outdated,
        "replies_malformed": h.replies_malformed,
        "unrouted": h.unrouted,
        "query_rtt_ms": summary(&mut h.rtt_ns, 1e6),
        "sn_query_cpu_us": summary(&mut h.query_cpu_ns, 1e3),
        "query_latency_ms": summary(&mut h.latency_ns, 1e6),
        "sn_tx_cpu_us": summary(&mut h.tx_cpu_ns, 1e3),
        "sn_cpu_s": h.sn_cpu_total.as_secs_f64(),
        "sn_measure_cpu_s": h.sn_cpu_measure.as_secs_f64(),
        "sn_refused": h.sn.refused.iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "sn_accounted_bytes": accounted_bytes,
        "sn_accounted": accounted,
        "sn_resident_bytes": delta(rss_after, rss_before),
        "crowd_resident_bytes": delta(rss_crowd, rss_before),
        "process_resident_bytes": rss_after,
        "wall_s": wall.elapsed().as_secs_f64(),
    });
    Ok(Some(point))
}
