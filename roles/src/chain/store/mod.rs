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

use std::collections::{HashMap, VecDeque};

use super::block::Block;
use super::pow::{beats, work};
use super::search_table::SearchTable;
use super::{ChainTx, Hash, TxValidator};

mod config;
mod difficulty;
mod orphans;
mod outcome;
mod sync;
mod validate;

pub use config::{ChainConfig, ConfigError};
use orphans::OrphanPool;
pub use outcome::{AddOutcome, BlockError};

/// Blocks in the median-time-past window (Bitcoin's 11).
pub const MEDIAN_TIME_SPAN: usize = 11;
/// Connected-block notifications kept for [`ChainStore::poll_connected`]; beyond this the
/// oldest are dropped and counted in [`StoreStats::connected_lost`].
pub const CONNECTED_QUEUE_CAP: usize = 65_536;

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
        let (mut best_hash, _) = self.tip();
        let mut best_work = self.tip_work();
        let mut winner = None;
        for h in &connected {
            if let Some(e) = self.entries.get(h)
                && beats(e.work, h, best_work, &best_hash)
            {
                best_work = e.work;
                best_hash = *h;
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
}

#[cfg(test)]
mod tests;
