//! The vertical model's own messages (paper, Figures 1 and 11; docs/design.md, "Vertical model"):
//! registration and lookup at a per-domain location server ([`super::ports::LOCATION`]), the
//! inter-domain resolution between location servers, and the end-to-end session messages
//! (Invite/InviteOk, the DH key agreement, the mid-call re-invite). NAT discovery uses real
//! STUN ([`super::stun`]) and media is the same SRTP as BINFM's.
//!
//! Every message is one datagram with a 4-byte header, then the body of its type:
//! ```text
//! +------+------+---------+------+---- ... ----+
//! | 'V'  | 'M'  | version | type | body         |
//! +------+------+---------+------+---- ... ----+
//! ```
//! Bodies (all integers big-endian; an id is 32 bytes; an address is IPv4 (4) + port (2)):
//! ```text
//!  1 Register          id, contact                                   38
//!  2 RegisterAck       id, contact                                   38
//!  3 Lookup            request_id u32, id                            36
//!  4 LookupReply       request_id u32, id, found u8 (0|1), [contact] 37 | 43
//!  5 Resolve           request_id u32, id                            36
//!  6 Resolved          request_id u32, id, found u8 (0|1), [contact] 37 | 43
//!  7 Invite            caller, callee, contact, ssrc u32             74
//!  8 InviteOk          caller, callee, contact, ssrc u32             74
//!  9 KeyExchange       from, epoch u32, nonce 16, y_len u16, y, mac 16
//! 10 KeyExchangeReply  from, epoch u32, nonce 16, y_len u16, y, mac 16
//! 11 ReInvite          from, counter u64, contact, mac 16             62
//! ```
//! `mac` is HMAC-SHA256/128 with the current session control key over the datagram with the
//! tag zeroed ([`mac_input`]); it is all zeros in the epoch-0 key exchange (no key exists yet:
//! the vertical model's first key agreement is unauthenticated DH). Parsing is total and
//! bounded, and rejects trailing bytes, so each message has exactly one encoding.

use std::net::{Ipv4Addr, SocketAddrV4};

use super::codec::{Reader, WireError, copy_into};
use super::toall::MAX_Y_LEN;

/// First two bytes of every vertical-model datagram.
pub const MAGIC: [u8; 2] = *b"VM";
/// Protocol version (third byte).
pub const VERSION: u8 = 1;
/// Header length.
pub const HEADER_LEN: usize = 4;
/// Nonce length (key exchange).
pub const NONCE_LEN: usize = 16;
/// Tag length.
pub const MAC_LEN: usize = 16;
/// An end node's identifier (the same 32-byte hash address as BINFM's, so both schemes name
/// the same ENs).
pub type Id = [u8; 32];

/// Message type codes (fourth byte).
pub mod msg_type {
    /// [`super::VmMessage::Register`], EN → its location server.
    pub const REGISTER: u8 = 1;
    /// [`super::VmMessage::RegisterAck`], location server → EN.
    pub const REGISTER_ACK: u8 = 2;
    /// [`super::VmMessage::Lookup`], EN → its location server (step 3).
    pub const LOOKUP: u8 = 3;
    /// [`super::VmMessage::LookupReply`], location server → EN (step 5).
    pub const LOOKUP_REPLY: u8 = 4;
    /// [`super::VmMessage::Resolve`], location server → peer location server (step 4).
    pub const RESOLVE: u8 = 5;
    /// [`super::VmMessage::Resolved`], peer location server → location server (step 4).
    pub const RESOLVED: u8 = 6;
    /// [`super::VmMessage::Invite`], EN → EN (step 8).
    pub const INVITE: u8 = 7;
    /// [`super::VmMessage::InviteOk`], EN → EN (step 9).
    pub const INVITE_OK: u8 = 8;
    /// [`super::VmMessage::KeyExchange`], EN → EN (step 10, and a rekey).
    pub const KEY_EXCHANGE: u8 = 9;
    /// [`super::VmMessage::KeyExchangeReply`], EN → EN (step 11).
    pub const KEY_EXCHANGE_REPLY: u8 = 10;
    /// [`super::VmMessage::ReInvite`], EN → EN (mid-call step 3).
    pub const RE_INVITE: u8 = 11;
}

