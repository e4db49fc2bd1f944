//! The ToALL transaction (paper, Figure 6): an end node's signed record of where it is now
//! (private and NAT transport addresses) and how to agree a key with it (DH group and `Y`).
//!
//! The paper splits a Tx into TxIn (public key, signature) and TxOut (hash address, sequence,
//! addresses, DH parameters, time). On the wire TxOut comes first, so the signed bytes are
//! one contiguous prefix that starts with the version byte: the signature covers the
//! version, and a verifier signs/verifies `bytes[..out_len]` without copying.
//!
//! ```text
//!  0      1                 33         41       45     47       51     53         61      63      65
//! +------+--- ... ---------+----------+--------+------+--------+------+----------+-------+-------+--- ... ---+
//! | ver  | hash address    | seq      | priv ip| priv | nat ip | nat  | time_ms  | group | y_len | Y          |
//! | = 1  | SHA-256(pubkey) | u64      |        | port |        | port | u64      | u16   | u16   | y_len bytes|
//! +------+--- ... ---------+----------+--------+------+--------+------+----------+-------+-------+--- ... ---+
//! |<------------------------------------- TxOut: the signed bytes ------------------------------------------>|
//! then TxIn:  +--- 32 ---+--- 64 ---+
//!             | pub key  | signature|   (ed25519)
//!             +----------+----------+
//! ```
//! All integers big-endian. With group 14 (Y = 256 bytes) a Tx is 417 bytes.
//!
//! This layer checks framing only (lengths, version, bounds); whether a Tx is *valid*
//! (address = SHA-256(key), signature, group, range of Y) is `binfm_roles::wallet::verify_tx`.

use std::net::Ipv4Addr;

use sha2::{Digest, Sha256};

use super::codec::{Reader, WireError, copy_into};

/// Length of a hash address: the full SHA-256 of the ed25519 public key. Truncating would
/// save a few bytes per Tx but invite collisions; 32 bytes are cheap next to a 256-byte Y.
pub const HASH_ADDR_LEN: usize = 32;
/// A hash address (paper: `Hash_EN`).
pub type HashAddr = [u8; HASH_ADDR_LEN];
/// DH group id: RFC 3526 group 14 (2048-bit MODP, g = 2). Its Y is exactly 256 bytes, big-endian.
pub const DH_GROUP_MODP2048: u16 = 14;
/// Length of Y in [`DH_GROUP_MODP2048`].
pub const MODP2048_Y_LEN: usize = 256;
/// Largest Y the parser accepts (room for a 4096-bit group later); never allocate more.
pub const MAX_Y_LEN: usize = 512;
/// Current layout version (first byte of a Tx).
pub const TX_VERSION: u8 = 1;
/// Length of an ed25519 public key.
pub const PUBLIC_KEY_LEN: usize = 32;
/// Length of an ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
/// TxOut bytes before Y (version through `y_len`).
pub const TXOUT_FIXED_LEN: usize = 65;
/// TxIn bytes (public key and signature).
pub const TXIN_LEN: usize = PUBLIC_KEY_LEN + SIGNATURE_LEN;

/// The TxOut part: what the owner signs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TxOut {
    /// Owner: SHA-256 of the public key in TxIn.
    pub hash_addr: HashAddr,
    /// Owner's sequence number; a Tx must be above the owner's latest on the chain.
    pub seq: u64,
    /// Private address the EN got from DHCP.
    pub private_ip: Ipv4Addr,
    /// Private UDP port of the EN's control socket.
    pub private_port: u16,
    /// NAT public address (DHCP option 224, or the EN's own address without a NAT).
    pub nat_ip: Ipv4Addr,
    /// NAT public port, as the SN observed it (the EN cannot trust its own H16 guess).
    pub nat_port: u16,
    /// DH group id, [`DH_GROUP_MODP2048`].
    pub dh_group: u16,
    /// DH public value Y = g^X mod p, big-endian, at most [`MAX_Y_LEN`] bytes.
    pub y: Vec<u8>,
    /// Sender's clock in milliseconds; informative only, nothing trusts it.
    pub time_ms: u64,
}

impl TxOut {
    /// Encoded length (the signed bytes).
    pub fn buffer_len(&self) -> usize {
        TXOUT_FIXED_LEN + self.y.len()
    }

    /// Parses a TxOut from the front of `r` (no trailing check: a Tx continues with TxIn).
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<TxOut, WireError> {
        let version = r.u8("tx version")?;
        if version != TX_VERSION {
            return Err(WireError::BadVersion {
                what: "ToALL Tx",
                version,
            });
        }
        let hash_addr = r.array("tx hash address")?;
        let seq = r.u64("tx seq")?;
        let private_ip = Ipv4Addr::from(r.array::<4>("tx private ip")?);
        let private_port = r.u16("tx private port")?;
        let nat_ip = Ipv4Addr::from(r.array::<4>("tx nat ip")?);
        let nat_port = r.u16("tx nat port")?;
        let time_ms = r.u64("tx time")?;
        let dh_group = r.u16("tx dh group")?;
        let y_len = usize::from(r.u16("tx y length")?);
        if y_len > MAX_Y_LEN {
            return Err(WireError::OverBound {
                field: "tx y length",
                len: y_len,
                max: MAX_Y_LEN,
            });
        }
        let y = r.bytes(y_len, "tx y")?.to_vec();
        Ok(TxOut {
            hash_addr,
            seq,
            private_ip,
            private_port,
            nat_ip,
            nat_port,
            dh_group,
            y,
            time_ms,
        })
    }

