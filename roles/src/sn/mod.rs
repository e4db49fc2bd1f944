//! The super node (SN): verifies ToALL Txs, relays them to its peers, mines blocks with
//! proof of work, follows the chain with the most work, and answers Queries from its Tx
//! Search Table (paper sections 2.1 and 3.2, Figures 5-7).
//!
//! Mining is real hashing in both drivers. The moment a block is found follows from the
//! nonces tried and the SN's configured hash rate: a template made at `t0` whose nonce is
//! found after `N` tries is found at `t0 + N / hash_rate`. The SN computes the nonce at once
//! and waits (a timer) until that moment; a new tip or a new Tx before then replaces the
//! template (proof of work is memoryless, so restarting does not bias block times). Runs stay
//! deterministic for a seed and fast in wall time, and every block is valid.

use crate::chain::persist::BlockLog;
use crate::chain::{
    AddOutcome, Block, Chain, ChainConfig, ChainTx, Hash, MempoolConfig, MempoolError,
    TxError as ChainTxError, pow,
};
use crate::ed25519::KeyCache;
use crate::ratelimit::{RateLimitConfig, SOURCE_ENTRY_BYTES, SourceLimiter};
use crate::reassembly::Reassembler;
use crate::util::{hex, millis};
use crate::wallet::{TxError as WalletTxError, verify_tx_cached, verify_txs_cached};
use crate::work::{Op, Work};
use crate::{Time, Transmit};
use binfm_stack::wire::binfm::{
    BlockPart, MAX_HEADERS, MAX_PROOF_DEPTH, MAX_REPLY_LEN, Message, TxProof, TxStatus, reject,
    split_block,
};
use binfm_stack::wire::ports;
use binfm_stack::wire::toall::ToallTx;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cell::Cell;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddrV4;
use std::time::Duration;

mod config;
pub mod events;
mod subscribers;

use events::{DropSample, SnEvent};
pub use subscribers::MAX_SUBSCRIBERS;
use subscribers::Subscribers;

pub use config::{
    BatchValidator, DEFAULT_QUERY_LIMIT, DEFAULT_TX_LIMIT, DROP_EVENT_INTERVAL, MAX_TX_BYTES,
    SnConfig, SnMemory, validate_tx,
};

/// Most public keys a super node keeps decoded ([`KeyCache`]): as many as it has
/// subscribers, one per registered end node.
pub const KNOWN_KEYS: usize = MAX_SUBSCRIBERS;

/// Nonces hashed ahead per slice of the mining job.
const SLICE_HASHES: u64 = 256;

/// The mining job: a template on the tip, hashed at the SN's rate from `start` on. Hash `k`
/// (nonce `start_nonce + k`) is done at `start + (k + 1) / hash_rate`. The SN hashes ahead in
/// slices of [`SLICE_HASHES`]; when the template changes at `t` (a new Tx), the hashes done by
/// `t` stay (they failed on the old header) and the rest of the slice is hashed again on the
/// new header: the miner continues its nonce range, nothing is re-solved.
#[derive(Debug)]
struct Job {
    template: crate::chain::Template<ToallTx>,
    start: Time,
    start_nonce: u64,
    /// Hashes done on the current header so far (all failed except maybe `found`).
    hashed: u64,
    /// Winning hash index, if the hashed range holds one.
    found: Option<u64>,
    /// The template changed at this time and the hashing after it is not redone yet.
    dirty_since: Option<Time>,
}

impl Job {
    fn time_of(&self, k: u64, rate: f64) -> Time {
        self.start + Duration::from_secs_f64(((k + 1) as f64 / rate).max(1e-6))
    }

    /// Hashes done by `t`.
    fn hashes_by(&self, t: Time, rate: f64) -> u64 {
        (t.saturating_sub(self.start).as_secs_f64() * rate).floor() as u64
    }

    /// Hashes the current header for hash indices `self.hashed..end`.
    fn hash_to(&mut self, end: u64) {
        if self.found.is_some() || end <= self.hashed {
            return;
        }
        let tries = end - self.hashed;
        let start = self.start_nonce.wrapping_add(self.hashed);
        match pow::mine(self.template.header(), start, tries) {
            Some((_, n)) => {
                self.found = Some(self.hashed + n - 1);
                self.hashed += n;
            }
            None => self.hashed = end,
        }
    }

