//! STUN Binding (RFC 8489) for the vertical model's NAT step: a Binding request and its success
//! response carrying XOR-MAPPED-ADDRESS (IPv4), with an optional SOFTWARE attribute. These are
//! real STUN messages on [`super::ports::STUN`], so Wireshark decodes them.
//!
//! ```text
//!  0                   1                   2                   3
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |0 0|     STUN Message Type     |         Message Length        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    Magic Cookie 0x2112A442                    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                 Transaction ID (96 bits)                      |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! | attributes: type (16) | length (16) | value, padded to 4 bytes |
//! ```
//!
//! Parsing is total: it checks the two zero bits, the cookie, that the length field is a
//! multiple of 4 and equals what follows the header, and every attribute length (padding
//! included). Comprehension-optional attributes it does not know (0x8000-0xFFFF) are skipped,
//! and so are MESSAGE-INTEGRITY and FINGERPRINT (not verified: the testbed's STUN servers use
//! no credentials). An unknown comprehension-required attribute is an error, as RFC 8489
//! section 7.3 asks (a server would answer 420; ours drops the request).

use std::net::{Ipv4Addr, SocketAddrV4};

/// The fixed magic cookie (RFC 8489 section 5).
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// Header length: type, length, cookie, transaction id.
pub const HEADER_LEN: usize = 20;
/// Transaction id length (96 bits).
pub const TRANSACTION_ID_LEN: usize = 12;
/// Longest SOFTWARE value accepted (RFC 8489 section 14.14: fewer than 128 characters, at
/// most 763 bytes).
pub const MAX_SOFTWARE_LEN: usize = 763;
/// The Binding method.
pub const METHOD_BINDING: u16 = 0x001;

/// Attribute types used or recognised here.
pub mod attr {
    /// MAPPED-ADDRESS (RFC 8489 section 14.1): skipped; XOR-MAPPED-ADDRESS is what we read.
    pub const MAPPED_ADDRESS: u16 = 0x0001;
    /// MESSAGE-INTEGRITY (HMAC-SHA1): skipped, not verified.
    pub const MESSAGE_INTEGRITY: u16 = 0x0008;
    /// ERROR-CODE: recognised so an error response parses.
    pub const ERROR_CODE: u16 = 0x0009;
    /// USERNAME: skipped.
    pub const USERNAME: u16 = 0x0006;
    /// REALM: skipped.
    pub const REALM: u16 = 0x0014;
    /// NONCE: skipped.
    pub const NONCE: u16 = 0x0015;
    /// MESSAGE-INTEGRITY-SHA256: skipped, not verified.
    pub const MESSAGE_INTEGRITY_SHA256: u16 = 0x001C;
    /// USERHASH: skipped.
    pub const USERHASH: u16 = 0x001E;
    /// XOR-MAPPED-ADDRESS (RFC 8489 section 14.2).
    pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
    /// SOFTWARE (comprehension-optional).
    pub const SOFTWARE: u16 = 0x8022;
    /// FINGERPRINT (CRC-32): skipped, not verified.
    pub const FINGERPRINT: u16 = 0x8028;
}

/// Comprehension-required attributes this parser knows and skips.
const KNOWN_REQUIRED: [u16; 8] = [
    attr::MAPPED_ADDRESS,
    attr::USERNAME,
    attr::MESSAGE_INTEGRITY,
    attr::ERROR_CODE,
    attr::REALM,
    attr::NONCE,
    attr::MESSAGE_INTEGRITY_SHA256,
    attr::USERHASH,
];

/// The class of a STUN message (RFC 8489 section 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// Request (C1 C0 = 00).
    Request,
    /// Indication (01).
    Indication,
    /// Success response (10).
    SuccessResponse,
    /// Error response (11).
    ErrorResponse,
}

impl Class {
    fn bits(self) -> u16 {
        match self {
            Class::Request => 0b00,
            Class::Indication => 0b01,
            Class::SuccessResponse => 0b10,
            Class::ErrorResponse => 0b11,
        }
    }

    fn from_bits(bits: u16) -> Class {
        match bits & 0b11 {
            0b00 => Class::Request,
            0b01 => Class::Indication,
            0b10 => Class::SuccessResponse,
            _ => Class::ErrorResponse,
        }
    }
}

