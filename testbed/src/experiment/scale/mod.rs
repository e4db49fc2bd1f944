//! The scale experiment (issue 6, beyond the paper): Query latency and SN memory as the
//! number of registered ENs grows (by default 10, 100, 1,000 and 10,000 ENs that move).
//!
//! # What runs
//!
//! A role-level harness in virtual time, without the smoltcp fabric (10,000 full hosts with
//! IP stacks and DHCP would not fit): one real [`SuperNode`] (the measured SN, no peers,
//! mining with the configured hash rate) and a *crowd* of N ENs. Each crowd member has a
//! real wallet ([`wallet_for`] of the run seed and the name `scale-en-<i>`) and a distinct
//! public source endpoint in 203.0.113.0/24 (spread over its 254 addresses; `crowd_addrs`
//! above 254 spreads it over that many addresses of 198.18.0.0/15); a prober sends
//! Queries from 198.51.100.50. Every datagram between the crowd and the SN takes exactly
//! `t_i` one way; nothing is lost.
//!
//! A point has two phases:
//! 1. **Warm-up**: every member registers (a signed ToALL Tx in a `TxSubmit`, sent from the
//!    endpoint the Tx names, so the SN never asks for an endpoint correction) at a uniformly
//!    random moment of the first `register_window`; the warm-up ends when every member has a
//!    confirmed Tx (the SN's chain confirms at most about 140 Txs per block: the 60 kB block
//!    limit over 417-byte Txs), so the measurement starts with N registered ENs.
//! 2. **Measurement** (`duration`): each member moves after exponentially distributed times
//!    of mean `move_interval` (a move = a new endpoint and a new Tx, seq + 1), and the prober
//!    sends Queries (Poisson, `query_rate` per second) for uniformly random members.
//!
//! # A point (one object of `points`)
//!
//! Counts (deterministic):
//! * `ens`; `warmup_s` (virtual time until every member had a confirmed Tx);
//! * `txs_submitted` (TxSubmits sent: first registrations + moves), `txs_accepted`,
//!   `txs_rejected`, `endpoint_corrections` (expected 0), `txs_confirmed` (Txs in best-chain
//!   blocks), `members_confirmed`, `moves`, `moves_confirmed`, `blocks` (tip height),
//!   `mempool_at_end`, `mempool_evicted`;
//! * `offered_tx_per_s` (moves per second of the measurement) and `confirmed_tx_per_s` (Txs
//!   sent during the measurement and confirmed, per second): when the first exceeds what one
//!   block per `block_interval` can carry, the chain is saturated;
//! * `confirm_delay_ms` {median, p99}: TxSubmit sent → block holding it, for Txs sent during
//!   the measurement and confirmed before its end (virtual);
//! * `tx_fate` {window_s, sent, confirmed, superseded, pending}: the Txs sent during the
//!   measurement but before its last three block intervals (at most half of it), each in a
//!   block, superseded (never in a block, but a later Tx of the same EN is: the mempool
//!   replaced it) or still pending at the end;
//! * `measure_blocks` (blocks mined during the measurement) and `block_fill`: the mean over
//!   them of the Txs a block took over what it could hold (the block limits over its largest
//!   Tx); near 1 when every block is full, i.e. the chain is behind;
//! * `sn_refused` {reason: count}: what the SN refused (e.g. `tx_rate_limited`: the per-source
//!   Tx limit, which applies per crowd address);
//! * `queries`, `replies_found`, `replies_not_found`, `replies_outdated` (found, but the Tx
//!   names an endpoint the member has left: its newer Tx is not in a block yet),
//!   `replies_malformed`, `unrouted` (datagrams with no addressee: expected 0);
//! * `query_rtt_ms` {median, p99}: virtual round trip of each Query (Reply arrival − Query
//!   sending). It is exactly 2·T_I and nothing else: virtual time has no processing model,
//!   the SN answers at the instant the Query arrives;
//! * `sn_accounted_bytes` and `sn_accounted` {blocks, block_txs, block_wire_bytes,
//!   largest_block_txs, blocks_bytes, tst_entries, tst_bytes, mempool_txs, mempool_bytes,
//!   side_or_orphan_blocks}: the SN's memory estimated from its own structures (best-chain
//!   blocks with their Txs, the Tx Search Table's copy of every best-chain Tx plus one slot
//!   per address, the mempool's pending Txs; struct sizes plus each Tx's heap-allocated Y,
//!   hash-map slack not included), independent of the allocator.
//!
//! Wall-clock figures ([`WALL_CLOCK_KEYS`]):
//! * `sn_query_cpu_us` {median, p99}: the wall time the SN spent in `handle_datagram` for each
//!   Query (parse, Tx Search Table lookup, Reply encoding, its event), measured with
//!   [`Instant`];
//! * `query_latency_ms` {median, p99}: per Query, virtual RTT + measured SN handling time:
//!   the SN modelled as a single server whose service time is what we measured. Waiting
//!   behind other work of the SN (Txs, mining) is not modelled;
//! * `sn_tx_cpu_us` {median, p99}: SN time per TxSubmit, which includes verifying the Tx and
//!   re-solving the block template (real hashing) that the SN does on every new Tx;
//!   `sn_cpu_s`: all the SN's time in the point (Queries, Txs, mining timers);
//!   `sn_measure_cpu_s`: the same during the measurement only;
//! * `sn_resident_bytes`: process RSS (`VmRSS`) right after the point finishes minus the RSS
//!   before the SN and the crowd were built. It includes the crowd's own state (wallets,
//!   endpoint map: `crowd_resident_bytes` is the RSS growth while building the wallets), and
//!   the allocator may reuse memory freed by an earlier point, so it can under-count;
//!   `process_resident_bytes` is the RSS itself;
//! * `wall_s`: wall time of the point (wallets, warm-up and measurement).
//!
//! Everything is deterministic for a seed except the keys listed in [`WALL_CLOCK_KEYS`]
//! (CPU times, resident memory, wall time); [`strip_wall_clock`] removes them so two runs
//! compare byte for byte.
//!
//! [`wallet_for`]: crate::apps::wallet_for
//! [`Instant`]: std::time::Instant

