//! Finite-field Diffie-Hellman over RFC 3526 group 14 (2048-bit MODP, g = 2): the paper's
//! `Y = α^X mod q` and `K = Y_peer^X mod q` (section 3.3), with a standard group.
//!
//! Secret exponents are 256 bits (RFC 7919 section 5.2 asks for at least 225 for this
//! size), about an eighth of the cost of a full-size exponent. The secret exponentiations use
//! crypto-bigint's `pow_bounded_exp`, constant-time in the exponent's value (only its bit
//! bound, 256, is public). Peer values are range-checked (`1 < Y < p-1`); p is a safe prime,
//! so that check alone excludes the small subgroups (orders 1 and 2), RFC 7919 section 5.1.
//!
//! Sans-IO: randomness comes from the caller's RNG.

use std::fmt;
use std::sync::LazyLock;

use crypto_bigint::modular::{FixedMontyForm, FixedMontyParams};
use crypto_bigint::{Odd, U256, U2048};

/// RFC 3526 group 14 prime, `2^2048 - 2^1984 - 1 + 2^64 * (floor(2^1918 pi) + 124476)`.
pub const P_HEX: &str = concat!(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A0879",
    "8E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B",
    "0BFF5CB6F406B7EDEE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA4836",
    "1C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804",
    "F1746C08CA18217C32905E462E36CE3BE39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6",
    "955817183995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF",
);
/// Generator.
pub const GENERATOR: u8 = 2;
/// Length of Y and K: 2048 bits, big-endian.
pub const Y_LEN: usize = 256;
/// Bits of the secret exponent X.
pub const EXPONENT_BITS: u32 = 256;

static P: LazyLock<Odd<U2048>> = LazyLock::new(|| Odd::<U2048>::from_be_hex(P_HEX));
static P_MINUS_1: LazyLock<U2048> = LazyLock::new(|| P.get().wrapping_sub(&U2048::ONE));
static PARAMS: LazyLock<FixedMontyParams<{ U2048::LIMBS }>> =
    LazyLock::new(|| FixedMontyParams::new_vartime(*P));

/// Why a peer's public value is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DhError {
    /// Y must be exactly 256 bytes (group 14, big-endian, leading zeros kept).
    #[error("DH public value is {len} bytes, expected 256")]
    WrongLength {
        /// Length found.
        len: usize,
    },
    /// Y is 0, 1, p-1 or not below p: it would force a trivial or guessable key.
    #[error("DH public value out of range: need 1 < Y < p-1")]
    OutOfRange,
}

/// Checks a group-14 public value: exactly 256 bytes and `1 < Y < p-1`. Variable-time, which
/// is fine: Y is public.
pub fn validate_public(y: &[u8]) -> Result<(), DhError> {
    parse_public(y).map(|_| ())
}

fn parse_public(y: &[u8]) -> Result<U2048, DhError> {
    if y.len() != Y_LEN {
        return Err(DhError::WrongLength { len: y.len() });
    }
    let v = U2048::from_be_slice(y);
    if v <= U2048::ONE || v >= *P_MINUS_1 {
        return Err(DhError::OutOfRange);
    }
    Ok(v)
}

/// `base^x mod p`, constant-time in `x` (bounded to [`EXPONENT_BITS`]); `base` must be < p.
fn pow_mod_p(base: &U2048, x: &U256) -> [u8; Y_LEN] {
    #[cfg(fuzzing)]
    if let Some(r) = fuzz_memo::get(base, x) {
        return r;
    }
    let r = FixedMontyForm::new(base, &PARAMS)
        .pow_bounded_exp(x, EXPONENT_BITS)
        .retrieve();
    let r: [u8; Y_LEN] = r.to_be_bytes().into();
    #[cfg(fuzzing)]
    fuzz_memo::put(base, x, r);
    r
}