    /// When the job next needs the SN: the winning hash's time, or the end of the slice.
    fn wake_at(&self, rate: f64) -> Time {
        match (self.dirty_since, self.found) {
            (Some(t), _) => t,
            (None, Some(k)) => self.time_of(k, rate),
            (None, None) => self.time_of(self.hashed.saturating_sub(1), rate),
        }
    }
}

/// What a refusal reason reported last (see [`DROP_EVENT_INTERVAL`]).
#[derive(Debug, Clone, Copy, Default)]
struct DropReport {
    last: Option<Time>,
    pending: u64,
}

/// Sans-IO super node.
#[derive(Debug)]
pub struct SuperNode {
    cfg: SnConfig,
    chain: Chain<ToallTx>,
    rng: ChaCha8Rng,
    job: Option<Job>,
    reassembly: Reassembler,
    next_announce: Time,
    started: bool,
    out: VecDeque<Transmit>,
    events: VecDeque<SnEvent>,
    persist: VecDeque<Vec<u8>>,
    tx_limiter: Option<SourceLimiter>,
    query_limiter: Option<SourceLimiter>,
    drop_reports: BTreeMap<&'static str, DropReport>,
    /// End nodes that registered here (the source of an accepted Tx): they get the best
    /// chain's new headers pushed.
    subscribers: Subscribers,
    /// Owners' public keys kept decoded: an EN's every registration is signed by one key.
    keys: KeyCache,
    /// Counters by reason of what the SN refused or dropped (names in `docs/security.md`).
    pub refused: BTreeMap<&'static str, u64>,
    /// Verifications, Queries answered and blocks validated since the driver took them.
    work: Work,
}

/// What [`SuperNode::handle_datagrams`] decided for a datagram ahead of handling it: the
/// per-source limit's answer for a TxSubmit and the Tx's verification.
#[derive(Debug, Default)]
struct Checked {
    allowed: Option<bool>,
    verdict: Option<Result<(), WalletTxError>>,
}

/// Keeps a Reply within [`MAX_REPLY_LEN`]: a deep proof (a block of more than 256 Txs) and two
/// Txs do not fit, so the unconfirmed Tx is left out; the confirmed, provable one stays.
fn fit_reply(reply: &mut Message) {
    if reply.buffer_len() > MAX_REPLY_LEN
        && let Message::Reply { unconfirmed, .. } = reply
    {
        *unconfirmed = None;
    }
}

/// The counter name of a Tx that failed [`crate::wallet::verify_tx`].
fn invalid_reason(e: WalletTxError) -> &'static str {
    match e {
        WalletTxError::BadSignature => "tx_bad_signature",
        _ => "tx_invalid",
    }
}

fn work_bytes(work: u128) -> [u8; 32] {
    let mut b = [0u8; 32];
    b[16..].copy_from_slice(&work.to_be_bytes());
    b
}

fn work_of(bytes: &[u8; 32]) -> u128 {
    let mut w = [0u8; 16];
    w.copy_from_slice(&bytes[16..]);
    if bytes[..16].iter().any(|&b| b != 0) {
        u128::MAX
    } else {
        u128::from_be_bytes(w)
    }
}

impl SuperNode {
    /// A super node with a fresh chain (genesis only).
    pub fn new(cfg: SnConfig, seed: u64) -> Result<Self, crate::chain::ConfigError> {
        let chain = Chain::new(cfg.chain, cfg.mempool)?;
        Ok(SuperNode::with_chain(cfg, chain, seed))
    }

    /// A super node around a chain recovered from its data directory.
    pub fn with_chain(cfg: SnConfig, chain: Chain<ToallTx>, seed: u64) -> Self {
        let max_block_bytes = cfg.chain.max_block_bytes;
        SuperNode {
            tx_limiter: cfg.tx_limit.map(SourceLimiter::new),
            query_limiter: cfg.query_limit.map(SourceLimiter::new),
            drop_reports: BTreeMap::new(),
            subscribers: Subscribers::default(),
            keys: KeyCache::new(KNOWN_KEYS),
            cfg,
            chain,
            rng: ChaCha8Rng::seed_from_u64(seed),
            job: None,
            reassembly: Reassembler::new(64, max_block_bytes, Duration::from_secs(10)),
            next_announce: Time::ZERO,
            started: false,
            out: VecDeque::new(),
            events: VecDeque::new(),
            persist: VecDeque::new(),
            refused: Default::default(),
            work: Work::NONE,
        }
    }

    /// The chain (tip, search table, mempool).
    pub fn chain(&self) -> &Chain<ToallTx> {
        &self.chain
    }

