//! The one ed25519 verification rule of the chain, for a single signature and for a batch.
//!
//! **Rule** (RFC 8032 section 5.1.7 with the cofactored equation, plus two refusals):
//!
//! 1. the public key `A` is a canonical encoding (`y < p`) of a curve point that is not of
//!    small order (a "weak" key: one signature would verify for many messages);
//! 2. `R` (the signature's first half) is a canonical encoding of a curve point that is not
//!    of small order (an honest `R = rB` never is);
//! 3. `s` (the second half) is canonical, `s < l`, so `s + l` is not a second signature;
//! 4. with `k = SHA-512(R ‖ A ‖ M) mod l`: `[8](s·B − k·A − R) = 0` (cofactored).
//!
//! **Why cofactored.** [`verify_batch`] must say for every signature exactly what [`verify`]
//! says: otherwise a Tx's validity would depend on whether a super node checked it alone or
//! in a batch (and with what else), two SNs could disagree on a block and the chain would
//! split. A batch checks one random linear combination of the equations, and that agrees
//! with the single equation only if both are cofactored: a signature whose `R` or `A`
//! carries a small-order component (any key owner can make one, for free) fails the
//! cofactorless single equation, yet a cofactorless batch accepts it for some coefficients
//! (`z_i ≡ 0 mod 8`) and not for others. With the cofactor, a batch holds exactly when every
//! signature in it verifies alone (up to a probability of about 2^-128), and when it does
//! not hold every signature is verified alone, so the results are exact. (That fallback
//! alone would keep the results right with a cofactorless batch equation too, but then any
//! key owner could force it, one single verification per signature of the batch, with one
//! torsioned signature.)
//!
//! **Malleability.** A third party cannot turn a valid signature into another valid one for
//! the same message and key: `s + l` is refused by rule 3, and any change to `R`'s bytes (a
//! small-order point added, or another encoding of the same point) changes `k`, which binds
//! `R`'s exact bytes, so the equation fails (see the test
//! `torsion_added_to_r_by_a_third_party_is_refused`). Only the key's owner can make other
//! valid signatures of a message, which it could always do (any nonce); a ToALL Tx is
//! identified on the chain by its owner and sequence number, so a second signature of the
//! same Tx is a stale or duplicate seq (`docs/security.md`, attack 1).
//!
//! Stricter than ZIP-215 (which also accepts non-canonical encodings and small-order
//! points) and than RFC 8032 (which accepts small-order `A` and `R`); the Session Request
//! signature (`call.rs`) keeps ed25519-dalek's `verify_strict`, which no batch needs.

use std::collections::{HashMap, VecDeque};
use std::sync::LazyLock;

use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use sha2::{Digest, Sha512};

/// Why a signature does not verify under the rule of this module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SigError {
    /// The public key is not a canonical encoding of a curve point.
    #[error("public key is not a canonical curve point")]
    KeyEncoding,
    /// The public key is a point of small order.
    #[error("public key has small order")]
    WeakKey,
    /// `R` is not a canonical encoding of a curve point.
    #[error("signature R is not a canonical curve point")]
    REncoding,
    /// `R` is a point of small order.
    #[error("signature R has small order")]
    SmallOrderR,
    /// `s` is not below the group order `l`.
    #[error("signature s is not below the group order")]
    NonCanonicalS,
    /// The equation does not hold: wrong key, wrong message or forged signature.
    #[error("signature equation does not hold")]
    Equation,
}

impl SigError {
    /// Whether the fault is in the public key (rather than in the signature).
    pub fn is_key_error(self) -> bool {
        matches!(self, SigError::KeyEncoding | SigError::WeakKey)
    }
}

/// One signature to verify: public key, signed message, signature (`R ‖ s`).
#[derive(Debug, Clone, Copy)]
pub struct Signed<'a> {
    /// The 32-byte public key `A`.
    pub public_key: &'a [u8; 32],
    /// The signed bytes.
    pub message: &'a [u8],
    /// The 64-byte signature `R ‖ s`.
    pub signature: &'a [u8; 64],
}

/// A signature whose encodings passed rules 1 to 3, with its points decoded and `k`
/// computed: what both the single and the batch equation need.
#[derive(Debug, Clone)]
pub struct Prepared {
    a: EdwardsPoint,
    r: EdwardsPoint,
    s: Scalar,
    k: Scalar,
    a_bytes: [u8; 32],
    r_bytes: [u8; 32],
}