    /// Parses exactly one TxOut (trailing bytes are an error).
    pub fn parse(data: &[u8]) -> Result<TxOut, WireError> {
        let mut r = Reader::new(data);
        let out = TxOut::read(&mut r)?;
        r.finish()?;
        Ok(out)
    }

    /// Appends the encoding. A Y longer than [`MAX_Y_LEN`] is cut there (it could not be
    /// parsed back); the wallet never produces one.
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        let y = self.y.get(..MAX_Y_LEN).unwrap_or(&self.y);
        out.push(TX_VERSION);
        out.extend_from_slice(&self.hash_addr);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.private_ip.octets());
        out.extend_from_slice(&self.private_port.to_be_bytes());
        out.extend_from_slice(&self.nat_ip.octets());
        out.extend_from_slice(&self.nat_port.to_be_bytes());
        out.extend_from_slice(&self.time_ms.to_be_bytes());
        out.extend_from_slice(&self.dh_group.to_be_bytes());
        // y.len() <= MAX_Y_LEN < u16::MAX
        out.extend_from_slice(&(y.len() as u16).to_be_bytes());
        out.extend_from_slice(y);
    }

    /// The exact bytes the owner signs: the TxOut encoding, version byte included.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.buffer_len());
        self.write(&mut out);
        out
    }

    /// Writes the encoding into `buf`, which must be at least [`TxOut::buffer_len`] long.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        copy_into(&self.signing_bytes(), buf)
    }
}

/// A complete ToALL Tx: TxIn (public key, signature) and TxOut.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ToallTx {
    /// ed25519 public key of the owner.
    pub public_key: [u8; PUBLIC_KEY_LEN],
    /// ed25519 signature over [`TxOut::signing_bytes`].
    pub signature: [u8; SIGNATURE_LEN],
    /// The signed record.
    pub out: TxOut,
}

impl ToallTx {
    /// Encoded length.
    pub fn buffer_len(&self) -> usize {
        self.out.buffer_len() + TXIN_LEN
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<ToallTx, WireError> {
        let out = TxOut::read(r)?;
        let public_key = r.array("tx public key")?;
        let signature = r.array("tx signature")?;
        Ok(ToallTx {
            public_key,
            signature,
            out,
        })
    }

    /// Parses exactly one Tx; trailing bytes are an error, so an encoding is canonical and
    /// [`ToallTx::id`] of a parsed Tx is the hash of the bytes received.
    pub fn parse(data: &[u8]) -> Result<ToallTx, WireError> {
        let mut r = Reader::new(data);
        let tx = ToallTx::read(&mut r)?;
        r.finish()?;
        Ok(tx)
    }

    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        self.out.write(out);
        out.extend_from_slice(&self.public_key);
        out.extend_from_slice(&self.signature);
    }

