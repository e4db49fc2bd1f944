//! SRTP's AEAD mode with AES-256-GCM (RFC 7714): the RTP header travels in clear and is
//! authenticated as AAD, the payload is encrypted, a 16-byte tag follows it.
//!
//! ```text
//! IV (12 bytes) = salt XOR (0x0000 ‖ SSRC ‖ ROC ‖ SEQ)
//! packet        = RTP header (12) ‖ AES-256-GCM(key, IV, AAD = header, payload) ‖ tag (16)
//! ```
//! The rollover counter ROC counts wraps of the 16-bit sequence number; ROC ‖ SEQ is the
//! packet's 48-bit index, which the receiver estimates from the highest index seen (RFC 3711
//! Appendix A) and uses for its replay window. A (key, IV) pair never repeats because the
//! index only rises for one key; rekeying (Figure 10) installs a new key, never a reused one.
//!
//! Sans-IO and allocation-light: one `Vec` per packet, no clock, no RNG.

use std::fmt;

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::inout::InOutBuf;
use aes_gcm::aead::{AeadInOut, Key, KeyInit, Nonce, Tag};
use binfm_stack::wire::rtp::{RTP_HEADER_LEN, RtpError, RtpHeader};

use super::keys::DirectionKey;

/// Length of the GCM tag appended to each packet.
pub const SRTP_TAG_LEN: usize = 16;
/// Replay window (RFC 3711 section 3.3.2 asks for at least 64).
pub const REPLAY_WINDOW: u64 = 64;

/// A direction key expanded for AES (the key schedule is done once, not per packet).
#[derive(Clone)]
struct Slot {
    cipher: Aes256Gcm,
    salt: [u8; 12],
    id: [u8; 4],
}

impl Slot {
    fn new(key: &DirectionKey) -> Slot {
        Slot {
            cipher: Aes256Gcm::new(&Key::<Aes256Gcm>::from(key.key)),
            salt: key.salt,
            id: key.fingerprint(),
        }
    }

    /// RFC 7714 section 8.1: the 12-byte IV.
    fn iv(&self, ssrc: u32, index: u64) -> Nonce<Aes256Gcm> {
        let mut iv = [0u8; 12];
        iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
        // ROC ‖ SEQ is the low 48 bits of the index.
        iv[6..12].copy_from_slice(&index.to_be_bytes()[2..]);
        for (b, s) in iv.iter_mut().zip(self.salt) {
            *b ^= s;
        }
        Nonce::<Aes256Gcm>::from(iv)
    }

    /// Decrypts `ct` into a new buffer if the tag verifies; `None` otherwise.
    fn open(&self, ssrc: u32, index: u64, aad: &[u8], ct: &[u8], tag: &[u8]) -> Option<Vec<u8>> {
        let tag = Tag::<Aes256Gcm>::try_from(tag).ok()?;
        let mut out = vec![0u8; ct.len()];
        let buf = InOutBuf::new(ct, &mut out).ok()?;
        self.cipher
            .decrypt_inout_detached(&self.iv(ssrc, index), aad, buf, &tag)
            .ok()?;
        Some(out)
    }
}

impl fmt::Debug for Slot {
    /// Only the key's fingerprint.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "key {:02x?}", self.id)
    }
}

/// Protects one outgoing RTP stream.
#[derive(Debug, Clone)]
pub struct SrtpSender {
    slot: Slot,
    ssrc: u32,
    seq: u16,
    roc: u32,
}

impl SrtpSender {
    /// A stream starting at `first_seq` with ROC 0. RFC 3550 wants a random first sequence
    /// number; drawing it below 0x8000 keeps the first wrap far from the start (the receiver
    /// copes with either).
    pub fn new(key: DirectionKey, ssrc: u32, first_seq: u16) -> Self {
        SrtpSender {
            slot: Slot::new(&key),
            ssrc,
            seq: first_seq,
            roc: 0,
        }
    }

