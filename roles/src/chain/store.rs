//! Every known block, fork choice by cumulative work, and the search table of the best chain.
//!
//! Each stored block is fully valid *on its own branch*: its target follows the retarget rule
//! along that branch, its time is above that branch's median time past, and every tx's seq
//! is above its owner's latest on that branch. So switching branches never re-validates, and
//! a reorg only undoes and redoes the search table.
//!
//! Blocks whose parent is unknown wait in a bounded orphan pool (oldest evicted first) after
//! the context-free checks (PoW against their own target, size, Merkle root, time); when the
//! parent connects, they connect too, in arrival order.

use std::collections::{HashMap, HashSet, VecDeque};

use super::block::{BLOCK_VERSION, Block, BlockHeader, MAX_BLOCK_BYTES, MAX_TXS_PER_BLOCK};
use super::pow::{meets_target, retarget, target_for_hashes, work};
use super::search_table::SearchTable;
use super::{ChainTx, Hash, TxValidator};

/// Blocks in the median-time-past window (Bitcoin's 11).
pub const MEDIAN_TIME_SPAN: usize = 11;
/// Connected-block notifications kept for [`ChainStore::poll_connected`]; beyond this the
/// oldest are dropped and counted in [`StoreStats::connected_lost`].
pub const CONNECTED_QUEUE_CAP: usize = 65_536;

/// Chain parameters; every SN of a run must use the same ones (they fix the genesis hash).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChainConfig {
    /// Genesis block time (ms of the run's epoch).
    pub genesis_time_ms: u64,
    /// Expected total hash rate of all SNs (hashes/s): with `block_interval_ms` it fixes the
    /// genesis target (`target_for_hashes(rate × interval)`).
    pub network_hash_rate: f64,
    /// Mean block interval the retarget rule aims at (the paper's 1 s).
    pub block_interval_ms: u64,
    /// Blocks between retargets (≥ 2).
    pub retarget_interval: u64,
    /// Orphan pool capacity in blocks.
    pub max_orphans: usize,
    /// How far a block time may be ahead of the receiver's clock.
    pub max_future_ms: u64,
}

impl Default for ChainConfig {
    /// Genesis at 0 ms, 100,000 hashes/s in total, 1 s blocks, retarget every 10 blocks,
    /// 256 orphans, 2 s of allowed clock lead.
    fn default() -> Self {
        ChainConfig {
            genesis_time_ms: 0,
            network_hash_rate: 100_000.0,
            block_interval_ms: 1000,
            retarget_interval: 10,
            max_orphans: 256,
            max_future_ms: 2000,
        }
    }
}

impl ChainConfig {
    /// The deterministic genesis block: no txs, zero parent, the derived initial target,
    /// miner 0, nonce 0 (its PoW is never checked: it is fixed by the config).
    pub fn genesis<T: ChainTx>(&self) -> Block<T> {
        let expected = self.network_hash_rate * self.block_interval_ms as f64 / 1000.0;
        Block::new(
            BlockHeader {
                version: BLOCK_VERSION,
                prev: [0; 32],
                merkle_root: [0; 32],
                time_ms: self.genesis_time_ms,
                target: target_for_hashes(expected),
                miner: 0,
                nonce: 0,
            },
            Vec::new(),
        )
    }

    fn check(&self) -> Result<(), ConfigError> {
        if !(self.network_hash_rate.is_finite() && self.network_hash_rate > 0.0) {
            return Err(ConfigError::HashRate(self.network_hash_rate));
        }
        if self.block_interval_ms == 0 {
            return Err(ConfigError::BlockInterval);
        }
        if self.retarget_interval < 2 {
            return Err(ConfigError::RetargetInterval(self.retarget_interval));
        }
        if self.max_orphans == 0 {
            return Err(ConfigError::MaxOrphans);
        }
        Ok(())
    }
}

/// A chain configuration that cannot work.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// Hash rate not a positive finite number.
    #[error("network_hash_rate must be a positive number of hashes/s, got {0}")]
    HashRate(f64),
    /// Zero block interval.
    #[error("block_interval_ms must be at least 1")]
    BlockInterval,
    /// Retarget interval below 2 (the rule measures `interval - 1` block gaps).
    #[error("retarget_interval must be at least 2, got {0}")]
    RetargetInterval(u64),
    /// No room for orphans.
    #[error("max_orphans must be at least 1")]
    MaxOrphans,
}