/// The 14-bit message type from method and class (the class bits sit at 4 and 8).
pub fn message_type(method: u16, class: Class) -> u16 {
    let m = method & 0x0fff;
    let c = class.bits();
    (m & 0x000f) | ((m & 0x0070) << 1) | ((m & 0x0f80) << 2) | ((c & 1) << 4) | ((c & 2) << 7)
}

/// Splits a message type into method and class.
pub fn split_type(t: u16) -> (u16, Class) {
    let method = (t & 0x000f) | ((t >> 1) & 0x0070) | ((t >> 2) & 0x0f80);
    let class = ((t >> 4) & 1) | ((t >> 7) & 2);
    (method, Class::from_bits(class))
}

/// Why bytes are not a STUN Binding message we accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StunError {
    /// Shorter than a header, or an attribute runs past the end.
    #[error("truncated at {field}: need {need} bytes, {have} left")]
    Truncated {
        /// Field being read.
        field: &'static str,
        /// Bytes needed.
        need: usize,
        /// Bytes left.
        have: usize,
    },
    /// The two leading bits are not zero (not STUN: RTP, or our own protocols).
    #[error("leading bits of the message type are not zero")]
    NotStun,
    /// The magic cookie is wrong (RFC 3489 STUN, or not STUN).
    #[error("bad magic cookie {0:#010x}")]
    BadCookie(u32),
    /// The length field is not a multiple of 4 or does not match the datagram.
    #[error("length field {field} does not fit a datagram of {datagram} bytes")]
    BadLength {
        /// Length field value.
        field: usize,
        /// Datagram length.
        datagram: usize,
    },
    /// A method other than Binding.
    #[error("unsupported method {0:#05x}")]
    UnsupportedMethod(u16),
    /// An unknown comprehension-required attribute (RFC 8489 section 7.3).
    #[error("unknown comprehension-required attribute {0:#06x}")]
    UnknownRequired(u16),
    /// An attribute with a bad value (address family, length, non-UTF-8 SOFTWARE).
    #[error("{attribute}: {what}")]
    BadAttribute {
        /// Attribute name.
        attribute: &'static str,
        /// What is wrong.
        what: &'static str,
    },
    /// `emit` was given a buffer shorter than `buffer_len`.
    #[error("output buffer too small: need {need} bytes, have {have}")]
    BufferTooSmall {
        /// Bytes needed.
        need: usize,
        /// Buffer length.
        have: usize,
    },
}

/// A STUN Binding message, as the vertical model uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StunMessage {
    /// Request, indication or response.
    pub class: Class,
    /// 96-bit transaction id (a response repeats the request's).
    pub transaction_id: [u8; TRANSACTION_ID_LEN],
    /// XOR-MAPPED-ADDRESS, decoded (only IPv4; an IPv6 one is skipped).
    pub mapped: Option<SocketAddrV4>,
    /// SOFTWARE, if present.
    pub software: Option<String>,
}

/// Quick demultiplexing test (RFC 7983): two zero leading bits, at least a header, the cookie
/// in place. STUN, RTP (0x80..) and the testbed's own control messages ('B', 'V') never clash.
pub fn is_stun(data: &[u8]) -> bool {
    data.len() >= HEADER_LEN
        && data.first().is_some_and(|b| b & 0xc0 == 0)
        && data.get(4..8) == Some(&MAGIC_COOKIE.to_be_bytes()[..])
}

fn padded(len: usize) -> usize {
    len.div_ceil(4) * 4
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([
        b.get(at).copied().unwrap_or(0),
        b.get(at + 1).copied().unwrap_or(0),
    ])
}

impl StunMessage {
    /// A Binding request.
    pub fn binding_request(transaction_id: [u8; TRANSACTION_ID_LEN]) -> Self {
        StunMessage {
            class: Class::Request,
            transaction_id,
            mapped: None,
            software: None,
        }
    }

    /// A Binding success response telling the client the address it was seen from.
    pub fn binding_response(
        transaction_id: [u8; TRANSACTION_ID_LEN],
        mapped: SocketAddrV4,
        software: Option<String>,
    ) -> Self {
        StunMessage {
            class: Class::SuccessResponse,
            transaction_id,
            mapped: Some(mapped),
            software,
        }
    }

