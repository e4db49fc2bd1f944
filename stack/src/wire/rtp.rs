//! The fixed RTP header (RFC 3550 section 5.1) that carries a call's audio, and the first-byte
//! demultiplexing of media and BINFM control on one UDP port.
//!
//! ```text
//!  0                   1                   2                   3
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |V=2|P|X|  CC   |M|     PT      |       sequence number         |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                           timestamp                           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                             SSRC                              |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//! Our senders never use padding, header extensions or CSRCs, so the parser refuses them
//! rather than half-supporting them: a header is then always exactly 12 bytes, which is also
//! the AAD of the SRTP AEAD mode (RFC 7714) used on top.

/// Length of the fixed header (no CSRCs, no extension).
pub const RTP_HEADER_LEN: usize = 12;
/// The only RTP version.
pub const RTP_VERSION: u8 = 2;

/// Why bytes are not an RTP packet we accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    /// Fewer bytes than the header (or header plus tag, for SRTP).
    #[error("RTP packet truncated: need {need} bytes, have {have}")]
    Truncated {
        /// Bytes needed.
        need: usize,
        /// Bytes present.
        have: usize,
    },
    /// Version field is not 2.
    #[error("RTP version {0}, expected 2")]
    BadVersion(u8),
    /// Padding bit set (our senders never pad).
    #[error("RTP padding is not supported")]
    Padding,
    /// Extension bit set (no header extensions are negotiated).
    #[error("RTP header extension is not supported")]
    Extension,
    /// CSRC count is not 0 (there are no mixers in a two-party call).
    #[error("RTP CSRC count {0} is not supported (must be 0)")]
    Csrc(u8),
}

/// The fixed RTP header with V=2, P=0, X=0, CC=0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RtpHeader {
    /// Payload type, 7 bits (0 = PCMU); the top bit is cut on encoding.
    pub payload_type: u8,
    /// Marker bit (start of a talkspurt for audio).
    pub marker: bool,
    /// Sequence number; wraps, the SRTP rollover counter extends it.
    pub seq: u16,
    /// Sampling instant of the first sample, in clock-rate units (8 kHz for PCMU).
    pub timestamp: u32,
    /// Synchronisation source: identifies the sender's stream.
    pub ssrc: u32,
}

impl RtpHeader {
    /// Parses the header from the front of `data`; returns it and the bytes after it.
    /// Total: any input gives a header or an error.
    pub fn parse(data: &[u8]) -> Result<(RtpHeader, &[u8]), RtpError> {
        let Some((head, rest)) = data.split_first_chunk::<RTP_HEADER_LEN>() else {
            return Err(RtpError::Truncated {
                need: RTP_HEADER_LEN,
                have: data.len(),
            });
        };
        let [b0, b1, s0, s1, t0, t1, t2, t3, c0, c1, c2, c3] = *head;
        let version = b0 >> 6;
        if version != RTP_VERSION {
            return Err(RtpError::BadVersion(version));
        }
        if b0 & 0x20 != 0 {
            return Err(RtpError::Padding);
        }
        if b0 & 0x10 != 0 {
            return Err(RtpError::Extension);
        }
        let cc = b0 & 0x0f;
        if cc != 0 {
            return Err(RtpError::Csrc(cc));
        }
        let header = RtpHeader {
            payload_type: b1 & 0x7f,
            marker: b1 & 0x80 != 0,
            seq: u16::from_be_bytes([s0, s1]),
            timestamp: u32::from_be_bytes([t0, t1, t2, t3]),
            ssrc: u32::from_be_bytes([c0, c1, c2, c3]),
        };
        Ok((header, rest))
    }

