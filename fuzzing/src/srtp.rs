//! The `rtp_srtp` target: RTP header parsing and an SRTP receiver fed a script of packets.

use std::collections::HashSet;

use binfm_roles::session::{DirectionKey, SrtpReceiver, SrtpSender};
use binfm_stack::wire::rtp::RtpHeader;

use super::Script;

/// SSRC of the fixed SRTP stream.
pub const SRTP_SSRC: u32 = 0x1234_5678;

pub(crate) fn srtp_key(b: u8) -> DirectionKey {
    DirectionKey {
        key: [b; 32],
        salt: [b.wrapping_add(1); 12],
    }
}

/// RTP header parsing, then an SRTP receiver with a fixed key fed a script of raw packets
/// and authentic packets (sequence numbers, payloads and the key switch chosen by the input).
///
/// Script: `op u8` then, for op % 4 == 0, `len u8` and that many raw bytes; 1: `seq u16
/// len u8 payload` protected with the current key; 2: the same with the next key (after a
/// rekey); 3: install the next key. Property: an index is accepted at most once.
pub fn rtp_srtp(data: &[u8]) {
    if let Ok((header, rest)) = RtpHeader::parse(data) {
        assert_eq!(header.to_bytes()[..], data[..12]);
        assert_eq!(rest, &data[12..]);
    }
    let mut rx = SrtpReceiver::new(srtp_key(1), SRTP_SSRC);
    let _ = rx.unprotect(data);

    let mut rx = SrtpReceiver::new(srtp_key(1), SRTP_SSRC);
    let mut accepted = HashSet::new();
    let mut s = Script { rest: data };
    let mut steps = 0;
    while !s.done() && steps < 256 {
        steps += 1;
        let op = s.u8();
        let packet = match op % 4 {
            0 => {
                let n = usize::from(s.u8());
                s.bytes(n).to_vec()
            }
            1 | 2 => {
                let seq = s.u16();
                let n = usize::from(s.u8());
                let payload = s.bytes(n);
                let key = if op % 4 == 1 { 1 } else { 2 };
                let mut tx = SrtpSender::new(srtp_key(key), SRTP_SSRC, seq);
                tx.protect(0, u32::from(seq) * 160, payload)
            }
            _ => {
                rx.install_next_key(srtp_key(2));
                continue;
            }
        };
        if let Ok(u) = rx.unprotect(&packet) {
            assert!(accepted.insert(u.index), "index {} accepted twice", u.index);
            assert_eq!(u.header.ssrc, SRTP_SSRC);
            assert_eq!(rx.highest_index().map(|h| h >= u.index), Some(true));
        }
    }
}