    /// Stops mining (the end of a run: lets blocks in flight settle so final tips compare).
    pub fn stop_mining(&mut self) {
        self.cfg.mine = false;
        self.job = None;
    }

    /// Starts mining and announcing at `now`.
    pub fn start(&mut self, now: Time) {
        self.started = true;
        self.next_announce = now;
        self.retemplate(now);
    }

    /// Sizes of what packets can make grow, with their limits.
    pub fn memory(&self) -> SnMemory {
        let mempool = self.chain.mempool();
        let limiter = |l: &Option<SourceLimiter>| {
            l.as_ref()
                .map_or((0, 0), |l| (l.len(), l.config().max_sources))
        };
        let (tx_limit_sources, tx_limit_sources_max) = limiter(&self.tx_limiter);
        let (query_limit_sources, query_limit_sources_max) = limiter(&self.query_limiter);
        SnMemory {
            mempool_txs: mempool.len(),
            mempool_max: mempool.config().max_txs,
            mempool_rate_owners: mempool.rate_state_len(),
            mempool_rate_owners_max: mempool.rate_state_cap(),
            orphans: self.chain.store().orphan_count(),
            orphans_max: self.chain.store().config().max_orphans,
            reassembly_blocks: self.reassembly.in_flight(),
            reassembly_blocks_max: self.reassembly.max_in_flight(),
            reassembly_bytes: self.reassembly.bytes_held(),
            tx_limit_sources,
            tx_limit_sources_max,
            query_limit_sources,
            query_limit_sources_max,
            subscribers: self.subscribers.len(),
            subscribers_max: MAX_SUBSCRIBERS,
            known_keys: self.keys.len(),
            known_keys_max: self.keys.capacity(),
            queued: self.out.len() + self.events.len() + self.persist.len(),
            max_block_bytes: self.cfg.chain.max_block_bytes,
        }
    }

    /// Counts a refusal and reports it: at most one `sn.drop` per reason per
    /// [`DROP_EVENT_INTERVAL`], carrying `count` (refusals of that reason since the previous
    /// report, this one included), `total`, and the fields of this refusal as a sample.
    fn refuse(&mut self, now: Time, reason: &'static str, sample: DropSample) {
        let total = {
            let n = self.refused.entry(reason).or_default();
            *n += 1;
            *n
        };
        let report = self.drop_reports.entry(reason).or_default();
        report.pending += 1;
        if report
            .last
            .is_some_and(|t| now.saturating_sub(t) < DROP_EVENT_INTERVAL)
        {
            return;
        }
        let count = std::mem::take(&mut report.pending);
        report.last = Some(now);
        self.events.push_back(SnEvent::Drop {
            reason,
            count,
            total,
            sample,
        });
    }

    fn send(&mut self, dst: SocketAddrV4, msg: &Message) {
        self.out.push_back(Transmit {
            src_ip: None,
            src_port: ports::SN,
            dst,
            payload: msg.to_bytes(),
        });
    }

    fn flood(&mut self, msg: &Message, except: Option<SocketAddrV4>) {
        let bytes = msg.to_bytes();
        for &p in &self.cfg.peers {
            if Some(p) != except {
                self.out.push_back(Transmit {
                    src_ip: None,
                    src_port: ports::SN,
                    dst: p,
                    payload: bytes.clone(),
                });
            }
        }
    }

    /// Makes a new block template on the best tip (a new tip, or at the start) and hashes
    /// its first slice (real hashing from a random nonce).
    fn retemplate(&mut self, now: Time) {
        if !self.cfg.mine || !self.started {
            return;
        }
        let template = self
            .chain
            .template(millis(now), self.cfg.miner_id, self.cfg.max_block_txs);
        let mut job = Job {
            template,
            start: now,
            start_nonce: self.rng.random(),
            hashed: 0,
            found: None,
            dirty_since: None,
        };
        job.hash_to(SLICE_HASHES);
        self.job = Some(job);
    }

