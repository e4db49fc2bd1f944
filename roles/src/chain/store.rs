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
        if self.retarget_interval < 3 {
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
    /// Retarget interval below 3 (the rule measures `interval - 1` block gaps and needs two).
    #[error("retarget_interval must be at least 3, got {0}")]
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
            if let Some(e) = self.entries.get(h)
                && e.work > best_work
            {
                best_work = e.work;
                winner = Some(*h);
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
            if let Some(l) = latest.get(&owner).copied().flatten()
                && seq <= l
            {
                return Err(BlockError::StaleSeq {
                    index,
                    seq,
                    latest: l,
                });
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
        // `interval - 1` exponential gaps: (gaps - 1) / span is the unbiased estimate of the
        // block rate, (gaps / span is 1/(gaps-1) too high), so the expected span uses
        // `gaps - 1` intervals. Without this, a 9-gap window drifts blocks 12.5% slow.
        let expected = (interval - 2).saturating_mul(self.config.block_interval_ms);
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
        hashes
            .iter()
            .filter_map(|h| self.blocks.remove(h))
            .collect()
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

#[cfg(test)]
mod tests {
    use super::super::pow::{MAX_TARGET, mine};
    use super::super::test_util::*;
    use super::*;

    fn store() -> ChainStore<DummyTx> {
        ChainStore::new(easy_config()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn add(
        s: &mut ChainStore<DummyTx>,
        b: Block<DummyTx>,
        now: u64,
    ) -> Result<AddOutcome, BlockError> {
        s.add_block(b, now, &ok)
    }

    /// Mines a chain of `n` blocks on `from`, `spacing` ms apart starting at `t0`.
    fn branch(
        s: &mut ChainStore<DummyTx>,
        from: Hash,
        (t0, spacing): (u64, u64),
        n: usize,
        miner: u32,
    ) -> Vec<Hash> {
        let mut out = Vec::new();
        let mut parent = from;
        for i in 0..n {
            let b = child(s, &parent, t0 + spacing * i as u64, miner, vec![]);
            parent = b.hash();
            out.push(parent);
            add(s, b, 1_000_000).unwrap_or_else(|e| panic!("{e}"));
        }
        out
    }

    /// A nonce for which the header does NOT meet its target.
    fn unmine(b: &mut Block<DummyTx>) {
        while meets_target(&b.hash(), &b.header.target) {
            b.header.nonce += 1;
        }
    }

    #[test]
    fn genesis_is_deterministic_and_config_checked() {
        let a = store();
        let b = store();
        assert_eq!(a.genesis(), b.genesis());
        assert_eq!(a.tip(), (a.genesis(), 0));
        let other =
            ChainStore::<DummyTx>::new(ChainConfig::default()).unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(other.genesis(), a.genesis());
        let bad = ChainConfig {
            retarget_interval: 1,
            ..ChainConfig::default()
        };
        assert_eq!(
            ChainStore::<DummyTx>::new(bad).err(),
            Some(ConfigError::RetargetInterval(1))
        );
        let bad = ChainConfig {
            network_hash_rate: f64::NAN,
            ..ChainConfig::default()
        };
        assert!(ChainStore::<DummyTx>::new(bad).is_err());
    }

    #[test]
    fn extend_and_duplicate() {
        let mut s = store();
        let g = s.genesis();
        let b1 = child(
            &s,
            &g,
            1000,
            1,
            vec![DummyTx::new(1, 1), DummyTx::new(2, 1)],
        );
        let h1 = b1.hash();
        assert_eq!(
            add(&mut s, b1.clone(), 1000),
            Ok(AddOutcome::Extended { added: vec![h1] })
        );
        assert_eq!(add(&mut s, b1, 1000), Ok(AddOutcome::Duplicate));
        assert_eq!(s.tip(), (h1, 1));
        assert_eq!(
            s.height_and_work(&h1),
            Some((1, 2 * work(&s.config().genesis::<DummyTx>().header.target)))
        );
        assert_eq!(
            s.search_table().lookup(&[2; 32]).map(|(t, h)| (t.seq, h)),
            Some((1, 1))
        );
        assert_eq!(s.poll_connected(), Some(h1));
        assert_eq!(s.poll_connected(), None);
    }

    #[test]
    fn bad_pow_refused() {
        let mut s = store();
        let g = s.genesis();
        let mut b = child(&s, &g, 1000, 1, vec![]);
        unmine(&mut b);
        assert_eq!(add(&mut s, b, 1000), Err(BlockError::BadPow));
        // An easier target than the rule's is refused even with valid PoW for it.
        let mut b = child(&s, &g, 1000, 1, vec![]);
        b.header.target = MAX_TARGET;
        assert_eq!(add(&mut s, b, 1000), Err(BlockError::WrongTarget));
        assert_eq!(s.tip().1, 0);
    }

    #[test]
    fn bad_merkle_root_and_duplicate_tx_refused() {
        let mut s = store();
        let g = s.genesis();
        let mut b = child(&s, &g, 1000, 1, vec![DummyTx::new(1, 1)]);
        b.header.merkle_root = [9; 32];
        mine_block(&mut b);
        assert_eq!(add(&mut s, b, 1000), Err(BlockError::BadMerkleRoot));
        // [a, b, c, c] has the same root as [a, b, c]: refused as a repeat.
        let txs = vec![DummyTx::new(1, 1), DummyTx::new(2, 1), DummyTx::new(3, 1)];
        let mut b = child(&s, &g, 1000, 1, txs);
        b.txs.push(DummyTx::new(3, 1));
        assert_eq!(
            add(&mut s, b, 1000),
            Err(BlockError::DuplicateTx { index: 3 })
        );
    }

    #[test]
    fn invalid_tx_and_stale_seq_refused() {
        let mut s = store();
        let g = s.genesis();
        let reject_owner_7 = |t: &DummyTx| {
            if t.owner == [7; 32] {
                Err("bad signature".to_string())
            } else {
                Ok(())
            }
        };
        let b = child(
            &s,
            &g,
            1000,
            1,
            vec![DummyTx::new(1, 1), DummyTx::new(7, 1)],
        );
        assert_eq!(
            s.add_block(b, 1000, &reject_owner_7),
            Err(BlockError::InvalidTx {
                index: 1,
                reason: "bad signature".into()
            })
        );
        let b1 = child(&s, &g, 1000, 1, vec![DummyTx::new(1, 5)]);
        let h1 = b1.hash();
        add(&mut s, b1, 1000).unwrap_or_else(|e| panic!("{e}"));
        // Replay of seq 5 and an older seq 4: refused with the latest seq.
        for seq in [5, 4] {
            let mut tx = DummyTx::new(1, seq);
            tx.tag = 1;
            let b = child(&s, &h1, 2000, 1, vec![tx]);
            assert_eq!(
                add(&mut s, b, 2000),
                Err(BlockError::StaleSeq {
                    index: 0,
                    seq,
                    latest: 5
                })
            );
        }
        // Within one block: seq must increase too.
        let mut second = DummyTx::new(2, 3);
        second.tag = 1;
        let b = child(&s, &h1, 2000, 1, vec![DummyTx::new(2, 3), second]);
        assert_eq!(
            add(&mut s, b, 2000),
            Err(BlockError::StaleSeq {
                index: 1,
                seq: 3,
                latest: 3
            })
        );
        let b = child(
            &s,
            &h1,
            2000,
            1,
            vec![DummyTx::new(2, 3), DummyTx::new(2, 4), DummyTx::new(1, 6)],
        );
        assert!(matches!(
            add(&mut s, b, 2000),
            Ok(AddOutcome::Extended { .. })
        ));
    }

    #[test]
    fn seq_rule_follows_the_branch() {
        let mut s = store();
        let g = s.genesis();
        let a1 = child(&s, &g, 1000, 1, vec![DummyTx::new(1, 5)]);
        let h_a1 = a1.hash();
        add(&mut s, a1, 1000).unwrap_or_else(|e| panic!("{e}"));
        let a2 = child(&s, &h_a1, 2000, 1, vec![DummyTx::new(1, 9)]);
        add(&mut s, a2, 2000).unwrap_or_else(|e| panic!("{e}"));
        // From genesis, owner 1 has no tx: seq 1 is fine on that branch.
        let b1 = child(&s, &g, 1500, 2, vec![DummyTx::new(1, 1)]);
        let h_b1 = b1.hash();
        assert_eq!(add(&mut s, b1, 2000), Ok(AddOutcome::SideChain));
        // On b1, seq 1 is taken now.
        let b2 = child(&s, &h_b1, 2500, 2, vec![DummyTx::new(1, 1)]);
        assert!(matches!(
            add(&mut s, b2, 3000),
            Err(BlockError::StaleSeq { latest: 1, .. })
        ));
        // Forking off a1 (below the tip a2 with seq 9): seq 6 is above a1's 5.
        let c2 = child(&s, &h_a1, 2100, 3, vec![DummyTx::new(1, 6)]);
        let h_c2 = c2.hash();
        assert_eq!(add(&mut s, c2, 3000), Ok(AddOutcome::SideChain));
        let c3 = child(&s, &h_c2, 3100, 3, vec![DummyTx::new(1, 6)]);
        assert!(matches!(
            add(&mut s, c3, 4000),
            Err(BlockError::StaleSeq { latest: 6, .. })
        ));
    }

    #[test]
    fn time_rules() {
        let mut s = store();
        let g = s.genesis();
        let b = child(&s, &g, 5001, 1, vec![]);
        assert_eq!(
            add(&mut s, b, 3000),
            Err(BlockError::TimeInFuture {
                time_ms: 5001,
                now_ms: 3000
            })
        );
        let b = child(&s, &g, 5000, 1, vec![]);
        assert!(add(&mut s, b, 3000).is_ok());
        // Not above the median time past: a block at the genesis time (0).
        let tip = s.tip().0;
        let mut b = s
            .template_on(&tip, 0, 1, vec![])
            .unwrap_or_else(|| panic!("tip"));
        b.header.time_ms = 0;
        mine_block(&mut b);
        assert_eq!(
            add(&mut s, b, 3000),
            Err(BlockError::TimeNotAboveMedian {
                time_ms: 0,
                median_ms: 5000
            })
        );
    }

    #[test]
    fn orphans_connect_when_the_parent_arrives() {
        let mut src = store();
        let g = src.genesis();
        let hashes = branch(&mut src, g, (1000, 1000), 3, 1);
        let blocks: Vec<Block<DummyTx>> = hashes
            .iter()
            .filter_map(|h| src.block(h).cloned())
            .collect();
        let mut s = store();
        assert_eq!(
            add(&mut s, blocks[2].clone(), 10_000),
            Ok(AddOutcome::Orphan { missing: hashes[1] })
        );
        assert_eq!(
            add(&mut s, blocks[1].clone(), 10_000),
            Ok(AddOutcome::Orphan { missing: hashes[0] })
        );
        assert_eq!(
            add(&mut s, blocks[2].clone(), 10_000),
            Ok(AddOutcome::Duplicate)
        );
        assert_eq!(s.orphan_count(), 2);
        assert_eq!(
            add(&mut s, blocks[0].clone(), 10_000),
            Ok(AddOutcome::Extended {
                added: hashes.clone()
            })
        );
        assert_eq!(s.orphan_count(), 0);
        assert_eq!(s.tip(), (hashes[2], 3));
        let polled: Vec<Hash> = std::iter::from_fn(|| s.poll_connected()).collect();
        assert_eq!(polled, hashes);
    }

    #[test]
    fn invalid_orphan_and_its_descendants_are_dropped() {
        let mut src = store();
        let g = src.genesis();
        let b1 = child(&src, &g, 1000, 1, vec![DummyTx::new(1, 5)]);
        let h1 = b1.hash();
        add(&mut src, b1.clone(), 1000).unwrap_or_else(|e| panic!("{e}"));
        let b2 = child(&src, &h1, 2000, 1, vec![DummyTx::new(2, 1)]);
        let h2 = b2.hash();
        add(&mut src, b2.clone(), 2000).unwrap_or_else(|e| panic!("{e}"));
        let b3 = child(&src, &h2, 3000, 1, vec![]);
        add(&mut src, b3.clone(), 3000).unwrap_or_else(|e| panic!("{e}"));
        let mut s = store();
        add(&mut s, b3, 10_000).unwrap_or_else(|e| panic!("{e}"));
        add(&mut s, b2, 10_000).unwrap_or_else(|e| panic!("{e}"));
        // The receiver's validator refuses owner 2: b2 fails on connect, b3 goes with it.
        let no_owner_2 = |t: &DummyTx| {
            if t.owner == [2; 32] {
                Err("no".to_string())
            } else {
                Ok(())
            }
        };
        assert_eq!(
            s.add_block(b1, 10_000, &no_owner_2),
            Ok(AddOutcome::Extended { added: vec![h1] })
        );
        assert_eq!(s.orphan_count(), 0);
        assert_eq!(s.stats().orphans_rejected, 2);
    }

    #[test]
    fn orphan_pool_is_bounded() {
        let config = ChainConfig {
            max_orphans: 4,
            ..easy_config()
        };
        let mut s: ChainStore<DummyTx> = ChainStore::new(config).unwrap_or_else(|e| panic!("{e}"));
        let g = s.genesis();
        let target = s.expected_target(&g).unwrap_or(MAX_TARGET);
        for i in 0..10u8 {
            let mut b = Block::new(
                BlockHeader {
                    version: 1,
                    prev: [i + 1; 32],
                    merkle_root: [0; 32],
                    time_ms: 1,
                    target,
                    miner: 0,
                    nonce: 0,
                },
                vec![],
            );
            mine_block(&mut b);
            assert_eq!(
                add(&mut s, b, 0),
                Ok(AddOutcome::Orphan {
                    missing: [i + 1; 32]
                })
            );
            assert!(s.orphan_count() <= 4);
        }
        assert_eq!(s.stats().orphans_evicted, 6);
        // A block claiming another genesis is refused, not pooled.
        let mut b = Block::new(
            BlockHeader {
                version: 1,
                prev: [0; 32],
                merkle_root: [0; 32],
                time_ms: 1,
                target,
                miner: 0,
                nonce: 0,
            },
            vec![],
        );
        mine_block(&mut b);
        assert_eq!(add(&mut s, b, 0), Err(BlockError::ForeignGenesis));
    }

    #[test]
    fn reorg_to_more_work_rebuilds_search_table() {
        let mut s = store();
        let g = s.genesis();
        let a1 = child(
            &s,
            &g,
            1000,
            1,
            vec![DummyTx::new(1, 1), DummyTx::new(2, 1)],
        );
        let h_a1 = a1.hash();
        add(&mut s, a1, 5000).unwrap_or_else(|e| panic!("{e}"));
        let a2 = child(&s, &h_a1, 2000, 1, vec![DummyTx::new(1, 2)]);
        let h_a2 = a2.hash();
        add(&mut s, a2, 5000).unwrap_or_else(|e| panic!("{e}"));
        let b1 = child(&s, &g, 1100, 2, vec![DummyTx::new(3, 1)]);
        let h_b1 = b1.hash();
        assert_eq!(add(&mut s, b1, 5000), Ok(AddOutcome::SideChain));
        let b2 = child(&s, &h_b1, 2100, 2, vec![DummyTx::new(1, 7)]);
        let h_b2 = b2.hash();
        // Equal work: the first-seen tip stays.
        assert_eq!(add(&mut s, b2, 5000), Ok(AddOutcome::SideChain));
        assert_eq!(s.tip(), (h_a2, 2));
        let b3 = child(&s, &h_b2, 3100, 2, vec![]);
        let h_b3 = b3.hash();
        assert_eq!(
            add(&mut s, b3, 5000),
            Ok(AddOutcome::Reorg {
                removed: vec![h_a2, h_a1],
                added: vec![h_b1, h_b2, h_b3]
            })
        );
        assert_eq!(s.tip(), (h_b3, 3));
        assert!(s.is_on_best_chain(&h_b1) && !s.is_on_best_chain(&h_a1));
        // The incrementally updated table equals one rebuilt from the best chain.
        let mut rebuilt = SearchTable::new();
        for h in 1..=3 {
            let hash = s.best_hash_at(h).unwrap_or_default();
            rebuilt.apply_block(
                h,
                &s.block(&hash).map(|b| b.txs.clone()).unwrap_or_default(),
            );
        }
        let t = s.search_table();
        assert_eq!(t.len(), rebuilt.len());
        for o in 1..=3u8 {
            let a = t.lookup(&[o; 32]).map(|(tx, h)| (tx.clone(), h));
            let b = rebuilt.lookup(&[o; 32]).map(|(tx, h)| (tx.clone(), h));
            assert_eq!(a, b, "owner {o}");
        }
        assert_eq!(t.lookup(&[1; 32]).map(|(tx, h)| (tx.seq, h)), Some((7, 2)));
        assert_eq!(t.lookup(&[2; 32]).map(|(tx, _)| tx.seq), None);
        assert_eq!(t.confirmations(1), 3);
        // Back again: a4 on a3 beats b3's work only with two more blocks.
        let a3 = branch(&mut s, h_a2, (3000, 1000), 2, 1);
        assert_eq!(s.tip(), (a3[1], 4));
        assert_eq!(
            s.search_table().lookup(&[2; 32]).map(|(tx, h)| (tx.seq, h)),
            Some((1, 1))
        );
    }

    #[test]
    fn retarget_moves_toward_the_block_interval() {
        let config = ChainConfig {
            network_hash_rate: 64.0,
            ..ChainConfig::default()
        };
        let g_target = config.genesis::<DummyTx>().header.target;
        for (spacing, harder) in [(100u64, true), (3000, false), (1000, false)] {
            let mut s: ChainStore<DummyTx> =
                ChainStore::new(config).unwrap_or_else(|e| panic!("{e}"));
            let g = s.genesis();
            let hashes = branch(&mut s, g, (spacing, spacing), 9, 1);
            let tip = hashes[8];
            // Heights 1..9 keep the genesis target; height 10 retargets.
            assert_eq!(s.block(&tip).map(|b| b.header.target), Some(g_target));
            let next = s
                .expected_target(&tip)
                .unwrap_or_else(|| panic!("no target"));
            let (w_old, w_new) = (work(&g_target), work(&next));
            // 9 gaps of `spacing` ms against the unbiased expectation of 8 s.
            let close = |got: u128, num: u128, den: u128| {
                let want = w_old * num / den;
                got.abs_diff(want) <= (want / 1000).max(1)
            };
            match (spacing, harder) {
                (100, _) => assert_eq!(w_new, w_old * 4, "clamped to x4 harder"),
                (3000, _) => assert!(
                    close(w_new, 8, 27),
                    "27 s for 8 s expected: 27/8 easier, got {w_new} from {w_old}"
                ),
                _ => assert!(
                    close(w_new, 8, 9),
                    "9 gaps of 1 s: 9/8 easier (unbiased rule)"
                ),
            }
            // A block at height 10 with the old target is refused when the rule moved it.
            let mut b = s
                .template_on(&tip, spacing * 10, 1, vec![])
                .unwrap_or_else(|| panic!("tip"));
            b.header.target = g_target;
            b.header.nonce = mine(&b.header, 0, u64::MAX).map_or(0, |(n, _)| n);
            let r = add(&mut s, b, 1_000_000);
            if next == g_target {
                assert!(r.is_ok());
            } else {
                assert_eq!(r, Err(BlockError::WrongTarget));
            }
        }
    }

    #[test]
    fn check_block_needs_a_known_parent() {
        let s = store();
        let g = s.genesis();
        let mut b = child(&s, &g, 1000, 1, vec![]);
        assert_eq!(s.check_block(&b, 1000, &ok), Ok(()));
        b.header.prev = [5; 32];
        mine_block(&mut b);
        assert_eq!(s.check_block(&b, 1000, &ok), Err(BlockError::UnknownParent));
    }
}
