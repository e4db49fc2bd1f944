//! The smart wallet (paper, section 3.1 and Figure 5): an end node's identity (ed25519 key,
//! hash address), its current DH secret, its sequence number and its current addresses. It
//! issues signed ToALL Txs; it never stores the chain (the SNs do).
//!
//! [`verify_tx`] is the stateless half of Tx validity that every SN runs on receipt
//! ([`verify_txs`] for many Txs at once, with one ed25519 batch); the sequence rule needs
//! chain state and lives with the chain, which reports it as [`TxError::StaleSeq`].

use std::net::{Ipv4Addr, SocketAddrV4};

use binfm_stack::wire::binfm::reject;
use binfm_stack::wire::toall::{DH_GROUP_MODP2048, HashAddr, ToallTx, TxOut};
use ed25519_dalek::{Signer, SigningKey};
use sha2::{Digest, Sha256};

use crate::dh::{DhError, DhSecret, validate_public};
use crate::ed25519::{KeyCache, Prepared, SigError, verify_each};

/// Hash address of an ed25519 public key: its full SHA-256.
pub fn hash_addr_of(public_key: &[u8; 32]) -> HashAddr {
    Sha256::digest(public_key).into()
}

/// An end node's wallet. `Clone` lets a test or fuzz target build one (a 2048-bit DH key
/// generation) once and copy it.
#[derive(Debug, Clone)]
pub struct Wallet {
    signing: SigningKey,
    public_key: [u8; 32],
    hash_addr: HashAddr,
    dh: DhSecret,
    seq: u64,
    private: SocketAddrV4,
    nat: SocketAddrV4,
}

impl Wallet {
    /// Identity from a 32-byte seed (the ed25519 secret key), so runs are reproducible; the
    /// DH secret is drawn from `dh_rng`. Addresses start unspecified until
    /// [`Wallet::set_addresses`].
    pub fn from_seed<R: rand::CryptoRng + ?Sized>(seed: [u8; 32], dh_rng: &mut R) -> Wallet {
        let signing = SigningKey::from_bytes(&seed);
        let public_key = signing.verifying_key().to_bytes();
        let unspecified = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0);
        Wallet {
            signing,
            public_key,
            hash_addr: hash_addr_of(&public_key),
            dh: DhSecret::generate(dh_rng),
            seq: 0,
            private: unspecified,
            nat: unspecified,
        }
    }

    /// SHA-256 of the public key (32 bytes): the EN's name on the chain.
    pub fn hash_addr(&self) -> HashAddr {
        self.hash_addr
    }

    /// ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.public_key
    }

    /// Current DH secret (its Y goes into the next Tx).
    pub fn dh(&self) -> &DhSecret {
        &self.dh
    }

    /// Records the EN's current private address and its NAT mapping (as the SN observed it).
    pub fn set_addresses(&mut self, private: SocketAddrV4, nat: SocketAddrV4) {
        self.private = private;
        self.nat = nat;
    }

    /// Current private address.
    pub fn private_addr(&self) -> SocketAddrV4 {
        self.private
    }

    /// Current NAT public address.
    pub fn nat_addr(&self) -> SocketAddrV4 {
        self.nat
    }

    /// Key renewal (paper, Figure 10): a new X, announced by the next Tx.
    pub fn renew_dh<R: rand::CryptoRng + ?Sized>(&mut self, rng: &mut R) {
        self.dh = DhSecret::generate(rng);
    }

    /// Sequence number of the last Tx issued (0 before the first).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// After a restart the wallet may have lost its counter: continue above `seq` (e.g. the
    /// latest one a Query returned) so the next Tx is not stale. Never goes backwards.
    pub fn resume_after(&mut self, seq: u64) {
        self.seq = self.seq.max(seq);
    }

    /// Signs `labelled` with the identity key (ed25519). Only for byte strings that start
    /// with their own domain label (the Session Request's signing input does), so such a
    /// signature can never pass for a Tx's.
    pub fn sign(&self, labelled: &[u8]) -> [u8; 64] {
        self.signing.sign(labelled).to_bytes()
    }

    /// A new signed Tx with the current addresses and Y; increments the sequence number.
    pub fn next_tx(&mut self, time_ms: u64) -> ToallTx {
        self.seq = self.seq.saturating_add(1);
        let out = TxOut {
            hash_addr: self.hash_addr,
            seq: self.seq,
            private_ip: *self.private.ip(),
            private_port: self.private.port(),
            nat_ip: *self.nat.ip(),
            nat_port: self.nat.port(),
            dh_group: DH_GROUP_MODP2048,
            y: self.dh.public(),
            time_ms,
        };
        let signature = self.signing.sign(&out.signing_bytes()).to_bytes();
        ToallTx {
            public_key: self.public_key,
            signature,
            out,
        }
    }
}