/// One vertical-model message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmMessage {
    /// Binds `id` to `contact` (the STUN-mapped public endpoint).
    Register {
        /// Who.
        id: Id,
        /// Where.
        contact: SocketAddrV4,
    },
    /// The binding is stored (echoes it).
    RegisterAck {
        /// Who.
        id: Id,
        /// Where.
        contact: SocketAddrV4,
    },
    /// Where is `id`?
    Lookup {
        /// Chosen by the EN, echoed in the reply.
        request_id: u32,
        /// Wanted EN.
        id: Id,
    },
    /// The answer to a Lookup.
    LookupReply {
        /// From the Lookup.
        request_id: u32,
        /// From the Lookup.
        id: Id,
        /// `None`: not found.
        contact: Option<SocketAddrV4>,
    },
    /// Inter-domain: where is `id`? (answered from the peer server's own table only).
    Resolve {
        /// Chosen by the asking server.
        request_id: u32,
        /// Wanted EN.
        id: Id,
    },
    /// The answer to a Resolve.
    Resolved {
        /// From the Resolve.
        request_id: u32,
        /// From the Resolve.
        id: Id,
        /// `None`: not found.
        contact: Option<SocketAddrV4>,
    },
    /// Session request.
    Invite {
        /// Caller's id.
        caller: Id,
        /// Callee's id.
        callee: Id,
        /// Caller's public endpoint (STUN-mapped).
        contact: SocketAddrV4,
        /// Caller's RTP SSRC.
        ssrc: u32,
    },
    /// Session response.
    InviteOk {
        /// Caller's id.
        caller: Id,
        /// Callee's id.
        callee: Id,
        /// Callee's public endpoint (STUN-mapped).
        contact: SocketAddrV4,
        /// Callee's RTP SSRC.
        ssrc: u32,
    },
    /// DH key agreement, first half (also starts a rekey).
    KeyExchange {
        /// Sender's id.
        from: Id,
        /// Key epoch the exchange makes (0 at setup).
        epoch: u32,
        /// Sender's fresh nonce.
        nonce: [u8; NONCE_LEN],
        /// Sender's DH public value (group 14).
        y: Vec<u8>,
        /// Tag with the current control key (zeros at epoch 0).
        mac: [u8; MAC_LEN],
    },
    /// DH key agreement, second half.
    KeyExchangeReply {
        /// Sender's id.
        from: Id,
        /// Key epoch (as in the KeyExchange).
        epoch: u32,
        /// Sender's fresh nonce.
        nonce: [u8; NONCE_LEN],
        /// Sender's DH public value.
        y: Vec<u8>,
        /// Tag with the current control key (zeros at epoch 0).
        mac: [u8; MAC_LEN],
    },
    /// Mid-call: the sender moved; media goes to `contact` from now on.
    ReInvite {
        /// Sender's id.
        from: Id,
        /// Strictly increasing per sender and call (replay protection).
        counter: u64,
        /// New public endpoint (STUN-mapped).
        contact: SocketAddrV4,
        /// Tag with the current control key.
        mac: [u8; MAC_LEN],
    },
}

fn read_addr(r: &mut Reader<'_>, field: &'static str) -> Result<SocketAddrV4, WireError> {
    let ip = r.array::<4>(field)?;
    let port = r.u16(field)?;
    Ok(SocketAddrV4::new(Ipv4Addr::from(ip), port))
}

fn put_addr(b: &mut Vec<u8>, a: &SocketAddrV4) {
    b.extend_from_slice(&a.ip().octets());
    b.extend_from_slice(&a.port().to_be_bytes());
}

fn read_opt_addr(r: &mut Reader<'_>) -> Result<Option<SocketAddrV4>, WireError> {
    match r.u8("found flag")? {
        0 => Ok(None),
        1 => Ok(Some(read_addr(r, "contact")?)),
        v => Err(WireError::BadValue {
            field: "found flag",
            value: u64::from(v),
        }),
    }
}

fn put_opt_addr(b: &mut Vec<u8>, a: &Option<SocketAddrV4>) {
    match a {
        None => b.push(0),
        Some(a) => {
            b.push(1);
            put_addr(b, a);
        }
    }
}

type KeyFields = (Id, u32, [u8; NONCE_LEN], Vec<u8>, [u8; MAC_LEN]);

fn read_key(r: &mut Reader<'_>) -> Result<KeyFields, WireError> {
    let from = r.array("from")?;
    let epoch = r.u32("epoch")?;
    let nonce = r.array("nonce")?;
    let y_len = usize::from(r.u16("y length")?);
    if y_len > MAX_Y_LEN {
        return Err(WireError::OverBound {
            field: "y length",
            len: y_len,
            max: MAX_Y_LEN,
        });
    }
    let y = r.bytes(y_len, "y")?.to_vec();
    let mac = r.array("mac")?;
    Ok((from, epoch, nonce, y, mac))
}