    /// Follows a Tx the mempool just took in the mining job's template (no re-solve: the
    /// hashing after `now` is redone on the new header when the SN next settles).
    fn template_offer(&mut self, now: Time, tx: &ToallTx, added: &crate::chain::MempoolAdd) {
        let Some(job) = &mut self.job else {
            return;
        };
        let rate = self.cfg.hash_rate;
        // A block already due at `now` keeps its header; the Tx waits for the next one.
        if job.dirty_since.is_none() && job.found.is_some_and(|k| job.time_of(k, rate) <= now) {
            return;
        }
        // Every mempool change since the template was made reached it (once a change is
        // skipped above, all are until the next template), as `template_offer` needs.
        match self.chain.template_offer(&mut job.template, tx, added) {
            crate::chain::TemplateUpdate::Unchanged => {}
            crate::chain::TemplateUpdate::Changed => {
                job.template.set_time(millis(now));
                job.dirty_since.get_or_insert(now);
            }
            crate::chain::TemplateUpdate::Rebuild => {
                let template =
                    self.chain
                        .template(millis(now), self.cfg.miner_id, self.cfg.max_block_txs);
                job.template = template;
                job.dirty_since.get_or_insert(now);
            }
        }
    }

    /// Redoes the hashing after the template's last change (the rest of the slice).
    fn settle_job(&mut self) {
        let rate = self.cfg.hash_rate;
        let Some(job) = &mut self.job else {
            return;
        };
        let Some(since) = job.dirty_since.take() else {
            return;
        };
        let end = job.hashed.max(job.hashes_by(since, rate) + 1);
        job.found = None;
        job.hashed = job.hashes_by(since, rate).min(job.hashed);
        job.hash_to(end.max(job.hashed + 1));
    }

    /// Handles a datagram on the SN port.
    pub fn handle_datagram(
        &mut self,
        now: Time,
        from: SocketAddrV4,
        _to: SocketAddrV4,
        data: &[u8],
    ) {
        let msg = Message::parse(data);
        self.handle_message(now, from, msg, Checked::default());
    }

    /// Handles a burst of datagrams that arrived together, as [`SuperNode::handle_datagram`]
    /// on each in order would, with the same outputs, but verifies the burst's Txs with one
    /// batch verification ([`verify_txs_cached`]): the per-source Tx limit is applied first, in
    /// order, so only Txs that get past it are verified (a flood costs no more than before).
    pub fn handle_datagrams(&mut self, now: Time, burst: &[(SocketAddrV4, &[u8])]) {
        let mut msgs: Vec<_> = burst
            .iter()
            .map(|(from, data)| (*from, Message::parse(data), Checked::default()))
            .collect();
        let mut to_verify = Vec::new();
        for (i, (from, msg, checked)) in msgs.iter_mut().enumerate() {
            match msg {
                Ok(Message::TxSubmit { tx }) => {
                    let allowed = self.tx_allowed(now, *from);
                    checked.allowed = Some(allowed);
                    if allowed {
                        to_verify.push((i, &*tx));
                    }
                }
                Ok(Message::TxRelay { tx }) if self.cfg.peers.contains(from) => {
                    to_verify.push((i, &*tx));
                }
                _ => {}
            }
        }
        let txs: Vec<&ToallTx> = to_verify.iter().map(|(_, tx)| *tx).collect();
        let verdicts = verify_txs_cached(&txs, &mut self.keys);
        let index: Vec<usize> = to_verify.iter().map(|(i, _)| *i).collect();
        for (i, verdict) in index.into_iter().zip(verdicts) {
            if let Some((_, _, checked)) = msgs.get_mut(i) {
                checked.verdict = Some(verdict);
            }
        }
        for (from, msg, checked) in msgs {
            self.handle_message(now, from, msg, checked);
        }
    }

    /// Whether the per-source Tx limit lets a TxSubmit from `from` through (and counts it).
    fn tx_allowed(&mut self, now: Time, from: SocketAddrV4) -> bool {
        match &mut self.tx_limiter {
            Some(l) => l.allow(*from.ip(), millis(now)),
            None => true,
        }
    }

