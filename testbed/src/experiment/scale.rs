//! The scale experiment (issue 6, beyond the paper): Query latency and SN memory as the
//! number of registered ENs grows (by default 10, 100, 1,000 and 10,000 ENs that move).
//!
//! # What runs
//!
//! A role-level harness in virtual time, without the smoltcp fabric (10,000 full hosts with
//! IP stacks and DHCP would not fit): one real [`SuperNode`] (the measured SN, no peers,
//! mining with the configured hash rate) and a *crowd* of N ENs. Each crowd member has a
//! real wallet ([`wallet_for`] of the run seed and the name `scale-en-<i>`) and a distinct
//! public source endpoint in 203.0.113.0/24 (spread over its 254 addresses); a prober sends
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
//! * `queries`, `replies_found`, `replies_not_found`, `replies_outdated` (found, but the Tx
//!   names an endpoint the member has left: its newer Tx is not in a block yet),
//!   `replies_malformed`, `unrouted` (datagrams with no addressee: expected 0);
//! * `query_rtt_ms` {median, p99}: virtual round trip of each Query (Reply arrival − Query
//!   sending). It is exactly 2·T_I and nothing else: virtual time has no processing model,
//!   the SN answers at the instant the Query arrives;
//! * `sn_accounted_bytes` and `sn_accounted` {blocks, block_txs, block_wire_bytes,
//!   blocks_bytes, tst_entries, tst_bytes, mempool_txs, mempool_bytes,
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

use crate::apps::wallet_for;
use binfm_roles::Time;
use binfm_roles::chain::ChainConfig;
use binfm_roles::sn::{SnConfig, SuperNode};
use binfm_roles::wallet::Wallet;
use binfm_stack::wire::binfm::{Message, TxStatus};
use binfm_stack::wire::ports;
use binfm_stack::wire::toall::{HashAddr, ToallTx};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use std::collections::{BinaryHeap, HashMap};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::time::{Duration, Instant};

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
    /// The SN's hash rate in hashes per second of virtual time (default 2,000, the topology
    /// default); it is also the network hash rate (one SN).
    pub hash_rate: f64,
    /// First registrations are spread uniformly over this window (default 5 s).
    pub register_window: Duration,
    /// Longest warm-up (virtual) before the measurement starts anyway (default 600 s).
    pub max_warmup: Duration,
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
            hash_rate: crate::topology::DEFAULT_HASH_RATE,
            register_window: Duration::from_secs(5),
            max_warmup: Duration::from_secs(600),
        }
    }
}

/// Keys of a point whose values come from the wall clock or the allocator (CPU times,
/// resident memory, wall time); everything else is deterministic for a seed.
pub const WALL_CLOCK_KEYS: &[&str] = &[
    "sn_query_cpu_us",
    "sn_tx_cpu_us",
    "sn_cpu_s",
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
        for p in points {
            if let Some(obj) = p.as_object_mut() {
                for k in WALL_CLOCK_KEYS {
                    obj.remove(*k);
                }
            }
        }
    }
}

/// The SN's address.
const SN_ADDR: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 11), ports::SN);
/// The prober's address.
const PROBER_ADDR: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 50), ports::EN);
/// Ports used per crowd address (1024..61024).
const PORTS_PER_ADDR: u64 = 60_000;
/// Crowd addresses: 203.0.113.1 ..= 203.0.113.254.
const CROWD_ADDRS: u64 = 254;

/// Public endpoint number `k` of the crowd (wraps after 15.24 million endpoints). Endpoints
/// go round the 254 addresses first, so each address carries about N / 254 ENs: the SN's
/// per-source Tx limit (10/s, `roles::sn`) applies per address, as it would to the ENs
/// behind one NAT.
fn crowd_endpoint(k: u64) -> SocketAddrV4 {
    let k = k % (PORTS_PER_ADDR * CROWD_ADDRS);
    let host = u8::try_from(1 + k % CROWD_ADDRS).unwrap_or(254);
    let port = u16::try_from(1024 + k / CROWD_ADDRS).unwrap_or(u16::MAX);
    SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, host), port)
}

