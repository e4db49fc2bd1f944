//! Blocks: a 120-byte header and a list of txs, with a total, bounded decoder.
//!
//! Header layout (big-endian integers):
//! `version u32 | prev [32] | merkle_root [32] | time_ms u64 | target [32] | miner u32 |
//! nonce u64`. The nonce comes last so the first 64 bytes (one SHA-256 block) are the same
//! for every try (see [`super::pow::mine`]). Block: `header | tx_count u32 | (len u32 | tx)*`.

use binfm_stack::wire::binfm::MAX_PROOF_DEPTH;
use sha2::{Digest, Sha256};

use super::merkle::merkle_root;
use super::{ChainTx, Hash};

/// The only header version accepted.
pub const BLOCK_VERSION: u32 = 1;
/// Encoded header size.
pub const HEADER_LEN: usize = 120;
/// Offset of the nonce in the encoded header.
pub const NONCE_OFFSET: usize = 112;
/// Default largest encoded block ([`ChainConfig::max_block_bytes`]): about 140 ToALL Txs,
/// and one UDP datagram (65,507 bytes) with room for the message framing.
///
/// [`ChainConfig::max_block_bytes`]: crate::chain::ChainConfig::max_block_bytes
pub const MAX_BLOCK_BYTES: usize = 60_000;
/// Most txs a default-sized block can hold (each costs at least its 4-byte length prefix).
pub const MAX_TXS_PER_BLOCK: usize = max_txs_in(MAX_BLOCK_BYTES);
/// Largest block size a configuration may choose (8 MB): bounds the decoder, the block log's
/// records and the SN's reassembly buffers. Blocks above a datagram travel in parts
/// (`BlockPart`).
pub const BLOCK_BYTES_CEILING: usize = 8_000_000;

/// Most txs in any block, a consensus rule: 2^[`MAX_PROOF_DEPTH`], so every Tx on the chain
/// has a Merkle path a Reply can carry (an SN could not prove a Tx of a larger block, and its
/// ENs would refuse the Reply).
pub const MAX_BLOCK_TXS: usize = 1 << MAX_PROOF_DEPTH;

/// Most txs a block of `max_bytes` can hold (each costs at least its 4-byte length prefix).
pub const fn max_txs_in(max_bytes: usize) -> usize {
    max_bytes.saturating_sub(HEADER_LEN + 4) / 4
}

/// A block header; its hash is SHA-256 of [`BlockHeader::encode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockHeader {
    /// [`BLOCK_VERSION`].
    pub version: u32,
    /// Hash of the parent header (zero for genesis).
    pub prev: Hash,
    /// Merkle root of the tx ids.
    pub merkle_root: Hash,
    /// Block time, milliseconds since the run's epoch.
    pub time_ms: u64,
    /// Full 256-bit big-endian target the hash must not exceed.
    pub target: Hash,
    /// Id of the SN that mined it (for metrics and tie analysis).
    pub miner: u32,
    /// Proof-of-work nonce.
    pub nonce: u64,
}

impl BlockHeader {
    /// The 120-byte encoding.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&self.version.to_be_bytes());
        b[4..36].copy_from_slice(&self.prev);
        b[36..68].copy_from_slice(&self.merkle_root);
        b[68..76].copy_from_slice(&self.time_ms.to_be_bytes());
        b[76..108].copy_from_slice(&self.target);
        b[108..112].copy_from_slice(&self.miner.to_be_bytes());
        b[NONCE_OFFSET..HEADER_LEN].copy_from_slice(&self.nonce.to_be_bytes());
        b
    }

    /// Parses exactly [`HEADER_LEN`] bytes.
    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader { buf: b, pos: 0 };
        let h = r.header()?;
        if r.pos != b.len() {
            return Err(DecodeError::TrailingBytes {
                extra: b.len() - r.pos,
            });
        }
        Ok(h)
    }

    /// SHA-256 of the encoded header: the block hash and the proof of work.
    pub fn hash(&self) -> Hash {
        Sha256::digest(self.encode()).into()
    }
}