    /// The 12 header bytes.
    pub fn to_bytes(&self) -> [u8; RTP_HEADER_LEN] {
        let mut b = [0u8; RTP_HEADER_LEN];
        b[0] = RTP_VERSION << 6;
        b[1] = (u8::from(self.marker) << 7) | (self.payload_type & 0x7f);
        b[2..4].copy_from_slice(&self.seq.to_be_bytes());
        b[4..8].copy_from_slice(&self.timestamp.to_be_bytes());
        b[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        b
    }
}

/// Media and BINFM control share the EN's UDP port (the NAT mapping the SN observed), so
/// packets are demultiplexed by their first byte (as RFC 7983 does): RTP has version 2 in the
/// top bits (0x80..=0xBF); BINFM control starts with 'B' (0x42).
pub fn is_rtp(data: &[u8]) -> bool {
    data.first().is_some_and(|b| (0x80..=0xbf).contains(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// PCMU, marker set, seq 0x1234, timestamp 0x00000a00, SSRC 0xdeadbeef, 2 payload bytes.
    const FIXTURE: [u8; 14] = [
        0x80, 0x80, 0x12, 0x34, 0x00, 0x00, 0x0a, 0x00, 0xde, 0xad, 0xbe, 0xef, 0xff, 0x7f,
    ];

    fn fixture_header() -> RtpHeader {
        RtpHeader {
            payload_type: 0,
            marker: true,
            seq: 0x1234,
            timestamp: 0xa00,
            ssrc: 0xdead_beef,
        }
    }

    #[test]
    fn fixture_parses_and_emits() {
        let (h, rest) = RtpHeader::parse(&FIXTURE).expect("valid");
        assert_eq!(h, fixture_header());
        assert_eq!(rest, &[0xff, 0x7f]);
        assert_eq!(h.to_bytes(), FIXTURE[..12]);
        let dynamic = RtpHeader {
            payload_type: 96,
            marker: false,
            ..h
        };
        assert_eq!(&dynamic.to_bytes()[..2], &[0x80, 0x60]);
    }

    #[test]
    fn unsupported_headers_refused() {
        let with = |b0: u8| {
            let mut b = FIXTURE;
            b[0] = b0;
            RtpHeader::parse(&b).map(|(h, _)| h)
        };
        assert_eq!(with(0x40), Err(RtpError::BadVersion(1)));
        assert_eq!(with(0xc0), Err(RtpError::BadVersion(3)));
        assert_eq!(with(0xa0), Err(RtpError::Padding));
        assert_eq!(with(0x90), Err(RtpError::Extension));
        assert_eq!(with(0x82), Err(RtpError::Csrc(2)));
        assert_eq!(
            RtpHeader::parse(&FIXTURE[..11]),
            Err(RtpError::Truncated { need: 12, have: 11 })
        );
        assert_eq!(
            RtpError::Csrc(2).to_string(),
            "RTP CSRC count 2 is not supported (must be 0)"
        );
    }

    #[test]
    fn demux_by_first_byte() {
        assert!(is_rtp(&FIXTURE));
        assert!(is_rtp(&[0xbf]));
        assert!(!is_rtp(&[0xc0]));
        assert!(!is_rtp(&[0x7f]));
        assert!(!is_rtp(b"BF\x01\x09"));
        assert!(!is_rtp(&[]));
    }

    proptest! {
        #[test]
        fn roundtrip(pt in 0u8..128, marker in any::<bool>(), seq in any::<u16>(),
                     ts in any::<u32>(), ssrc in any::<u32>(),
                     payload in proptest::collection::vec(any::<u8>(), 0..64)) {
            let h = RtpHeader { payload_type: pt, marker, seq, timestamp: ts, ssrc };
            let mut b = h.to_bytes().to_vec();
            prop_assert!(is_rtp(&b));
            b.extend_from_slice(&payload);
            prop_assert_eq!(RtpHeader::parse(&b), Ok((h, &payload[..])));
        }

        #[test]
        fn parse_never_panics(data in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok((h, rest)) = RtpHeader::parse(&data) {
                prop_assert_eq!(&h.to_bytes()[..], &data[..12]);
                prop_assert_eq!(rest, &data[12..]);
                prop_assert!(is_rtp(&data));
            }
        }
    }
}
