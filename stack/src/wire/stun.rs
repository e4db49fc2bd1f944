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
//! no credentials). An unknown comprehension-required attribute is an error for
//! [`StunMessage`] (RFC 8489 section 6.3: a client discards such a response).
//!
//! The server side reads requests of both dialects with [`BindingRequest`] (over the checked
//! view [`StunPacket`]): RFC 8489 requests, and RFC 3489 ("classic") ones, whose bytes 4-19
//! are one 128-bit transaction id instead of the magic cookie and a 96-bit id. What it sends
//! that [`StunMessage`] does not model is a [`BindingReply`]: MAPPED-ADDRESS to a classic
//! client, and the 420 (Unknown Attribute) error response with UNKNOWN-ATTRIBUTES.

use std::net::{Ipv4Addr, SocketAddrV4};

/// The fixed magic cookie (RFC 8489 section 5).
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// Header length: type, length, cookie, transaction id.
pub const HEADER_LEN: usize = 20;
/// Transaction id length (96 bits).
pub const TRANSACTION_ID_LEN: usize = 12;
/// Bytes 4-19 of the header: the magic cookie and the 96-bit transaction id (RFC 8489), or
/// the 128-bit transaction id of RFC 3489 (RFC 8489 section 11).
pub const TRANSACTION_FIELD_LEN: usize = 16;
/// Longest SOFTWARE value accepted (RFC 8489 section 14.14: fewer than 128 characters, at
/// most 763 bytes).
pub const MAX_SOFTWARE_LEN: usize = 763;
/// The Binding method.
pub const METHOD_BINDING: u16 = 0x001;