    /// RTP header + ciphertext + tag; advances seq (and ROC on wrap). The marker bit is
    /// never set. At 50 packets/s the 48-bit index lasts 178,000 years, so ROC wrapping (which
    /// would reuse IVs) is not handled.
    pub fn protect(&mut self, payload_type: u8, timestamp: u32, payload: &[u8]) -> Vec<u8> {
        let header = RtpHeader {
            payload_type,
            marker: false,
            seq: self.seq,
            timestamp,
            ssrc: self.ssrc,
        }
        .to_bytes();
        let index = (u64::from(self.roc) << 16) | u64::from(self.seq);
        let mut out = Vec::with_capacity(RTP_HEADER_LEN + payload.len() + SRTP_TAG_LEN);
        out.extend_from_slice(&header);
        out.extend_from_slice(payload);
        let iv = self.slot.iv(self.ssrc, index);
        let body = out.get_mut(RTP_HEADER_LEN..).unwrap_or_default();
        // GCM refuses only plaintexts above 64 GiB; a payload comes from one datagram.
        let tag = self
            .slot
            .cipher
            .encrypt_inout_detached(&iv, &header, body.into())
            .unwrap_or_else(|_| unreachable!("payload of {} bytes", payload.len()));
        out.extend_from_slice(&tag);
        self.seq = self.seq.wrapping_add(1);
        if self.seq == 0 {
            self.roc = self.roc.wrapping_add(1);
        }
        out
    }

    /// Key switch; takes effect at the next packet. Sequence number and ROC carry on, so the
    /// receiver's replay window spans the switch.
    pub fn set_key(&mut self, key: DirectionKey) {
        self.slot = Slot::new(&key);
    }

    /// Sequence number of the next packet.
    pub fn next_seq(&self) -> u16 {
        self.seq
    }

    /// Extended index (ROC ‖ SEQ) of the next packet.
    pub fn next_index(&self) -> u64 {
        (u64::from(self.roc) << 16) | u64::from(self.seq)
    }

    /// The stream's SSRC.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Fingerprint of the key in use ([`DirectionKey::fingerprint`]).
    pub fn key_id(&self) -> [u8; 4] {
        self.slot.id
    }
}

/// Which of the receiver's keys authenticated a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyUsed {
    /// The current key.
    Current,
    /// The key before the last switch (a straggler sent before the peer switched).
    Previous,
    /// The installed next key: the peer has switched, and this packet made it current.
    Next,
}

/// A packet that authenticated and passed the replay check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unprotected {
    /// Its RTP header.
    pub header: RtpHeader,
    /// Decrypted payload.
    pub payload: Vec<u8>,
    /// ROC<<16 | seq: the extended sequence number.
    pub index: u64,
    /// Which key opened it.
    pub key_epoch: KeyUsed,
}

/// Why a packet was dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SrtpError {
    /// Not an RTP packet we accept, or shorter than header plus tag.
    #[error("malformed SRTP packet: {0}")]
    Malformed(RtpError),
    /// Another stream's packet.
    #[error("SRTP packet from SSRC {got:#010x}, expected {expected:#010x}")]
    WrongSsrc {
        /// The stream this receiver is for.
        expected: u32,
        /// SSRC in the packet.
        got: u32,
    },
    /// No key (current, next, previous) authenticates it: forged, corrupted, or keyed with
    /// something we never installed.
    #[error("SRTP authentication failed")]
    AuthFailed,
    /// Authentic, but already received.
    #[error("SRTP packet {index} replayed")]
    Replayed {
        /// Its extended sequence number.
        index: u64,
    },
    /// Authentic, but older than the replay window.
    #[error("SRTP packet {index} is older than the replay window")]
    TooOld {
        /// Its extended sequence number.
        index: u64,
    },
}

