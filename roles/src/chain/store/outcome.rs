//! What adding a block did, and why a block was refused.

use crate::chain::Hash;

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
    /// More than [`ChainConfig::max_block_bytes`] encoded or too many txs.
    ///
    /// [`ChainConfig::max_block_bytes`]: crate::chain::ChainConfig::max_block_bytes
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
    ///
    /// [`ChainStore::check_block`]: super::ChainStore::check_block
    #[error("parent block unknown")]
    UnknownParent,
    /// Target differs from the retarget rule's expectation on this branch.
    #[error("target differs from the retarget rule's expectation for this height")]
    WrongTarget,
    /// Time not above the median of the last [`MEDIAN_TIME_SPAN`] blocks of the branch.
    ///
    /// [`MEDIAN_TIME_SPAN`]: super::MEDIAN_TIME_SPAN
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