/// Fuzzing builds only (`--cfg fuzzing`, which cargo-fuzz sets; never the `binfm` binary nor
/// `cargo test`): [`pow_mod_p`] is a pure function and the fuzz targets' roles are cloned from
/// fixed-seed templates, so the same key agreements recur in input after input; a bounded
/// memo makes a repeated one a lookup instead of a 2048-bit exponentiation. Results are
/// identical, so a crash still replays without it (`fuzzing/tests/fuzz_corpus.rs`). Not
/// constant-time: a fuzzing aid, never for real keys.
#[cfg(fuzzing)]
mod fuzz_memo {
    use super::{U256, U2048, Y_LEN};
    use std::cell::RefCell;
    use std::collections::HashMap;

    /// Entries kept at most (about 2.3 MB); the memo starts over when full.
    const MAX: usize = 4096;

    type Key = ([u8; Y_LEN], [u8; 32]);

    thread_local! {
        static MEMO: RefCell<HashMap<Key, [u8; Y_LEN]>> = RefCell::new(HashMap::new());
    }

    fn key(base: &U2048, x: &U256) -> Key {
        (base.to_be_bytes().into(), x.to_be_bytes().into())
    }

    pub(super) fn get(base: &U2048, x: &U256) -> Option<[u8; Y_LEN]> {
        MEMO.with(|m| m.borrow().get(&key(base, x)).copied())
    }

    pub(super) fn put(base: &U2048, x: &U256, r: [u8; Y_LEN]) {
        MEMO.with(|m| {
            let mut m = m.borrow_mut();
            if m.len() >= MAX {
                m.clear();
            }
            m.insert(key(base, x), r);
        });
    }
}

/// A DH secret exponent X and its public value Y = g^X mod p (computed once).
#[derive(Clone)]
pub struct DhSecret {
    x: U256,
    y: [u8; Y_LEN],
}

impl fmt::Debug for DhSecret {
    /// Never prints X.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let head = self.y.get(..4).unwrap_or(&[]);
        write!(f, "DhSecret {{ x: <secret>, y: {head:02x?}.. }}")
    }
}

impl DhSecret {
    /// Draws a fresh 256-bit X from `rng` (redrawn in the negligible case X < 2).
    pub fn generate<R: rand::CryptoRng + ?Sized>(rng: &mut R) -> DhSecret {
        loop {
            let mut bytes = [0u8; 32];
            rng.fill_bytes(&mut bytes);
            let x = U256::from_be_slice(&bytes);
            if x > U256::ONE {
                return DhSecret::from_exponent(x);
            }
        }
    }

    fn from_exponent(x: U256) -> DhSecret {
        let y = pow_mod_p(&U2048::from_u8(GENERATOR), &x);
        DhSecret { x, y }
    }

    /// Fixed exponent, for test vectors only.
    #[cfg(test)]
    pub(crate) fn from_exponent_bytes(bytes: [u8; 32]) -> DhSecret {
        DhSecret::from_exponent(U256::from_be_slice(&bytes))
    }

    /// Y = g^X mod p, 256 bytes big-endian (what goes into the ToALL Tx).
    pub fn public(&self) -> Vec<u8> {
        self.y.to_vec()
    }

    /// Y without a copy.
    pub fn public_bytes(&self) -> &[u8; Y_LEN] {
        &self.y
    }