/// Attribute types used or recognised here.
pub mod attr {
    /// MAPPED-ADDRESS (RFC 8489 section 14.1): skipped by [`super::StunMessage`]
    /// (XOR-MAPPED-ADDRESS is what it reads); what [`super::BindingReply::Mapped`] carries.
    pub const MAPPED_ADDRESS: u16 = 0x0001;
    /// CHANGE-REQUEST (RFC 3489 section 11.2.4; now RFC 5780's): not understood. RFC 8489
    /// section 11 has a server treat it as an unknown comprehension-required attribute.
    pub const CHANGE_REQUEST: u16 = 0x0003;
    /// MESSAGE-INTEGRITY (HMAC-SHA1): skipped, not verified.
    pub const MESSAGE_INTEGRITY: u16 = 0x0008;
    /// ERROR-CODE: recognised so an error response parses.
    pub const ERROR_CODE: u16 = 0x0009;
    /// UNKNOWN-ATTRIBUTES (RFC 8489 section 14.13): recognised so a 420 response parses.
    pub const UNKNOWN_ATTRIBUTES: u16 = 0x000A;
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
const KNOWN_REQUIRED: [u16; 9] = [
    attr::MAPPED_ADDRESS,
    attr::USERNAME,
    attr::MESSAGE_INTEGRITY,
    attr::ERROR_CODE,
    attr::UNKNOWN_ATTRIBUTES,
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
    /// A message of another class than the one asked for (a response where a request was
    /// expected, an error response where a success was).
    #[error("unexpected class {0:?}")]
    UnexpectedClass(Class),
    /// A required attribute is absent.
    #[error("{0} is missing")]
    MissingAttribute(&'static str),
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
        copy_into(&self.to_bytes(), buf)
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

/// Whether a transaction field (bytes 4-19) is an RFC 3489 client's 128-bit transaction id:
/// the magic cookie is absent (RFC 8489 section 11; a classic id that happens to start with
/// the cookie is taken for RFC 8489, as that section accepts).
pub fn is_classic_field(field: &[u8; TRANSACTION_FIELD_LEN]) -> bool {
    field[..4] != MAGIC_COOKIE.to_be_bytes()
}

/// A checked view of a STUN datagram of either dialect.
/// [`new_checked`](StunPacket::new_checked) verifies the header (two zero bits, a length that
/// is a multiple of 4 and equals what follows) and that the attributes tile the body exactly,
/// each with its padding; the accessors then cannot fail. It does not look at bytes 4-19
/// (cookie or not): that is the reader's business.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StunPacket<'a> {
    data: &'a [u8],
}

impl<'a> StunPacket<'a> {
    /// Checks `data` (see the type's docs). Total: any input gives a view or an error.
    pub fn new_checked(data: &'a [u8]) -> Result<Self, StunError> {
        if data.len() < HEADER_LEN {
            return Err(StunError::Truncated {
                field: "STUN header",
                need: HEADER_LEN,
                have: data.len(),
            });
        }
        if be16(data, 0) & 0xc000 != 0 {
            return Err(StunError::NotStun);
        }
        let len = usize::from(be16(data, 2));
        if len % 4 != 0 || len != data.len() - HEADER_LEN {
            return Err(StunError::BadLength {
                field: len,
                datagram: data.len(),
            });
        }
        let mut rest = &data[HEADER_LEN..];
        while !rest.is_empty() {
            if rest.len() < 4 {
                return Err(StunError::Truncated {
                    field: "attribute header",
                    need: 4,
                    have: rest.len(),
                });
            }
            let total = 4 + padded(usize::from(be16(rest, 2)));
            if rest.len() < total {
                return Err(StunError::Truncated {
                    field: "attribute value",
                    need: total - 4,
                    have: rest.len() - 4,
                });
            }
            rest = &rest[total..];
        }
        Ok(StunPacket { data })
    }

    /// The 14-bit message type.
    pub fn message_type(&self) -> u16 {
        be16(self.data, 0)
    }

    /// Method and class.
    pub fn method_class(&self) -> (u16, Class) {
        split_type(self.message_type())
    }

    /// Bytes 4-19: cookie and 96-bit id, or a classic 128-bit id.
    pub fn transaction_field(&self) -> [u8; TRANSACTION_FIELD_LEN] {
        let mut f = [0u8; TRANSACTION_FIELD_LEN];
        if let Some(src) = self.data.get(4..HEADER_LEN) {
            f.copy_from_slice(src);
        }
        f
    }

    /// The attributes in order: type and value (without padding).
    pub fn attributes(&self) -> Attributes<'a> {
        Attributes {
            rest: self.data.get(HEADER_LEN..).unwrap_or(&[]),
        }
    }
}

/// Iterator over the attributes of a [`StunPacket`].
#[derive(Debug, Clone)]
pub struct Attributes<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Attributes<'a> {
    type Item = (u16, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.len() < 4 {
            return None;
        }
        let kind = be16(self.rest, 0);
        let vlen = usize::from(be16(self.rest, 2));
        let value = self.rest.get(4..4 + vlen)?;
        self.rest = self.rest.get(4 + padded(vlen)..).unwrap_or(&[]);
        Some((kind, value))
    }
}

/// Whether the server understands attribute `kind` in a request: every comprehension-optional
/// one (0x8000-0xFFFF, skipped if unknown), and the comprehension-required ones
/// [`StunMessage::parse`] knows. CHANGE-REQUEST and RESPONSE-ADDRESS are not among them (RFC
/// 8489 section 11).
pub fn understood(kind: u16) -> bool {
    kind >= 0x8000 || kind == attr::XOR_MAPPED_ADDRESS || KNOWN_REQUIRED.contains(&kind)
}

/// At most this many distinct unknown attributes are listed (a real request has one or two;
/// the bound keeps the server's work per datagram small).
pub const MAX_UNKNOWN: usize = 64;

/// Pushes `kind` to `list` unless it is there or the list is full.
fn push_distinct(list: &mut Vec<u16>, kind: u16) {
    if list.len() < MAX_UNKNOWN && !list.contains(&kind) {
        list.push(kind);
    }
}

