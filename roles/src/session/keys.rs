//! Session keys from the DH secret K (docs/design.md, "Session"): one AES-256-GCM key and SRTP
//! salt per direction, plus a control key that authenticates handover, key renewal and the
//! key confirmation. K never keys a cipher itself; it goes through HKDF-SHA256 (RFC 5869).

use std::fmt;

use binfm_stack::wire::toall::HashAddr;
use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Binds every derived key to this protocol and version.
const INFO_LABEL: &[u8] = b"binfm session v1";
/// Salt of the setup's root secret (HKDF-Extract).
const ROOT_LABEL: &[u8] = b"binfm root v2: ss es ee";
/// Prefix of a renewal's input keying material.
const RENEWAL_LABEL: &[u8] = b"binfm renewal v2";
/// Direction labels: which side sends with the key.
const CALLER_TO_CALLEE: &[u8] = b"caller->callee";
const CALLEE_TO_CALLER: &[u8] = b"callee->caller";
const CONTROL: &[u8] = b"control";

/// The key and salt of one media direction.
#[derive(Clone)]
pub struct DirectionKey {
    /// AES-256-GCM key.
    pub key: [u8; 32],
    /// RFC 7714 salt, XORed into each packet's IV.
    pub salt: [u8; 12],
}

impl DirectionKey {
    /// A short public fingerprint (SHA-256 of key and salt, first 4 bytes): lets logs show
    /// which key is in use, and that both sides hold the same one, without showing it.
    pub fn fingerprint(&self) -> [u8; 4] {
        let d = Sha256::new()
            .chain_update(b"binfm key id")
            .chain_update(self.key)
            .chain_update(self.salt)
            .finalize();
        let mut id = [0u8; 4];
        id.copy_from_slice(&d[..4]);
        id
    }
}

impl fmt::Debug for DirectionKey {
    /// Never prints the key or the salt.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DirectionKey {{ id: {:02x?} }}", self.fingerprint())
    }
}

/// What [`derive`] gives one side of a session.
#[derive(Clone)]
pub struct SessionKeys {
    /// For the media this side sends.
    pub send: DirectionKey,
    /// For the media this side receives (the peer's `send`).
    pub recv: DirectionKey,
    /// HMAC key of the control messages; the same on both sides.
    pub control: [u8; 32],
}

impl fmt::Debug for SessionKeys {
    /// Never prints key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionKeys")
            .field("send", &self.send)
            .field("recv", &self.recv)
            .field("control", &"<secret>")
            .finish()
    }
}

/// The root secret of a session (Noise KK-like, without its extra round trip): HKDF-Extract
/// over the three group-14 secrets the two sides can both compute, in a fixed order:
///
/// - `ss` = static-static, `DH(X_caller, Y_callee)`: both registered keys (the paper's K);
/// - `es` = caller ephemeral with callee static, `DH(e_caller, Y_callee)`: only the callee
///   that registered `Y_callee` (or the caller) knows it, so a thief of the caller's key
///   cannot pose as the callee;
/// - `ee` = ephemeral-ephemeral, `DH(e_caller, e_callee)`: forgotten by both sides once the
///   keys are derived, so a later theft of every long-term key does not give this session's
///   keys back (forward secrecy).
///
/// Every input is 256 bytes (group 14), so the concatenation is unambiguous.
pub fn session_root(ss: &[u8], es: &[u8], ee: &[u8]) -> [u8; 32] {
    let mut ikm = Vec::with_capacity(ss.len() + es.len() + ee.len());
    ikm.extend_from_slice(ss);
    ikm.extend_from_slice(es);
    ikm.extend_from_slice(ee);
    let (prk, _) = Hkdf::<Sha256>::extract(Some(ROOT_LABEL), &ikm);
    prk.into()
}