use binfm_roles::Time;
use binfm_roles::sn::SuperNode;
use binfm_roles::wallet::Wallet;
use binfm_stack::wire::toall::HashAddr;
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::time::Duration;

mod crowd;
mod harness;
mod report;

pub use crate::procstat::resident_bytes;
pub use crowd::{DEFAULT_CROWD_ADDRS, MAX_CROWD_ADDRS};
use report::run_point;
pub use report::run_point_with;

/// Settings of the scale experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct ScaleConfig {
    /// Crowd sizes, one point each (default 10, 100, 1,000, 10,000).
    pub en_counts: Vec<usize>,
    /// Run seed: wallets, registration and move times, Query targets, mining nonces.
    pub seed: u64,
    /// Virtual time of the measurement phase of each point, after the warm-up (default 60 s).
    pub duration: Duration,
    /// Mean time between two moves of one EN (exponential; default 30 s).
    pub move_interval: Duration,
    /// Queries per second from the prober (Poisson; default 50).
    pub query_rate: f64,
    /// One-way EN <-> SN delay, T_I (default 40 ms).
    pub t_i: Duration,
    /// Mean block interval the chain aims at (default 1 s).
    pub block_interval: Duration,
    /// Largest block in bytes (default 60,000, the topology default).
    pub block_bytes: usize,
    /// Most Txs per block (default 500, the topology default).
    pub block_txs: usize,
    /// The SN's hash rate in hashes per second of virtual time (default 2,000, the topology
    /// default); it is also the network hash rate (one SN).
    pub hash_rate: f64,
    /// First registrations are spread uniformly over this window (default 5 s).
    pub register_window: Duration,
    /// Longest warm-up (virtual) before the measurement starts anyway (default 600 s).
    pub max_warmup: Duration,
    /// Source addresses the crowd is spread over (default 254, in 203.0.113.0/24; above
    /// that in 198.18.0.0/15, at most [`MAX_CROWD_ADDRS`]). The SN's per-source Tx limit
    /// (10/s, bursts of 20) applies per address.
    pub crowd_addrs: u32,
}