/// A Binding request as the server reads it, in either dialect: what it echoes and whether it
/// must refuse. Nothing else of a request matters to a server without credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingRequest {
    /// Bytes 4-19, echoed in the answer: the magic cookie and the 96-bit transaction id, or a
    /// classic client's 128-bit transaction id.
    pub transaction: [u8; TRANSACTION_FIELD_LEN],
    /// The comprehension-required attributes the server does not understand ([`understood`]),
    /// distinct, in the order they came, at most [`MAX_UNKNOWN`]. Attributes after
    /// MESSAGE-INTEGRITY are ignored, as [`StunMessage::parse`] ignores them.
    pub unknown: Vec<u16>,
}

impl BindingRequest {
    /// Parses a Binding request of either dialect. Total.
    pub fn parse(data: &[u8]) -> Result<BindingRequest, StunError> {
        let p = StunPacket::new_checked(data)?;
        let (method, class) = p.method_class();
        if method != METHOD_BINDING {
            return Err(StunError::UnsupportedMethod(method));
        }
        if class != Class::Request {
            return Err(StunError::UnexpectedClass(class));
        }
        let mut unknown = Vec::new();
        for (kind, _) in p.attributes() {
            if kind == attr::MESSAGE_INTEGRITY || kind == attr::MESSAGE_INTEGRITY_SHA256 {
                break;
            }
            if !understood(kind) {
                push_distinct(&mut unknown, kind);
            }
        }
        Ok(BindingRequest {
            transaction: p.transaction_field(),
            unknown,
        })
    }

    /// Whether the request came from an RFC 3489 client (no magic cookie).
    pub fn is_classic(&self) -> bool {
        is_classic_field(&self.transaction)
    }

    /// A request as a client would send it: the header, then each attribute of `unknown` with
    /// a 4-byte zero value (the shape of a CHANGE-REQUEST asking for no change).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(self.buffer_len());
        b.extend_from_slice(&message_type(METHOD_BINDING, Class::Request).to_be_bytes());
        b.extend_from_slice(&((self.unknown.len() * 8) as u16).to_be_bytes());
        b.extend_from_slice(&self.transaction);
        for kind in &self.unknown {
            b.extend_from_slice(&kind.to_be_bytes());
            b.extend_from_slice(&[0, 4, 0, 0, 0, 0]);
        }
        b
    }

    /// Encoded length.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + 8 * self.unknown.len()
    }

    /// Writes the request into `buf`; returns its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, StunError> {
        copy_into(&self.to_bytes(), buf)
    }
}

/// The reason phrase of the 420 response (RFC 8489 section 14.8 suggests it).
pub const UNKNOWN_ATTRIBUTE_REASON: &str = "Unknown Attribute";

/// What the server answers that [`StunMessage`] does not model. The transaction field is
/// copied from the request, so the dialect of the answer is the request's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindingReply {
    /// Success response to an RFC 3489 client: MAPPED-ADDRESS (0x0001), the address in the
    /// clear, instead of XOR-MAPPED-ADDRESS, which a classic client does not know (RFC 5389
    /// section 12.2, RFC 8489 section 11: "insert a MAPPED-ADDRESS attribute instead of an
    /// XOR-MAPPED-ADDRESS attribute"). Nothing else: no SOFTWARE, since RFC 3489 knows no
    /// attribute padding and our SOFTWARE value is not a multiple of 4 bytes.
    Mapped {
        /// Bytes 4-19 of the request.
        transaction: [u8; TRANSACTION_FIELD_LEN],
        /// The source the request came from.
        mapped: SocketAddrV4,
    },
    /// Error response 420 (Unknown Attribute) listing the unknown comprehension-required
    /// attributes in UNKNOWN-ATTRIBUTES (RFC 8489 section 6.3.1, formed per 6.3.1.1; RFC 5389
    /// section 7.3.1). To a classic client the reason phrase is padded with spaces and an odd
    /// list repeats its last entry, as RFC 3489 sections 11.2.9 and 11.2.10 require; to an RFC
    /// 8489 client both use the normal zero padding (RFC 8489 section 14.13).
    UnknownAttribute {
        /// Bytes 4-19 of the request.
        transaction: [u8; TRANSACTION_FIELD_LEN],
        /// The attribute types, distinct (parsing drops repeats), at most [`MAX_UNKNOWN`].
        attributes: Vec<u16>,
    },
}