/// Private address behind the (implicit) NAT for endpoint `k`: somewhere in 10.0.0.0/8.
fn crowd_private(k: u64) -> SocketAddrV4 {
    let low = u32::try_from(k & 0x00ff_ffff).unwrap_or(0);
    SocketAddrV4::new(Ipv4Addr::from(0x0a00_0000 | low), ports::EN)
}

/// `t + d`, saturating at [`Time::MAX`].
fn later(t: Time, d: Duration) -> Time {
    t.checked_add(d).unwrap_or(Time::MAX)
}

fn millis(t: Time) -> u64 {
    u64::try_from(t.as_millis()).unwrap_or(u64::MAX)
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Exponentially distributed duration of mean `mean`.
fn exp_delay(rng: &mut ChaCha8Rng, mean: Duration) -> Duration {
    let u: f64 = rng.random();
    // 1 - u is in (0, 1]: ln is finite.
    let x = -(1.0 - u).ln() * mean.as_secs_f64();
    Duration::try_from_secs_f64(x).unwrap_or(Duration::MAX)
}

/// The process's resident set size (`VmRSS` of /proc/self/status), if the platform has it.
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    kb.checked_mul(1024)
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
    /// Latest seq in a block of the best chain (0: none yet).
    confirmed_seq: u64,
}

#[derive(Debug)]
struct PendingQuery {
    sent: Time,
    member: u32,
    cpu_ns: u64,
}

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

/// In-memory size of a Tx (struct plus its heap-allocated Y).
fn tx_mem(tx: &ToallTx) -> u64 {
    (std::mem::size_of::<ToallTx>() + tx.out.y.capacity()) as u64
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
}

impl<'a> Harness<'a> {
    fn new(cfg: &'a ScaleConfig, n: usize, point_seed: u64) -> anyhow::Result<Self> {
        let members = (0..n)
            .map(|i| Member {
                wallet: wallet_for(cfg.seed, &format!("scale-en-{i}")),
                endpoint: crowd_endpoint(0),
                sent_at: Vec::new(),
                confirmed_seq: 0,
            })
            .collect::<Vec<_>>();
        let by_owner = members
            .iter()
            .enumerate()
            .map(|(i, m)| (m.wallet.hash_addr(), i as u32))
            .collect();
        let chain = ChainConfig {
            network_hash_rate: cfg.hash_rate,
            block_interval_ms: u64::try_from(cfg.block_interval.as_millis())
                .unwrap_or(1000)
                .max(1),
            ..ChainConfig::default()
        };
        // The SN as a topology builds it (default mempool, 500 Txs per block at most).
        let sn_cfg = SnConfig::new(1, vec![], cfg.hash_rate, chain);
        let sn = SuperNode::new(sn_cfg, point_seed)
            .map_err(|e| anyhow::anyhow!("scale: super node config: {e}"))?;
        Ok(Harness {
            cfg,
            n,
            sn,
            members,
            by_endpoint: HashMap::new(),
            by_owner,
            heap: BinaryHeap::new(),
            order: 0,
            now: Time::ZERO,
            rng: ChaCha8Rng::seed_from_u64(point_seed),
            next_endpoint: 0,
            confirmed_members: Vec::new(),
            seen_height: 0,
            measure_from: None,
            measure_until: Time::MAX,
            next_request: 1,
            pending: HashMap::new(),
            txs_submitted: 0,
            txs_accepted: 0,
            txs_rejected: 0,
            endpoint_corrections: 0,
            txs_confirmed: 0,
            moves: 0,
            moves_confirmed: 0,
            measured_confirmed: 0,
            queries: 0,
            replies_found: 0,
            replies_not_found: 0,
            replies_outdated: 0,
            replies_malformed: 0,
            unrouted: 0,
            rtt_ns: Vec::new(),
            query_cpu_ns: Vec::new(),
            latency_ns: Vec::new(),
            tx_cpu_ns: Vec::new(),
            confirm_delay_ns: Vec::new(),
            sn_cpu_total: Duration::ZERO,
        })
    }

    fn schedule(&mut self, at: Time, action: Action) {
        self.order += 1;
        self.heap.push(Scheduled {
            at,
            order: self.order,
            item: action,
        });
    }