/// The root of the next key epoch: HKDF-Extract with the current root as salt over the DH
/// secret of two fresh ephemerals (the initiator's new one and the responder's announced
/// next one). The old root is replaced, so a later theft of the state does not give older
/// epochs back, and the fresh DH heals an earlier theft.
pub fn renewal_root(root: &[u8; 32], fresh: &[u8]) -> [u8; 32] {
    let mut ikm = Vec::with_capacity(RENEWAL_LABEL.len() + fresh.len());
    ikm.extend_from_slice(RENEWAL_LABEL);
    ikm.extend_from_slice(fresh);
    let (prk, _) = Hkdf::<Sha256>::extract(Some(root), &ikm);
    prk.into()
}

/// HKDF-SHA256 over the DH secret K (or a [`session_root`]): salt = caller_nonce ‖ callee_nonce, info binds "binfm session v1",
/// both hash addresses, the key epoch and the direction; so every session (and every rekey epoch) gets
/// fresh keys even between the same pair. `i_am_caller` picks which direction is `send`.
pub fn derive(
    shared: &[u8],
    caller: &HashAddr,
    callee: &HashAddr,
    caller_nonce: &[u8; 16],
    callee_nonce: &[u8; 16],
    epoch: u32,
    i_am_caller: bool,
) -> SessionKeys {
    let mut salt = [0u8; 32];
    salt[..16].copy_from_slice(caller_nonce);
    salt[16..].copy_from_slice(callee_nonce);
    let hk = Hkdf::<Sha256>::new(Some(&salt), shared);
    // info = label ‖ caller ‖ callee ‖ epoch ‖ direction: fixed-length fields before the
    // variable label, so no two inputs share an encoding.
    let expand = |direction: &[u8], out: &mut [u8]| {
        let mut info = Vec::with_capacity(INFO_LABEL.len() + 64 + 4 + direction.len());
        info.extend_from_slice(INFO_LABEL);
        info.extend_from_slice(caller);
        info.extend_from_slice(callee);
        info.extend_from_slice(&epoch.to_be_bytes());
        info.extend_from_slice(direction);
        // At most 44 bytes, far below HKDF-SHA256's 255 * 32: cannot fail.
        let _ = hk.expand(&info, out);
    };
    let direction = |label: &[u8]| {
        let mut okm = [0u8; 44];
        expand(label, &mut okm);
        let mut key = DirectionKey {
            key: [0; 32],
            salt: [0; 12],
        };
        key.key.copy_from_slice(&okm[..32]);
        key.salt.copy_from_slice(&okm[32..]);
        key
    };
    let forward = direction(CALLER_TO_CALLEE);
    let backward = direction(CALLEE_TO_CALLER);
    let mut control = [0u8; 32];
    expand(CONTROL, &mut control);
    let (send, recv) = if i_am_caller {
        (forward, backward)
    } else {
        (backward, forward)
    };
    SessionKeys {
        send,
        recv,
        control,
    }
}

fn full_mac(control: &[u8; 32], data: &[u8]) -> [u8; 32] {
    // HMAC takes keys of any length: new_from_slice cannot fail.
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(control)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    m.update(data);
    m.finalize().into_bytes().into()
}

/// HMAC-SHA256 truncated to 16 bytes (128-bit tags, as RFC 2104 section 5 allows).
pub fn mac(control: &[u8; 32], data: &[u8]) -> [u8; 16] {
    let full = full_mac(control, data);
    let mut tag = [0u8; 16];
    tag.copy_from_slice(&full[..16]);
    tag
}

