//! Catching a peer up: the block locator of the best chain and the blocks after one.

use super::ChainStore;
use crate::chain::block::Block;
use crate::chain::{ChainTx, Hash};

impl<T: ChainTx> ChainStore<T> {
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