    /// Sends the SN's output on its way and drops its events and block-log queue.
    fn drain_sn(&mut self) {
        while let Some(t) = self.sn.poll_transmit() {
            let at = later(self.now, self.cfg.t_i);
            if t.dst == PROBER_ADDR {
                self.schedule(at, Action::ToProber { payload: t.payload });
            } else if let Some(&member) = self.by_endpoint.get(&t.dst) {
                self.schedule(
                    at,
                    Action::ToMember {
                        member,
                        payload: t.payload,
                    },
                );
            } else {
                self.unrouted += 1;
            }
        }
        while self.sn.poll_event().is_some() {}
        while self.sn.poll_persist().is_some() {}
        self.note_blocks();
    }

    /// Records the Txs of best-chain blocks above the last height seen.
    fn note_blocks(&mut self) {
        let (_, tip) = self.sn.chain().tip();
        while self.seen_height < tip {
            self.seen_height += 1;
            let Some(hash) = self.sn.chain().store().best_hash_at(self.seen_height) else {
                continue;
            };
            let Some(block) = self.sn.chain().block(&hash) else {
                continue;
            };
            let owners: Vec<(HashAddr, u64)> = block
                .txs
                .iter()
                .map(|tx| (tx.out.hash_addr, tx.out.seq))
                .collect();
            for (owner, seq) in owners {
                self.txs_confirmed += 1;
                let Some(&i) = self.by_owner.get(&owner) else {
                    continue;
                };
                let Some(m) = self.members.get_mut(i as usize) else {
                    continue;
                };
                if m.confirmed_seq == 0 {
                    self.confirmed_members.push(i);
                }
                m.confirmed_seq = m.confirmed_seq.max(seq);
                let sent = usize::try_from(seq)
                    .ok()
                    .and_then(|s| s.checked_sub(1))
                    .and_then(|s| m.sent_at.get(s).copied());
                if let (Some(sent), Some(from)) = (sent, self.measure_from)
                    && sent >= from
                {
                    self.measured_confirmed += 1;
                    if seq > 1 {
                        self.moves_confirmed += 1;
                    }
                    self.confirm_delay_ns
                        .push(nanos(self.now.saturating_sub(sent)));
                }
            }
        }
    }

    /// Member `i` registers from a fresh endpoint (its first Tx or a move).
    fn register(&mut self, i: u32) {
        let k = self.next_endpoint;
        self.next_endpoint += 1;
        let endpoint = crowd_endpoint(k);
        self.by_endpoint.insert(endpoint, i);
        let now = self.now;
        let Some(m) = self.members.get_mut(i as usize) else {
            return;
        };
        m.endpoint = endpoint;
        m.wallet.set_addresses(crowd_private(k), endpoint);
        let tx = m.wallet.next_tx(millis(now));
        m.sent_at.push(now);
        self.txs_submitted += 1;
        let payload = Message::TxSubmit { tx }.to_bytes();
        self.schedule(
            later(now, self.cfg.t_i),
            Action::ToSn {
                from: endpoint,
                payload,
                query: None,
            },
        );
    }

    fn on_member_datagram(&mut self, i: u32, payload: &[u8]) {
        let Ok(Message::TxAck {
            status, observed, ..
        }) = Message::parse(payload)
        else {
            self.unrouted += 1;
            return;
        };
        match status {
            TxStatus::Accepted | TxStatus::Duplicate => self.txs_accepted += 1,
            TxStatus::EndpointMismatch => {
                // Never expected (each Tx names the endpoint it is sent from); re-register
                // from the current endpoint if the SN saw that one, as an EN would after
                // learning its mapping.
                self.endpoint_corrections += 1;
                if self
                    .members
                    .get(i as usize)
                    .is_some_and(|m| m.endpoint == observed)
                {
                    self.register(i);
                }
            }
            TxStatus::Rejected(_) => self.txs_rejected += 1,
        }
    }