impl Default for ScaleConfig {
    fn default() -> Self {
        ScaleConfig {
            en_counts: vec![10, 100, 1000, 10_000],
            seed: 1,
            duration: Duration::from_secs(60),
            move_interval: Duration::from_secs(30),
            query_rate: 50.0,
            t_i: Duration::from_millis(40),
            block_interval: Duration::from_secs(1),
            block_bytes: crate::topology::DEFAULT_BLOCK_BYTES,
            block_txs: crate::topology::DEFAULT_BLOCK_TXS,
            hash_rate: crate::topology::DEFAULT_HASH_RATE,
            register_window: Duration::from_secs(5),
            max_warmup: Duration::from_secs(600),
            crowd_addrs: DEFAULT_CROWD_ADDRS,
        }
    }
}

/// Keys of a point whose values come from the wall clock or the allocator (CPU times,
/// resident memory, wall time); everything else is deterministic for a seed.
pub const WALL_CLOCK_KEYS: &[&str] = &[
    "sn_query_cpu_us",
    "sn_tx_cpu_us",
    "sn_cpu_s",
    "sn_measure_cpu_s",
    "query_latency_ms",
    "sn_resident_bytes",
    "crowd_resident_bytes",
    "process_resident_bytes",
    "wall_s",
];

/// Removes the [`WALL_CLOCK_KEYS`] from every point of a [`run_scale`] result, leaving the
/// part that is identical for the same seed.
pub fn strip_wall_clock(result: &mut Value) {
    if let Some(points) = result.get_mut("points").and_then(Value::as_array_mut) {
        points.iter_mut().for_each(strip_point);
    }
}

/// Removes the [`WALL_CLOCK_KEYS`] from one point.
pub fn strip_point(point: &mut Value) {
    if let Some(obj) = point.as_object_mut() {
        for k in WALL_CLOCK_KEYS {
            obj.remove(*k);
        }
    }
}

/// What happens at a scheduled moment.
#[derive(Debug)]
enum Action {
    /// A datagram reaches the SN; `query` is the request id of a prober Query.
    ToSn {
        from: SocketAddrV4,
        payload: Vec<u8>,
        query: Option<u32>,
    },
    /// A datagram from the SN reaches crowd member `member`.
    ToMember { member: u32, payload: Vec<u8> },
    /// A datagram from the SN reaches the prober.
    ToProber { payload: Vec<u8> },
    /// Member registers (its first Tx, or a move: new endpoint, new Tx).
    Register { member: u32 },
    /// The prober sends its next Query.
    Probe,
}

type Scheduled = crate::timed::Timed<Action>;

/// One EN of the crowd.
#[derive(Debug)]
struct Member {
    wallet: Wallet,
    /// Current public endpoint (the NAT endpoint of its latest Tx, and its source address).
    endpoint: SocketAddrV4,
    /// When each Tx was sent, by seq - 1.
    sent_at: Vec<Time>,
    /// Whether each Tx (by seq - 1) reached a best-chain block.
    in_block: Vec<bool>,
    /// Latest seq in a block of the best chain (0: none yet).
    confirmed_seq: u64,
}

#[derive(Debug)]
struct PendingQuery {
    sent: Time,
    member: u32,
    cpu_ns: u64,
}

/// The virtual-time harness of one point.
struct Harness<'a> {
    cfg: &'a ScaleConfig,
    n: usize,
    sn: SuperNode,
    members: Vec<Member>,
    by_endpoint: HashMap<SocketAddrV4, u32>,
    by_owner: HashMap<HashAddr, u32>,
    heap: BinaryHeap<Scheduled>,
    order: u64,
    now: Time,
    rng: ChaCha8Rng,
    next_endpoint: u64,
    /// Members with a confirmed Tx, in confirmation order (the prober's directory).
    confirmed_members: Vec<u32>,
    seen_height: u64,
    /// Start of the measurement phase (None during the warm-up).
    measure_from: Option<Time>,
    measure_until: Time,
    next_request: u32,
    pending: HashMap<u32, PendingQuery>,
    // Counters.
    txs_submitted: u64,
    txs_accepted: u64,
    txs_rejected: u64,
    endpoint_corrections: u64,
    txs_confirmed: u64,
    moves: u64,
    moves_confirmed: u64,
    measured_confirmed: u64,
    queries: u64,
    replies_found: u64,
    replies_not_found: u64,
    replies_outdated: u64,
    replies_malformed: u64,
    unrouted: u64,
    // Samples (ns).
    rtt_ns: Vec<u64>,
    query_cpu_ns: Vec<u64>,
    latency_ns: Vec<u64>,
    tx_cpu_ns: Vec<u64>,
    confirm_delay_ns: Vec<u64>,
    sn_cpu_total: Duration,
    /// SN time during the measurement phase only.
    sn_cpu_measure: Duration,
    /// Blocks mined during the measurement, and the sum of their fill (0..1).
    measure_blocks: u64,
    fill_sum: f64,
}

