//! The per-branch time and target rules (median time past, retargeting) and block templates.

use super::{ChainStore, Entry, MEDIAN_TIME_SPAN};
use crate::chain::block::{BLOCK_VERSION, Block, BlockHeader};
use crate::chain::pow::retarget;
use crate::chain::{ChainTx, Hash};

impl<T: ChainTx> ChainStore<T> {
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
}
