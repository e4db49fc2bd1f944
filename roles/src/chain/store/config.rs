//! The chain parameters, their genesis block and their sanity check.

use crate::chain::ChainTx;
use crate::chain::block::{
    BLOCK_BYTES_CEILING, BLOCK_VERSION, Block, BlockHeader, HEADER_LEN, MAX_BLOCK_BYTES,
};
use crate::chain::pow::target_for_hashes;

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
    /// Largest encoded block (header included), at most [`BLOCK_BYTES_CEILING`]: a consensus
    /// rule, so every SN of a run must share it.
    pub max_block_bytes: usize,
}

impl Default for ChainConfig {
    /// Genesis at 0 ms, 100,000 hashes/s in total, 1 s blocks, retarget every 10 blocks,
    /// 256 orphans, 2 s of allowed clock lead, 60,000-byte blocks.
    fn default() -> Self {
        ChainConfig {
            genesis_time_ms: 0,
            network_hash_rate: 100_000.0,
            block_interval_ms: 1000,
            retarget_interval: 10,
            max_orphans: 256,
            max_future_ms: 2000,
            max_block_bytes: MAX_BLOCK_BYTES,
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

    pub(super) fn check(&self) -> Result<(), ConfigError> {
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
        if !(HEADER_LEN + 4..=BLOCK_BYTES_CEILING).contains(&self.max_block_bytes) {
            return Err(ConfigError::MaxBlockBytes(self.max_block_bytes));
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
    /// Block size limit below an empty block or above [`BLOCK_BYTES_CEILING`].
    #[error("max_block_bytes must be 124..=8000000, got {0}")]
    MaxBlockBytes(usize),
}
