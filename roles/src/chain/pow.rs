//! Proof of work over SHA-256 and the difficulty rule.
//!
//! A target is the full 32-byte big-endian number in the header (no compact "bits": the
//! retarget arithmetic stays exact and there is no encoding to get wrong). A header hash,
//! read as a big-endian number, meets the target when `hash <= target`, which for 32-byte
//! arrays is plain lexicographic order.
//!
//! Virtual time: a miner with hash rate `H` that starts a template at `t0` and needs `N`
//! tries finds the block at `t0 + N / H`, which is why [`mine`] reports its tries.

use sha2::{Digest, Sha256};

use super::Hash;
use super::block::{BlockHeader, HEADER_LEN, NONCE_OFFSET};

/// The easiest target: every hash meets it (expected work 1).
pub const MAX_TARGET: Hash = [0xff; 32];

/// Whether `hash` meets `target` (both big-endian numbers).
pub fn meets_target(hash: &Hash, target: &Hash) -> bool {
    hash <= target
}

/// Expected number of hashes to meet `target`: `2^256 / (target + 1)`, saturated at
/// `u128::MAX` (reached only for targets below 2^128, far beyond any testbed's hash rate).
/// Cumulative work adds these with saturation too.
pub fn work(target: &Hash) -> u128 {
    let t = U256::from_be(target);
    if t == U256::MAX {
        return 1;
    }
    if t.is_zero() {
        return u128::MAX;
    }
    // Bitcoin's trick: 2^256 / (t + 1) == (!t / (t + 1)) + 1, all in 256 bits.
    let w = t.not().div(t.add_one()).add_one();
    w.to_u128_saturating()
}

/// Fork choice: whether a tip with cumulative work `work` and hash `hash` is better than the
/// current tip (`tip_work`, `tip_hash`). More work wins; at equal work the lower hash wins, so
/// two super nodes that saw two competing blocks in opposite order still settle on the same
/// tip once each has both (first-seen would keep them split until the next block).
pub fn beats(work: u128, hash: &Hash, tip_work: u128, tip_hash: &Hash) -> bool {
    work > tip_work || (work == tip_work && hash < tip_hash)
}

/// The target at which a block takes `expected_hashes` hashes on average:
/// `2^256 / expected_hashes - 1`, clamped to `[1, MAX_TARGET]`. Whole numbers below 2^64
/// are exact (`work(target_for_hashes(n)) == n`); other values go through one IEEE-754
/// division and an exact conversion, so the result is deterministic everywhere.
pub fn target_for_hashes(expected_hashes: f64) -> Hash {
    if expected_hashes.is_nan() || expected_hashes <= 1.0 {
        return MAX_TARGET;
    }
    if expected_hashes.fract() == 0.0 && expected_hashes < 18_446_744_073_709_551_616.0 {
        let n = expected_hashes as u64;
        let t = U256::MAX.div_u64(n);
        let t = if work(&t.to_be()) < u128::from(n) {
            t.sub_one()
        } else {
            t
        };
        return t.to_be();
    }
    let two_256 = f64::from_bits((1023u64 + 256) << 52);
    let q = two_256 / expected_hashes;
    let t = U256::from_f64_floor(q);
    let t = if t.is_zero() { t } else { t.sub_one() };
    if t.is_zero() {
        U256::ONE.to_be()
    } else {
        t.to_be()
    }
}

/// The retarget step: `old × actual / expected`, with `actual` clamped to
/// `[expected / 4, expected × 4]` (so the target moves at most ×4 or ÷4), then to
/// `[1, MAX_TARGET]`. `actual_ms` may be negative (median-time rule): the clamp handles it.
pub fn retarget(old: &Hash, actual_ms: i64, expected_ms: u64) -> Hash {
    let expected = expected_ms.max(1);
    let lo = (expected / 4).max(1);
    let hi = expected.saturating_mul(4);
    let actual = u64::try_from(actual_ms).unwrap_or(0).clamp(lo, hi);
    let t = U256::from_be(old)
        .mul_div_u64(actual, expected)
        .unwrap_or(U256::MAX);
    if t.is_zero() {
        U256::ONE.to_be()
    } else {
        t.to_be()
    }
}

/// Tries nonces `start_nonce, start_nonce + 1, …` (wrapping) on `header` until its hash meets
/// the header's target, at most `max_tries` times. Returns the nonce and the number of hashes
/// computed including the successful one; `None` means all `max_tries` failed.
///
/// The first 64 header bytes do not contain the nonce, so their SHA-256 state is computed
/// once and cloned per try (one compression per nonce instead of two).
pub fn mine(header: &BlockHeader, start_nonce: u64, max_tries: u64) -> Option<(u64, u64)> {
    let mut bytes = header.encode();
    let (prefix, tail) = bytes.split_at_mut(64);
    let mut mid = Sha256::new();
    mid.update(&*prefix);
    let nonce_at = NONCE_OFFSET - 64;
    let mut nonce = start_nonce;
    for tries in 1..=max_tries {
        if let Some(slot) = tail.get_mut(nonce_at..nonce_at + 8) {
            slot.copy_from_slice(&nonce.to_be_bytes());
        }
        let mut h = mid.clone();
        h.update(&*tail);
        let hash: Hash = h.finalize().into();
        if meets_target(&hash, &header.target) {
            return Some((nonce, tries));
        }
        nonce = nonce.wrapping_add(1);
    }
    None
}