    fn handle_message(
        &mut self,
        now: Time,
        from: SocketAddrV4,
        msg: Result<Message, binfm_stack::wire::codec::WireError>,
        checked: Checked,
    ) {
        let msg = match msg {
            Ok(m) => m,
            Err(e) => {
                self.refuse(
                    now,
                    "malformed",
                    DropSample::Malformed {
                        from,
                        error: e.to_string(),
                    },
                );
                return;
            }
        };
        let from_peer = self.cfg.peers.contains(&from);
        match msg {
            Message::TxSubmit { tx } => {
                let allowed = match checked.allowed {
                    Some(a) => a,
                    None => self.tx_allowed(now, from),
                };
                if !allowed {
                    self.refuse(now, "tx_rate_limited", DropSample::RateLimited { from });
                    return;
                }
                let verdict = checked
                    .verdict
                    .unwrap_or_else(|| verify_tx_cached(&tx, &mut self.keys));
                self.on_tx_submit(now, from, tx, verdict)
            }
            Message::TxRelay { tx } if from_peer => {
                let verdict = checked
                    .verdict
                    .unwrap_or_else(|| verify_tx_cached(&tx, &mut self.keys));
                self.on_tx_relay(now, from, tx, verdict)
            }
            Message::Query {
                request_id,
                hash_addr,
                want_unconfirmed,
            } => {
                if let Some(l) = &mut self.query_limiter
                    && !l.allow(*from.ip(), millis(now))
                {
                    self.refuse(now, "query_rate_limited", DropSample::RateLimited { from });
                    return;
                }
                self.work.add(Op::Query);
                // The latest confirmed Tx with its proof: the header of its best-chain block
                // and its Merkle path, which the EN checks against its header chain.
                let (found, height, confirmations, tx, proof) =
                    match self.chain.lookup_with_proof(&hash_addr) {
                        Some((tx, h, header, index, path)) => {
                            let proof = u16::try_from(index)
                                .ok()
                                .filter(|_| path.len() <= MAX_PROOF_DEPTH)
                                .map(|index| TxProof {
                                    header: header.encode(),
                                    index,
                                    siblings: path,
                                });
                            (
                                true,
                                h,
                                self.chain.confirmations(h),
                                Some(tx.clone()),
                                proof,
                            )
                        }
                        None => (false, 0, 0, None, None),
                    };
                let unconfirmed = if self.cfg.reply_unconfirmed && want_unconfirmed {
                    self.chain.mempool().pending(&hash_addr).cloned()
                } else {
                    None
                };
                let found = found || unconfirmed.is_some();
                let peer = hex(&hash_addr);
                // A registered EN asking about an address not (yet) on the chain is honest
                // (its own latest seq after a start, a peer not registered yet): reported,
                // not counted as a refusal like a Query from an unknown source.
                if found || self.subscribers.contains(&from) {
                    self.events.push_back(SnEvent::Query {
                        peer,
                        found,
                        from,
                        request_id,
                    });
                } else {
                    // Answered (an EN may look up a peer not registered yet), but counted
                    // and reported like a refusal: a flood of made-up addresses is cheap.
                    let sample = DropSample::UnknownQuery {
                        peer,
                        found,
                        from,
                        request_id,
                    };
                    self.refuse(now, "query_unknown_address", sample);
                }
                let mut reply = Message::Reply {
                    request_id,
                    hash_addr,
                    found,
                    height,
                    confirmations: u32::try_from(confirmations).unwrap_or(u32::MAX),
                    tx,
                    unconfirmed,
                    proof,
                };
                fit_reply(&mut reply);
                self.send(from, &reply);
            }
            Message::GetHeaders { locator } => {
                // Answered only to a registered end node (a subscriber), within the Query
                // limit: a GetHeaders is small and its answer up to 970 bytes, so an
                // unknown (possibly spoofed) source gets nothing to reflect.
                if !self.subscribers.contains(&from) {
                    self.refuse(now, "get_headers_unknown", DropSample::RateLimited { from });
                    return;
                }
                if let Some(l) = &mut self.query_limiter
                    && !l.allow(*from.ip(), millis(now))
                {
                    self.refuse(now, "query_rate_limited", DropSample::RateLimited { from });
                    return;
                }
                let headers = self
                    .chain
                    .blocks_after(&locator, MAX_HEADERS)
                    .iter()
                    .map(|b| b.header.encode())
                    .collect();
                self.send(from, &Message::Headers { headers });
            }
            Message::BlockPart(part) if from_peer => self.on_block_part(now, from, part),
            Message::GetBlock { block_hash } if from_peer => {
                if let Some(block) = self.chain.block(&block_hash) {
                    let bytes = block.encode();
                    if let Ok(parts) = split_block(block_hash, &bytes) {
                        for p in parts {
                            self.send(from, &p);
                        }
                    }
                } else {
                    self.refuse(
                        now,
                        "get_block_unknown",
                        DropSample::UnknownBlock {
                            hash: hex(&block_hash),
                            from,
                        },
                    );
                }
            }
            Message::TipAnnounce {
                tip_hash,
                height,
                total_work,
            } if from_peer => {
                if work_of(&total_work) > self.chain.store().tip_work()
                    && self.chain.block(&tip_hash).is_none()
                {
                    self.events.push_back(SnEvent::CatchUp { height, from });
                    self.send(
                        from,
                        &Message::GetBlock {
                            block_hash: tip_hash,
                        },
                    );
                }
            }
            other => {
                self.refuse(
                    now,
                    "unexpected",
                    DropSample::Unexpected {
                        message: other.name(),
                        from,
                    },
                );
            }
        }
    }