impl SrtpError {
    /// Short stable name for counters and events (`auth_failed`, `replayed`, ...).
    pub fn reason(&self) -> &'static str {
        match self {
            SrtpError::Malformed(_) => "malformed",
            SrtpError::WrongSsrc { .. } => "wrong_ssrc",
            SrtpError::AuthFailed => "auth_failed",
            SrtpError::Replayed { .. } => "replayed",
            SrtpError::TooOld { .. } => "too_old",
        }
    }
}

/// Counters of a receiver: what arrived and why packets were dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SrtpStats {
    /// Accepted packets.
    pub received: u64,
    /// Dropped: no key authenticated them.
    pub auth_failed: u64,
    /// Dropped: already received.
    pub replayed: u64,
    /// Dropped: behind the replay window.
    pub too_old: u64,
    /// Dropped: not parseable.
    pub malformed: u64,
    /// Dropped: another SSRC.
    pub wrong_ssrc: u64,
    /// Times an installed next key became current.
    pub key_switches: u64,
}

/// Unprotects one incoming RTP stream (one SSRC).
#[derive(Debug, Clone)]
pub struct SrtpReceiver {
    ssrc: u32,
    current: Slot,
    /// The key before the last switch, and the first index seen under the current key:
    /// the old key only opens packets below it (the sender switched once, in index order).
    previous: Option<(Slot, u64)>,
    next: Option<Slot>,
    /// Highest accepted index, `None` before the first packet.
    highest: Option<u64>,
    /// Bit i set: index `highest - i` was accepted.
    window: u64,
    stats: SrtpStats,
}

/// RFC 3711 Appendix A: the index nearest the highest one seen. `None` when that would need
/// a ROC below 0 (no such packet was ever sent).
fn estimate_index(highest: u64, seq: u16) -> Option<u64> {
    let roc = highest >> 16;
    let s_l = (highest & 0xffff) as u16;
    let v = if s_l < 0x8000 {
        if seq > s_l && seq - s_l > 0x8000 {
            roc.checked_sub(1)?
        } else {
            roc
        }
    } else if s_l - 0x8000 > seq {
        roc + 1
    } else {
        roc
    };
    Some((v << 16) | u64::from(seq))
}

impl SrtpReceiver {
    /// A receiver for `ssrc` (learnt from the peer's SessionRequest or SessionResponse).
    pub fn new(key: DirectionKey, ssrc: u32) -> Self {
        SrtpReceiver {
            ssrc,
            current: Slot::new(&key),
            previous: None,
            next: None,
            highest: None,
            window: 0,
            stats: SrtpStats::default(),
        }
    }

    /// Decrypts with the current key; during a key switch also tries the installed next key (and
    /// the previous one for stragglers) so no frame is lost at the boundary. Replay window: 64
    /// packets (RFC 3711 sec. 3.3.2), checked only after authentication succeeds.
    pub fn unprotect(&mut self, packet: &[u8]) -> Result<Unprotected, SrtpError> {
        let (header, body) = match RtpHeader::parse(packet) {
            Ok(v) => v,
            Err(e) => {
                self.stats.malformed += 1;
                return Err(SrtpError::Malformed(e));
            }
        };
        let Some(ct_len) = body.len().checked_sub(SRTP_TAG_LEN) else {
            self.stats.malformed += 1;
            return Err(SrtpError::Malformed(RtpError::Truncated {
                need: RTP_HEADER_LEN + SRTP_TAG_LEN,
                have: packet.len(),
            }));
        };
        if header.ssrc != self.ssrc {
            self.stats.wrong_ssrc += 1;
            return Err(SrtpError::WrongSsrc {
                expected: self.ssrc,
                got: header.ssrc,
            });
        }
        let (ct, tag) = body.split_at(ct_len);
        let aad = packet.get(..RTP_HEADER_LEN).unwrap_or_default();
        let seq = u64::from(header.seq);
        // Before the first packet the ROC is unknown: the sender starts at 0, but its first
        // packets may have been lost across a wrap, so ROC 1 is tried too.
        let candidates = match self.highest {
            None => [Some(seq), Some((1 << 16) | seq)],
            Some(h) => [estimate_index(h, header.seq), None],
        };
        let opened = candidates
            .into_iter()
            .flatten()
            .find_map(|index| self.open(header.ssrc, index, aad, ct, tag));
        let Some((payload, index, key_epoch)) = opened else {
            self.stats.auth_failed += 1;
            return Err(SrtpError::AuthFailed);
        };
        self.check_replay(index)?;
        if key_epoch == KeyUsed::Next
            && let Some(next) = self.next.take()
        {
            let old = std::mem::replace(&mut self.current, next);
            self.previous = Some((old, index));
            self.stats.key_switches += 1;
        }
        self.accept(index);
        self.stats.received += 1;
        Ok(Unprotected {
            header,
            payload,
            index,
            key_epoch,
        })
    }