/// Fresh wallets of one seed (`wallet_for(seed, "scale-en-<i>")`), made once and copied into
/// every point that needs them: a wallet costs a DH key generation (about 0.75 ms), so
/// 100,000 take over a minute of CPU to make (on up to [`WALLET_THREADS`] threads) but a
/// fraction of a second to copy. Points of one seed share the first N of the same list, so a
/// point's crowd is the same as with wallets made for it alone.
#[derive(Debug)]
pub struct Wallets {
    seed: u64,
    made: Vec<Wallet>,
    /// Threads that make them: the cores there are, at most [`WALLET_THREADS`].
    threads: usize,
}

impl Wallets {
    /// No wallets made yet.
    pub fn new(seed: u64) -> Self {
        Wallets {
            seed,
            made: Vec::new(),
            threads: std::thread::available_parallelism()
                .map_or(1, usize::from)
                .clamp(1, WALLET_THREADS),
        }
    }

    /// The seed the wallets are made from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Wallets made so far.
    pub fn len(&self) -> usize {
        self.made.len()
    }

    /// Whether none was made yet.
    pub fn is_empty(&self) -> bool {
        self.made.is_empty()
    }

    /// Copies of the first `n` wallets, making the missing ones (a progress line every
    /// 10,000); `None` if `stop` was set while making them.
    pub(crate) fn first(
        &mut self,
        n: usize,
        progress: &mut dyn FnMut(&str),
        stop: &AtomicBool,
    ) -> Option<Vec<Wallet>> {
        self.make(n, progress, stop)?;
        Some(self.made[..n].to_vec())
    }

    /// The first `n` wallets without a copy, for a single point.
    pub(crate) fn into_first(
        mut self,
        n: usize,
        progress: &mut dyn FnMut(&str),
        stop: &AtomicBool,
    ) -> Option<Vec<Wallet>> {
        self.make(n, progress, stop)?;
        self.made.truncate(n);
        Some(self.made)
    }

    /// Makes the missing wallets up to `n`, on up to [`WALLET_THREADS`] threads (each wallet
    /// is a function of the seed and its index alone, so the list is the same on any number
    /// of threads), in rounds of [`WALLET_ROUND`] per thread.
    fn make(&mut self, n: usize, progress: &mut dyn FnMut(&str), stop: &AtomicBool) -> Option<()> {
        self.made.reserve(n.saturating_sub(self.made.len()));
        let threads = self.threads;
        let seed = self.seed;
        let make_range = |range: std::ops::Range<usize>| -> Vec<Wallet> {
            range
                .map(|i| crate::apps::wallet_for(seed, &format!("scale-en-{i}")))
                .collect()
        };
        let mut next_progress = (self.made.len() / 10_000 + 1) * 10_000;
        while self.made.len() < n {
            if stop.load(AtomicOrdering::Relaxed) {
                return None;
            }
            let from = self.made.len();
            let to = n.min(from + threads * WALLET_ROUND);
            let chunk = (to - from).div_ceil(threads);
            let ranges: Vec<_> = (from..to)
                .step_by(chunk)
                .map(|a| a..to.min(a + chunk))
                .collect();
            let parts: Vec<Vec<Wallet>> = std::thread::scope(|scope| {
                let handles: Vec<_> = ranges
                    .into_iter()
                    .map(|r| scope.spawn(move || make_range(r)))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                    .collect()
            });
            for part in parts {
                self.made.extend(part);
            }
            if self.made.len() >= next_progress && self.made.len() < n {
                progress(&format!("scale: {}/{n} wallets made", self.made.len()));
                next_progress = (self.made.len() / 10_000 + 1) * 10_000;
            }
        }
        Some(())
    }
}