    fn on_tx_submit(
        &mut self,
        now: Time,
        from: SocketAddrV4,
        tx: ToallTx,
        verdict: Result<(), WalletTxError>,
    ) {
        let tx_id = tx.id();
        self.work.add(Op::Verify);
        if let Err(e) = verdict {
            self.refuse(
                now,
                invalid_reason(e),
                DropSample::InvalidTx {
                    error: e.to_string(),
                    owner: hex(&tx.out.hash_addr),
                    from,
                },
            );
            let status = TxStatus::Rejected(e.reject_code());
            self.send(
                from,
                &Message::TxAck {
                    tx_id,
                    status,
                    observed: from,
                },
            );
            return;
        }
        // The SN sees where the Tx really came from (as a STUN server would): a Tx whose
        // NAT endpoint is not that address is refused, and the EN learns its real port.
        if (tx.out.nat_ip, tx.out.nat_port) != (*from.ip(), from.port()) {
            self.events.push_back(SnEvent::EndpointMismatch {
                owner: hex(&tx.out.hash_addr),
                claimed: SocketAddrV4::new(tx.out.nat_ip, tx.out.nat_port),
                observed: from,
            });
            self.send(
                from,
                &Message::TxAck {
                    tx_id,
                    status: TxStatus::EndpointMismatch,
                    observed: from,
                },
            );
            return;
        }
        let status = self.offer_tx(now, &tx, None);
        if matches!(status, TxStatus::Accepted | TxStatus::Duplicate) {
            self.subscribers.subscribe(now, from, tx.out.hash_addr);
        }
        self.send(
            from,
            &Message::TxAck {
                tx_id,
                status,
                observed: from,
            },
        );
    }

    /// Sends the headers of blocks that joined the best chain (the last [`MAX_HEADERS`] of
    /// them; an EN that misses more asks with GetHeaders) to every subscriber.
    fn push_headers(&mut self, added: &[Hash]) {
        if self.subscribers.is_empty() {
            return;
        }
        let skip = added.len().saturating_sub(MAX_HEADERS);
        let headers: Vec<_> = added
            .iter()
            .skip(skip)
            .filter_map(|h| self.chain.block(h).map(|b| b.header.encode()))
            .collect();
        if headers.is_empty() {
            return;
        }
        let payload = Message::Headers { headers }.to_bytes();
        for &to in self.subscribers.endpoints() {
            self.out.push_back(Transmit {
                src_ip: None,
                src_port: ports::SN,
                dst: to,
                payload: payload.clone(),
            });
        }
    }

    /// Endpoints the SN pushes headers to.
    pub fn subscribers(&self) -> usize {
        self.subscribers.len()
    }

    fn on_tx_relay(
        &mut self,
        now: Time,
        from: SocketAddrV4,
        tx: ToallTx,
        verdict: Result<(), WalletTxError>,
    ) {
        self.work.add(Op::Verify);
        if let Err(e) = verdict {
            self.refuse(
                now,
                invalid_reason(e),
                DropSample::InvalidTx {
                    error: e.to_string(),
                    owner: hex(&tx.out.hash_addr),
                    from,
                },
            );
            return;
        }
        self.offer_tx(now, &tx, Some(from));
    }

    /// Offers a verified Tx to the mempool; relays it if it is new.
    fn offer_tx(&mut self, now: Time, tx: &ToallTx, relayed_by: Option<SocketAddrV4>) -> TxStatus {
        let owner = tx.out.hash_addr;
        let known = self
            .chain
            .mempool()
            .pending(&owner)
            .is_some_and(|p| p.id() == tx.id())
            || self
                .chain
                .lookup(&owner)
                .is_some_and(|(c, _)| c.id() == tx.id());
        if known {
            return TxStatus::Duplicate;
        }
        // Both callers ran `verify_tx_cached` (or the burst's batch) already: checking the
        // signature twice doubled the SN's cost per Tx.
        match self
            .chain
            .add_tx(tx.clone(), millis(now), &|_: &ToallTx| Ok(()))
        {
            Ok(added) => {
                self.events.push_back(SnEvent::TxAccepted {
                    owner: hex(&owner),
                    seq: tx.out.seq,
                    relayed_by,
                });
                self.flood(&Message::TxRelay { tx: tx.clone() }, relayed_by);
                self.template_offer(now, tx, &added);
                TxStatus::Accepted
            }
            Err(e) => {
                let code = match &e {
                    ChainTxError::Mempool(
                        MempoolError::StaleSeq { .. } | MempoolError::NotAbovePending { .. },
                    ) => reject::STALE_SEQ,
                    _ => reject::MALFORMED,
                };
                self.refuse(
                    now,
                    "tx_refused",
                    DropSample::TxRefused {
                        error: e.to_string(),
                        owner: hex(&owner),
                        seq: tx.out.seq,
                        relayed_by,
                    },
                );
                TxStatus::Rejected(code)
            }
        }
    }