    /// The encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.buffer_len());
        self.write(&mut out);
        out
    }

    /// Writes the encoding into `buf`, which must be at least [`ToallTx::buffer_len`] long.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        copy_into(&self.to_bytes(), buf)
    }

    /// Tx id: SHA-256 of the whole encoding (for relay de-duplication and acks).
    pub fn id(&self) -> [u8; 32] {
        Sha256::digest(self.to_bytes()).into()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A small Tx (4-byte Y) so the fixture can be written out byte by byte.
    pub(crate) fn small_tx() -> ToallTx {
        ToallTx {
            public_key: [0xaa; 32],
            signature: [0x55; 64],
            out: TxOut {
                hash_addr: [0x11; 32],
                seq: 7,
                private_ip: Ipv4Addr::new(10, 1, 0, 100),
                private_port: 7401,
                nat_ip: Ipv4Addr::new(198, 51, 100, 1),
                nat_port: 0x6a3e,
                dh_group: 14,
                y: vec![1, 2, 3, 4],
                time_ms: 1500,
            },
        }
    }

    pub(crate) fn small_tx_bytes() -> Vec<u8> {
        let mut b = vec![0x01]; // version
        b.extend_from_slice(&[0x11; 32]); // hash address
        b.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 7]); // seq 7
        b.extend_from_slice(&[10, 1, 0, 100, 0x1c, 0xe9]); // 10.1.0.100:7401
        b.extend_from_slice(&[198, 51, 100, 1, 0x6a, 0x3e]); // 198.51.100.1:27198
        b.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0x05, 0xdc]); // time 1500 ms
        b.extend_from_slice(&[0x00, 0x0e]); // group 14
        b.extend_from_slice(&[0x00, 0x04, 1, 2, 3, 4]); // y_len 4, Y
        b.extend_from_slice(&[0xaa; 32]); // public key
        b.extend_from_slice(&[0x55; 64]); // signature
        b
    }

    #[test]
    fn fixture_encodes_and_parses() {
        let tx = small_tx();
        let bytes = small_tx_bytes();
        assert_eq!(bytes.len(), 65 + 4 + 96);
        assert_eq!(tx.buffer_len(), bytes.len());
        assert_eq!(tx.to_bytes(), bytes);
        assert_eq!(ToallTx::parse(&bytes), Ok(tx.clone()));
        assert_eq!(tx.out.signing_bytes(), bytes[..69].to_vec());
        assert_eq!(TxOut::parse(&bytes[..69]), Ok(tx.out.clone()));
        let mut buf = [0u8; 200];
        assert_eq!(tx.emit(&mut buf), Ok(bytes.len()));
        assert_eq!(&buf[..bytes.len()], &bytes[..]);
        assert_eq!(
            tx.emit(&mut buf[..10]),
            Err(WireError::BufferTooSmall {
                need: 165,
                have: 10
            })
        );
    }

    #[test]
    fn group14_tx_is_417_bytes() {
        let mut tx = small_tx();
        tx.out.y = vec![0x42; MODP2048_Y_LEN];
        assert_eq!(tx.buffer_len(), 417);
        assert_eq!(tx.to_bytes().len(), 417);
    }

    #[test]
    fn id_is_sha256_of_encoding() {
        let tx = small_tx();
        let want: [u8; 32] = Sha256::digest(small_tx_bytes()).into();
        assert_eq!(tx.id(), want);
        let mut other = tx.clone();
        other.out.seq += 1;
        assert_ne!(other.id(), tx.id());
    }

    #[test]
    fn parse_errors_name_the_field() {
        let bytes = small_tx_bytes();
        assert_eq!(
            ToallTx::parse(&bytes[..40]),
            Err(WireError::Truncated {
                field: "tx seq",
                need: 8,
                have: 7
            })
        );
        assert_eq!(
            ToallTx::parse(&bytes[..100]).map_err(|e| e.to_string()),
            Err("truncated at tx public key: need 32 bytes, 31 left".to_string())
        );
        let mut bad_version = bytes.clone();
        bad_version[0] = 2;
        assert_eq!(
            ToallTx::parse(&bad_version),
            Err(WireError::BadVersion {
                what: "ToALL Tx",
                version: 2
            })
        );
        let mut long_y = bytes.clone();
        long_y[63..65].copy_from_slice(&513u16.to_be_bytes());
        assert_eq!(
            ToallTx::parse(&long_y),
            Err(WireError::OverBound {
                field: "tx y length",
                len: 513,
                max: 512
            })
        );
        let mut huge_y = bytes.clone();
        huge_y[63..65].copy_from_slice(&500u16.to_be_bytes());
        assert!(matches!(
            ToallTx::parse(&huge_y),
            Err(WireError::Truncated { field: "tx y", .. })
        ));
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert_eq!(
            ToallTx::parse(&trailing),
            Err(WireError::TrailingBytes { len: 1 })
        );
        assert!(ToallTx::parse(&[]).is_err());
    }

    pub(crate) fn arb_tx() -> impl Strategy<Value = ToallTx> {
        (
            (
                any::<[u8; 32]>(),
                any::<u64>(),
                any::<u32>(),
                any::<u16>(),
                any::<u32>(),
                any::<u16>(),
            ),
            (
                any::<u16>(),
                proptest::collection::vec(any::<u8>(), 0..=MAX_Y_LEN),
                any::<u64>(),
                any::<[u8; 32]>(),
                proptest::collection::vec(any::<u8>(), 64),
            ),
        )
            .prop_map(
                |((hash_addr, seq, pip, pport, nip, nport), (group, y, time_ms, pk, sig))| {
                    let mut signature = [0u8; 64];
                    signature.copy_from_slice(&sig);
                    ToallTx {
                        public_key: pk,
                        signature,
                        out: TxOut {
                            hash_addr,
                            seq,
                            private_ip: Ipv4Addr::from(pip),
                            private_port: pport,
                            nat_ip: Ipv4Addr::from(nip),
                            nat_port: nport,
                            dh_group: group,
                            y,
                            time_ms,
                        },
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn roundtrip(tx in arb_tx()) {
            let bytes = tx.to_bytes();
            prop_assert_eq!(bytes.len(), tx.buffer_len());
            prop_assert_eq!(ToallTx::parse(&bytes), Ok(tx));
        }

        #[test]
        fn parse_never_panics_and_is_canonical(data in proptest::collection::vec(any::<u8>(), 0..700)) {
            let _ = TxOut::parse(&data);
            if let Ok(tx) = ToallTx::parse(&data) {
                prop_assert_eq!(tx.to_bytes(), data);
            }
        }

        #[test]
        fn mutated_fixture_never_panics(idx in 0usize..165, val in any::<u8>(), cut in 0usize..=165) {
            let mut data = small_tx_bytes();
            data[idx] = val;
            data.truncate(cut);
            if let Ok(tx) = ToallTx::parse(&data) {
                prop_assert_eq!(tx.to_bytes(), data);
            }
        }
    }
}