    /// Parses one datagram. Total: any input gives a message or an error.
    pub fn parse(data: &[u8]) -> Result<StunMessage, StunError> {
        if data.len() < HEADER_LEN {
            return Err(StunError::Truncated {
                field: "STUN header",
                need: HEADER_LEN,
                have: data.len(),
            });
        }
        let t = be16(data, 0);
        if t & 0xc000 != 0 {
            return Err(StunError::NotStun);
        }
        let cookie = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
        if cookie != MAGIC_COOKIE {
            return Err(StunError::BadCookie(cookie));
        }
        let len = usize::from(be16(data, 2));
        if len % 4 != 0 || len != data.len() - HEADER_LEN {
            return Err(StunError::BadLength {
                field: len,
                datagram: data.len(),
            });
        }
        let (method, class) = split_type(t);
        if method != METHOD_BINDING {
            return Err(StunError::UnsupportedMethod(method));
        }
        let mut transaction_id = [0u8; TRANSACTION_ID_LEN];
        transaction_id.copy_from_slice(&data[8..HEADER_LEN]);
        let mut msg = StunMessage {
            class,
            transaction_id,
            mapped: None,
            software: None,
        };
        let mut rest = &data[HEADER_LEN..];
        let mut seen_integrity = false;
        while !rest.is_empty() {
            if rest.len() < 4 {
                return Err(StunError::Truncated {
                    field: "attribute header",
                    need: 4,
                    have: rest.len(),
                });
            }
            let kind = be16(rest, 0);
            let vlen = usize::from(be16(rest, 2));
            let total = 4 + padded(vlen);
            if rest.len() < total {
                return Err(StunError::Truncated {
                    field: "attribute value",
                    need: total - 4,
                    have: rest.len() - 4,
                });
            }
            let value = &rest[4..4 + vlen];
            rest = &rest[total..];
            // RFC 8489 section 14.5: attributes after MESSAGE-INTEGRITY are ignored, except
            // FINGERPRINT (and MESSAGE-INTEGRITY-SHA256).
            if seen_integrity {
                continue;
            }
            match kind {
                // Only the first one counts (RFC 8489 section 14); later ones must still parse.
                attr::XOR_MAPPED_ADDRESS => msg.mapped = msg.mapped.or(parse_xor_mapped(value)?),
                attr::SOFTWARE => {
                    if vlen > MAX_SOFTWARE_LEN {
                        return Err(StunError::BadAttribute {
                            attribute: "SOFTWARE",
                            what: "longer than 763 bytes",
                        });
                    }
                    let s = std::str::from_utf8(value).map_err(|_| StunError::BadAttribute {
                        attribute: "SOFTWARE",
                        what: "not UTF-8",
                    })?;
                    if msg.software.is_none() {
                        msg.software = Some(s.to_owned());
                    }
                }
                attr::MESSAGE_INTEGRITY | attr::MESSAGE_INTEGRITY_SHA256 => seen_integrity = true,
                k if k < 0x8000 && !KNOWN_REQUIRED.contains(&k) => {
                    return Err(StunError::UnknownRequired(k));
                }
                _ => {}
            }
        }
        Ok(msg)
    }

    fn software_len(&self) -> usize {
        self.software
            .as_ref()
            .map_or(0, |s| 4 + padded(s.len().min(MAX_SOFTWARE_LEN)))
    }

    /// Encoded length.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.mapped.map_or(0, |_| 12) + self.software_len()
    }

    /// The datagram (SOFTWARE first, then XOR-MAPPED-ADDRESS, the order of RFC 5769's
    /// samples). A SOFTWARE value over [`MAX_SOFTWARE_LEN`] bytes is cut at a character
    /// boundary (it could not be parsed back otherwise).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(self.buffer_len());
        b.extend_from_slice(&message_type(METHOD_BINDING, self.class).to_be_bytes());
        let body = self.buffer_len() - HEADER_LEN;
        b.extend_from_slice(&(body as u16).to_be_bytes());
        b.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        b.extend_from_slice(&self.transaction_id);
        if let Some(s) = &self.software {
            let mut end = s.len().min(MAX_SOFTWARE_LEN);
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            let v = &s.as_bytes()[..end];
            b.extend_from_slice(&attr::SOFTWARE.to_be_bytes());
            b.extend_from_slice(&(v.len() as u16).to_be_bytes());
            b.extend_from_slice(v);
            b.resize(b.len() + padded(v.len()) - v.len(), 0);
        }
        if let Some(m) = self.mapped {
            b.extend_from_slice(&attr::XOR_MAPPED_ADDRESS.to_be_bytes());
            b.extend_from_slice(&8u16.to_be_bytes());
            b.push(0);
            b.push(0x01);
            b.extend_from_slice(&(m.port() ^ (MAGIC_COOKIE >> 16) as u16).to_be_bytes());
            b.extend_from_slice(&(u32::from(*m.ip()) ^ MAGIC_COOKIE).to_be_bytes());
        }
        // A cut SOFTWARE may be shorter than buffer_len counted: fix the length field.
        let body = (b.len() - HEADER_LEN) as u16;
        b[2..4].copy_from_slice(&body.to_be_bytes());
        b
    }

    /// Writes the datagram into `buf`; returns its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, StunError> {
        let bytes = self.to_bytes();
        let have = buf.len();
        let dst = buf
            .get_mut(..bytes.len())
            .ok_or(StunError::BufferTooSmall {
                need: bytes.len(),
                have,
            })?;
        dst.copy_from_slice(&bytes);
        Ok(bytes.len())
    }
}