/// Checks a [`mac`] tag in constant time (no early exit that would leak how many bytes of a
/// forged tag were right).
pub fn verify_mac(control: &[u8; 32], data: &[u8], tag: &[u8; 16]) -> bool {
    mac(control, data).ct_eq(tag).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(epoch: u32) -> (SessionKeys, SessionKeys) {
        let k = [0x5a; 256];
        let a = derive(&k, &[1; 32], &[2; 32], &[3; 16], &[4; 16], epoch, true);
        let b = derive(&k, &[1; 32], &[2; 32], &[3; 16], &[4; 16], epoch, false);
        (a, b)
    }

    #[test]
    fn both_sides_agree() {
        let (a, b) = pair(0);
        assert_eq!(a.send.key, b.recv.key);
        assert_eq!(a.send.salt, b.recv.salt);
        assert_eq!(a.recv.key, b.send.key);
        assert_eq!(a.recv.salt, b.send.salt);
        assert_eq!(a.control, b.control);
        assert_ne!(a.send.key, a.recv.key, "one key per direction");
        assert_ne!(a.send.key, a.control);
    }

    #[test]
    fn every_input_changes_the_keys() {
        let k = [0x5a; 256];
        let base = derive(&k, &[1; 32], &[2; 32], &[3; 16], &[4; 16], 0, true);
        let variants = [
            derive(
                &[0x5b; 256],
                &[1; 32],
                &[2; 32],
                &[3; 16],
                &[4; 16],
                0,
                true,
            ),
            derive(&k, &[9; 32], &[2; 32], &[3; 16], &[4; 16], 0, true),
            derive(&k, &[1; 32], &[9; 32], &[3; 16], &[4; 16], 0, true),
            derive(&k, &[1; 32], &[2; 32], &[9; 16], &[4; 16], 0, true),
            derive(&k, &[1; 32], &[2; 32], &[3; 16], &[9; 16], 0, true),
            derive(&k, &[1; 32], &[2; 32], &[3; 16], &[4; 16], 1, true),
            // Swapped roles: the same pair calling the other way gets other keys.
            derive(&k, &[2; 32], &[1; 32], &[4; 16], &[3; 16], 0, false),
        ];
        for (i, v) in variants.iter().enumerate() {
            assert_ne!(v.send.key, base.send.key, "variant {i}");
            assert_ne!(v.control, base.control, "variant {i}");
        }
    }

    #[test]
    fn known_vector() {
        // Pins the derivation (label, field order, lengths): any change breaks interop with
        // an older build, so it must be deliberate. Recomputed with Python's hmac/hashlib.
        let (a, _) = pair(7);
        assert_eq!(hex(&a.send.key[..8]), KV_SEND);
        assert_eq!(hex(&a.send.salt), KV_SALT);
        assert_eq!(hex(&a.control[..8]), KV_CONTROL);
    }

    const KV_SEND: &str = "e3961ebff03f7e4f";
    const KV_SALT: &str = "ce15a945e885211aa5036930";
    const KV_CONTROL: &str = "653b338d25eaa436";

    use crate::util::hex;

    #[test]
    fn roots_depend_on_every_secret() {
        let (a, b, c) = ([1u8; 256], [2u8; 256], [3u8; 256]);
        let r = session_root(&a, &b, &c);
        assert_ne!(r, session_root(&[9; 256], &b, &c));
        assert_ne!(r, session_root(&a, &[9; 256], &c));
        assert_ne!(r, session_root(&a, &b, &[9; 256]));
        assert_ne!(r, session_root(&b, &a, &c), "order matters");
        let n = renewal_root(&r, &a);
        assert_ne!(n, r);
        assert_ne!(n, renewal_root(&r, &b));
        assert_ne!(n, renewal_root(&[0; 32], &a));
    }

    #[test]
    fn mac_and_verify() {
        let key = [7u8; 32];
        let tag = mac(&key, b"hello");
        assert!(verify_mac(&key, b"hello", &tag));
        assert!(!verify_mac(&key, b"hellp", &tag));
        assert!(!verify_mac(&[8u8; 32], b"hello", &tag));
        let mut bad = tag;
        bad[15] ^= 1;
        assert!(!verify_mac(&key, b"hello", &bad));
        // Python: hmac.new(bytes([7]) * 32, b"hello", hashlib.sha256).hexdigest()[:32]
        assert_eq!(hex(&tag), "290af183d08286ae740dfed386724985");
        assert_eq!(tag[..], full_mac(&key, b"hello")[..16]);
    }

    #[test]
    fn debug_hides_keys() {
        let (a, _) = pair(0);
        let s = format!("{a:?}");
        assert!(s.contains("<secret>"), "{s}");
        assert!(!s.contains(&format!("{:?}", a.send.key[0..4].to_vec())));
        assert!(!s.to_lowercase().contains(&hex(&a.send.key[..4])));
        assert!(!s.to_lowercase().contains(&hex(&a.control[..4])));
    }
}
