//! Where an end node's secrets come from: one 256-bit master per run, and from it, with
//! HKDF-SHA256 (RFC 5869), a separate 256-bit key per node, purpose and start, each seeding a
//! ChaCha20 generator. Roles never touch a global RNG; the testbed derives these keys and
//! hands them to the constructors (`docs/security.md`, "Key material").
//!
//! - Virtual runs (and live runs with `--reproducible-keys`): the master is
//!   [`master_from_seed`] of the topology's seed, so a run is a pure function of its file.
//!   Anyone with the file can recompute every key: that is the point of a reproducible run.
//! - Live runs by default: the master is 32 bytes from the operating system.
//!
//! The `start` input separates the generators of two starts of one node (a restart), so a
//! restarted end node never draws the nonces, SSRCs or request ids of its previous life.

use hkdf::Hkdf;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use sha2::Sha256;

/// A 256-bit key.
pub type Key = [u8; 32];

/// HKDF salt of the master, a fixed label (RFC 5869 section 3.1 allows a constant salt).
const MASTER_SALT: &[u8] = b"binfm key master v1";

/// The master of a reproducible run: HKDF-Extract over the 64-bit seed. Its entropy is the
/// seed's 64 bits at most; it is meant to be reproducible, not secret.
pub fn master_from_seed(seed: u64) -> Key {
    let (prk, _) = Hkdf::<Sha256>::extract(Some(MASTER_SALT), &seed.to_be_bytes());
    prk.into()
}

/// The key for `purpose` of node `name`, started for the `start`-th time (or at that start
/// instant): HKDF-Expand of `master` with info = `purpose` ‖ 0x00 ‖ `name` ‖ 0x00 ‖
/// `start` (u64, big-endian). The separators keep every (purpose, name) pair distinct as long
/// as neither contains a NUL byte (topology names cannot).
pub fn derive(master: &Key, purpose: &str, name: &str, start: u64) -> Key {
    let hk = Hkdf::<Sha256>::from_prk(master).unwrap_or_else(|_| Hkdf::new(None, master));
    let mut info = Vec::with_capacity(purpose.len() + name.len() + 10);
    info.extend_from_slice(purpose.as_bytes());
    info.push(0);
    info.extend_from_slice(name.as_bytes());
    info.push(0);
    info.extend_from_slice(&start.to_be_bytes());
    let mut okm = [0u8; 32];
    // 32 bytes is far below HKDF-SHA256's 255 * 32 limit: cannot fail.
    let _ = hk.expand(&info, &mut okm);
    okm
}

/// A ChaCha20 generator keyed with [`derive`]'s key.
pub fn rng(master: &Key, purpose: &str, name: &str, start: u64) -> ChaCha20Rng {
    ChaCha20Rng::from_seed(derive(master, purpose, name, start))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngExt;

    #[test]
    fn keys_are_separated_by_every_input() {
        let m = master_from_seed(1);
        assert_eq!(m, master_from_seed(1));
        assert_ne!(m, master_from_seed(2));
        let k = derive(&m, "en rng", "a", 0);
        assert_eq!(k, derive(&m, "en rng", "a", 0));
        for other in [
            derive(&m, "en rng", "a", 1),
            derive(&m, "en rng", "b", 0),
            derive(&m, "dh", "a", 0),
            derive(&master_from_seed(2), "en rng", "a", 0),
            // No ambiguity between the purpose and the name.
            derive(&m, "en rng\0a", "", 0),
        ] {
            assert_ne!(k, other);
        }
        let (mut r1, mut r2) = (rng(&m, "x", "a", 0), rng(&m, "x", "a", 7));
        assert_ne!(r1.random::<[u8; 16]>(), r2.random::<[u8; 16]>());
    }
}