fn put_key(b: &mut Vec<u8>, from: &Id, epoch: u32, nonce: &[u8; 16], y: &[u8], mac: &[u8; 16]) {
    let y = &y[..y.len().min(MAX_Y_LEN)];
    b.extend_from_slice(from);
    b.extend_from_slice(&epoch.to_be_bytes());
    b.extend_from_slice(nonce);
    b.extend_from_slice(&(y.len() as u16).to_be_bytes());
    b.extend_from_slice(y);
    b.extend_from_slice(mac);
}

impl VmMessage {
    /// The type code (fourth header byte).
    pub fn type_code(&self) -> u8 {
        match self {
            VmMessage::Register { .. } => msg_type::REGISTER,
            VmMessage::RegisterAck { .. } => msg_type::REGISTER_ACK,
            VmMessage::Lookup { .. } => msg_type::LOOKUP,
            VmMessage::LookupReply { .. } => msg_type::LOOKUP_REPLY,
            VmMessage::Resolve { .. } => msg_type::RESOLVE,
            VmMessage::Resolved { .. } => msg_type::RESOLVED,
            VmMessage::Invite { .. } => msg_type::INVITE,
            VmMessage::InviteOk { .. } => msg_type::INVITE_OK,
            VmMessage::KeyExchange { .. } => msg_type::KEY_EXCHANGE,
            VmMessage::KeyExchangeReply { .. } => msg_type::KEY_EXCHANGE_REPLY,
            VmMessage::ReInvite { .. } => msg_type::RE_INVITE,
        }
    }