/// Why a Tx is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    /// SHA-256 of the Tx's public key is not its hash address.
    #[error("Tx hash address is not SHA-256 of its public key")]
    AddressMismatch,
    /// The signature does not verify over the TxOut bytes.
    #[error("Tx signature does not verify")]
    BadSignature,
    /// The public key is not a canonical encoding of a curve point, or is of small order.
    #[error("Tx public key is not a valid ed25519 key")]
    BadPublicKey,
    /// Group other than 14.
    #[error("Tx DH group is not 14 (RFC 3526 MODP-2048)")]
    BadDhGroup,
    /// Y has the wrong length or is out of range.
    #[error("Tx DH public value: {0}")]
    BadY(DhError),
    /// Sequence number not above the owner's latest known one (chain state).
    #[error("Tx sequence {got} is not above the owner's latest {have}")]
    StaleSeq {
        /// Latest known.
        have: u64,
        /// In this Tx.
        got: u64,
    },
}

impl TxError {
    /// Reason code for [`binfm_stack::wire::binfm::TxStatus::Rejected`].
    pub fn reject_code(self) -> u8 {
        match self {
            TxError::AddressMismatch => reject::ADDRESS_MISMATCH,
            TxError::BadSignature => reject::BAD_SIGNATURE,
            TxError::BadPublicKey => reject::BAD_PUBLIC_KEY,
            TxError::BadDhGroup => reject::BAD_DH_GROUP,
            TxError::BadY(_) => reject::BAD_Y,
            TxError::StaleSeq { .. } => reject::STALE_SEQ,
        }
    }
}

impl From<SigError> for TxError {
    fn from(e: SigError) -> Self {
        if e.is_key_error() {
            TxError::BadPublicKey
        } else {
            TxError::BadSignature
        }
    }
}

/// The checks of [`verify_tx`] before the signature: SHA-256(public key) == hash address,
/// group 14, `1 < Y < p-1`.
fn check_fields(tx: &ToallTx) -> Result<(), TxError> {
    if hash_addr_of(&tx.public_key) != tx.out.hash_addr {
        return Err(TxError::AddressMismatch);
    }
    if tx.out.dh_group != DH_GROUP_MODP2048 {
        return Err(TxError::BadDhGroup);
    }
    validate_public(&tx.out.y).map_err(TxError::BadY)
}

/// The fields checks, then the key and signature encodings (the equation is left to do).
fn prepare(tx: &ToallTx, keys: &KeyCache) -> Result<Prepared, TxError> {
    check_fields(tx)?;
    Ok(Prepared::cached(
        keys,
        &tx.public_key,
        &tx.out.signing_bytes(),
        &tx.signature,
    )?)
}

/// Stateless validity: SHA-256(public key) == hash address, group is 14, `1 < Y < p-1`, and
/// the signature over the exact TxOut bytes verifies under the chain's ed25519 rule
/// ([`crate::ed25519`]: canonical encodings, no small-order key or `R`, `s < l`, cofactored
/// equation). Cheap checks first; the signature last. The same rule as [`verify_txs`], so a
/// Tx is valid or not whether it is checked alone or in a batch.
pub fn verify_tx(tx: &ToallTx) -> Result<(), TxError> {
    verify_tx_cached(tx, &mut KeyCache::new(0))
}

/// [`verify_tx`] for many Txs at once (a block, a burst of submissions): one result per Tx,
/// in order, each exactly what [`verify_tx`] says for it. The cheap checks run per Tx; the
/// signatures of the Txs that pass them are verified in one ed25519 batch, and only if the
/// batch fails one by one (see [`crate::ed25519::verify_prepared`]). Allocation is linear in
/// `txs.len()`: callers pass bounded slices.
pub fn verify_txs(txs: &[&ToallTx]) -> Vec<Result<(), TxError>> {
    verify_txs_cached(txs, &mut KeyCache::new(0))
}

/// [`verify_tx`] taking the owner's key from `keys` when it is known and keeping it there
/// when the Tx verifies: the same result, without decoding a known key again.
pub fn verify_tx_cached(tx: &ToallTx, keys: &mut KeyCache) -> Result<(), TxError> {
    let p = prepare(tx, keys)?;
    p.verify()?;
    keys.keep(&p);
    Ok(())
}