    fn on_block_part(&mut self, now: Time, from: SocketAddrV4, part: BlockPart) {
        let Some(bytes) = self.reassembly.push(now, &part) else {
            return;
        };
        match Block::<ToallTx>::decode_max(&bytes, self.cfg.chain.max_block_bytes) {
            Ok(block) => self.add_block(now, block, Some(from)),
            Err(e) => {
                *self.refused.entry("block_malformed").or_default() += 1;
                self.events.push_back(SnEvent::BlockRejected {
                    hash: None,
                    reason: e.to_string(),
                    from: Some(from),
                });
            }
        }
    }

    /// Adds a block (received or mined) and reacts to the outcome.
    fn add_block(&mut self, now: Time, block: Block<ToallTx>, from: Option<SocketAddrV4>) {
        let hash = block.hash();
        let txs = block.txs.len();
        let verified = Cell::new(0);
        let added = self.chain.add_block(
            block,
            millis(now),
            &BatchValidator::counting(&verified, &mut self.keys),
        );
        if !matches!(added, Ok(AddOutcome::Duplicate)) {
            self.work.add(Op::Block);
        }
        self.work.add_n(Op::Verify, verified.get());
        match added {
            Ok(AddOutcome::Extended { added }) => {
                let (_, height) = self.chain.tip();
                let hash = hex(&hash);
                self.events.push_back(match from {
                    Some(from) => SnEvent::BlockAccepted {
                        hash,
                        height,
                        txs,
                        from,
                    },
                    None => SnEvent::BlockMined { hash, height, txs },
                });
                self.confirmed(&added);
                self.push_headers(&added);
                self.relay_connected(from);
                self.retemplate(now);
            }
            Ok(AddOutcome::Reorg { removed, added }) => {
                let (_, height) = self.chain.tip();
                self.events.push_back(SnEvent::Reorg {
                    removed: removed.len(),
                    added: added.len(),
                    height,
                    hash: hex(&hash),
                });
                self.confirmed(&added);
                self.push_headers(&added);
                // Txs of the abandoned branch went back to our mempool; flood them again so
                // any SN can confirm them (peers on the other side never saw them).
                let back: Vec<ToallTx> = removed
                    .iter()
                    .filter_map(|h| self.chain.block(h))
                    .flat_map(|b| b.txs.iter())
                    .filter(|tx| {
                        self.chain
                            .mempool()
                            .pending(&tx.out.hash_addr)
                            .is_some_and(|p| p.id() == tx.id())
                    })
                    .cloned()
                    .collect();
                for tx in back {
                    self.events.push_back(SnEvent::TxRequeued {
                        owner: hex(&tx.out.hash_addr),
                        seq: tx.out.seq,
                    });
                    self.flood(&Message::TxRelay { tx }, None);
                }
                self.relay_connected(from);
                self.retemplate(now);
            }
            Ok(AddOutcome::SideChain) => {
                self.events
                    .push_back(SnEvent::SideBlock { hash: hex(&hash) });
                self.relay_connected(from);
            }
            Ok(AddOutcome::Orphan { missing }) => {
                self.events.push_back(SnEvent::Orphan {
                    hash: hex(&hash),
                    missing: hex(&missing),
                });
                if let Some(f) = from {
                    self.send(
                        f,
                        &Message::GetBlock {
                            block_hash: missing,
                        },
                    );
                }
            }
            Ok(AddOutcome::Duplicate) => {}
            Err(e) => {
                *self.refused.entry("block_invalid").or_default() += 1;
                self.events.push_back(SnEvent::BlockRejected {
                    hash: Some(hex(&hash)),
                    reason: e.to_string(),
                    from,
                });
            }
        }
    }