/// Most threads that make wallets (a DH key generation each).
const WALLET_THREADS: usize = 4;

/// Wallets a thread makes between two checks of the stop flag (about 1 s).
const WALLET_ROUND: usize = 1000;

/// Refuses settings a point cannot run with.
fn check(cfg: &ScaleConfig) -> anyhow::Result<()> {
    if !(cfg.query_rate.is_finite() && cfg.query_rate >= 0.0) {
        anyhow::bail!("scale: query_rate must be a non-negative number of Queries per second");
    }
    if !(cfg.hash_rate.is_finite() && cfg.hash_rate > 0.0) {
        anyhow::bail!("scale: hash_rate must be a positive number of hashes per second");
    }
    if cfg.move_interval.is_zero() {
        anyhow::bail!("scale: move_interval must be above zero");
    }
    if !(1..=MAX_CROWD_ADDRS).contains(&cfg.crowd_addrs) {
        anyhow::bail!("scale: crowd_addrs must be 1 to {MAX_CROWD_ADDRS}");
    }
    Ok(())
}

/// Runs the scale experiment: one point per entry of `cfg.en_counts`, in order. `progress`
/// gets a line at each point and about every virtual second; when `stop` is set the run
/// returns early with the points finished so far (`"stopped": true`).
///
/// The result is `{"experiment": "scale", "config": {..}, "stopped": bool, "points": [..]}`;
/// see the module documentation for what a point holds.
pub fn run_scale(
    cfg: &ScaleConfig,
    progress: &mut dyn FnMut(&str),
    stop: &AtomicBool,
) -> anyhow::Result<Value> {
    check(cfg)?;
    let mut points = Vec::new();
    let mut stopped = false;
    for (index, &n) in cfg.en_counts.iter().enumerate() {
        if stop.load(AtomicOrdering::Relaxed) {
            stopped = true;
            break;
        }
        progress(&format!(
            "scale point {}/{}: {n} ENs",
            index + 1,
            cfg.en_counts.len()
        ));
        match run_point(cfg, n, index, progress, stop)? {
            Some(p) => {
                progress(&format!(
                    "scale {n} ENs done: Query latency median {} ms, p99 {} ms",
                    p["query_latency_ms"]["median"], p["query_latency_ms"]["p99"]
                ));
                points.push(p);
            }
            None => {
                stopped = true;
                break;
            }
        }
    }
    Ok(json!({
        "experiment": "scale",
        "config": {
            "en_counts": cfg.en_counts,
            "seed": cfg.seed,
            "duration_s": cfg.duration.as_secs_f64(),
            "move_interval_s": cfg.move_interval.as_secs_f64(),
            "query_rate": cfg.query_rate,
            "t_i_ms": cfg.t_i.as_secs_f64() * 1000.0,
            "block_interval_ms": cfg.block_interval.as_secs_f64() * 1000.0,
            "hash_rate": cfg.hash_rate,
            "register_window_s": cfg.register_window.as_secs_f64(),
            "max_warmup_s": cfg.max_warmup.as_secs_f64(),
            "crowd_addrs": cfg.crowd_addrs,
        },
        "stopped": stopped,
        "points": points,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Wallets made in rounds on several threads are the list made one by one (3 threads
    /// whatever the machine has).
    #[test]
    fn wallets_made_on_threads_are_the_sequential_list() {
        let stop = AtomicBool::new(false);
        let mut w = Wallets::new(7);
        w.threads = 3;
        let n = 2 * WALLET_ROUND + 3;
        let made = w
            .first(n, &mut |_| {}, &stop)
            .unwrap_or_else(|| panic!("stopped"));
        assert_eq!(made.len(), n);
        for i in [0, 1, WALLET_ROUND - 1, WALLET_ROUND, n - 1] {
            let one = crate::apps::wallet_for(7, &format!("scale-en-{i}"));
            assert_eq!(made[i].hash_addr(), one.hash_addr(), "wallet {i}");
            assert_eq!(made[i].dh().public_bytes(), one.dh().public_bytes());
        }
    }
}