    /// Tries current, then next, then previous (only for indexes before the switch).
    fn open(
        &self,
        ssrc: u32,
        index: u64,
        aad: &[u8],
        ct: &[u8],
        tag: &[u8],
    ) -> Option<(Vec<u8>, u64, KeyUsed)> {
        if let Some(p) = self.current.open(ssrc, index, aad, ct, tag) {
            return Some((p, index, KeyUsed::Current));
        }
        if let Some(next) = &self.next
            && let Some(p) = next.open(ssrc, index, aad, ct, tag)
        {
            return Some((p, index, KeyUsed::Next));
        }
        if let Some((prev, switched_at)) = &self.previous
            && index < *switched_at
            && let Some(p) = prev.open(ssrc, index, aad, ct, tag)
        {
            return Some((p, index, KeyUsed::Previous));
        }
        None
    }

    fn check_replay(&mut self, index: u64) -> Result<(), SrtpError> {
        let Some(highest) = self.highest else {
            return Ok(());
        };
        if index > highest {
            return Ok(());
        }
        let age = highest - index;
        if age >= REPLAY_WINDOW {
            self.stats.too_old += 1;
            return Err(SrtpError::TooOld { index });
        }
        if self.window & (1 << age) != 0 {
            self.stats.replayed += 1;
            return Err(SrtpError::Replayed { index });
        }
        Ok(())
    }

    fn accept(&mut self, index: u64) {
        match self.highest {
            Some(highest) if index <= highest => {
                self.window |= 1 << (highest - index);
            }
            Some(highest) => {
                let shift = index - highest;
                self.window = if shift >= REPLAY_WINDOW {
                    0
                } else {
                    self.window << shift
                };
                self.window |= 1;
                self.highest = Some(index);
            }
            None => {
                self.window = 1;
                self.highest = Some(index);
            }
        }
    }

    /// After a rekey; becomes Current when the first packet authenticates with it (then the old
    /// one is kept as Previous). A second call before that replaces the pending key.
    pub fn install_next_key(&mut self, key: DirectionKey) {
        self.next = Some(Slot::new(&key));
    }

    /// Whether an installed next key still waits for its first packet.
    pub fn has_pending_key(&self) -> bool {
        self.next.is_some()
    }

    /// Highest accepted extended sequence number.
    pub fn highest_index(&self) -> Option<u64> {
        self.highest
    }

    /// The stream's SSRC.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Drop counters and accepted packets.
    pub fn stats(&self) -> SrtpStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(b: u8) -> DirectionKey {
        DirectionKey {
            key: [b; 32],
            salt: [b.wrapping_add(1); 12],
        }
    }

    fn pair(first_seq: u16) -> (SrtpSender, SrtpReceiver) {
        (
            SrtpSender::new(key(1), 0x1234_5678, first_seq),
            SrtpReceiver::new(key(1), 0x1234_5678),
        )
    }

    fn frame(i: u64) -> Vec<u8> {
        (0..160).map(|j| (i as u8).wrapping_add(j)).collect()
    }