const _: () = assert!(HEADER_LEN > 64 && NONCE_OFFSET >= 64 && NONCE_OFFSET + 8 <= HEADER_LEN);

/// A minimal 256-bit unsigned integer: four little-endian u64 limbs. Only what the target
/// arithmetic needs; every operation is total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct U256([u64; 4]);

impl Ord for U256 {
    /// Most significant limb first (a derived order would start at the least significant).
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.iter().rev().cmp(other.0.iter().rev())
    }
}

impl PartialOrd for U256 {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl U256 {
    const MAX: U256 = U256([u64::MAX; 4]);
    const ONE: U256 = U256([1, 0, 0, 0]);

    fn from_be(b: &Hash) -> U256 {
        let mut limbs = [0u64; 4];
        for (i, limb) in limbs.iter_mut().enumerate() {
            let start = 32 - 8 * (i + 1);
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[start..start + 8]);
            *limb = u64::from_be_bytes(w);
        }
        U256(limbs)
    }

    fn to_be(self) -> Hash {
        let mut out = [0u8; 32];
        for (i, limb) in self.0.iter().enumerate() {
            let start = 32 - 8 * (i + 1);
            out[start..start + 8].copy_from_slice(&limb.to_be_bytes());
        }
        out
    }

    fn is_zero(self) -> bool {
        self.0 == [0; 4]
    }

    fn not(self) -> U256 {
        U256(self.0.map(|l| !l))
    }

    fn add_one(self) -> U256 {
        let mut r = self.0;
        for limb in r.iter_mut() {
            let (v, carry) = limb.overflowing_add(1);
            *limb = v;
            if !carry {
                break;
            }
        }
        U256(r)
    }

    fn sub_one(self) -> U256 {
        let mut r = self.0;
        for limb in r.iter_mut() {
            let (v, borrow) = limb.overflowing_sub(1);
            *limb = v;
            if !borrow {
                break;
            }
        }
        U256(r)
    }

    fn sub(self, o: U256) -> U256 {
        let mut r = [0u64; 4];
        let mut borrow = false;
        for (i, out) in r.iter_mut().enumerate() {
            let (v1, b1) = self.0[i].overflowing_sub(o.0[i]);
            let (v2, b2) = v1.overflowing_sub(u64::from(borrow));
            *out = v2;
            borrow = b1 || b2;
        }
        U256(r)
    }

    fn shl1(self) -> U256 {
        let l = self.0;
        U256([
            l[0] << 1,
            (l[1] << 1) | (l[0] >> 63),
            (l[2] << 1) | (l[1] >> 63),
            (l[3] << 1) | (l[2] >> 63),
        ])
    }

    fn bit(self, i: usize) -> bool {
        (self.0[i / 64] >> (i % 64)) & 1 == 1
    }

    fn set_bit(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }

    /// `floor(self × m / d)` exactly (320-bit intermediate); `None` if the result needs more
    /// than 256 bits or `d = 0`.
    fn mul_div_u64(self, m: u64, d: u64) -> Option<U256> {
        if d == 0 {
            return None;
        }
        let mut wide = [0u64; 5];
        let mut carry = 0u128;
        for (i, out) in wide.iter_mut().take(4).enumerate() {
            let p = u128::from(self.0[i]) * u128::from(m) + carry;
            *out = p as u64;
            carry = p >> 64;
        }
        wide[4] = carry as u64;
        let mut q = [0u64; 5];
        let mut rem = 0u128;
        for i in (0..5).rev() {
            let cur = (rem << 64) | u128::from(wide[i]);
            q[i] = (cur / u128::from(d)) as u64;
            rem = cur % u128::from(d);
        }
        (q[4] == 0).then_some(U256([q[0], q[1], q[2], q[3]]))
    }

    /// `self / d` (floor); `d = 0` gives `MAX`.
    fn div_u64(self, d: u64) -> U256 {
        if d == 0 {
            return U256::MAX;
        }
        let mut r = [0u64; 4];
        let mut rem = 0u128;
        for i in (0..4).rev() {
            let cur = (rem << 64) | u128::from(self.0[i]);
            r[i] = (cur / u128::from(d)) as u64;
            rem = cur % u128::from(d);
        }
        U256(r)
    }