fn parse_xor_mapped(value: &[u8]) -> Result<Option<SocketAddrV4>, StunError> {
    let bad = |what| StunError::BadAttribute {
        attribute: "XOR-MAPPED-ADDRESS",
        what,
    };
    match (value.len(), value.get(1)) {
        (8, Some(0x01)) => {
            let port = be16(value, 2) ^ (MAGIC_COOKIE >> 16) as u16;
            let ip = u32::from_be_bytes([value[4], value[5], value[6], value[7]]) ^ MAGIC_COOKIE;
            Ok(Some(SocketAddrV4::new(Ipv4Addr::from(ip), port)))
        }
        // IPv6 (XORed with cookie and transaction id): well-formed, but the testbed is IPv4.
        (20, Some(0x02)) => Ok(None),
        (_, Some(0x01 | 0x02)) => Err(bad("length does not match the family")),
        _ => Err(bad("unknown address family")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// RFC 5769 section 2.2: sample IPv4 response (SOFTWARE "test vector", XOR-MAPPED-ADDRESS
    /// 192.0.2.1:32853, MESSAGE-INTEGRITY, FINGERPRINT).
    const RFC5769_IPV4_RESPONSE: [u8; 80] = [
        0x01, 0x01, 0x00, 0x3c, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6,
        0x86, 0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76,
        0x65, 0x63, 0x74, 0x6f, 0x72, 0x20, 0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0xa1, 0x47, 0xe1,
        0x12, 0xa6, 0x43, 0x00, 0x08, 0x00, 0x14, 0x2b, 0x91, 0xf5, 0x99, 0xfd, 0x9e, 0x90, 0xc3,
        0x8c, 0x74, 0x89, 0xf9, 0x2a, 0xf9, 0xba, 0x53, 0xf0, 0x6b, 0xe7, 0xd7, 0x80, 0x28, 0x00,
        0x04, 0xc0, 0x7d, 0x4c, 0x96,
    ];
    const RFC5769_TID: [u8; 12] = [
        0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
    ];

    #[test]
    fn rfc5769_ipv4_response() {
        assert!(is_stun(&RFC5769_IPV4_RESPONSE));
        let m = StunMessage::parse(&RFC5769_IPV4_RESPONSE).unwrap();
        assert_eq!(m.class, Class::SuccessResponse);
        assert_eq!(m.transaction_id, RFC5769_TID);
        assert_eq!(
            m.mapped,
            Some(SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 32853))
        );
        assert_eq!(m.software.as_deref(), Some("test vector"));
        // Our own encoding of the same content: the sample without integrity and fingerprint,
        // and SOFTWARE padded with zeros rather than the sample's 0x20.
        let mut ours = RFC5769_IPV4_RESPONSE[..48].to_vec();
        ours[3] = 28;
        ours[35] = 0;
        assert_eq!(m.to_bytes(), ours);
        assert_eq!(m.buffer_len(), 48);
        assert_eq!(StunMessage::parse(&ours), Ok(m));
    }

    #[test]
    fn binding_request_fixture() {
        let req = StunMessage::binding_request([7; 12]);
        let mut b = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
        b.extend_from_slice(&[7; 12]);
        assert_eq!(req.to_bytes(), b);
        assert_eq!(StunMessage::parse(&b), Ok(req.clone()));
        let mut buf = [0u8; 19];
        assert!(matches!(
            req.emit(&mut buf),
            Err(StunError::BufferTooSmall { need: 20, have: 19 })
        ));
    }

    #[test]
    fn type_bits() {
        assert_eq!(message_type(METHOD_BINDING, Class::Request), 0x0001);
        assert_eq!(message_type(METHOD_BINDING, Class::Indication), 0x0011);
        assert_eq!(message_type(METHOD_BINDING, Class::SuccessResponse), 0x0101);
        assert_eq!(message_type(METHOD_BINDING, Class::ErrorResponse), 0x0111);
        for t in 0..0x4000u16 {
            let (m, c) = split_type(t);
            assert_eq!(message_type(m, c), t);
        }
    }

    #[test]
    fn refusals() {
        let good = StunMessage::binding_request([1; 12]).to_bytes();
        let mut b = good.clone();
        b[0] = 0x80;
        assert_eq!(StunMessage::parse(&b), Err(StunError::NotStun));
        let mut b = good.clone();
        b[4] = 0;
        assert!(matches!(
            StunMessage::parse(&b),
            Err(StunError::BadCookie(_))
        ));
        let mut b = good.clone();
        b[3] = 4;
        assert!(matches!(
            StunMessage::parse(&b),
            Err(StunError::BadLength { .. })
        ));
        let mut b = good.clone();
        b[1] = 0x03; // Allocate (TURN)
        assert_eq!(StunMessage::parse(&b), Err(StunError::UnsupportedMethod(3)));
        // Unknown comprehension-required attribute 0x7777 (empty value).
        let mut b = good.clone();
        b[3] = 4;
        b.extend_from_slice(&[0x77, 0x77, 0, 0]);
        assert_eq!(
            StunMessage::parse(&b),
            Err(StunError::UnknownRequired(0x7777))
        );
        // Unknown comprehension-optional attribute with 3 value bytes and padding: skipped.
        let mut b = good.clone();
        b[3] = 8;
        b.extend_from_slice(&[0xc0, 0x01, 0, 3, 1, 2, 3, 0]);
        assert_eq!(
            StunMessage::parse(&b),
            Ok(StunMessage::binding_request([1; 12]))
        );
        // The same without its padding byte.
        let mut b = good.clone();
        b[3] = 8;
        b.extend_from_slice(&[0xc0, 0x01, 0, 5, 1, 2, 3, 4]);
        assert!(matches!(
            StunMessage::parse(&b),
            Err(StunError::Truncated { .. })
        ));
        // XOR-MAPPED-ADDRESS with an unknown family.
        let mut b = good;
        b[3] = 12;
        b.extend_from_slice(&[0x00, 0x20, 0, 8, 0, 3, 0, 0, 0, 0, 0, 0]);
        assert!(matches!(
            StunMessage::parse(&b),
            Err(StunError::BadAttribute { .. })
        ));
    }

    fn arb_message() -> impl Strategy<Value = StunMessage> {
        (
            prop_oneof![
                Just(Class::Request),
                Just(Class::Indication),
                Just(Class::SuccessResponse),
                Just(Class::ErrorResponse)
            ],
            any::<[u8; 12]>(),
            proptest::option::of((any::<u32>(), any::<u16>())),
            proptest::option::of("[a-zA-Z0-9 ./é-]{0,40}"),
        )
            .prop_map(|(class, transaction_id, mapped, software)| StunMessage {
                class,
                transaction_id,
                mapped: mapped.map(|(ip, port)| SocketAddrV4::new(Ipv4Addr::from(ip), port)),
                software,
            })
    }

    proptest! {
        #[test]
        fn roundtrip(msg in arb_message()) {
            let bytes = msg.to_bytes();
            prop_assert_eq!(bytes.len(), msg.buffer_len());
            prop_assert!(is_stun(&bytes));
            prop_assert_eq!(StunMessage::parse(&bytes), Ok(msg));
        }

        #[test]
        fn parse_never_panics(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = StunMessage::parse(&data);
            let _ = is_stun(&data);
        }

        #[test]
        fn parse_after_valid_header_never_panics(
            t in 0u16..0x4000,
            body in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let mut data = t.to_be_bytes().to_vec();
            data.extend_from_slice(&(body.len() as u16).to_be_bytes());
            data.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
            data.extend_from_slice(&[9; 12]);
            data.extend_from_slice(&body);
            let _ = StunMessage::parse(&data);
        }

        #[test]
        fn mutated_messages_never_panic(msg in arb_message(), idx in any::<usize>(), val in any::<u8>(), cut in any::<usize>()) {
            let mut data = msg.to_bytes();
            let i = idx % data.len();
            data[i] = val;
            data.truncate(cut % (data.len() + 1));
            let _ = StunMessage::parse(&data);
        }
    }
}