/// Appends attribute `kind` with `value` and zero padding.
fn put_attr(b: &mut Vec<u8>, kind: u16, value: &[u8]) {
    b.extend_from_slice(&kind.to_be_bytes());
    b.extend_from_slice(&(value.len() as u16).to_be_bytes());
    b.extend_from_slice(value);
    b.resize(b.len() + padded(value.len()) - value.len(), 0);
}

impl BindingReply {
    /// The 420 answer to `req`, or `None` if it has no unknown attribute.
    pub fn unknown_attribute(req: &BindingRequest) -> Option<BindingReply> {
        (!req.unknown.is_empty()).then(|| BindingReply::UnknownAttribute {
            transaction: req.transaction,
            attributes: req.unknown.clone(),
        })
    }

    /// Bytes 4-19.
    pub fn transaction(&self) -> [u8; TRANSACTION_FIELD_LEN] {
        match self {
            BindingReply::Mapped { transaction, .. }
            | BindingReply::UnknownAttribute { transaction, .. } => *transaction,
        }
    }

    /// Parses a success response with MAPPED-ADDRESS (IPv4; the first one counts) or a 420
    /// error response with UNKNOWN-ATTRIBUTES. Other attributes are skipped. Total.
    pub fn parse(data: &[u8]) -> Result<BindingReply, StunError> {
        let p = StunPacket::new_checked(data)?;
        let (method, class) = p.method_class();
        if method != METHOD_BINDING {
            return Err(StunError::UnsupportedMethod(method));
        }
        let transaction = p.transaction_field();
        match class {
            Class::SuccessResponse => {
                let value = p
                    .attributes()
                    .find(|(k, _)| *k == attr::MAPPED_ADDRESS)
                    .map(|(_, v)| v)
                    .ok_or(StunError::MissingAttribute("MAPPED-ADDRESS"))?;
                Ok(BindingReply::Mapped {
                    transaction,
                    mapped: parse_mapped(value)?,
                })
            }
            Class::ErrorResponse => {
                let code = p
                    .attributes()
                    .find(|(k, _)| *k == attr::ERROR_CODE)
                    .map(|(_, v)| v)
                    .ok_or(StunError::MissingAttribute("ERROR-CODE"))?;
                check_error_420(code)?;
                let list = p
                    .attributes()
                    .find(|(k, _)| *k == attr::UNKNOWN_ATTRIBUTES)
                    .map(|(_, v)| v)
                    .ok_or(StunError::MissingAttribute("UNKNOWN-ATTRIBUTES"))?;
                if list.len() % 2 != 0 {
                    return Err(StunError::BadAttribute {
                        attribute: "UNKNOWN-ATTRIBUTES",
                        what: "odd length",
                    });
                }
                let mut attributes = Vec::new();
                for pair in list.chunks_exact(2) {
                    push_distinct(&mut attributes, be16(pair, 0));
                }
                Ok(BindingReply::UnknownAttribute {
                    transaction,
                    attributes,
                })
            }
            other => Err(StunError::UnexpectedClass(other)),
        }
    }