    /// Short lower-case name, for events and logs.
    pub fn name(&self) -> &'static str {
        match self {
            VmMessage::Register { .. } => "register",
            VmMessage::RegisterAck { .. } => "register_ack",
            VmMessage::Lookup { .. } => "lookup",
            VmMessage::LookupReply { .. } => "lookup_reply",
            VmMessage::Resolve { .. } => "resolve",
            VmMessage::Resolved { .. } => "resolved",
            VmMessage::Invite { .. } => "invite",
            VmMessage::InviteOk { .. } => "invite_ok",
            VmMessage::KeyExchange { .. } => "key_exchange",
            VmMessage::KeyExchangeReply { .. } => "key_exchange_reply",
            VmMessage::ReInvite { .. } => "re_invite",
        }
    }

    /// Whether `data` starts like a vertical-model message (for demultiplexing a port shared
    /// with STUN and RTP).
    pub fn looks_like(data: &[u8]) -> bool {
        data.get(..2) == Some(&MAGIC[..])
    }

    /// Parses one datagram. Total: any input gives a message or an error.
    pub fn parse(data: &[u8]) -> Result<VmMessage, WireError> {
        let mut r = Reader::new(data);
        let magic = r.array::<2>("magic")?;
        if magic != MAGIC {
            return Err(WireError::BadValue {
                field: "magic (expected \"VM\")",
                value: u64::from(u16::from_be_bytes(magic)),
            });
        }
        let version = r.u8("version")?;
        if version != VERSION {
            return Err(WireError::BadVersion {
                what: "vertical message",
                version,
            });
        }
        let kind = r.u8("message type")?;
        let msg = match kind {
            msg_type::REGISTER => VmMessage::Register {
                id: r.array("id")?,
                contact: read_addr(&mut r, "contact")?,
            },
            msg_type::REGISTER_ACK => VmMessage::RegisterAck {
                id: r.array("id")?,
                contact: read_addr(&mut r, "contact")?,
            },
            msg_type::LOOKUP => VmMessage::Lookup {
                request_id: r.u32("request id")?,
                id: r.array("id")?,
            },
            msg_type::LOOKUP_REPLY => VmMessage::LookupReply {
                request_id: r.u32("request id")?,
                id: r.array("id")?,
                contact: read_opt_addr(&mut r)?,
            },
            msg_type::RESOLVE => VmMessage::Resolve {
                request_id: r.u32("request id")?,
                id: r.array("id")?,
            },
            msg_type::RESOLVED => VmMessage::Resolved {
                request_id: r.u32("request id")?,
                id: r.array("id")?,
                contact: read_opt_addr(&mut r)?,
            },
            msg_type::INVITE => VmMessage::Invite {
                caller: r.array("caller")?,
                callee: r.array("callee")?,
                contact: read_addr(&mut r, "contact")?,
                ssrc: r.u32("ssrc")?,
            },
            msg_type::INVITE_OK => VmMessage::InviteOk {
                caller: r.array("caller")?,
                callee: r.array("callee")?,
                contact: read_addr(&mut r, "contact")?,
                ssrc: r.u32("ssrc")?,
            },
            msg_type::KEY_EXCHANGE => {
                let (from, epoch, nonce, y, mac) = read_key(&mut r)?;
                VmMessage::KeyExchange {
                    from,
                    epoch,
                    nonce,
                    y,
                    mac,
                }
            }
            msg_type::KEY_EXCHANGE_REPLY => {
                let (from, epoch, nonce, y, mac) = read_key(&mut r)?;
                VmMessage::KeyExchangeReply {
                    from,
                    epoch,
                    nonce,
                    y,
                    mac,
                }
            }
            msg_type::RE_INVITE => VmMessage::ReInvite {
                from: r.array("from")?,
                counter: r.u64("counter")?,
                contact: read_addr(&mut r, "contact")?,
                mac: r.array("mac")?,
            },
            other => return Err(WireError::UnknownType(other)),
        };
        r.finish()?;
        Ok(msg)
    }

    /// Encoded length.
    pub fn buffer_len(&self) -> usize {
        let opt = |c: &Option<SocketAddrV4>| if c.is_some() { 7 } else { 1 };
        HEADER_LEN
            + match self {
                VmMessage::Register { .. } | VmMessage::RegisterAck { .. } => 38,
                VmMessage::Lookup { .. } | VmMessage::Resolve { .. } => 36,
                VmMessage::LookupReply { contact, .. } | VmMessage::Resolved { contact, .. } => {
                    36 + opt(contact)
                }
                VmMessage::Invite { .. } | VmMessage::InviteOk { .. } => 74,
                VmMessage::KeyExchange { y, .. } | VmMessage::KeyExchangeReply { y, .. } => {
                    70 + y.len().min(MAX_Y_LEN)
                }
                VmMessage::ReInvite { .. } => 62,
            }
    }

    /// The datagram. A Y beyond [`MAX_Y_LEN`] is cut (it could not be parsed back).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(self.buffer_len());
        b.extend_from_slice(&MAGIC);
        b.push(VERSION);
        b.push(self.type_code());
        match self {
            VmMessage::Register { id, contact } | VmMessage::RegisterAck { id, contact } => {
                b.extend_from_slice(id);
                put_addr(&mut b, contact);
            }
            VmMessage::Lookup { request_id, id } | VmMessage::Resolve { request_id, id } => {
                b.extend_from_slice(&request_id.to_be_bytes());
                b.extend_from_slice(id);
            }
            VmMessage::LookupReply {
                request_id,
                id,
                contact,
            }
            | VmMessage::Resolved {
                request_id,
                id,
                contact,
            } => {
                b.extend_from_slice(&request_id.to_be_bytes());
                b.extend_from_slice(id);
                put_opt_addr(&mut b, contact);
            }
            VmMessage::Invite {
                caller,
                callee,
                contact,
                ssrc,
            }
            | VmMessage::InviteOk {
                caller,
                callee,
                contact,
                ssrc,
            } => {
                b.extend_from_slice(caller);
                b.extend_from_slice(callee);
                put_addr(&mut b, contact);
                b.extend_from_slice(&ssrc.to_be_bytes());
            }
            VmMessage::KeyExchange {
                from,
                epoch,
                nonce,
                y,
                mac,
            }
            | VmMessage::KeyExchangeReply {
                from,
                epoch,
                nonce,
                y,
                mac,
            } => put_key(&mut b, from, *epoch, nonce, y, mac),
            VmMessage::ReInvite {
                from,
                counter,
                contact,
                mac,
            } => {
                b.extend_from_slice(from);
                b.extend_from_slice(&counter.to_be_bytes());
                put_addr(&mut b, contact);
                b.extend_from_slice(mac);
            }
        }
        b
    }

    /// Writes the datagram into `buf`; returns its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        copy_into(&self.to_bytes(), buf)
    }
}

/// The bytes a message's `mac` covers: the whole datagram with the (last, 16-byte) tag
/// zeroed. Messages without a tag give their plain encoding.
pub fn mac_input(msg: &VmMessage) -> Vec<u8> {
    let mut bytes = msg.to_bytes();
    if matches!(
        msg,
        VmMessage::KeyExchange { .. }
            | VmMessage::KeyExchangeReply { .. }
            | VmMessage::ReInvite { .. }
    ) {
        let start = bytes.len().saturating_sub(MAC_LEN);
        bytes[start..].fill(0);
    }
    bytes
}

#[cfg(test)]
mod tests;