/// A header and its txs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block<T> {
    /// The header.
    pub header: BlockHeader,
    /// Txs in block order.
    pub txs: Vec<T>,
}

/// Why bytes are not a block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ends inside a field.
    #[error("truncated block: need {need} bytes at offset {at}, have {have}")]
    Truncated {
        /// Offset of the field.
        at: usize,
        /// Bytes the field needs.
        need: usize,
        /// Bytes left.
        have: usize,
    },
    /// The input is longer than the block size limit.
    #[error("block of {bytes} bytes exceeds the block size limit")]
    TooLarge {
        /// Input length.
        bytes: usize,
    },
    /// The tx count cannot fit in the remaining bytes.
    #[error("tx count {count} impossible with {remaining} bytes left")]
    BadTxCount {
        /// Declared count.
        count: u32,
        /// Bytes after the count.
        remaining: usize,
    },
    /// A tx's own decoder refused it.
    #[error("tx {index}: {reason}")]
    Tx {
        /// Position in the block.
        index: usize,
        /// The decoder's message.
        reason: String,
    },
    /// Bytes after the last tx.
    #[error("{extra} trailing bytes after the block")]
    TrailingBytes {
        /// How many.
        extra: usize,
    },
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let have = self.buf.len().saturating_sub(self.pos);
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        match end.and_then(|e| self.buf.get(self.pos..e)) {
            Some(s) => {
                self.pos += n;
                Ok(s)
            }
            None => Err(DecodeError::Truncated {
                at: self.pos,
                need: n,
                have,
            }),
        }
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        self.array().map(u32::from_be_bytes)
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        self.array().map(u64::from_be_bytes)
    }

    fn header(&mut self) -> Result<BlockHeader, DecodeError> {
        Ok(BlockHeader {
            version: self.u32()?,
            prev: self.array()?,
            merkle_root: self.array()?,
            time_ms: self.u64()?,
            target: self.array()?,
            miner: self.u32()?,
            nonce: self.u64()?,
        })
    }
}

impl<T: ChainTx> Block<T> {
    /// A block whose header's Merkle root is computed from `txs`.
    pub fn new(mut header: BlockHeader, txs: Vec<T>) -> Self {
        header.merkle_root = Self::root_of(&txs);
        Block { header, txs }
    }

    /// The block hash (header hash).
    pub fn hash(&self) -> Hash {
        self.header.hash()
    }

    /// The Merkle root of this block's tx ids (compare with `header.merkle_root`).
    pub fn computed_merkle_root(&self) -> Hash {
        Self::root_of(&self.txs)
    }

    fn root_of(txs: &[T]) -> Hash {
        let ids: Vec<Hash> = txs.iter().map(ChainTx::id).collect();
        merkle_root(&ids)
    }

    /// The wire encoding (may exceed [`MAX_BLOCK_BYTES`]; the store refuses such blocks).
    pub fn encode(&self) -> Vec<u8> {
        let encoded: Vec<Vec<u8>> = self.txs.iter().map(ChainTx::encode).collect();
        let len = HEADER_LEN + 4 + encoded.iter().map(|t| 4 + t.len()).sum::<usize>();
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(&self.header.encode());
        out.extend_from_slice(&(encoded.len() as u32).to_be_bytes());
        for t in &encoded {
            out.extend_from_slice(&(t.len() as u32).to_be_bytes());
            out.extend_from_slice(t);
        }
        out
    }