/// Whether the 32 bytes encode `y < p = 2^255 - 19` (bit 255 is the sign of `x`).
fn y_is_canonical(b: &[u8; 32]) -> bool {
    !(b[31] & 0x7f == 0x7f && b[1..31].iter().all(|&x| x == 0xff) && b[0] >= 0xed)
}

/// The `y` coordinates (encoded, sign bit clear) of the 8 points of small order: 1, -1, 0
/// and the two of order 8. Derived from curve25519-dalek's torsion points at first use.
static SMALL_ORDER_Y: LazyLock<Vec<[u8; 32]>> = LazyLock::new(|| {
    let mut ys: Vec<[u8; 32]> = EIGHT_TORSION
        .iter()
        .map(|t| {
            let mut y = t.compress().to_bytes();
            y[31] &= 0x7f;
            y
        })
        .collect();
    ys.sort_unstable();
    ys.dedup();
    ys
});

/// Whether the encoding's `y` is that of a point of small order. Every encoding with such a
/// `y` (either sign bit) decodes to a point of small order, and every point of small order
/// has one: the same answer as decoding and [`EdwardsPoint::is_small_order`], without the
/// decoding and the three doublings.
fn has_small_order_y(b: &[u8; 32]) -> bool {
    let mut y = *b;
    y[31] &= 0x7f;
    SMALL_ORDER_Y.contains(&y)
}

/// Why 32 bytes are not an acceptable point.
enum PointError {
    /// `y ≥ p`, or not the `y` of a curve point.
    Encoding,
    /// A point of small order.
    SmallOrder,
}

/// A canonical, decodable point not of small order. (`x = 0` with the sign bit set, the
/// other non-canonical encoding, only happens for `y = ±1`, both of small order.)
fn decode_point(b: &[u8; 32]) -> Result<EdwardsPoint, PointError> {
    if !y_is_canonical(b) {
        return Err(PointError::Encoding);
    }
    if has_small_order_y(b) {
        return Err(PointError::SmallOrder);
    }
    CompressedEdwardsY(*b)
        .decompress()
        .ok_or(PointError::Encoding)
}

/// Decodes a public key under rule 1.
fn decode_key(public_key: &[u8; 32]) -> Result<EdwardsPoint, SigError> {
    decode_point(public_key).map_err(|e| match e {
        PointError::Encoding => SigError::KeyEncoding,
        PointError::SmallOrder => SigError::WeakKey,
    })
}

/// Public keys already decoded, so that a key seen before is not decoded again.
///
/// Why: decoding a point is a field square root, and a signature has two (`A` and `R`):
/// together about as much of a batch verification's cost per signature as the multiscalar
/// multiplication (37% against 30-40% in one `perf` run). A super node sees the same keys
/// over and over (an end node registers again on every move and renewal), so it keeps the
/// keys of signatures that verified. Results are exactly those without the cache: only keys
/// that passed rule 1 are in it, and decoding is a pure function of the bytes. At most
/// `capacity` keys, the oldest inserted leaving first (about 250 bytes each).
#[derive(Debug, Clone)]
pub struct KeyCache {
    keys: HashMap<[u8; 32], EdwardsPoint>,
    order: VecDeque<[u8; 32]>,
    capacity: usize,
}

impl KeyCache {
    /// Bytes a key takes in the cache, about: the key and its point in the map, the key
    /// again in the eviction order, and the map's overhead.
    pub const ENTRY_BYTES: usize = 256;

    /// An empty cache holding at most `capacity` keys.
    pub fn new(capacity: usize) -> KeyCache {
        KeyCache {
            keys: HashMap::new(),
            order: VecDeque::new(),
            capacity,
        }
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// The most keys it holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The decoded key, from the cache or decoded now (not inserted: see [`KeyCache::keep`]).
    fn decode(&self, public_key: &[u8; 32]) -> Result<EdwardsPoint, SigError> {
        match self.keys.get(public_key) {
            Some(a) => Ok(*a),
            None => decode_key(public_key),
        }
    }

    /// Keeps the key of a signature that verified.
    pub fn keep(&mut self, p: &Prepared) {
        if self.capacity == 0 || self.keys.contains_key(&p.a_bytes) {
            return;
        }
        if self.keys.len() >= self.capacity
            && let Some(old) = self.order.pop_front()
        {
            self.keys.remove(&old);
        }
        self.keys.insert(p.a_bytes, p.a);
        self.order.push_back(p.a_bytes);
    }
}

impl Prepared {
    /// Checks rules 1 to 3 and decodes; the equation is left to [`Prepared::verify`] or
    /// [`batch_holds`].
    pub fn new(
        public_key: &[u8; 32],
        message: &[u8],
        signature: &[u8; 64],
    ) -> Result<Prepared, SigError> {
        Prepared::with_key(decode_key(public_key)?, public_key, message, signature)
    }