/// What adding a block did. Hash lists are block hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddOutcome {
    /// The best chain grew: `added` is the block plus any orphans it connected that extend
    /// the tip, parent first.
    Extended {
        /// New best-chain blocks, lowest first.
        added: Vec<Hash>,
    },
    /// Another branch now has more work.
    Reorg {
        /// Blocks that left the best chain, old tip first.
        removed: Vec<Hash>,
        /// Blocks that joined it, from the fork point up.
        added: Vec<Hash>,
    },
    /// Stored on a branch with no more work than the tip (ties keep the current tip).
    SideChain,
    /// Parent unknown: kept in the orphan pool. `missing` is the block to fetch (the first
    /// unknown ancestor, if the parent is itself an orphan).
    Orphan {
        /// Hash to ask peers for.
        missing: Hash,
    },
    /// Already stored or already in the orphan pool.
    Duplicate,
}

/// Why a block was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    /// Unknown header version.
    #[error("unsupported block version {0}")]
    BadVersion(u32),
    /// The header hash is above the header's target.
    #[error("proof of work does not meet the block's target")]
    BadPow,
    /// More than [`MAX_BLOCK_BYTES`] encoded or too many txs.
    #[error("block of {bytes} bytes / {txs} txs exceeds the limits")]
    Oversized {
        /// Encoded size.
        bytes: usize,
        /// Tx count.
        txs: usize,
    },
    /// Time more than `max_future_ms` ahead of the receiver.
    #[error("block time {time_ms} ms is too far ahead of now ({now_ms} ms)")]
    TimeInFuture {
        /// Block time.
        time_ms: u64,
        /// Receiver's time.
        now_ms: u64,
    },
    /// Header Merkle root differs from the txs' root.
    #[error("Merkle root does not match the txs")]
    BadMerkleRoot,
    /// Two txs with the same id.
    #[error("tx {index} repeats an earlier tx of the block")]
    DuplicateTx {
        /// Position of the repeat.
        index: usize,
    },
    /// A block claiming a zero parent that is not our genesis (another network's chain).
    #[error("block claims a different genesis")]
    ForeignGenesis,
    /// Parent unknown (only from [`ChainStore::check_block`]; `add_block` makes an orphan).
    #[error("parent block unknown")]
    UnknownParent,
    /// Target differs from the retarget rule's expectation on this branch.
    #[error("target differs from the retarget rule's expectation for this height")]
    WrongTarget,
    /// Time not above the median of the last [`MEDIAN_TIME_SPAN`] blocks of the branch.
    #[error("block time {time_ms} ms is not above the median time past {median_ms} ms")]
    TimeNotAboveMedian {
        /// Block time.
        time_ms: u64,
        /// Median time past of the parent.
        median_ms: u64,
    },
    /// The caller's validator refused a tx.
    #[error("tx {index} invalid: {reason}")]
    InvalidTx {
        /// Position in the block.
        index: usize,
        /// The validator's message.
        reason: String,
    },
    /// A tx's seq is not above its owner's latest on this branch (replay or old tx).
    #[error("tx {index}: seq {seq} is not above the owner's latest seq {latest} on this branch")]
    StaleSeq {
        /// Position in the block.
        index: usize,
        /// The tx's seq.
        seq: u64,
        /// The owner's latest seq before it.
        latest: u64,
    },
}

/// Counters of the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Orphans evicted because the pool was full.
    pub orphans_evicted: u64,
    /// Orphans (and their descendants) dropped because they failed validation on connect.
    pub orphans_rejected: u64,
    /// Connected-block notifications dropped because nobody polled them.
    pub connected_lost: u64,
}

#[derive(Debug, Clone)]
struct Entry<T> {
    block: Block<T>,
    height: u64,
    work: u128,
}

/// All known blocks, the best chain and its search table.
#[derive(Debug)]
pub struct ChainStore<T> {
    config: ChainConfig,
    genesis: Hash,
    entries: HashMap<Hash, Entry<T>>,
    /// Best chain by height: `best[h]` is the hash at height `h`.
    best: Vec<Hash>,
    tst: SearchTable<T>,
    orphans: OrphanPool<T>,
    connected: VecDeque<Hash>,
    stats: StoreStats,
}