    fn on_reply(&mut self, payload: &[u8]) {
        let Ok(Message::Reply {
            request_id,
            found,
            tx,
            ..
        }) = Message::parse(payload)
        else {
            self.replies_malformed += 1;
            return;
        };
        let Some(q) = self.pending.remove(&request_id) else {
            self.replies_malformed += 1;
            return;
        };
        let rtt = nanos(self.now.saturating_sub(q.sent));
        self.rtt_ns.push(rtt);
        self.query_cpu_ns.push(q.cpu_ns);
        self.latency_ns.push(rtt.saturating_add(q.cpu_ns));
        match (found, tx) {
            (true, Some(tx)) => {
                self.replies_found += 1;
                let current = self.members.get(q.member as usize).map(|m| m.endpoint);
                if current != Some(SocketAddrV4::new(tx.out.nat_ip, tx.out.nat_port)) {
                    self.replies_outdated += 1;
                }
            }
            _ => self.replies_not_found += 1,
        }
    }

    fn probe(&mut self) {
        if self.confirmed_members.is_empty() {
            return;
        }
        let pick = self.rng.random_range(0..self.confirmed_members.len());
        let member = self.confirmed_members[pick];
        let Some(m) = self.members.get(member as usize) else {
            return;
        };
        let request_id = self.next_request;
        self.next_request = self.next_request.wrapping_add(1).max(1);
        let payload = Message::Query {
            request_id,
            hash_addr: m.wallet.hash_addr(),
            want_unconfirmed: false,
        }
        .to_bytes();
        self.pending.insert(
            request_id,
            PendingQuery {
                sent: self.now,
                member,
                cpu_ns: 0,
            },
        );
        self.queries += 1;
        self.schedule(
            later(self.now, self.cfg.t_i),
            Action::ToSn {
                from: PROBER_ADDR,
                payload,
                query: Some(request_id),
            },
        );
    }

    fn handle(&mut self, action: Action) {
        let measuring = self.measure_from.is_some() && self.now < self.measure_until;
        match action {
            Action::ToSn {
                from,
                payload,
                query,
            } => {
                let t0 = Instant::now();
                self.sn.handle_datagram(self.now, from, SN_ADDR, &payload);
                let spent = t0.elapsed();
                self.sn_cpu_total += spent;
                match query {
                    Some(id) => {
                        if let Some(q) = self.pending.get_mut(&id) {
                            q.cpu_ns = nanos(spent);
                        }
                    }
                    None => self.tx_cpu_ns.push(nanos(spent)),
                }
                self.drain_sn();
            }
            Action::ToMember { member, payload } => self.on_member_datagram(member, &payload),
            Action::ToProber { payload } => self.on_reply(&payload),
            Action::Register { member } => {
                let first = self
                    .members
                    .get(member as usize)
                    .is_some_and(|m| m.sent_at.is_empty());
                if first || measuring {
                    if !first {
                        self.moves += 1;
                    }
                    self.register(member);
                }
                // Moves are scheduled only once the measurement phase started (which
                // scheduled every member's first move).
                if measuring && !first {
                    let at = later(self.now, exp_delay(&mut self.rng, self.cfg.move_interval));
                    if at < self.measure_until {
                        self.schedule(at, Action::Register { member });
                    }
                }
            }
            Action::Probe => {
                if measuring {
                    self.probe();
                    let mean = Duration::try_from_secs_f64(1.0 / self.cfg.query_rate)
                        .unwrap_or(Duration::MAX);
                    let at = later(self.now, exp_delay(&mut self.rng, mean));
                    if at < self.measure_until {
                        self.schedule(at, Action::Probe);
                    }
                }
            }
        }
    }

    /// Starts the measurement phase at `now`: first moves and the first Query.
    fn start_measuring(&mut self) {
        self.measure_from = Some(self.now);
        self.measure_until = later(self.now, self.cfg.duration);
        for i in 0..self.n {
            let at = later(self.now, exp_delay(&mut self.rng, self.cfg.move_interval));
            if at < self.measure_until {
                self.schedule(at, Action::Register { member: i as u32 });
            }
        }
        if self.cfg.query_rate > 0.0 {
            self.schedule(self.now, Action::Probe);
        }
    }

