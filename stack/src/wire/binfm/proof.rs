//! What lets an end node check a super node's answer instead of trusting it
//! (`docs/binfm-wire.md`, "Proofs and headers"): the Merkle inclusion proof a Reply carries
//! for its Tx, and the block headers an SN pushes to its end nodes (Headers) or sends when
//! asked (GetHeaders), which the end node follows as a light client.
//!
//! Block headers are opaque 120-byte strings here (their fields are the chain's business,
//! `binfm_roles::chain::BlockHeader`). Every count is bounded and checked before anything is
//! read, so a parser never allocates more than the datagram holds.
//!
//! ```text
//! proof:       header[120] index u16 depth u8 sibling[32] * depth     (123 + 32 depth bytes)
//! Headers:     count u8 header[120] * count                           (count <= MAX_HEADERS)
//! GetHeaders:  count u8 hash[32] * count                              (1 <= count <= MAX_LOCATOR)
//! ```

use super::super::codec::{Reader, WireError};

/// Encoded length of a block header.
pub const BLOCK_HEADER_LEN: usize = 120;
/// Most siblings in a proof: a Merkle tree of depth 12, so a block holds at most 4,096 Txs
/// (`chain::MAX_BLOCK_TXS`, a consensus rule), enough for 1,000 Txs a second at 1 s blocks
/// with room. A Reply with one Tx and the deepest proof is 977 bytes of UDP payload; with a
/// second (unconfirmed) Tx as well it would be 1,394, so an SN leaves the unconfirmed Tx out
/// of a Reply that would pass [`MAX_REPLY_LEN`] (it does for proofs of depth 9 or more).
pub const MAX_PROOF_DEPTH: usize = 12;
/// Largest Reply an SN sends (bytes of UDP payload): like a BlockPart, below 1,280 bytes, so
/// no IP fragmentation on any path here.
pub const MAX_REPLY_LEN: usize = 1_280;
/// Most headers in one Headers message (8 × 120 bytes: the datagram stays below 1,280 bytes).
pub const MAX_HEADERS: usize = 8;
/// Most hashes in a GetHeaders locator.
pub const MAX_LOCATOR: usize = 32;

/// A block header as carried on the wire.
pub type RawHeader = [u8; BLOCK_HEADER_LEN];

/// Where a Tx sits in a block: the block's header and the Merkle path from the Tx id to the
/// header's root. At level `i` the sibling is on the left when bit `i` of `index` is 1.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TxProof {
    /// The header of the block holding the Tx.
    pub header: RawHeader,
    /// Position of the Tx in the block; below `2^siblings.len()`.
    pub index: u16,
    /// Sibling hashes from the leaf level up; at most [`MAX_PROOF_DEPTH`].
    pub siblings: Vec<[u8; 32]>,
}

impl TxProof {
    /// Encoded length.
    pub fn buffer_len(&self) -> usize {
        BLOCK_HEADER_LEN + 3 + 32 * self.siblings.len().min(MAX_PROOF_DEPTH)
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<TxProof, WireError> {
        let header = r.array("proof header")?;
        let index = r.u16("proof index")?;
        let depth = usize::from(r.u8("proof depth")?);
        if depth > MAX_PROOF_DEPTH {
            return Err(WireError::OverBound {
                field: "proof depth",
                len: depth,
                max: MAX_PROOF_DEPTH,
            });
        }
        if u32::from(index) >> depth != 0 {
            return Err(WireError::BadValue {
                field: "proof index (must be below 2^depth)",
                value: u64::from(index),
            });
        }
        let mut siblings = Vec::with_capacity(depth);
        for _ in 0..depth {
            siblings.push(r.array("proof sibling")?);
        }
        Ok(TxProof {
            header,
            index,
            siblings,
        })
    }

    /// Siblings beyond [`MAX_PROOF_DEPTH`] are cut (they could not be parsed back).
    pub(crate) fn write(&self, b: &mut Vec<u8>) {
        let siblings = self
            .siblings
            .get(..MAX_PROOF_DEPTH)
            .unwrap_or(&self.siblings);
        b.extend_from_slice(&self.header);
        b.extend_from_slice(&self.index.to_be_bytes());
        // siblings.len() <= MAX_PROOF_DEPTH < 256
        b.push(siblings.len() as u8);
        for s in siblings {
            b.extend_from_slice(s);
        }
    }
}

/// Reads `count u8` then `count` fixed-size items, `min..=max` of them.
pub(crate) fn read_list<const N: usize>(
    r: &mut Reader<'_>,
    min: usize,
    max: usize,
    field: &'static str,
) -> Result<Vec<[u8; N]>, WireError> {
    let count = usize::from(r.u8(field)?);
    if count > max {
        return Err(WireError::OverBound {
            field,
            len: count,
            max,
        });
    }
    if count < min {
        return Err(WireError::BadValue {
            field,
            value: count as u64,
        });
    }
    let mut items = Vec::with_capacity(count);
    for _ in 0..count {
        items.push(r.array(field)?);
    }
    Ok(items)
}

/// Writes `count u8` and at most `max` items.
pub(crate) fn write_list<const N: usize>(b: &mut Vec<u8>, items: &[[u8; N]], max: usize) {
    let items = items.get(..max).unwrap_or(items);
    // items.len() <= max <= 255
    b.push(items.len() as u8);
    for i in items {
        b.extend_from_slice(i);
    }
}