    /// The datagram.
    pub fn to_bytes(&self) -> Vec<u8> {
        let classic = is_classic_field(&self.transaction());
        let class = match self {
            BindingReply::Mapped { .. } => Class::SuccessResponse,
            BindingReply::UnknownAttribute { .. } => Class::ErrorResponse,
        };
        let mut b = Vec::with_capacity(HEADER_LEN + 64);
        b.extend_from_slice(&message_type(METHOD_BINDING, class).to_be_bytes());
        b.extend_from_slice(&[0, 0]);
        b.extend_from_slice(&self.transaction());
        match self {
            BindingReply::Mapped { mapped, .. } => {
                let mut v = vec![0, 0x01];
                v.extend_from_slice(&mapped.port().to_be_bytes());
                v.extend_from_slice(&mapped.ip().octets());
                put_attr(&mut b, attr::MAPPED_ADDRESS, &v);
            }
            BindingReply::UnknownAttribute { attributes, .. } => {
                // Class 4 in the low 3 bits of byte 2, number 20 in byte 3.
                let mut v = vec![0, 0, 4, 20];
                v.extend_from_slice(UNKNOWN_ATTRIBUTE_REASON.as_bytes());
                if classic {
                    v.resize(4 + padded(UNKNOWN_ATTRIBUTE_REASON.len()), b' ');
                }
                put_attr(&mut b, attr::ERROR_CODE, &v);
                let mut list: Vec<u8> = attributes.iter().flat_map(|k| k.to_be_bytes()).collect();
                if classic
                    && attributes.len() % 2 == 1
                    && let Some(last) = attributes.last()
                {
                    list.extend_from_slice(&last.to_be_bytes());
                }
                put_attr(&mut b, attr::UNKNOWN_ATTRIBUTES, &list);
            }
        }
        let body = (b.len() - HEADER_LEN) as u16;
        b[2..4].copy_from_slice(&body.to_be_bytes());
        b
    }

    /// Encoded length.
    pub fn buffer_len(&self) -> usize {
        self.to_bytes().len()
    }

    /// Writes the datagram into `buf`; returns its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, StunError> {
        copy_into(&self.to_bytes(), buf)
    }
}

fn copy_into(bytes: &[u8], buf: &mut [u8]) -> Result<usize, StunError> {
    let have = buf.len();
    let dst = buf
        .get_mut(..bytes.len())
        .ok_or(StunError::BufferTooSmall {
            need: bytes.len(),
            have,
        })?;
    dst.copy_from_slice(bytes);
    Ok(bytes.len())
}

/// MAPPED-ADDRESS, IPv4 only (the testbed's clients are IPv4).
fn parse_mapped(value: &[u8]) -> Result<SocketAddrV4, StunError> {
    match (value.len(), value.get(1)) {
        (8, Some(0x01)) => Ok(SocketAddrV4::new(
            Ipv4Addr::new(value[4], value[5], value[6], value[7]),
            be16(value, 2),
        )),
        _ => Err(StunError::BadAttribute {
            attribute: "MAPPED-ADDRESS",
            what: "not an IPv4 address",
        }),
    }
}