    /// Runs the point; `false` if `stop` was set.
    fn run(&mut self, progress: &mut dyn FnMut(&str), stop: &AtomicBool) -> bool {
        self.sn.start(Time::ZERO);
        self.drain_sn();
        for i in 0..self.n {
            let u: f64 = self.rng.random();
            let at = Duration::try_from_secs_f64(u * self.cfg.register_window.as_secs_f64())
                .unwrap_or(Duration::ZERO);
            self.schedule(at, Action::Register { member: i as u32 });
        }
        let mut next_progress = Time::from_secs(1);
        let mut steps: u64 = 0;
        loop {
            steps += 1;
            if steps.is_multiple_of(256) && stop.load(AtomicOrdering::Relaxed) {
                return false;
            }
            if self.measure_from.is_none()
                && (self.confirmed_members.len() >= self.n || self.now >= self.cfg.max_warmup)
            {
                self.start_measuring();
            }
            // The SN's timers (mining, tip announcements) run until the measurement ends;
            // after that only datagrams in flight are delivered.
            let sn_at = self.sn.poll_timeout().filter(|&t| t < self.measure_until);
            let heap_at = self.heap.peek().map(|s| s.at);
            let at = match (heap_at, sn_at) {
                (None, None) => break,
                (Some(h), Some(s)) => h.min(s),
                (Some(h), None) => h,
                (None, Some(s)) => s,
            };
            self.now = self.now.max(at);
            if self.now >= next_progress {
                next_progress = later(self.now, Time::from_secs(1));
                progress(&self.progress_line());
                if stop.load(AtomicOrdering::Relaxed) {
                    return false;
                }
            }
            if heap_at == Some(at) {
                if let Some(s) = self.heap.pop() {
                    self.handle(s.item);
                }
            } else {
                let t0 = Instant::now();
                self.sn.handle_timeout(self.now);
                self.sn_cpu_total += t0.elapsed();
                self.drain_sn();
            }
        }
        true
    }

    fn progress_line(&self) -> String {
        match self.measure_from {
            None => format!(
                "scale {} ENs: warm-up t={:.0} s, {}/{} registered",
                self.n,
                self.now.as_secs_f64(),
                self.confirmed_members.len(),
                self.n
            ),
            Some(from) => format!(
                "scale {} ENs: t={:.0}/{:.0} s, {} Txs, {} Queries",
                self.n,
                self.now.saturating_sub(from).as_secs_f64(),
                self.cfg.duration.as_secs_f64(),
                self.txs_submitted,
                self.queries
            ),
        }
    }

    /// The SN's memory estimated from its own structures.
    fn accounted(&self) -> (u64, Value) {
        let chain = self.sn.chain();
        let (_, tip) = chain.tip();
        let mut blocks = 0u64;
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

/// Runs one point; `None` if stopped.
fn run_point(
    cfg: &ScaleConfig,
    n: usize,
    index: usize,
    progress: &mut dyn FnMut(&str),
    stop: &AtomicBool,
) -> anyhow::Result<Option<Value>> {
    let wall = Instant::now();
    let rss_before = resident_bytes();
    progress(&format!("scale {n} ENs: making {n} wallets"));
    let point_seed = cfg.seed ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut h = Harness::new(cfg, n, point_seed)?;
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
        "sn_accounted_bytes": accounted_bytes,
        "sn_accounted": accounted,
        "sn_resident_bytes": delta(rss_after, rss_before),
        "crowd_resident_bytes": delta(rss_crowd, rss_before),
        "process_resident_bytes": rss_after,
        "wall_s": wall.elapsed().as_secs_f64(),
    });
    Ok(Some(point))
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
    if !(cfg.query_rate.is_finite() && cfg.query_rate >= 0.0) {
        anyhow::bail!("scale: query_rate must be a non-negative number of Queries per second");
    }
    if !(cfg.hash_rate.is_finite() && cfg.hash_rate > 0.0) {
        anyhow::bail!("scale: hash_rate must be a positive number of hashes per second");
    }
    if cfg.move_interval.is_zero() {
        anyhow::bail!("scale: move_interval must be above zero");
    }
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
        },
        "stopped": stopped,
        "points": points,
    }))
}