    #[test]
    fn round_trip() {
        let (mut tx, mut rx) = pair(1000);
        for i in 0..10u64 {
            let p = tx.protect(0, 160 * i as u32, &frame(i));
            assert_eq!(p.len(), 12 + 160 + 16);
            assert_ne!(&p[12..172], &frame(i)[..], "payload is encrypted");
            let u = rx.unprotect(&p).expect("authentic");
            assert_eq!(u.payload, frame(i));
            assert_eq!(u.index, 1000 + i);
            assert_eq!(u.header.seq, 1000 + i as u16);
            assert_eq!(u.header.timestamp, 160 * i as u32);
            assert_eq!(u.key_epoch, KeyUsed::Current);
        }
        assert_eq!(tx.next_seq(), 1010);
        assert_eq!(rx.stats().received, 10);
    }

    #[test]
    fn rfc7714_iv_layout() {
        // IV = salt XOR (00 00 ‖ SSRC ‖ ROC ‖ SEQ), RFC 7714 section 8.1.
        let slot = Slot::new(&DirectionKey {
            key: [0; 32],
            salt: [0; 12],
        });
        let iv = slot.iv(0xdead_beef, (7 << 16) | 0x1234);
        assert_eq!(
            iv[..],
            [0, 0, 0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 7, 0x12, 0x34]
        );
        let salted = Slot::new(&DirectionKey {
            key: [0; 32],
            salt: [0xff; 12],
        })
        .iv(0, 0);
        assert_eq!(salted[..], [0xff; 12]);
    }