    /// Encoded size without building the encoding twice elsewhere.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + 4 + self.txs.iter().map(|t| 4 + t.encode().len()).sum::<usize>()
    }

    /// Total, bounded decoder: the input size is checked against [`MAX_BLOCK_BYTES`] first,
    /// the tx count against the bytes left (each tx needs its 4-byte length), every length
    /// against the input, and trailing bytes are refused.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        Self::decode_max(bytes, MAX_BLOCK_BYTES)
    }

    /// [`Block::decode`] with the chain's configured size limit `max_bytes`.
    pub fn decode_max(bytes: &[u8], max_bytes: usize) -> Result<Self, DecodeError> {
        if bytes.len() > max_bytes.min(BLOCK_BYTES_CEILING) {
            return Err(DecodeError::TooLarge { bytes: bytes.len() });
        }
        let mut r = Reader { buf: bytes, pos: 0 };
        let header = r.header()?;
        let count = r.u32()?;
        let remaining = bytes.len() - r.pos;
        if count as usize > remaining / 4 {
            return Err(DecodeError::BadTxCount { count, remaining });
        }
        let mut txs = Vec::with_capacity(count as usize);
        for index in 0..count as usize {
            let len = r.u32()? as usize;
            let raw = r.take(len)?;
            let tx = T::decode(raw).map_err(|reason| DecodeError::Tx { index, reason })?;
            txs.push(tx);
        }
        if r.pos != bytes.len() {
            return Err(DecodeError::TrailingBytes {
                extra: bytes.len() - r.pos,
            });
        }
        Ok(Block { header, txs })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::test_util::DummyTx;
    use super::*;

    fn header() -> BlockHeader {
        BlockHeader {
            version: 1,
            prev: [0xaa; 32],
            merkle_root: [0xbb; 32],
            time_ms: 0x0102_0304_0506_0708,
            target: [0xcc; 32],
            miner: 0x0a0b_0c0d,
            nonce: 0x1112_1314_1516_1718,
        }
    }

    #[test]
    fn header_byte_fixture() {
        let mut want = vec![0, 0, 0, 1];
        want.extend([0xaa; 32]);
        want.extend([0xbb; 32]);
        want.extend([1, 2, 3, 4, 5, 6, 7, 8]);
        want.extend([0xcc; 32]);
        want.extend([0x0a, 0x0b, 0x0c, 0x0d]);
        want.extend([0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18]);
        let enc = header().encode();
        assert_eq!(enc.to_vec(), want);
        assert_eq!(BlockHeader::decode(&enc), Ok(header()));
        let want_hash: Hash = Sha256::digest(&want).into();
        assert_eq!(header().hash(), want_hash);
        assert!(matches!(
            BlockHeader::decode(&enc[..119]),
            Err(DecodeError::Truncated {
                at: 112,
                need: 8,
                have: 7
            })
        ));
    }

    #[test]
    fn block_roundtrip_and_errors() {
        let b = Block::new(header(), vec![DummyTx::new(1, 5), DummyTx::new(2, 6)]);
        assert_eq!(b.header.merkle_root, b.computed_merkle_root());
        let enc = b.encode();
        assert_eq!(enc.len(), b.encoded_len());
        assert_eq!(enc.len(), HEADER_LEN + 4 + 2 * (4 + 48));
        assert_eq!(Block::<DummyTx>::decode(&enc), Ok(b.clone()));

        let mut extra = enc.clone();
        extra.push(0);
        assert_eq!(
            Block::<DummyTx>::decode(&extra),
            Err(DecodeError::TrailingBytes { extra: 1 })
        );
        assert!(matches!(
            Block::<DummyTx>::decode(&enc[..enc.len() - 1]),
            Err(DecodeError::Truncated { .. })
        ));
        let mut huge_count = enc.clone();
        huge_count[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            Block::<DummyTx>::decode(&huge_count),
            Err(DecodeError::BadTxCount {
                count: u32::MAX,
                ..
            })
        ));
        let mut bad_tx = enc.clone();
        bad_tx[HEADER_LEN + 4..HEADER_LEN + 8].copy_from_slice(&47u32.to_be_bytes());
        assert!(matches!(
            Block::<DummyTx>::decode(&bad_tx),
            Err(DecodeError::Tx { index: 0, .. })
        ));
        assert!(matches!(
            Block::<DummyTx>::decode(&vec![0; MAX_BLOCK_BYTES + 1]),
            Err(DecodeError::TooLarge { .. })
        ));
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = Block::<DummyTx>::decode(&bytes);
        }

        #[test]
        fn decode_never_panics_after_a_valid_header(
            tail in proptest::collection::vec(any::<u8>(), 0..400),
        ) {
            let mut bytes = header().encode().to_vec();
            bytes.extend(tail);
            let _ = Block::<DummyTx>::decode(&bytes);
        }
    }
}