    /// `self / d` (floor) by shift and subtract; `d = 0` gives `MAX`. Called once per block.
    fn div(self, d: U256) -> U256 {
        if d.is_zero() {
            return U256::MAX;
        }
        let mut q = U256([0; 4]);
        let mut rem = U256([0; 4]);
        for i in (0..256).rev() {
            let top = rem.0[3] >> 63 == 1;
            rem = rem.shl1();
            if self.bit(i) {
                rem.0[0] |= 1;
            }
            if top || rem >= d {
                rem = rem.sub(d);
                q.set_bit(i);
            }
        }
        q
    }

    fn to_u128_saturating(self) -> u128 {
        if self.0[2] != 0 || self.0[3] != 0 {
            u128::MAX
        } else {
            (u128::from(self.0[1]) << 64) | u128::from(self.0[0])
        }
    }

    /// `floor(v)` for a finite `v ≥ 0`; values ≥ 2^256 saturate.
    fn from_f64_floor(v: f64) -> U256 {
        if v.is_nan() || v < 1.0 {
            return U256([0; 4]);
        }
        let bits = v.to_bits();
        let exp = ((bits >> 52) & 0x7ff) as i32 - 1075;
        let mant = (bits & ((1u64 << 52) - 1)) | (1u64 << 52);
        if exp + 53 > 256 {
            return U256::MAX;
        }
        let mut r = U256([mant, 0, 0, 0]);
        if exp >= 0 {
            for _ in 0..exp {
                r = r.shl1();
            }
        } else {
            r = U256([mant >> exp.unsigned_abs().min(63), 0, 0, 0]);
            if exp < -63 {
                r = U256([0; 4]);
            }
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pow2(n: usize) -> Hash {
        let mut u = U256([0; 4]);
        u.set_bit(n);
        u.to_be()
    }

    #[test]
    fn work_of_simple_targets() {
        assert_eq!(work(&MAX_TARGET), 1);
        // target = 2^252 - 1 -> 2^256 / 2^252 = 16 hashes.
        let t = U256::from_be(&pow2(252)).sub_one().to_be();
        assert_eq!(work(&t), 16);
        let t = U256::from_be(&pow2(200)).sub_one().to_be();
        assert_eq!(work(&t), 1u128 << 56);
        assert_eq!(work(&[0; 32]), u128::MAX);
    }

    #[test]
    fn target_for_hashes_inverts_work() {
        for n in [
            2u64,
            3,
            16,
            1000,
            1_000_000,
            1_000_000_007,
            3_500_000_000_000,
        ] {
            assert_eq!(work(&target_for_hashes(n as f64)), u128::from(n));
        }
        for h in [2.5, 1234.567, 1e20, 3.3e30] {
            let w = work(&target_for_hashes(h)) as f64;
            assert!((w - h).abs() <= 1.0 + h * 1e-12, "{h} -> {w}");
        }
        assert_eq!(target_for_hashes(0.5), MAX_TARGET);
        assert_eq!(target_for_hashes(f64::NAN), MAX_TARGET);
        assert_eq!(target_for_hashes(1e300), U256::ONE.to_be());
    }

    #[test]
    fn meets_target_is_big_endian_order() {
        let mut t = [0u8; 32];
        t[0] = 0x10;
        let mut h = [0xffu8; 32];
        h[0] = 0x0f;
        assert!(meets_target(&h, &t));
        h[0] = 0x10;
        assert!(!meets_target(&h, &t));
        assert!(meets_target(&t, &t));
    }

    #[test]
    fn retarget_direction_and_clamp() {
        let old = pow2(240);
        let old_w = work(&old);
        // Blocks twice too slow: target doubles (easier), work halves.
        assert_eq!(work(&retarget(&old, 20_000, 10_000)), old_w / 2);
        // Twice too fast: target halves.
        assert_eq!(retarget(&old, 5_000, 10_000), pow2(239));
        // Clamped to x4 / /4, negative spans included.
        assert_eq!(retarget(&old, 1_000_000, 10_000), pow2(242));
        assert_eq!(retarget(&old, -5, 10_000), pow2(238));
        // Saturates at the easiest target, never reaches zero.
        assert_eq!(retarget(&MAX_TARGET, 40_000, 10_000), MAX_TARGET);
        assert_eq!(retarget(&U256::ONE.to_be(), 0, 10_000), U256::ONE.to_be());
    }

    #[test]
    fn mine_finds_a_valid_nonce_and_counts_tries() {
        let mut header = BlockHeader {
            version: 1,
            prev: [1; 32],
            merkle_root: [2; 32],
            time_ms: 3,
            target: target_for_hashes(64.0),
            miner: 4,
            nonce: 0,
        };
        let (nonce, tries) = mine(&header, 100, 1 << 20).unwrap_or((0, 0));
        assert!(tries >= 1);
        assert_eq!(nonce, 100 + tries - 1);
        header.nonce = nonce;
        assert!(meets_target(&header.hash(), &header.target));
        // Every earlier nonce failed.
        for n in 100..nonce {
            header.nonce = n;
            assert!(!meets_target(&header.hash(), &header.target));
        }
        header.target = [0; 32];
        assert_eq!(mine(&header, 0, 1000), None);
    }
}