/// ERROR-CODE must say 420 and carry a UTF-8 reason phrase of at most 763 bytes.
fn check_error_420(value: &[u8]) -> Result<(), StunError> {
    let bad = |what| StunError::BadAttribute {
        attribute: "ERROR-CODE",
        what,
    };
    let (head, reason) = value
        .split_at_checked(4)
        .ok_or(bad("shorter than 4 bytes"))?;
    if head.get(2).map(|c| c & 0x07) != Some(4) || head.get(3) != Some(&20) {
        return Err(bad("not 420"));
    }
    if reason.len() > MAX_SOFTWARE_LEN || std::str::from_utf8(reason).is_err() {
        return Err(bad("reason phrase is not UTF-8 of at most 763 bytes"));
    }
    Ok(())
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

    /// A classic client's transaction id (RFC 3489: 128 bits, no cookie).
    const CLASSIC_TID: [u8; 16] = [
        0x4a, 0x1b, 0x7c, 0x02, 0x93, 0xd5, 0x10, 0xee, 0x61, 0x0f, 0x22, 0xb8, 0x05, 0x7d, 0xc4,
        0x39,
    ];

    /// An RFC 3489 Binding Request as a classic client sends it: type 0x0001, length 0, the
    /// 128-bit transaction id.
    fn classic_request() -> Vec<u8> {
        let mut b = vec![0x00, 0x01, 0x00, 0x00];
        b.extend_from_slice(&CLASSIC_TID);
        b
    }

    /// The same with CHANGE-REQUEST (0x0003, length 4, no change asked), as a classic NAT
    /// type test sends its first request.
    fn classic_change_request() -> Vec<u8> {
        let mut b = vec![0x00, 0x01, 0x00, 0x08];
        b.extend_from_slice(&CLASSIC_TID);
        b.extend_from_slice(&[0x00, 0x03, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00]);
        b
    }

    #[test]
    fn classic_requests_parse() {
        let plain = BindingRequest::parse(&classic_request()).unwrap();
        assert!(plain.is_classic());
        assert_eq!(plain.transaction, CLASSIC_TID);
        assert!(plain.unknown.is_empty());
        assert_eq!(plain.to_bytes(), classic_request());
        let change = BindingRequest::parse(&classic_change_request()).unwrap();
        assert!(change.is_classic());
        assert_eq!(change.unknown, vec![attr::CHANGE_REQUEST]);
        assert_eq!(change.to_bytes(), classic_change_request());
        assert_eq!(change.buffer_len(), 28);
        // The RFC 8489 reader still refuses them: its path is unchanged.
        assert!(matches!(
            StunMessage::parse(&classic_request()),
            Err(StunError::BadCookie(0x4a1b_7c02))
        ));
        assert!(!is_stun(&classic_request()));
        // An RFC 8489 request reads as not classic, the cookie in the transaction field.
        let modern = BindingRequest::parse(&StunMessage::binding_request([7; 12]).to_bytes());
        let modern = modern.unwrap();
        assert!(!modern.is_classic());
        assert_eq!(modern.transaction[..4], MAGIC_COOKIE.to_be_bytes());
        assert_eq!(modern.transaction[4..], [7; 12]);
    }

    #[test]
    fn classic_mapped_response_fixture() {
        let reply = BindingReply::Mapped {
            transaction: CLASSIC_TID,
            mapped: SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 7), 40000),
        };
        let mut want = vec![0x01, 0x01, 0x00, 0x0c];
        want.extend_from_slice(&CLASSIC_TID);
        // MAPPED-ADDRESS: reserved, family IPv4, port 40000, 198.51.100.7 in the clear.
        want.extend_from_slice(&[0x00, 0x01, 0x00, 0x08, 0x00, 0x01, 0x9c, 0x40]);
        want.extend_from_slice(&[198, 51, 100, 7]);
        assert_eq!(reply.to_bytes(), want);
        assert_eq!(reply.buffer_len(), 32);
        assert_eq!(BindingReply::parse(&want), Ok(reply.clone()));
        let mut buf = [0u8; 31];
        assert!(matches!(
            reply.emit(&mut buf),
            Err(StunError::BufferTooSmall { need: 32, have: 31 })
        ));
    }

    #[test]
    fn classic_420_fixture() {
        let req = BindingRequest::parse(&classic_change_request()).unwrap();
        let reply = BindingReply::unknown_attribute(&req).unwrap();
        let mut want = vec![0x01, 0x11, 0x00, 0x24];
        want.extend_from_slice(&CLASSIC_TID);
        // ERROR-CODE class 4 number 20, the reason padded with spaces to 20 bytes (RFC 3489).
        want.extend_from_slice(&[0x00, 0x09, 0x00, 0x18, 0x00, 0x00, 0x04, 0x14]);
        want.extend_from_slice(b"Unknown Attribute   ");
        // UNKNOWN-ATTRIBUTES: 0x0003, repeated to fill 4 bytes (RFC 3489 section 11.2.10).
        want.extend_from_slice(&[0x00, 0x0a, 0x00, 0x04, 0x00, 0x03, 0x00, 0x03]);
        assert_eq!(reply.to_bytes(), want);
        assert_eq!(BindingReply::parse(&want), Ok(reply));
        assert_eq!(
            BindingReply::unknown_attribute(&BindingRequest::parse(&classic_request()).unwrap()),
            None
        );
    }

    #[test]
    fn rfc8489_420_fixture() {
        let req = BindingRequest {
            transaction: BindingRequest::parse(&StunMessage::binding_request([7; 12]).to_bytes())
                .unwrap()
                .transaction,
            unknown: vec![attr::CHANGE_REQUEST],
        };
        let bytes = req.to_bytes();
        assert_eq!(BindingRequest::parse(&bytes), Ok(req.clone()));
        assert_eq!(
            StunMessage::parse(&bytes),
            Err(StunError::UnknownRequired(attr::CHANGE_REQUEST))
        );
        let reply = BindingReply::unknown_attribute(&req).unwrap();
        let mut want = vec![0x01, 0x11, 0x00, 0x24, 0x21, 0x12, 0xa4, 0x42];
        want.extend_from_slice(&[7; 12]);
        // ERROR-CODE with the 17-byte reason and zero padding, UNKNOWN-ATTRIBUTES of length 2.
        want.extend_from_slice(&[0x00, 0x09, 0x00, 0x15, 0x00, 0x00, 0x04, 0x14]);
        want.extend_from_slice(b"Unknown Attribute\0\0\0");
        want.extend_from_slice(&[0x00, 0x0a, 0x00, 0x02, 0x00, 0x03, 0x00, 0x00]);
        assert_eq!(reply.to_bytes(), want);
        assert_eq!(BindingReply::parse(&want), Ok(reply));
        // Our own client reader takes it as an error response (no longer "unknown 0x000a").
        let m = StunMessage::parse(&want).unwrap();
        assert_eq!(m.class, Class::ErrorResponse);
        assert_eq!(m.mapped, None);
    }

    #[test]
    fn unknown_lists() {
        // Three types, one repeated: listed once each, in order; classic pads with the last.
        let mut b = vec![0x00, 0x01, 0x00, 0x20];
        b.extend_from_slice(&CLASSIC_TID);
        for kind in [0x0003u16, 0x0002, 0x0003, 0x7777] {
            b.extend_from_slice(&kind.to_be_bytes());
            b.extend_from_slice(&[0, 4, 0, 0, 0, 0]);
        }
        let req = BindingRequest::parse(&b).unwrap();
        assert_eq!(req.unknown, vec![0x0003, 0x0002, 0x7777]);
        let reply = BindingReply::unknown_attribute(&req).unwrap().to_bytes();
        assert_eq!(
            reply[reply.len() - 12..],
            [
                0x00, 0x0a, 0x00, 0x08, 0x00, 0x03, 0x00, 0x02, 0x77, 0x77, 0x77, 0x77
            ]
        );
        // Understood attributes are not listed; nothing after MESSAGE-INTEGRITY is looked at.
        let mut b = vec![0x00, 0x01, 0x00, 0x28];
        b.extend_from_slice(&CLASSIC_TID);
        b.extend_from_slice(&[0x80, 0x22, 0x00, 0x04, b't', b'e', b's', b't']);
        b.extend_from_slice(&[0x00, 0x06, 0x00, 0x04, b'u', b's', b'e', b'r']);
        b.extend_from_slice(&[0x00, 0x08, 0x00, 0x14]);
        b.extend_from_slice(&[0; 20]);
        assert_eq!(b.len(), 60);
        assert!(BindingRequest::parse(&b).unwrap().unknown.is_empty());
        b[3] = 0x30;
        b.extend_from_slice(&[0x00, 0x03, 0x00, 0x04, 0, 0, 0, 0]);
        assert!(BindingRequest::parse(&b).unwrap().unknown.is_empty());
        // At most MAX_UNKNOWN are listed.
        let many = BindingRequest {
            transaction: CLASSIC_TID,
            unknown: (0x0100..0x0100 + 2 * MAX_UNKNOWN as u16).collect(),
        };
        assert_eq!(
            BindingRequest::parse(&many.to_bytes())
                .unwrap()
                .unknown
                .len(),
            MAX_UNKNOWN
        );
    }

    #[test]
    fn server_side_refusals() {
        let good = classic_request();
        // A response is not a request.
        let mut b = good.clone();
        b[0] = 0x01;
        assert_eq!(
            BindingRequest::parse(&b),
            Err(StunError::UnexpectedClass(Class::SuccessResponse))
        );
        assert_eq!(
            BindingReply::parse(&b),
            Err(StunError::MissingAttribute("MAPPED-ADDRESS"))
        );
        let mut b = good.clone();
        b[1] = 0x03;
        assert_eq!(
            BindingRequest::parse(&b),
            Err(StunError::UnsupportedMethod(3))
        );
        let mut b = good.clone();
        b[0] = 0x40;
        assert_eq!(BindingRequest::parse(&b), Err(StunError::NotStun));
        assert!(matches!(
            BindingRequest::parse(&good[..19]),
            Err(StunError::Truncated { .. })
        ));
        // Length not matching the datagram, not a multiple of 4, attribute past the end.
        let mut b = good.clone();
        b[3] = 4;
        assert!(matches!(
            BindingRequest::parse(&b),
            Err(StunError::BadLength { .. })
        ));
        let mut b = good.clone();
        b[3] = 4;
        b.extend_from_slice(&[0x00, 0x03, 0x00, 0x04]);
        assert!(matches!(
            BindingRequest::parse(&b),
            Err(StunError::Truncated { .. })
        ));
        // A request is not a reply; an error response other than 420 is refused.
        assert_eq!(
            BindingReply::parse(&good),
            Err(StunError::UnexpectedClass(Class::Request))
        );
        let req = BindingRequest::parse(&classic_change_request()).unwrap();
        let mut e = BindingReply::unknown_attribute(&req).unwrap().to_bytes();
        e[27] = 0; // 400
        assert!(matches!(
            BindingReply::parse(&e),
            Err(StunError::BadAttribute {
                attribute: "ERROR-CODE",
                ..
            })
        ));
        let mut e = BindingReply::unknown_attribute(&req).unwrap().to_bytes();
        e[3] -= 8;
        e.truncate(e.len() - 8);
        assert_eq!(
            BindingReply::parse(&e),
            Err(StunError::MissingAttribute("UNKNOWN-ATTRIBUTES"))
        );
        // MAPPED-ADDRESS must be IPv4.
        let mut m = BindingReply::Mapped {
            transaction: CLASSIC_TID,
            mapped: SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 1),
        }
        .to_bytes();
        m[25] = 2;
        assert!(matches!(
            BindingReply::parse(&m),
            Err(StunError::BadAttribute {
                attribute: "MAPPED-ADDRESS",
                ..
            })
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

    fn arb_reply() -> impl Strategy<Value = BindingReply> {
        let tid = prop_oneof![
            any::<[u8; 16]>(),
            any::<[u8; 12]>().prop_map(|id| {
                let mut f = [0u8; 16];
                f[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
                f[4..].copy_from_slice(&id);
                f
            }),
        ];
        prop_oneof![
            (tid.clone(), any::<u32>(), any::<u16>()).prop_map(|(transaction, ip, port)| {
                BindingReply::Mapped {
                    transaction,
                    mapped: SocketAddrV4::new(Ipv4Addr::from(ip), port),
                }
            }),
            (tid, proptest::collection::vec(any::<u16>(), 0..8)).prop_map(|(transaction, l)| {
                let mut attributes = Vec::new();
                for k in l {
                    push_distinct(&mut attributes, k);
                }
                BindingReply::UnknownAttribute {
                    transaction,
                    attributes,
                }
            }),
        ]
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
            let _ = BindingRequest::parse(&data);
            let _ = BindingReply::parse(&data);
        }

        #[test]
        fn reply_roundtrip(reply in arb_reply()) {
            let bytes = reply.to_bytes();
            prop_assert_eq!(bytes.len() % 4, 0);
            prop_assert_eq!(BindingReply::parse(&bytes), Ok(reply));
        }

        #[test]
        fn request_roundtrip(
            transaction in any::<[u8; 16]>(),
            unknown in proptest::collection::vec(0x0100u16..0x8000, 0..8),
        ) {
            let mut distinct = Vec::new();
            for k in unknown {
                push_distinct(&mut distinct, k);
            }
            let req = BindingRequest { transaction, unknown: distinct };
            let bytes = req.to_bytes();
            prop_assert_eq!(bytes.len(), req.buffer_len());
            prop_assert_eq!(BindingRequest::parse(&bytes), Ok(req));
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
