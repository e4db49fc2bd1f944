//! A multiply-fold hasher for small integer keys (member pairs, addresses, packed NAT keys)
//! on the per-packet path, where SipHash costs more than the work around the lookup.
//!
//! Keys hashed with it come from the topology or from inside hosts, never chosen freely by
//! traffic from outside, so hash-flooding resistance is not needed. Iteration order of a
//! [`FastMap`] is not part of any output (no caller iterates one where order shows).

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// Folded-multiply hasher: each word is xored in and mixed by a 64×64→128 multiply, whose
/// halves are folded so the high bits reach the low bits hashbrown indexes with.
#[derive(Debug, Default, Clone, Copy)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }
    fn write_u8(&mut self, x: u8) {
        self.write_u64(u64::from(x));
    }
    fn write_u16(&mut self, x: u16) {
        self.write_u64(u64::from(x));
    }
    fn write_u32(&mut self, x: u32) {
        self.write_u64(u64::from(x));
    }
    fn write_usize(&mut self, x: usize) {
        self.write_u64(x as u64);
    }
    fn write_u64(&mut self, x: u64) {
        let full = u128::from(self.0 ^ x) * 0x9e37_79b9_7f4a_7c15_u128;
        self.0 = (full as u64) ^ ((full >> 64) as u64);
    }
}

/// A `HashMap` with [`KeyHasher`].
pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<KeyHasher>>;
/// A `HashSet` with [`KeyHasher`].
pub type FastSet<K> = HashSet<K, BuildHasherDefault<KeyHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_pairs_hash_apart_and_maps_work() {
        let mut m: FastMap<(usize, usize), u32> = FastMap::default();
        for a in 0..50 {
            for b in 0..50 {
                m.insert((a, b), (a * 50 + b) as u32);
            }
        }
        assert_eq!(m.len(), 2500);
        assert_eq!(m.get(&(7, 3)), Some(&353));
        let h = |k: (usize, usize)| {
            use std::hash::{BuildHasher, BuildHasherDefault};
            BuildHasherDefault::<KeyHasher>::default().hash_one(k)
        };
        assert_ne!(h((1, 2)), h((2, 1)));
    }
}