    /// K = Y_peer^X mod p, 256 bytes big-endian, after validating `peer_y`. Feed K to a KDF
    /// (HKDF), never use it as a key directly.
    pub fn agree(&self, peer_y: &[u8]) -> Result<Vec<u8>, DhError> {
        let peer = parse_public(peer_y)?;
        Ok(pow_mod_p(&peer, &self.x).to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    fn p_bytes() -> Vec<u8> {
        unhex(P_HEX)
    }

    fn small(v: u8) -> Vec<u8> {
        let mut y = vec![0u8; Y_LEN];
        y[Y_LEN - 1] = v;
        y
    }

    #[test]
    fn p_is_the_rfc_prime() {
        let p = p_bytes();
        assert_eq!(p.len(), 256);
        assert_eq!(&p[..8], &[0xff; 8]);
        assert_eq!(&p[248..], &[0xff; 8]);
        assert_eq!(&p[8..12], &[0xc9, 0x0f, 0xda, 0xa2]); // pi begins
    }

    #[test]
    fn small_exponents() {
        let mut x = [0u8; 32];
        x[31] = 1;
        assert_eq!(DhSecret::from_exponent_bytes(x).public(), small(2));
        x[31] = 10;
        let mut want = small(0);
        want[Y_LEN - 2] = 4; // 2^10 = 1024 = 0x0400
        assert_eq!(DhSecret::from_exponent_bytes(x).public(), want);
        // 2^2048 mod p = 2^2048 - p (p < 2^2048 < 2p), computed independently in Python.
        let mut x = [0u8; 32];
        x[30] = 0x08;
        let want = "000000000000000036f0255dde973dcb";
        assert_eq!(
            &DhSecret::from_exponent_bytes(x).public()[..16],
            &unhex(want)[..]
        );
        let tail = unhex("a5755355970000000000000001");
        assert_eq!(
            &DhSecret::from_exponent_bytes(x).public()[Y_LEN - 13..],
            &tail[..]
        );
    }

    #[test]
    fn known_vector() {
        // x = 0123456789abcdef repeated; Y and K from Python's pow(2, x, p).
        let x = unhex("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
        let x2 = unhex("fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210");
        let a = DhSecret::from_exponent_bytes(x.try_into().expect("32"));
        let b = DhSecret::from_exponent_bytes(x2.try_into().expect("32"));
        assert_eq!(
            &a.public()[..16],
            &unhex("a7383dc35b35b44a7c5fbce0aac79e11")[..]
        );
        assert_eq!(&a.public()[247..], &unhex("ce743370904d7da7ab")[..]);
        assert_eq!(&b.public()[..8], &unhex("dd5d87a6f9df57f1")[..]);
        let k = a.agree(&b.public()).expect("valid");
        use sha2::{Digest, Sha256};
        assert_eq!(
            Sha256::digest(&k).to_vec(),
            unhex("57d99efdde31bd45b146957b762274c4907838037c7f3b294125791ae1f599bd")
        );
    }

    #[test]
    fn both_sides_agree() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let a = DhSecret::generate(&mut rng);
        let b = DhSecret::generate(&mut rng);
        assert_ne!(a.public(), b.public());
        let ka = a.agree(&b.public()).expect("b valid");
        let kb = b.agree(&a.public()).expect("a valid");
        assert_eq!(ka, kb);
        assert_eq!(ka.len(), 256);
        assert!(validate_public(&a.public()).is_ok());
    }

    #[test]
    fn generate_is_deterministic_for_a_seed() {
        let a = DhSecret::generate(&mut ChaCha20Rng::seed_from_u64(1));
        let b = DhSecret::generate(&mut ChaCha20Rng::seed_from_u64(1));
        assert_eq!(a.public(), b.public());
    }

    #[test]
    fn bad_public_values_refused() {
        let p = p_bytes();
        let mut p_minus_1 = p.clone();
        p_minus_1[255] -= 1;
        let mut p_minus_2 = p.clone();
        p_minus_2[255] -= 2;
        let a = DhSecret::generate(&mut ChaCha20Rng::seed_from_u64(3));
        for bad in [small(0), small(1), p_minus_1, p.clone(), vec![0xff; 256]] {
            assert_eq!(validate_public(&bad), Err(DhError::OutOfRange));
            assert_eq!(a.agree(&bad), Err(DhError::OutOfRange));
        }
        assert!(validate_public(&small(2)).is_ok());
        assert!(validate_public(&p_minus_2).is_ok());
        assert_eq!(validate_public(&[2]), Err(DhError::WrongLength { len: 1 }));
        assert_eq!(
            validate_public(&[0u8; 257]),
            Err(DhError::WrongLength { len: 257 })
        );
        assert_eq!(
            DhError::OutOfRange.to_string(),
            "DH public value out of range: need 1 < Y < p-1"
        );
    }

    #[test]
    fn debug_hides_the_secret() {
        let a = DhSecret::generate(&mut ChaCha20Rng::seed_from_u64(3));
        assert!(format!("{a:?}").contains("<secret>"));
    }
}