    #[test]
    fn known_answer() {
        // Pins the construction against an independent AES-256-GCM (Python `cryptography`):
        // key 01.., salt 02.., SSRC 0x12345678, seq 1000, payload 00 01 02 03.
        let (mut tx, _) = pair(1000);
        let p = tx.protect(0, 160, &[0, 1, 2, 3]);
        let hex: String = p.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, KNOWN_PACKET);
    }

    const KNOWN_PACKET: &str = "800003e8000000a012345678e51b64023d3a0e3b577ca83c877ff97292e6b599";

    #[test]
    fn tampering_fails_authentication() {
        let (mut tx, mut rx) = pair(5);
        let p = tx.protect(0, 0, &frame(0));
        // Payload type, seq, timestamp, payload, tag (an SSRC change is WrongSsrc instead).
        for i in [1, 3, 7, 5, 12, 100, p.len() - 1] {
            let mut bad = p.clone();
            bad[i] ^= 0x01;
            assert_eq!(rx.unprotect(&bad), Err(SrtpError::AuthFailed), "byte {i}");
        }
        // Flipping the marker bit also changes the AAD.
        let mut bad = p.clone();
        bad[1] ^= 0x80;
        assert_eq!(rx.unprotect(&bad), Err(SrtpError::AuthFailed));
        assert_eq!(rx.stats().auth_failed, 8);
        assert!(rx.unprotect(&p).is_ok(), "the original still opens");
        let mut other = SrtpReceiver::new(key(9), 0x1234_5678);
        assert_eq!(other.unprotect(&p), Err(SrtpError::AuthFailed));
    }

    #[test]
    fn malformed_and_wrong_ssrc() {
        let (mut tx, mut rx) = pair(5);
        let p = tx.protect(0, 0, &[]);
        assert_eq!(p.len(), 28);
        assert!(rx.unprotect(&p).is_ok(), "empty payload is fine");
        assert_eq!(
            rx.unprotect(&p[..27]),
            Err(SrtpError::Malformed(RtpError::Truncated {
                need: 28,
                have: 27
            }))
        );
        assert_eq!(
            rx.unprotect(&[b"BF\x01\x09".as_slice(), &[0; 84]].concat()),
            Err(SrtpError::Malformed(RtpError::BadVersion(1)))
        );
        let mut other = SrtpSender::new(key(1), 0x1111_1111, 5);
        assert_eq!(
            rx.unprotect(&other.protect(0, 0, &frame(1))),
            Err(SrtpError::WrongSsrc {
                expected: 0x1234_5678,
                got: 0x1111_1111
            })
        );
        let s = rx.stats();
        assert_eq!((s.malformed, s.wrong_ssrc, s.received), (2, 1, 1));
    }

    #[test]
    fn replay_and_too_old() {
        let (mut tx, mut rx) = pair(100);
        let packets: Vec<_> = (0..200)
            .map(|i| tx.protect(0, i, &frame(i.into())))
            .collect();
        rx.unprotect(&packets[0]).expect("first");
        assert_eq!(
            rx.unprotect(&packets[0]),
            Err(SrtpError::Replayed { index: 100 })
        );
        rx.unprotect(&packets[50]).expect("jump ahead");
        assert_eq!(
            rx.unprotect(&packets[0]),
            Err(SrtpError::Replayed { index: 100 }),
            "50 behind: in the window, already seen"
        );
        rx.unprotect(&packets[113]).expect("jump ahead");
        assert_eq!(
            rx.unprotect(&packets[50]),
            Err(SrtpError::Replayed { index: 150 }),
            "63 behind: the window's oldest slot"
        );
        assert_eq!(
            rx.unprotect(&packets[49]),
            Err(SrtpError::TooOld { index: 149 }),
            "64 behind"
        );
        assert_eq!(
            rx.unprotect(&packets[0]),
            Err(SrtpError::TooOld { index: 100 })
        );
        assert_eq!(
            rx.unprotect(&packets[51]).map(|u| u.index),
            Ok(151),
            "62 behind, never seen"
        );
        let s = rx.stats();
        assert_eq!((s.received, s.replayed, s.too_old), (4, 3, 2));
    }

    #[test]
    fn reordering_within_the_window_is_accepted() {
        let (mut tx, mut rx) = pair(40_000);
        let packets: Vec<_> = (0..64)
            .map(|i| tx.protect(0, i, &frame(i.into())))
            .collect();
        let mut order: Vec<usize> = (0..64).collect();
        order.reverse();
        order.swap(3, 40);
        for i in order {
            let u = rx.unprotect(&packets[i]).expect("in window");
            assert_eq!(u.index, 40_000 + i as u64);
            assert_eq!(u.payload, frame(i as u64));
        }
        assert_eq!(rx.stats().received, 64);
    }

    #[test]
    fn sequence_wrap_advances_the_roc() {
        let (mut tx, mut rx) = pair(65_530);
        let packets: Vec<_> = (0..20)
            .map(|i| tx.protect(0, i, &frame(i.into())))
            .collect();
        assert_eq!(tx.next_index(), (1 << 16) | 14);
        // Deliver with some reordering across the wrap.
        let order = [
            0, 1, 2, 3, 4, 7, 5, 6, 9, 8, 10, 11, 12, 19, 13, 14, 15, 16, 17, 18,
        ];
        for i in order {
            let u = rx.unprotect(&packets[i]).expect("authentic");
            assert_eq!(u.index, 65_530 + i as u64);
        }
        assert_eq!(rx.highest_index(), Some((1 << 16) | 13));
    }

    #[test]
    fn first_packet_after_a_wrap() {
        // The packets before the wrap were lost: the receiver must still find ROC 1.
        let (mut tx, mut rx) = pair(65_534);
        let packets: Vec<_> = (0..6).map(|i| tx.protect(0, i, &frame(i.into()))).collect();
        let u = rx.unprotect(&packets[3]).expect("ROC 1");
        assert_eq!(u.index, (1 << 16) | 1);
        let u = rx.unprotect(&packets[1]).expect("late, ROC 0");
        assert_eq!(u.index, 65_535);
        assert_eq!(
            rx.unprotect(&packets[5]).map(|u| u.index),
            Ok((1 << 16) | 3)
        );
    }

    #[test]
    fn key_switch_with_interleaved_packets_loses_nothing() {
        let (mut tx, mut rx) = pair(7);
        let mut old = Vec::new();
        let mut new = Vec::new();
        for i in 0..10u64 {
            old.push(tx.protect(0, i as u32, &frame(i)));
        }
        tx.set_key(key(2));
        for i in 10..20u64 {
            new.push(tx.protect(0, i as u32, &frame(i)));
        }
        assert_ne!(tx.key_id(), key(1).fingerprint());
        // Only the first few old packets arrive before the rekey is processed.
        for p in &old[..4] {
            assert_eq!(rx.unprotect(p).map(|u| u.key_epoch), Ok(KeyUsed::Current));
        }
        rx.install_next_key(key(2));
        assert!(rx.has_pending_key());
        // A pending key changes nothing for old-key packets.
        assert_eq!(
            rx.unprotect(&old[4]).map(|u| u.key_epoch),
            Ok(KeyUsed::Current)
        );
        // New and old interleave: the first new one switches, old ones are stragglers.
        let order: [(bool, usize); 15] = [
            (true, 0),
            (false, 5),
            (true, 2),
            (false, 6),
            (true, 1),
            (false, 9),
            (false, 7),
            (true, 3),
            (false, 8),
            (true, 4),
            (true, 5),
            (true, 6),
            (true, 7),
            (true, 9),
            (true, 8),
        ];
        let mut got = Vec::new();
        for (is_new, i) in order {
            let p = if is_new { &new[i] } else { &old[i] };
            let u = rx.unprotect(p).expect("no loss at the boundary");
            let want = match (is_new, got.is_empty()) {
                (true, true) => KeyUsed::Next,
                (true, false) => KeyUsed::Current,
                (false, _) => KeyUsed::Previous,
            };
            assert_eq!(u.key_epoch, want, "new={is_new} i={i}");
            if is_new {
                got.push(u.index);
            }
            assert_eq!(u.payload, frame(u.index - 7));
        }
        assert!(!rx.has_pending_key());
        let s = rx.stats();
        assert_eq!((s.received, s.key_switches, s.auth_failed), (20, 1, 0));
        // The old key opens nothing at or above the switch: a packet forged with it (as a
        // holder of the old key could) at a new index is refused.
        let mut forger = SrtpSender::new(key(1), 0x1234_5678, 40);
        assert_eq!(
            rx.unprotect(&forger.protect(0, 0, &frame(0))),
            Err(SrtpError::AuthFailed)
        );
    }

    proptest! {
        #[test]
        fn unprotect_never_panics(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut rx = SrtpReceiver::new(key(1), 0x1234_5678);
            let _ = rx.unprotect(&data);
            let mut with_header = vec![0x80, 0, 0, 1, 0, 0, 0, 0, 0x12, 0x34, 0x56, 0x78];
            with_header.extend_from_slice(&data);
            prop_assert!(rx.unprotect(&with_header).is_err());
        }

        #[test]
        fn any_delivery_order_within_the_window(
            first in any::<u16>(),
            swaps in proptest::collection::vec((0usize..40, 0usize..40), 0..20),
        ) {
            let (mut tx, mut rx) = pair(first);
            let packets: Vec<_> = (0..40).map(|i| tx.protect(0, i, &frame(i.into()))).collect();
            let mut order: Vec<usize> = (0..40).collect();
            for (a, b) in swaps {
                order.swap(a, b);
            }
            for &i in &order {
                let u = rx.unprotect(&packets[i]);
                prop_assert_eq!(u.map(|u| u.index), Ok(u64::from(first) + i as u64));
            }
            for &i in &order {
                let replayed = matches!(rx.unprotect(&packets[i]), Err(SrtpError::Replayed { .. }));
                prop_assert!(replayed, "packet {} accepted twice", i);
            }
        }
    }
}
