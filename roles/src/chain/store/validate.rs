//! Block validation: the context-free checks and the checks against the parent's branch.

use std::collections::{HashMap, HashSet};

use super::{BlockError, ChainStore};
use crate::chain::block::{BLOCK_VERSION, Block, MAX_BLOCK_TXS, max_txs_in};
use crate::chain::pow::meets_target;
use crate::chain::{ChainTx, Hash, TxValidator};

impl<T: ChainTx> ChainStore<T> {
    /// Checks that need no parent: version, PoW, size, clock lead, Merkle root, repeats.
    pub(super) fn check_standalone(
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
        let max_bytes = self.config.max_block_bytes;
        if block.txs.len() > max_txs_in(max_bytes).min(MAX_BLOCK_TXS) {
            return Err(BlockError::Oversized {
                bytes: 0,
                txs: block.txs.len(),
            });
        }
        let bytes = block.encoded_len();
        if bytes > max_bytes {
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
        if crate::chain::merkle::merkle_root(&ids) != h.merkle_root {
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
    pub(super) fn check_contextual(
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
        if let Some((index, reason)) = validate.first_invalid(&block.txs) {
            return Err(BlockError::InvalidTx { index, reason });
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
}