    /// Reports the Txs of blocks that joined the best chain.
    fn confirmed(&mut self, added: &[Hash]) {
        for h in added {
            let Some(block) = self.chain.block(h) else {
                continue;
            };
            let Some((height, _)) = self.chain.store().height_and_work(h) else {
                continue;
            };
            let evs: Vec<SnEvent> = block
                .txs
                .iter()
                .map(|tx| SnEvent::TxConfirmed {
                    owner: hex(&tx.out.hash_addr),
                    seq: tx.out.seq,
                    height,
                })
                .collect();
            self.events.extend(evs);
        }
    }

    /// Relays (and queues for the block log) every block stored since the last call.
    fn relay_connected(&mut self, from: Option<SocketAddrV4>) {
        while let Some(h) = self.chain.poll_connected() {
            let Some(block) = self.chain.block(&h) else {
                continue;
            };
            let bytes = block.encode();
            if let Ok(parts) = split_block(h, &bytes) {
                for p in &parts {
                    self.flood(p, from);
                }
            }
            self.persist.push_back(bytes);
        }
    }

    /// Mines the due block and announces the tip when it is time.
    pub fn handle_timeout(&mut self, now: Time) {
        if !self.started {
            return;
        }
        self.settle_job();
        let rate = self.cfg.hash_rate;
        while let Some(job) = &mut self.job {
            match job.found {
                Some(k) if job.time_of(k, rate) <= now => {
                    let block = job.template.block(job.start_nonce.wrapping_add(k));
                    self.job = None;
                    self.add_block(now, block, None);
                    if self.job.is_none() {
                        self.retemplate(now);
                    }
                    break;
                }
                // The slice is hashed through by now: hash the next one.
                None if job.time_of(job.hashed.saturating_sub(1), rate) <= now => {
                    let end = job.hashed + SLICE_HASHES;
                    job.hash_to(end);
                }
                _ => break,
            }
        }
        if self.next_announce <= now {
            self.next_announce = now + self.cfg.tip_announce;
            let (tip_hash, height) = self.chain.tip();
            let total_work = work_bytes(self.chain.store().tip_work());
            self.flood(
                &Message::TipAnnounce {
                    tip_hash,
                    height,
                    total_work,
                },
                None,
            );
        }
        self.reassembly.handle_timeout(now);
    }

    /// The next moment the SN must act without input.
    pub fn poll_timeout(&self) -> Option<Time> {
        if !self.started {
            return None;
        }
        let job = self.job.as_ref().map(|j| j.wake_at(self.cfg.hash_rate));
        let r = self.reassembly.poll_timeout();
        [job, Some(self.next_announce), r]
            .into_iter()
            .flatten()
            .min()
    }

    /// Next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.settle_job();
        self.out.pop_front()
    }

    /// Next event.
    pub fn poll_event(&mut self) -> Option<SnEvent> {
        self.settle_job();
        self.events.pop_front()
    }

    /// Adds a block as if a peer had sent it (benchmarks and tests build chains this way).
    #[doc(hidden)]
    pub fn add_block_for_bench(&mut self, now: Time, block: Block<ToallTx>) {
        self.add_block(now, block, None);
    }

    /// Next block to append to the data directory's block log (encoded), in connection order.
    pub fn poll_persist(&mut self) -> Option<Vec<u8>> {
        self.persist.pop_front()
    }
}

/// Appends everything the SN wants persisted to `log`.
pub fn persist_into(
    sn: &mut SuperNode,
    log: &mut BlockLog,
) -> Result<usize, crate::chain::persist::PersistError> {
    let mut n = 0;
    while let Some(bytes) = sn.poll_persist() {
        log.append(&bytes)?;
        n += 1;
    }
    Ok(n)
}

impl crate::role::Role for SuperNode {
    fn port(&self) -> u16 {
        ports::SN
    }
    /// Mines from the start; stops mining when the run winds down.
    fn handle_command(&mut self, now: Time, command: &crate::role::Command) {
        use crate::role::Command;
        match command {
            Command::Start { .. } => self.start(now),
            Command::WindDown => self.stop_mining(),
            _ => {}
        }
    }
    crate::role::role_io!();
    fn handle_datagrams(&mut self, now: Time, _to: SocketAddrV4, burst: &[(SocketAddrV4, &[u8])]) {
        SuperNode::handle_datagrams(self, now, burst);
    }
    fn poll_persist(&mut self) -> Option<Vec<u8>> {
        SuperNode::poll_persist(self)
    }
    fn take_work(&mut self) -> Work {
        self.work.take()
    }
}

#[cfg(test)]
mod tests;