    /// [`Prepared::new`] with the key taken from `keys` when it is there.
    pub fn cached(
        keys: &KeyCache,
        public_key: &[u8; 32],
        message: &[u8],
        signature: &[u8; 64],
    ) -> Result<Prepared, SigError> {
        Prepared::with_key(keys.decode(public_key)?, public_key, message, signature)
    }

    /// Rules 2 and 3 and `k`, for a key `a` that passed rule 1 (decoded from `public_key`).
    fn with_key(
        a: EdwardsPoint,
        public_key: &[u8; 32],
        message: &[u8],
        signature: &[u8; 64],
    ) -> Result<Prepared, SigError> {
        let mut r_bytes = [0u8; 32];
        r_bytes.copy_from_slice(&signature[..32]);
        let mut s_bytes = [0u8; 32];
        s_bytes.copy_from_slice(&signature[32..]);
        let r = decode_point(&r_bytes).map_err(|e| match e {
            PointError::Encoding => SigError::REncoding,
            PointError::SmallOrder => SigError::SmallOrderR,
        })?;
        let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes))
            .ok_or(SigError::NonCanonicalS)?;
        let h: [u8; 64] = Sha512::new()
            .chain_update(r_bytes)
            .chain_update(public_key)
            .chain_update(message)
            .finalize()
            .into();
        Ok(Prepared {
            a,
            r,
            s,
            k: Scalar::from_bytes_mod_order_wide(&h),
            a_bytes: *public_key,
            r_bytes,
        })
    }

    /// The single equation `[8](s·B − k·A − R) = 0`.
    pub fn verify(&self) -> Result<(), SigError> {
        let sb_minus_ka =
            EdwardsPoint::vartime_double_scalar_mul_basepoint(&self.k, &-self.a, &self.s);
        if (sb_minus_ka - self.r).mul_by_cofactor().is_identity() {
            Ok(())
        } else {
            Err(SigError::Equation)
        }
    }
}