impl<T: ChainTx> ChainStore<T> {
    /// A store holding the genesis block of `config`.
    pub fn new(config: ChainConfig) -> Result<Self, ConfigError> {
        config.check()?;
        let genesis_block: Block<T> = config.genesis();
        let genesis = genesis_block.hash();
        let mut entries = HashMap::new();
        entries.insert(
            genesis,
            Entry {
                work: work(&genesis_block.header.target),
                block: genesis_block,
                height: 0,
            },
        );
        Ok(ChainStore {
            config,
            genesis,
            entries,
            best: vec![genesis],
            tst: SearchTable::new(),
            orphans: OrphanPool::new(config.max_orphans),
            connected: VecDeque::new(),
            stats: StoreStats::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ChainConfig {
        &self.config
    }

    /// Genesis hash.
    pub fn genesis(&self) -> Hash {
        self.genesis
    }

    /// Best tip hash and height.
    pub fn tip(&self) -> (Hash, u64) {
        let h = self.best.len() as u64 - 1;
        (self.best.last().copied().unwrap_or(self.genesis), h)
    }

    /// Cumulative work of the best tip.
    pub fn tip_work(&self) -> u128 {
        self.entries.get(&self.tip().0).map_or(0, |e| e.work)
    }

    /// A stored block.
    pub fn block(&self, hash: &Hash) -> Option<&Block<T>> {
        self.entries.get(hash).map(|e| &e.block)
    }

    /// Height and cumulative work of a stored block.
    pub fn height_and_work(&self, hash: &Hash) -> Option<(u64, u128)> {
        self.entries.get(hash).map(|e| (e.height, e.work))
    }

    /// Whether `hash` is on the best chain.
    pub fn is_on_best_chain(&self, hash: &Hash) -> bool {
        self.entries
            .get(hash)
            .is_some_and(|e| self.on_best(hash, e.height))
    }

    /// The best-chain hash at `height`.
    pub fn best_hash_at(&self, height: u64) -> Option<Hash> {
        self.best.get(usize::try_from(height).ok()?).copied()
    }

    /// Stored blocks, genesis included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Never true: genesis is always stored.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Blocks waiting for a parent.
    pub fn orphan_count(&self) -> usize {
        self.orphans.blocks.len()
    }

    /// Counters.
    pub fn stats(&self) -> StoreStats {
        self.stats
    }

    /// The Tx Search Table of the best chain.
    pub fn search_table(&self) -> &SearchTable<T> {
        &self.tst
    }

    /// Next block stored since the last call, in connection order (parents before children).
    pub fn poll_connected(&mut self) -> Option<Hash> {
        self.connected.pop_front()
    }

    fn on_best(&self, hash: &Hash, height: u64) -> bool {
        usize::try_from(height)
            .ok()
            .and_then(|h| self.best.get(h))
            .is_some_and(|b| b == hash)
    }

    /// Validates and stores `block`, connects orphans waiting for it, and moves the best tip
    /// to the connected block with the most cumulative work if that beats the current tip.
    pub fn add_block(
        &mut self,
        block: Block<T>,
        now_ms: u64,
        validate: TxValidator<'_, T>,
    ) -> Result<AddOutcome, BlockError> {
        let hash = block.hash();
        if self.entries.contains_key(&hash) || self.orphans.blocks.contains_key(&hash) {
            return Ok(AddOutcome::Duplicate);
        }
        self.check_standalone(&block, &hash, now_ms)?;
        let prev = block.header.prev;
        if !self.entries.contains_key(&prev) {
            if prev == [0; 32] {
                return Err(BlockError::ForeignGenesis);
            }
            let missing = self.orphans.root_missing(prev);
            self.stats.orphans_evicted += self.orphans.insert(hash, block);
            return Ok(AddOutcome::Orphan { missing });
        }
        self.check_contextual(&block, validate)?;
        let mut connected = vec![hash];
        self.insert_entry(hash, block);
        let mut queue = VecDeque::from([hash]);
        while let Some(parent) = queue.pop_front() {
            for child in self.orphans.take_children(&parent) {
                let ch = child.hash();
                match self.check_contextual(&child, validate) {
                    Ok(()) => {
                        self.insert_entry(ch, child);
                        connected.push(ch);
                        queue.push_back(ch);
                    }
                    Err(_) => {
                        self.stats.orphans_rejected += 1 + self.orphans.drop_descendants(&ch);
                    }
                }
            }
        }
        let mut best_work = self.tip_work();
        let mut winner = None;
        for h in &connected {
            if let Some(e) = self.entries.get(h) {
                if e.work > best_work {
                    best_work = e.work;
                    winner = Some(*h);
                }
            }
        }
        Ok(match winner {
            Some(new_tip) => self.switch_tip(new_tip),
            None => AddOutcome::SideChain,
        })
    }

    /// All checks `add_block` makes, without storing; the parent must be known.
    pub fn check_block(
        &self,
        block: &Block<T>,
        now_ms: u64,
        validate: TxValidator<'_, T>,
    ) -> Result<(), BlockError> {
        self.check_standalone(block, &block.hash(), now_ms)?;
        if !self.entries.contains_key(&block.header.prev) {
            return Err(BlockError::UnknownParent);
        }
        self.check_contextual(block, validate)
    }

    fn insert_entry(&mut self, hash: Hash, block: Block<T>) {
        let Some(parent) = self.entries.get(&block.header.prev) else {
            return;
        };
        let entry = Entry {
            height: parent.height + 1,
            work: parent.work.saturating_add(work(&block.header.target)),
            block,
        };
        self.entries.insert(hash, entry);
        if self.connected.len() >= CONNECTED_QUEUE_CAP {
            self.connected.pop_front();
            self.stats.connected_lost += 1;
        }
        self.connected.push_back(hash);
    }

    /// Checks that need no parent: version, PoW, size, clock lead, Merkle root, repeats.
    fn check_standalone(
        &self,
        block: &Block<T>,
        hash: &Hash,
        now_ms: u64,
    ) -> Result<(), BlockError> {
        let h = &block.header;
        if h.version != BLOCK_VERSION {
            return Err(BlockError::BadVersion(h.version));
        }
        if !meets_target(hash, &h.target) {
            return Err(BlockError::BadPow);
        }
        if block.txs.len() > MAX_TXS_PER_BLOCK {
            return Err(BlockError::Oversized {
                bytes: 0,
                txs: block.txs.len(),
            });
        }
        let bytes = block.encoded_len();
        if bytes > MAX_BLOCK_BYTES {
            return Err(BlockError::Oversized {
                bytes,
                txs: block.txs.len(),
            });
        }
        if h.time_ms > now_ms.saturating_add(self.config.max_future_ms) {
            return Err(BlockError::TimeInFuture {
                time_ms: h.time_ms,
                now_ms,
            });
        }
        let ids: Vec<Hash> = block.txs.iter().map(ChainTx::id).collect();
        if super::merkle::merkle_root(&ids) != h.merkle_root {
            return Err(BlockError::BadMerkleRoot);
        }
        let mut seen = HashSet::with_capacity(ids.len());
        for (index, id) in ids.iter().enumerate() {
            if !seen.insert(*id) {
                return Err(BlockError::DuplicateTx { index });
            }
        }
        Ok(())
    }

    /// Checks against the parent's branch: target, median time, txs and the seq rule.
    fn check_contextual(
        &self,
        block: &Block<T>,
        validate: TxValidator<'_, T>,
    ) -> Result<(), BlockError> {
        let h = &block.header;
        let expected = self
            .expected_target(&h.prev)
            .ok_or(BlockError::UnknownParent)?;
        if h.target != expected {
            return Err(BlockError::WrongTarget);
        }
        let median_ms = self.median_time_past(&h.prev);
        if h.time_ms <= median_ms {
            return Err(BlockError::TimeNotAboveMedian {
                time_ms: h.time_ms,
                median_ms,
            });
        }
        for (index, tx) in block.txs.iter().enumerate() {
            validate(tx).map_err(|reason| BlockError::InvalidTx { index, reason })?;
        }
        let owners: HashSet<Hash> = block.txs.iter().map(ChainTx::owner).collect();
        let mut latest = self.branch_latest_seqs(&h.prev, &owners);
        for (index, tx) in block.txs.iter().enumerate() {
            let owner = tx.owner();
            let seq = tx.seq();
            if let Some(l) = latest.get(&owner).copied().flatten() {
                if seq <= l {
                    return Err(BlockError::StaleSeq {
                        index,
                        seq,
                        latest: l,
                    });
                }
            }
            latest.insert(owner, Some(seq));
        }
        Ok(())
    }

    /// Latest seq of each of `owners` on the branch ending at `tip`: walk the branch down to
    /// the best chain, then ask the search table at the fork height.
    fn branch_latest_seqs(&self, tip: &Hash, owners: &HashSet<Hash>) -> HashMap<Hash, Option<u64>> {
        let mut found: HashMap<Hash, Option<u64>> = HashMap::with_capacity(owners.len());
        let mut cur = *tip;
        let mut fork_height = 0;
        while let Some(e) = self.entries.get(&cur) {
            if self.on_best(&cur, e.height) {
                fork_height = e.height;
                break;
            }
            for tx in e.block.txs.iter().rev() {
                let o = tx.owner();
                if owners.contains(&o) && !found.contains_key(&o) {
                    found.insert(o, Some(tx.seq()));
                }
            }
            cur = e.block.header.prev;
        }
        for o in owners {
            if !found.contains_key(o) {
                found.insert(*o, self.tst.latest_seq_at(o, fork_height));
            }
        }
        found
    }

    /// The stored ancestor of `hash` (itself included) at `height`.
    fn ancestor_at(&self, hash: &Hash, height: u64) -> Option<&Entry<T>> {
        let mut cur = *hash;
        loop {
            let e = self.entries.get(&cur)?;
            if e.height == height {
                return Some(e);
            }
            if e.height < height {
                return None;
            }
            if self.on_best(&cur, e.height) {
                return self.entries.get(&self.best_hash_at(height)?);
            }
            cur = e.block.header.prev;
        }
    }

    /// Median time of the last [`MEDIAN_TIME_SPAN`] blocks ending at `hash`.
    pub fn median_time_past(&self, hash: &Hash) -> u64 {
        let mut times = Vec::with_capacity(MEDIAN_TIME_SPAN);
        let mut cur = *hash;
        while times.len() < MEDIAN_TIME_SPAN {
            let Some(e) = self.entries.get(&cur) else {
                break;
            };
            times.push(e.block.header.time_ms);
            if e.height == 0 {
                break;
            }
            cur = e.block.header.prev;
        }
        times.sort_unstable();
        times.get(times.len() / 2).copied().unwrap_or(0)
    }

    /// The target a child of `parent` must carry: the parent's, except at heights that are
    /// multiples of `retarget_interval`, where it is [`retarget`] of the parent's target by
    /// the time from the block at `height - interval` to the parent (`interval - 1` gaps)
    /// against `(interval - 1) × block_interval_ms`.
    pub fn expected_target(&self, parent: &Hash) -> Option<Hash> {
        let p = self.entries.get(parent)?;
        let height = p.height + 1;
        let interval = self.config.retarget_interval;
        if height % interval != 0 {
            return Some(p.block.header.target);
        }
        let first = self.ancestor_at(parent, height - interval)?;
        let (t_last, t_first) = (p.block.header.time_ms, first.block.header.time_ms);
        let span = i64::try_from(t_last.abs_diff(t_first)).unwrap_or(i64::MAX);
        let actual = if t_last >= t_first { span } else { -span };
        let expected = (interval - 1).saturating_mul(self.config.block_interval_ms);
        Some(retarget(&p.block.header.target, actual, expected))
    }

    /// An unmined block on `parent` with `txs` (not checked), the expected target and time
    /// `max(time_ms, median time past + 1)`. `None` if the parent is unknown.
    pub fn template_on(
        &self,
        parent: &Hash,
        time_ms: u64,
        miner: u32,
        txs: Vec<T>,
    ) -> Option<Block<T>> {
        let target = self.expected_target(parent)?;
        let time_ms = time_ms.max(self.median_time_past(parent).saturating_add(1));
        Some(Block::new(
            BlockHeader {
                version: BLOCK_VERSION,
                prev: *parent,
                merkle_root: [0; 32],
                time_ms,
                target,
                miner,
                nonce: 0,
            },
            txs,
        ))
    }

    /// [`ChainStore::template_on`] the best tip.
    pub fn template_on_tip(&self, time_ms: u64, miner: u32, txs: Vec<T>) -> Block<T> {
        let tip = self.tip().0;
        match self.template_on(&tip, time_ms, miner, txs) {
            Some(b) => b,
            // The tip is always stored; this arm only keeps the function total.
            None => self.config.genesis(),
        }
    }

    /// Moves the best tip to `new_tip` (more work than the current one) and updates the
    /// search table: undo the removed blocks, apply the added ones.
    fn switch_tip(&mut self, new_tip: Hash) -> AddOutcome {
        let mut added = Vec::new();
        let mut cur = new_tip;
        let mut fork_height = 0;
        while let Some(e) = self.entries.get(&cur) {
            if self.on_best(&cur, e.height) {
                fork_height = e.height;
                break;
            }
            added.push(cur);
            cur = e.block.header.prev;
        }
        added.reverse();
        let keep = usize::try_from(fork_height).map_or(self.best.len(), |h| h + 1);
        let removed: Vec<Hash> = self.best.iter().skip(keep).rev().copied().collect();
        for h in &removed {
            if let Some(e) = self.entries.get(h) {
                self.tst.undo_block(e.height, &e.block.txs);
            }
        }
        self.best.truncate(keep);
        for h in &added {
            if let Some(e) = self.entries.get(h) {
                self.tst.apply_block(e.height, &e.block.txs);
            }
            self.best.push(*h);
        }
        if removed.is_empty() {
            AddOutcome::Extended { added }
        } else {
            AddOutcome::Reorg { removed, added }
        }
    }

    /// Block locator of the best chain: the tip and 9 blocks below it one by one, then
    /// doubling steps, always ending with genesis (Bitcoin's `getblocks` shape).
    pub fn locator(&self) -> Vec<Hash> {
        let mut out = Vec::new();
        let mut height = self.best.len().saturating_sub(1);
        let mut step = 1usize;
        loop {
            if let Some(h) = self.best.get(height) {
                out.push(*h);
            }
            if height == 0 {
                break;
            }
            if out.len() >= 10 {
                step = step.saturating_mul(2);
            }
            height = height.saturating_sub(step);
        }
        out
    }

    /// Up to `max` best-chain blocks after the first hash of `locator` that is on our best
    /// chain (after genesis if none is), lowest first: what a peer needs to catch up.
    pub fn blocks_after(&self, locator: &[Hash], max: usize) -> Vec<&Block<T>> {
        let start = locator
            .iter()
            .find_map(|h| {
                let e = self.entries.get(h)?;
                self.on_best(h, e.height).then_some(e.height)
            })
            .unwrap_or(0);
        let from = usize::try_from(start).map_or(self.best.len(), |s| s + 1);
        self.best
            .iter()
            .skip(from)
            .take(max)
            .filter_map(|h| self.block(h))
            .collect()
    }
}

/// Blocks waiting for their parent: bounded, oldest evicted first.
#[derive(Debug)]
struct OrphanPool<T> {
    blocks: HashMap<Hash, Block<T>>,
    by_parent: HashMap<Hash, Vec<Hash>>,
    /// Arrival order; may hold hashes already connected (compacted when it grows).
    order: VecDeque<Hash>,
    limit: usize,
}

impl<T: ChainTx> OrphanPool<T> {
    fn new(limit: usize) -> Self {
        OrphanPool {
            blocks: HashMap::new(),
            by_parent: HashMap::new(),
            order: VecDeque::new(),
            limit,
        }
    }

    /// Inserts, evicting the oldest orphans first if full; returns how many were evicted.
    fn insert(&mut self, hash: Hash, block: Block<T>) -> u64 {
        let mut evicted = 0;
        while self.blocks.len() >= self.limit {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if self.remove(&old).is_some() {
                evicted += 1;
            }
        }
        self.by_parent
            .entry(block.header.prev)
            .or_default()
            .push(hash);
        self.blocks.insert(hash, block);
        self.order.push_back(hash);
        if self.order.len() > 2 * self.limit {
            let blocks = &self.blocks;
            self.order.retain(|h| blocks.contains_key(h));
        }
        evicted
    }

    fn remove(&mut self, hash: &Hash) -> Option<Block<T>> {
        let b = self.blocks.remove(hash)?;
        if let Some(v) = self.by_parent.get_mut(&b.header.prev) {
            v.retain(|x| x != hash);
            if v.is_empty() {
                self.by_parent.remove(&b.header.prev);
            }
        }
        Some(b)
    }

    /// Removes and returns the orphans whose parent is `parent`, in arrival order.
    fn take_children(&mut self, parent: &Hash) -> Vec<Block<T>> {
        let hashes = self.by_parent.remove(parent).unwrap_or_default();
        hashes.iter().filter_map(|h| self.blocks.remove(h)).collect()
    }

    /// Drops every orphan descending from `hash`; returns how many.
    fn drop_descendants(&mut self, hash: &Hash) -> u64 {
        let mut n = 0;
        let mut stack = vec![*hash];
        while let Some(h) = stack.pop() {
            for child in self.take_children(&h) {
                n += 1;
                stack.push(child.hash());
            }
        }
        n
    }

    /// The first ancestor of `parent` (itself included) that is not in the pool.
    fn root_missing(&self, parent: Hash) -> Hash {
        let mut p = parent;
        for _ in 0..=self.limit {
            match self.blocks.get(&p) {
                Some(b) => p = b.header.prev,
                None => break,
            }
        }
        p
    }
}
