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
use crate::ratelimit::{RateLimitConfig, SOURCE_ENTRY_BYTES, SourceLimiter};
use crate::reassembly::Reassembler;
use crate::util::{hex, millis};
use crate::wallet::{TxError as WalletTxError, verify_tx};
use crate::work::{Op, Work};
use crate::{Time, Transmit};
use binfm_stack::wire::binfm::{
    BlockPart, MAX_HEADERS, MAX_PROOF_DEPTH, Message, TxProof, TxStatus, reject, split_block,
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

use events::{DropSample, SnEvent};

pub use config::{
    BatchValidator, DEFAULT_QUERY_LIMIT, DEFAULT_TX_LIMIT, DROP_EVENT_INTERVAL, MAX_TX_BYTES,
    SnConfig, SnMemory, validate_tx,
};

/// A block found by hashing, waiting for the moment the hash rate says it is found.
#[derive(Debug)]
struct Job {
    block: Option<Block<ToallTx>>,
    found_at: Time,
    tries: u64,
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
    /// End nodes that registered here (the source of an accepted Tx) and when they last
    /// did: they get the best chain's new headers pushed (at most [`MAX_SUBSCRIBERS`], each
    /// for [`SUBSCRIPTION_TTL`]).
    subscribers: BTreeMap<SocketAddrV4, Time>,
    /// Counters by reason of what the SN refused or dropped (names in `docs/security.md`).
    pub refused: BTreeMap<&'static str, u64>,
    /// Verifications, Queries answered and blocks validated since the driver took them.
    work: Work,
}

/// [`validate_tx`] for a block's Txs at once (one ed25519 batch) that counts the Txs it
/// checks in `n` (each is an ed25519 verification).
fn counting_validator(n: &Cell<u32>) -> BatchValidator<'_> {
    BatchValidator::counting(n)
}

/// Most end-node endpoints the SN pushes headers to; the least recently registered goes first.
pub const MAX_SUBSCRIBERS: usize = 1024;
/// How long a registration keeps an endpoint subscribed to header pushes.
pub const SUBSCRIPTION_TTL: Duration = Duration::from_secs(120);

/// The counter name of a Tx that failed [`verify_tx`].
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
            subscribers: BTreeMap::new(),
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

    /// Makes a new block template on the best tip and solves it (real hashing).
    fn retemplate(&mut self, now: Time) {
        if !self.cfg.mine || !self.started {
            return;
        }
        let mut block =
            self.chain
                .block_template(millis(now), self.cfg.miner_id, self.cfg.max_block_txs);
        let expected =
            self.cfg.chain.network_hash_rate * self.cfg.chain.block_interval_ms as f64 / 1000.0;
        // Bound the hashing of one template; if it fails, try a new one at that moment.
        let max_tries = ((expected * 20.0) as u64).max(1000);
        let start: u64 = self.rng.random();
        let (block, tries) = match pow::mine(&block.header, start, max_tries) {
            Some((nonce, tries)) => {
                block.header.nonce = nonce;
                (Some(block), tries)
            }
            None => (None, max_tries),
        };
        let secs = tries as f64 / self.cfg.hash_rate;
        let found_at = now + Duration::from_secs_f64(secs.max(1e-6));
        self.job = Some(Job {
            block,
            found_at,
            tries,
        });
    }

    /// Handles a datagram on the SN port.
    pub fn handle_datagram(
        &mut self,
        now: Time,
        from: SocketAddrV4,
        _to: SocketAddrV4,
        data: &[u8],
    ) {
        let msg = match Message::parse(data) {
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
                if let Some(l) = &mut self.tx_limiter
                    && !l.allow(*from.ip(), millis(now))
                {
                    self.refuse(now, "tx_rate_limited", DropSample::RateLimited { from });
                    return;
                }
                self.on_tx_submit(now, from, tx)
            }
            Message::TxRelay { tx } if from_peer => self.on_tx_relay(now, from, tx),
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
                if found || self.subscribers.contains_key(&from) {
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
                let reply = Message::Reply {
                    request_id,
                    hash_addr,
                    found,
                    height,
                    confirmations: u32::try_from(confirmations).unwrap_or(u32::MAX),
                    tx,
                    unconfirmed,
                    proof,
                };
                self.send(from, &reply);
            }
            Message::GetHeaders { locator } => {
                // Answered only to a registered end node (a subscriber), within the Query
                // limit: a GetHeaders is small and its answer up to 970 bytes, so an
                // unknown (possibly spoofed) source gets nothing to reflect.
                if !self.subscribers.contains_key(&from) {
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

    fn on_tx_submit(&mut self, now: Time, from: SocketAddrV4, tx: ToallTx) {
        let tx_id = tx.id();
        self.work.add(Op::Verify);
        if let Err(e) = verify_tx(&tx) {
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
            self.subscribe(now, from);
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

    /// Pushes header updates to `ep` from now on (for [`SUBSCRIPTION_TTL`]).
    fn subscribe(&mut self, now: Time, ep: SocketAddrV4) {
        if !self.subscribers.contains_key(&ep) && self.subscribers.len() >= MAX_SUBSCRIBERS {
            let oldest = self
                .subscribers
                .iter()
                .min_by_key(|(a, t)| (**t, **a))
                .map(|(a, _)| *a);
            if let Some(a) = oldest {
                self.subscribers.remove(&a);
            }
        }
        self.subscribers.insert(ep, now);
    }

    /// Sends the headers of blocks that joined the best chain (the last [`MAX_HEADERS`] of
    /// them; an EN that misses more asks with GetHeaders) to every live subscriber.
    fn push_headers(&mut self, now: Time, added: &[Hash]) {
        self.subscribers
            .retain(|_, t| now.saturating_sub(*t) < SUBSCRIPTION_TTL);
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
        for &to in self.subscribers.keys() {
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

    fn on_tx_relay(&mut self, now: Time, from: SocketAddrV4, tx: ToallTx) {
        self.work.add(Op::Verify);
        if let Err(e) = verify_tx(&tx) {
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
        let verified = Cell::new(0);
        let added = self
            .chain
            .add_tx(tx.clone(), millis(now), &counting_validator(&verified));
        self.work.add_n(Op::Verify, verified.get());
        match added {
            Ok(_) => {
                self.events.push_back(SnEvent::TxAccepted {
                    owner: hex(&owner),
                    seq: tx.out.seq,
                    relayed_by,
                });
                self.flood(&Message::TxRelay { tx: tx.clone() }, relayed_by);
                self.retemplate(now);
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
        let added = self
            .chain
            .add_block(block, millis(now), &counting_validator(&verified));
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
                self.push_headers(now, &added);
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
                self.push_headers(now, &added);
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
        if self.job.as_ref().is_some_and(|j| j.found_at <= now) {
            if let Some(job) = self.job.take() {
                match job.block {
                    Some(block) => {
                        let _ = job.tries;
                        self.add_block(now, block, None);
                    }
                    None => self.retemplate(now),
                }
            }
            if self.job.is_none() {
                self.retemplate(now);
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
        let job = self.job.as_ref().map(|j| j.found_at);
        let r = self.reassembly.poll_timeout();
        [job, Some(self.next_announce), r]
            .into_iter()
            .flatten()
            .min()
    }

    /// Next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    /// Next event.
    pub fn poll_event(&mut self) -> Option<SnEvent> {
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
    fn poll_persist(&mut self) -> Option<Vec<u8>> {
        SuperNode::poll_persist(self)
    }
    fn take_work(&mut self) -> Work {
        self.work.take()
    }
}

#[cfg(test)]
mod tests;