/// Verifies one signature under the rule of this module.
pub fn verify(public_key: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> Result<(), SigError> {
    Prepared::new(public_key, message, signature)?.verify()
}

/// Domain separator of the batch coefficients.
const BATCH_DOMAIN: &[u8] = b"binfm ed25519 batch coefficients v1";

/// The 128-bit coefficients `z_i`, derived from the whole batch (Fiat-Shamir).
///
/// Why not random: roles are sans-IO and reproducible from a seed, and drawing from a
/// role's generator would shift every later draw of that role (its request ids, its keys)
/// depending on how many signatures it happened to batch. Deriving the `z_i` by hashing
/// every `(R, A, s, k)` of the batch (`k` binds the message) is as good against a forger:
/// the coefficients are fixed only once all signatures are, so a batch containing a bad
/// signature passes only if a hash output hits one value in about 2^128 (each try costs
/// the forger a new batch, i.e. new signatures and new hashes). Same inputs, same
/// coefficients, same result, on every node and in every run.
fn coefficients(batch: &[&Prepared]) -> Vec<Scalar> {
    let mut h = Sha512::new();
    h.update(BATCH_DOMAIN);
    h.update((batch.len() as u64).to_le_bytes());
    for p in batch {
        h.update(p.r_bytes);
        h.update(p.a_bytes);
        h.update(p.s.as_bytes());
        h.update(p.k.as_bytes());
    }
    let seed: [u8; 64] = h.finalize().into();
    let mut z = Vec::with_capacity(batch.len());
    let mut block = 0u64;
    while z.len() < batch.len() {
        let out: [u8; 64] = Sha512::new()
            .chain_update(BATCH_DOMAIN)
            .chain_update(seed)
            .chain_update(block.to_le_bytes())
            .finalize()
            .into();
        for chunk in out.chunks_exact(16) {
            if z.len() == batch.len() {
                break;
            }
            let mut b = [0u8; 16];
            b.copy_from_slice(chunk);
            z.push(Scalar::from(u128::from_le_bytes(b)));
        }
        block += 1;
    }
    z
}

/// The batch equation `[8](−(Σ z_i s_i)·B + Σ z_i·R_i + Σ (z_i k_i)·A_i) = 0` over
/// signatures that passed [`Prepared::new`]: true if every one of them verifies (and,
/// with probability about 2^-128, if not). An empty batch holds.
pub fn batch_holds(batch: &[&Prepared]) -> bool {
    if batch.is_empty() {
        return true;
    }
    let z = coefficients(batch);
    let mut b_coeff = Scalar::ZERO;
    let mut scalars = Vec::with_capacity(2 * batch.len() + 1);
    let mut points = Vec::with_capacity(2 * batch.len() + 1);
    scalars.push(Scalar::ZERO);
    points.push(ED25519_BASEPOINT_POINT);
    for (p, z) in batch.iter().zip(&z) {
        b_coeff -= z * p.s;
        scalars.push(*z);
        points.push(p.r);
        scalars.push(z * p.k);
        points.push(p.a);
    }
    scalars[0] = b_coeff;
    EdwardsPoint::vartime_multiscalar_mul(&scalars, &points)
        .mul_by_cofactor()
        .is_identity()
}

/// Exact per-signature results for prepared signatures: one batch equation, and only if it
/// fails, each signature alone to find the bad ones. A batch of one is checked alone.
pub fn verify_prepared(batch: &[&Prepared]) -> Vec<Result<(), SigError>> {
    if batch.len() > 1 && batch_holds(batch) {
        return vec![Ok(()); batch.len()];
    }
    batch.iter().map(|p| p.verify()).collect()
}

/// Verifies many signatures at once: one result per item, in order, each exactly what
/// [`verify`] would say for it. Encodings are checked per item first; the survivors go
/// through one batch equation, and only if it fails through the single one each.
/// Allocation is linear in `items.len()`; callers pass bounded slices (a block, a burst).
pub fn verify_batch(items: &[Signed<'_>]) -> Vec<Result<(), SigError>> {
    verify_batch_cached(items, &mut KeyCache::new(0))
}

/// [`verify_batch`] taking known keys from `keys` and keeping there the keys of the
/// signatures that verified: the same results.
pub fn verify_batch_cached(items: &[Signed<'_>], keys: &mut KeyCache) -> Vec<Result<(), SigError>> {
    verify_each(
        items,
        keys,
        |it, keys| Prepared::cached(keys, it.public_key, it.message, it.signature),
        |e| e,
    )
}

/// One result per item, in order: `prepare` checks an item alone, with the known keys (an
/// error is its result); the prepared signatures go through [`verify_prepared`] together,
/// their errors mapped by `sig_error`; the keys of those that verified are kept in `keys`.
/// Shared by [`verify_batch_cached`] and `wallet::verify_txs_cached`.
pub fn verify_each<T, E>(
    items: &[T],
    keys: &mut KeyCache,
    prepare: impl Fn(&T, &KeyCache) -> Result<Prepared, E>,
    sig_error: impl Fn(SigError) -> E,
) -> Vec<Result<(), E>> {
    let mut results: Vec<Result<(), E>> = Vec::with_capacity(items.len());
    let mut prepared = Vec::with_capacity(items.len());
    let mut index = Vec::with_capacity(items.len());
    for (i, it) in items.iter().enumerate() {
        match prepare(it, keys) {
            Ok(p) => {
                results.push(Ok(()));
                prepared.push(p);
                index.push(i);
            }
            Err(e) => results.push(Err(e)),
        }
    }
    let refs: Vec<&Prepared> = prepared.iter().collect();
    for ((i, r), p) in index.into_iter().zip(verify_prepared(&refs)).zip(&prepared) {
        if r.is_ok() {
            keys.keep(p);
        }
        if let Some(slot) = results.get_mut(i) {
            *slot = r.map_err(&sig_error);
        }
    }
    results
}

#[cfg(test)]
mod tests;