/// [`verify_txs`] with known keys from `keys`, keeping there the keys of the Txs that
/// verified: the same results (what a super node uses, see [`KeyCache`]).
pub fn verify_txs_cached(txs: &[&ToallTx], keys: &mut KeyCache) -> Vec<Result<(), TxError>> {
    verify_each(txs, keys, |tx, keys| prepare(tx, keys), TxError::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn wallet(seed: u8) -> Wallet {
        let mut w = Wallet::from_seed([seed; 32], &mut ChaCha20Rng::seed_from_u64(seed.into()));
        w.set_addresses(
            SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, 100), 7401),
            SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 1), 27198),
        );
        w
    }

    #[test]
    fn valid_tx_verifies_and_roundtrips() {
        let mut w = wallet(1);
        assert_eq!(w.seq(), 0);
        let tx = w.next_tx(1234);
        assert_eq!(w.seq(), 1);
        assert_eq!(tx.out.seq, 1);
        assert_eq!(tx.out.hash_addr, w.hash_addr());
        assert_eq!(tx.out.private_port, 7401);
        assert_eq!(tx.out.nat_port, 27198);
        assert_eq!(tx.out.y, w.dh().public());
        assert_eq!(verify_tx(&tx), Ok(()));
        let bytes = tx.to_bytes();
        assert_eq!(bytes.len(), 417);
        let back = ToallTx::parse(&bytes).expect("parses");
        assert_eq!(verify_tx(&back), Ok(()));
        assert_eq!(w.next_tx(1300).out.seq, 2);
    }

    #[test]
    fn identity_is_deterministic() {
        let a = wallet(5);
        let b = wallet(5);
        assert_eq!(a.public_key(), b.public_key());
        assert_eq!(a.hash_addr(), hash_addr_of(&a.public_key()));
        assert_eq!(a.dh().public(), b.dh().public());
        assert_ne!(a.hash_addr(), wallet(6).hash_addr());
    }

    #[test]
    fn renew_dh_changes_y() {
        let mut w = wallet(2);
        let y0 = w.dh().public();
        w.renew_dh(&mut ChaCha20Rng::seed_from_u64(99));
        assert_ne!(w.dh().public(), y0);
        assert_eq!(verify_tx(&w.next_tx(0)), Ok(()));
    }

    #[test]
    fn resume_after_never_goes_back() {
        let mut w = wallet(3);
        w.resume_after(10);
        assert_eq!(w.next_tx(0).out.seq, 11);
        w.resume_after(4);
        assert_eq!(w.seq(), 11);
    }

    #[test]
    fn forged_signature() {
        let mut tx = wallet(1).next_tx(0);
        tx.signature[10] ^= 1;
        assert_eq!(verify_tx(&tx), Err(TxError::BadSignature));
        // A field changed after signing (the NAT port, as a hijacker would).
        let mut tx = wallet(1).next_tx(0);
        tx.out.nat_port ^= 1;
        assert_eq!(verify_tx(&tx), Err(TxError::BadSignature));
        // Signed by another key that claims this address: the hash check catches it.
        let mut tx = wallet(1).next_tx(0);
        let other = wallet(2).next_tx(0);
        tx.public_key = other.public_key;
        assert_eq!(verify_tx(&tx), Err(TxError::AddressMismatch));
    }

    #[test]
    fn key_not_hashing_to_address() {
        let mut tx = wallet(1).next_tx(0);
        tx.out.hash_addr[0] ^= 1;
        assert_eq!(verify_tx(&tx), Err(TxError::AddressMismatch));
    }

    #[test]
    fn invalid_public_key() {
        // Find 32 bytes that are not a valid point and make the address match them.
        let mut tx = wallet(1).next_tx(0);
        let bad = (0u8..=255)
            .map(|i| {
                let mut k = [0xffu8; 32];
                k[0] = i;
                k
            })
            .find(|k| ed25519_dalek::VerifyingKey::from_bytes(k).is_err())
            .expect("some non-point");
        tx.public_key = bad;
        tx.out.hash_addr = hash_addr_of(&bad);
        assert_eq!(verify_tx(&tx), Err(TxError::BadPublicKey));
    }

    #[test]
    fn y_out_of_range() {
        let mut tx = wallet(1).next_tx(0);
        tx.out.y = vec![0; 256];
        tx.out.y[255] = 1;
        assert_eq!(verify_tx(&tx), Err(TxError::BadY(DhError::OutOfRange)));
        tx.out.y = vec![0xff; 256];
        assert_eq!(verify_tx(&tx), Err(TxError::BadY(DhError::OutOfRange)));
        tx.out.y = vec![7; 10];
        assert_eq!(
            verify_tx(&tx),
            Err(TxError::BadY(DhError::WrongLength { len: 10 }))
        );
    }

    #[test]
    fn wrong_group() {
        let mut tx = wallet(1).next_tx(0);
        tx.out.dh_group = 15;
        assert_eq!(verify_tx(&tx), Err(TxError::BadDhGroup));
    }

    /// Spoils a valid Tx, and the error that gives.
    type Spoiler = (fn(&mut ToallTx), TxError);

    /// Every way a Tx can fail [`verify_tx`], applied to a valid Tx.
    fn spoilers() -> Vec<Spoiler> {
        vec![
            (|t| t.out.hash_addr[3] ^= 1, TxError::AddressMismatch),
            (|t| t.out.dh_group = 15, TxError::BadDhGroup),
            (
                |t| t.out.y = vec![0; 256],
                TxError::BadY(DhError::OutOfRange),
            ),
            (|t| t.out.nat_port ^= 1, TxError::BadSignature),
            (|t| t.signature[40] ^= 4, TxError::BadSignature),
            (
                |t| {
                    // A small-order key that hashes to the Tx's address.
                    t.public_key = [0; 32];
                    t.public_key[0] = 1;
                    t.out.hash_addr = hash_addr_of(&t.public_key);
                },
                TxError::BadPublicKey,
            ),
        ]
    }

    #[test]
    fn verify_txs_says_what_verify_tx_says_for_each_tx() {
        assert_eq!(verify_txs(&[]), vec![]);
        let mut wallets: Vec<Wallet> = (1..=4).map(wallet).collect();
        let txs: Vec<ToallTx> = (0..24).map(|i| wallets[i % 4].next_tx(i as u64)).collect();
        let refs: Vec<&ToallTx> = txs.iter().collect();
        assert_eq!(verify_txs(&refs), vec![Ok(()); 24]);
        assert_eq!(verify_txs(&refs[..1]), vec![Ok(())]);
        for (spoil, want) in spoilers() {
            for at in [0, 11, 23] {
                let mut some = txs.clone();
                spoil(&mut some[at]);
                let refs: Vec<&ToallTx> = some.iter().collect();
                let mut expect = vec![Ok(()); 24];
                expect[at] = Err(want);
                assert_eq!(verify_txs(&refs), expect, "{want} at {at}");
                let alone: Vec<_> = some.iter().map(verify_tx).collect();
                assert_eq!(alone, expect, "{want} at {at}, alone");
            }
        }
        // All spoilers at once, between valid Txs.
        let mut some = txs.clone();
        let mut expect = vec![Ok(()); 24];
        for (i, (spoil, want)) in spoilers().into_iter().enumerate() {
            spoil(&mut some[2 * i + 1]);
            expect[2 * i + 1] = Err(want);
        }
        let refs: Vec<&ToallTx> = some.iter().collect();
        assert_eq!(verify_txs(&refs), expect);
    }

    /// The owner signs `tx.out` again with nonce `r` and the order-8 point added to `R`:
    /// valid (cofactored rule), but not the signature `next_tx` made.
    fn resigned_with_torsion(w: &Wallet, tx: &ToallTx, r: u64) -> ToallTx {
        use curve25519_dalek::constants::EIGHT_TORSION;
        use curve25519_dalek::{EdwardsPoint, Scalar};
        use sha2::Sha512;
        let a = w.signing.to_scalar();
        let r = Scalar::from(r) * Scalar::from(0x9e37_79b9_7f4a_7c15u64);
        let r_bytes = (EdwardsPoint::mul_base(&r) + EIGHT_TORSION[1])
            .compress()
            .to_bytes();
        let h: [u8; 64] = Sha512::new()
            .chain_update(r_bytes)
            .chain_update(tx.public_key)
            .chain_update(tx.out.signing_bytes())
            .finalize()
            .into();
        let s = r + Scalar::from_bytes_mod_order_wide(&h) * a;
        let mut t = tx.clone();
        t.signature[..32].copy_from_slice(&r_bytes);
        t.signature[32..].copy_from_slice(s.as_bytes());
        t
    }

    #[test]
    fn a_small_order_point_added_to_r_by_anyone_else_is_a_bad_signature() {
        use curve25519_dalek::constants::EIGHT_TORSION;
        use curve25519_dalek::edwards::CompressedEdwardsY;
        let tx = wallet(1).next_tx(0);
        let mut r = [0u8; 32];
        r.copy_from_slice(&tx.signature[..32]);
        let r = CompressedEdwardsY(r)
            .decompress()
            .unwrap_or_else(|| panic!("R decodes"));
        let mut all = vec![tx.clone()];
        for t in &EIGHT_TORSION[1..] {
            let mut v = tx.clone();
            v.signature[..32].copy_from_slice(&(r + t).compress().to_bytes());
            assert_eq!(verify_tx(&v), Err(TxError::BadSignature));
            all.push(v);
        }
        let refs: Vec<&ToallTx> = all.iter().collect();
        let mut expect = vec![Err(TxError::BadSignature); 8];
        expect[0] = Ok(());
        assert_eq!(verify_txs(&refs), expect);
    }

    /// The owner can sign one TxOut twice (with any nonce, here with torsion in `R`, which
    /// the cofactored rule accepts): two valid Txs with different ids but the same owner and
    /// seq. The chain keeps one: the mempool refuses the second as not above the pending
    /// seq, a block holding both is refused, and once one is confirmed the other is stale.
    #[test]
    fn a_second_signature_of_the_same_tx_by_its_owner_is_refused_by_the_chain_as_a_repeat() {
        use crate::chain::{
            BlockError, Chain, ChainConfig, ChainTx, MempoolConfig, MempoolError,
            TxError as ChainTxError, pow,
        };
        use crate::sn::{BatchValidator, validate_tx};

        let mut w = wallet(1);
        let tx = w.next_tx(0);
        let twin = resigned_with_torsion(&w, &tx, 77);
        assert_eq!(verify_tx(&twin), Ok(()));
        assert_eq!(verify_txs(&[&tx, &twin]), vec![Ok(()), Ok(())]);
        assert_ne!(twin.id(), tx.id());
        assert_eq!((twin.owner(), twin.seq()), (tx.owner(), tx.seq()));

        let config = ChainConfig {
            network_hash_rate: 4.0,
            ..ChainConfig::default()
        };
        let mut chain: Chain<ToallTx> =
            Chain::new(config, MempoolConfig::default()).unwrap_or_else(|e| panic!("{e}"));
        let mine = |mut b: crate::chain::Block<ToallTx>| {
            let (nonce, _) =
                pow::mine(&b.header, 0, 1 << 24).unwrap_or_else(|| panic!("easy target"));
            b.header.nonce = nonce;
            b
        };
        chain
            .add_tx(tx.clone(), 10, &validate_tx)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            chain.add_tx(twin.clone(), 10, &validate_tx),
            Err(ChainTxError::Mempool(MempoolError::NotAbovePending {
                seq: 1,
                pending: 1
            }))
        );
        // A block holding both: the second is a stale seq.
        let mut both = chain.block_template(1000, 1, 10);
        assert_eq!(both.txs, vec![tx.clone()]);
        both = crate::chain::Block::new(both.header, vec![tx.clone(), twin.clone()]);
        assert_eq!(
            chain.add_block(mine(both), 1000, &BatchValidator::new()),
            Err(BlockError::StaleSeq {
                index: 1,
                seq: 1,
                latest: 1
            })
        );
        let block = mine(chain.block_template(1000, 1, 10));
        chain
            .add_block(block, 1000, &BatchValidator::new())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            chain.lookup(&tx.owner()).map(|(t, _)| t.id()),
            Some(tx.id())
        );
        assert_eq!(
            chain.add_tx(twin, 1100, &validate_tx),
            Err(ChainTxError::Mempool(MempoolError::StaleSeq {
                seq: 1,
                latest: 1
            }))
        );
    }

    #[test]
    fn error_messages_and_codes() {
        assert_eq!(
            TxError::StaleSeq { have: 5, got: 5 }.to_string(),
            "Tx sequence 5 is not above the owner's latest 5"
        );
        assert_eq!(
            TxError::BadY(DhError::WrongLength { len: 3 }).to_string(),
            "Tx DH public value: DH public value is 3 bytes, expected 256"
        );
        assert_eq!(TxError::BadSignature.reject_code(), reject::BAD_SIGNATURE);
        assert_eq!(
            TxError::StaleSeq { have: 1, got: 1 }.reject_code(),
            reject::STALE_SEQ
        );
    }
}
