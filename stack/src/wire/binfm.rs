//! BINFM control messages over UDP: registration (paper, Figure 7), Query/Reply (Figure 8),
//! the super nodes' relay and block exchange, and the end-to-end session messages between
//! two ENs: Session Request/Response (Figure 8), IP handover (Figure 9) and key renewal
//! (Figure 10). ENs and peer SNs send to an SN on
//! [`super::ports::SN`]; an EN listens on [`super::ports::EN`].
//!
//! Every message is one datagram with a 4-byte header, then the body of its type:
//! ```text
//! +------+------+---------+------+---- ... ----+
//! | 'B'  | 'F'  | version | type | body         |
//! +------+------+---------+------+---- ... ----+
//! ```
//! Layouts per type are on [`Message`] and in `docs/binfm-wire.md`. All integers are
//! big-endian; a ToALL Tx is embedded as encoded by [`super::toall`] (it is self-delimiting).
//! Parsing is total and bounded: it never panics, never allocates more than the input
//! holds, and rejects trailing bytes so each message has exactly one encoding.

use std::net::{Ipv4Addr, SocketAddrV4};

use super::codec::{Reader, WireError, copy_into};
use super::toall::{HashAddr, MAX_Y_LEN, ToallTx};

pub mod proof;

pub use proof::{
    BLOCK_HEADER_LEN, MAX_HEADERS, MAX_LOCATOR, MAX_PROOF_DEPTH, MAX_REPLY_LEN, RawHeader, TxProof,
};

/// First two bytes of every BINFM datagram.
pub const MAGIC: [u8; 2] = *b"BF";
/// Current protocol version (third byte).
pub const VERSION: u8 = 1;
/// Header length: magic, version, type.
pub const HEADER_LEN: usize = 4;
/// Length of a session nonce (Session Request/Response).
pub const NONCE_LEN: usize = 16;
/// Length of a truncated HMAC-SHA256 tag (handover, key renewal, key confirmation).
pub const MAC_LEN: usize = 16;
/// Length of an ed25519 public key (Session Request).
pub const PUBLIC_KEY_LEN: usize = 32;
/// Length of an ed25519 signature (Session Request).
pub const SIGNATURE_LEN: usize = 64;
/// Length of a path challenge's random data (Path Challenge / Path Response).
pub const CHALLENGE_LEN: usize = 16;
/// Domain label prefixed to the bytes a Session Request's signature covers
/// ([`signing_input`]): a signature made for a ToALL Tx can never pass as one.
pub const SESSION_REQUEST_LABEL: &[u8] = b"binfm session request v2";

/// Most block bytes in one [`BlockPart`]: with the 42 bytes of header and part fields the
/// datagram stays below 1280 bytes (IPv6's minimum MTU, comfortably under any path here).
pub const MAX_PART_DATA: usize = 1200;

/// Message type codes (fourth byte).
pub mod msg_type {
    /// [`super::Message::TxSubmit`], EN → SN.
    pub const TX_SUBMIT: u8 = 1;
    /// [`super::Message::TxAck`], SN → EN.
    pub const TX_ACK: u8 = 2;
    /// [`super::Message::Query`], EN → SN.
    pub const QUERY: u8 = 3;
    /// [`super::Message::Reply`], SN → EN.
    pub const REPLY: u8 = 4;
    /// [`super::Message::TxRelay`], SN → SN.
    pub const TX_RELAY: u8 = 5;
    /// [`super::Message::BlockPart`], SN → SN.
    pub const BLOCK_PART: u8 = 6;
    /// [`super::Message::GetBlock`], SN → SN.
    pub const GET_BLOCK: u8 = 7;
    /// [`super::Message::TipAnnounce`], SN → SN.
    pub const TIP_ANNOUNCE: u8 = 8;
    /// [`super::Message::SessionRequest`], EN → EN.
    pub const SESSION_REQUEST: u8 = 9;
    /// [`super::Message::SessionResponse`], EN → EN.
    pub const SESSION_RESPONSE: u8 = 10;
    /// [`super::Message::HandoverRequest`], EN → EN.
    pub const HANDOVER_REQUEST: u8 = 11;
    /// [`super::Message::KeyRenewal`], EN → EN.
    pub const KEY_RENEWAL: u8 = 12;
    /// [`super::Message::ControlAck`], EN → EN.
    pub const CONTROL_ACK: u8 = 13;
    /// [`super::Message::KeyRenewalReply`], EN → EN.
    pub const KEY_RENEWAL_REPLY: u8 = 14;
    /// [`super::Message::PathChallenge`], EN → EN.
    pub const PATH_CHALLENGE: u8 = 15;
    /// [`super::Message::PathResponse`], EN → EN.
    pub const PATH_RESPONSE: u8 = 16;
    /// [`super::Message::Headers`], SN → EN.
    pub const HEADERS: u8 = 20;
    /// [`super::Message::GetHeaders`], EN → SN.
    pub const GET_HEADERS: u8 = 21;
}

/// Reason codes carried by [`TxStatus::Rejected`] (mirroring `binfm_roles::wallet::TxError`).
pub mod reject {
    /// SHA-256(public key) is not the hash address.
    pub const ADDRESS_MISMATCH: u8 = 1;
    /// The signature does not verify over the TxOut bytes.
    pub const BAD_SIGNATURE: u8 = 2;
    /// The public key is not a valid ed25519 point.
    pub const BAD_PUBLIC_KEY: u8 = 3;
    /// DH group is not one we support (only 14).
    pub const BAD_DH_GROUP: u8 = 4;
    /// Y has the wrong length or is out of 1 < Y < p-1.
    pub const BAD_Y: u8 = 5;
    /// Sequence number not above the owner's latest known one.
    pub const STALE_SEQ: u8 = 6;
    /// The bytes did not parse as a Tx.
    pub const MALFORMED: u8 = 7;
}

/// The SN's verdict on a submitted Tx.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxStatus {
    /// Valid; relayed and queued for a block.
    Accepted,
    /// The Tx arrived from another NAT ip:port than it claims (the NAT picked another port
    /// than H16, or there is no NAT). Not relayed: the EN re-registers with `observed`, as a
    /// STUN answer would tell it.
    EndpointMismatch,
    /// Invalid; the code is one of [`reject`].
    Rejected(u8),
    /// Already known (same Tx id); nothing to do.
    Duplicate,
}

impl TxStatus {
    fn code(self) -> (u8, u8) {
        match self {
            TxStatus::Accepted => (0, 0),
            TxStatus::EndpointMismatch => (1, 0),
            TxStatus::Rejected(reason) => (2, reason),
            TxStatus::Duplicate => (3, 0),
        }
    }

    fn from_code(status: u8, reason: u8) -> Result<TxStatus, WireError> {
        let s = match (status, reason) {
            (0, 0) => TxStatus::Accepted,
            (1, 0) => TxStatus::EndpointMismatch,
            (2, r) => TxStatus::Rejected(r),
            (3, 0) => TxStatus::Duplicate,
            (0 | 1 | 3, r) => {
                return Err(WireError::BadValue {
                    field: "ack reason (must be 0 unless rejected)",
                    value: u64::from(r),
                });
            }
            (s, _) => {
                return Err(WireError::BadValue {
                    field: "ack status",
                    value: u64::from(s),
                });
            }
        };
        Ok(s)
    }
}

/// One piece of a block too big for a datagram. The block's bytes are opaque here.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BlockPart {
    /// Hash of the whole block (the reassembly key).
    pub block_hash: [u8; 32],
    /// Index of this part, `0..parts`.
    pub part: u16,
    /// Number of parts, at least 1.
    pub parts: u16,
    /// At most [`MAX_PART_DATA`] bytes.
    pub data: Vec<u8>,
}

/// A BINFM control message.
// Reply holds two Txs inline (~500 bytes); a Message lives for one datagram, never in bulk,
// so boxing would only cost an allocation and ergonomics.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Type 1, EN → SN: register (Figure 7). Body: the Tx.
    TxSubmit {
        /// The new ToALL Tx.
        tx: ToallTx,
    },
    /// Type 2, SN → EN. Body: `tx_id[32] status u8 reason u8 ip[4] port u16` (40 bytes).
    TxAck {
        /// Id of the Tx acknowledged.
        tx_id: [u8; 32],
        /// Verdict.
        status: TxStatus,
        /// Source ip:port the SN saw the Tx come from (the NAT's real mapping).
        observed: SocketAddrV4,
    },
    /// Type 3, EN → SN. Body: `request_id u32 hash_addr[32] flags u8` (37 bytes);
    /// flag bit 0 = want_unconfirmed, other bits must be 0.
    Query {
        /// Echoed in the Reply.
        request_id: u32,
        /// Whom we look for.
        hash_addr: HashAddr,
        /// Also return the newest valid Tx still waiting for a block.
        want_unconfirmed: bool,
    },
    /// Type 4, SN → EN. Body: `request_id u32 hash_addr[32] flags u8 height u64
    /// confirmations u32 [tx] [unconfirmed] [proof]` (49 bytes plus the Txs and the proof);
    /// flags: bit 0 found, bit 1 tx present, bit 2 unconfirmed present, bit 3 proof present
    /// (only with bit 1), others 0.
    Reply {
        /// From the Query.
        request_id: u32,
        /// From the Query.
        hash_addr: HashAddr,
        /// The address has a confirmed Tx.
        found: bool,
        /// Height of the block holding `tx` (0 if not found); the tip is at `height + confirmations - 1`.
        height: u64,
        /// Blocks on top of (and including) the one holding `tx`; 0 if not found.
        confirmations: u32,
        /// Latest confirmed Tx of the address.
        tx: Option<ToallTx>,
        /// Newest valid Tx not yet in a block, if asked for and known.
        unconfirmed: Option<ToallTx>,
        /// Where `tx` sits in the best chain: its block's header and Merkle path.
        proof: Option<TxProof>,
    },
    /// Type 5, SN → SN: flood a verified Tx. Body: the Tx.
    TxRelay {
        /// The Tx.
        tx: ToallTx,
    },
    /// Type 6, SN → SN. Body: `block_hash[32] part u16 parts u16 len u16 data`
    /// (38 bytes plus data); `part < parts`, `len <= MAX_PART_DATA`.
    BlockPart(BlockPart),
    /// Type 7, SN → SN: ask a peer for a missing block (it answers with BlockParts).
    /// Body: `block_hash[32]`.
    GetBlock {
        /// Block wanted.
        block_hash: [u8; 32],
    },
    /// Type 8, SN → SN: "my best tip is this"; lets a restarted or partitioned SN catch up.
    /// Body: `tip_hash[32] height u64 total_work[32]` (72 bytes).
    TipAnnounce {
        /// Hash of the tip block.
        tip_hash: [u8; 32],
        /// Its height.
        height: u64,
        /// Cumulative work, 256-bit big-endian.
        total_work: [u8; 32],
    },
    /// Type 9, EN A → EN B through B's NAT (Figure 8 (c)): "let us talk". A has B's Tx (and
    /// so Y_B) from its Reply. Signed with A's wallet key (ed25519), whose public key rides
    /// along: B checks SHA-256(public_key) = `caller` and the signature before it looks A up
    /// or spends a modexp. Body: `caller[32] callee[32] nonce[16] ssrc u32 e_len u16
    /// e[e_len] n_len u16 n[n_len] public_key[32] signature[64]` (184 bytes plus the two DH
    /// values: 696 with group 14); `e_len, n_len <= MAX_Y_LEN`.
    SessionRequest {
        /// A's hash address.
        caller: HashAddr,
        /// B's hash address (B drops requests meant for someone else).
        callee: HashAddr,
        /// A's fresh nonce: with B's, it makes the session keys one-time.
        nonce: [u8; NONCE_LEN],
        /// SSRC of A's media stream.
        ssrc: u32,
        /// A's ephemeral DH public value for this session (forward secrecy).
        ephemeral: Vec<u8>,
        /// A's next ephemeral public value, used once by B when B starts a key renewal.
        next: Vec<u8>,
        /// A's ed25519 public key (its hash address is SHA-256 of it).
        public_key: [u8; PUBLIC_KEY_LEN],
        /// ed25519 signature over [`signing_input`].
        signature: [u8; SIGNATURE_LEN],
    },
    /// Type 10, EN B → EN A (Figure 8 (f)). Body: `caller[32] callee[32] nonce[16] ssrc u32
    /// e_len u16 e[e_len] n_len u16 n[n_len] confirm[16]` (104 bytes plus the two DH
    /// values: 616 with group 14).
    SessionResponse {
        /// A's hash address, from the request.
        caller: HashAddr,
        /// B's hash address.
        callee: HashAddr,
        /// B's fresh nonce.
        nonce: [u8; NONCE_LEN],
        /// SSRC of B's media stream.
        ssrc: u32,
        /// B's ephemeral DH public value for this session.
        ephemeral: Vec<u8>,
        /// B's next ephemeral public value, used once by A when A starts a key renewal.
        next: Vec<u8>,
        /// Key confirmation: MAC with the new session's control key over [`mac_input`]
        /// (this message with `confirm` zeroed). Proves B holds the keys and saw A's values.
        confirm: [u8; MAC_LEN],
    },
    /// Type 11, moved EN → peer (Figure 9): "reach me here now". The peer takes `nat` (never
    /// the datagram's source) and validates it with a [`Message::PathChallenge`]. Body: `sender[32]
    /// counter u64 private_ip[4] private_port u16 nat_ip[4] nat_port u16 mac[16]` (68 bytes).
    HandoverRequest {
        /// The moved EN.
        sender: HashAddr,
        /// Sender's control counter, strictly increasing per session (replay protection).
        counter: u64,
        /// New private address (from the new network's DHCP).
        private: SocketAddrV4,
        /// New NAT public address.
        nat: SocketAddrV4,
        /// MAC with the session's control key over [`mac_input`].
        mac: [u8; MAC_LEN],
    },
    /// Type 12, either EN → peer (Figure 10): a fresh ephemeral DH public value for the next
    /// key epoch (combined with the peer's announced next value). Body: `sender[32]
    /// counter u64 y_len u16 y[y_len] mac[16]` (58 bytes plus Y; `y_len <= MAX_Y_LEN`).
    KeyRenewal {
        /// The initiator.
        sender: HashAddr,
        /// Sender's control counter, strictly increasing per session.
        counter: u64,
        /// The initiator's fresh ephemeral g^e' mod p, big-endian.
        y: Vec<u8>,
        /// MAC with the session's current control key over [`mac_input`].
        mac: [u8; MAC_LEN],
    },
    /// Type 13, EN → EN: acknowledges the HandoverRequest or KeyRenewal with this `counter`
    /// (our addition: the paper sends both once, so the initiator could not tell a lost one
    /// from a slow one). Body: `sender[32] counter u64 mac[16]` (56 bytes).
    ControlAck {
        /// The acknowledging EN.
        sender: HashAddr,
        /// Counter of the acknowledged message.
        counter: u64,
        /// MAC with the session's control key over [`mac_input`].
        mac: [u8; MAC_LEN],
    },
    /// Type 14, EN → EN: answers the [`Message::KeyRenewal`] with `counter`, and announces
    /// the sender's next ephemeral value (its previous one was just used). Body: `sender[32]
    /// counter u64 y_len u16 y[y_len] mac[16]` (58 bytes plus Y).
    KeyRenewalReply {
        /// The EN that applied the renewal.
        sender: HashAddr,
        /// Counter of the renewal answered.
        counter: u64,
        /// The sender's next ephemeral public value.
        y: Vec<u8>,
        /// MAC with the **new** epoch's control key over [`mac_input`] (key confirmation).
        mac: [u8; MAC_LEN],
    },
    /// Type 15, EN → EN: checks that a new path reaches the peer (RFC 9000 section 8.2):
    /// sent to the endpoint a Handover Request named. Body: `sender[32] data[16] mac[16]`
    /// (64 bytes).
    PathChallenge {
        /// The EN validating the path.
        sender: HashAddr,
        /// Unpredictable data, echoed in the Path Response.
        data: [u8; CHALLENGE_LEN],
        /// MAC with the session's control key over [`mac_input`].
        mac: [u8; MAC_LEN],
    },
    /// Type 16, EN → EN: answers a [`Message::PathChallenge`]. Body: `sender[32] data[16]
    /// mac[16]` (64 bytes).
    PathResponse {
        /// The EN that received the challenge.
        sender: HashAddr,
        /// The challenge's data.
        data: [u8; CHALLENGE_LEN],
        /// MAC with the session's control key over [`mac_input`].
        mac: [u8; MAC_LEN],
    },
    /// Type 20, SN → EN: best-chain block headers, oldest first (pushed as blocks join the
    /// best chain, or answering a GetHeaders). Body: `count u8 header[120] * count`,
    /// `count <= MAX_HEADERS`.
    Headers {
        /// The headers, each 120 bytes.
        headers: Vec<RawHeader>,
    },
    /// Type 21, EN → SN: "send me the best-chain headers after the first of these I share
    /// with you" (a block locator, newest first). Body: `count u8 hash[32] * count`,
    /// `1 <= count <= MAX_LOCATOR`.
    GetHeaders {
        /// Block hashes, newest first, ending with genesis.
        locator: Vec<[u8; 32]>,
    },
}

const FLAG3: u8 = 0b1000;

const FLAG0: u8 = 0b001;
const FLAG1: u8 = 0b010;
const FLAG2: u8 = 0b100;

fn check_flags(flags: u8, allowed: u8, field: &'static str) -> Result<(), WireError> {
    if flags & !allowed != 0 {
        return Err(WireError::BadValue {
            field,
            value: u64::from(flags),
        });
    }
    Ok(())
}

impl Message {
    /// The type code (fourth header byte).
    pub fn type_code(&self) -> u8 {
        match self {
            Message::TxSubmit { .. } => msg_type::TX_SUBMIT,
            Message::TxAck { .. } => msg_type::TX_ACK,
            Message::Query { .. } => msg_type::QUERY,
            Message::Reply { .. } => msg_type::REPLY,
            Message::TxRelay { .. } => msg_type::TX_RELAY,
            Message::BlockPart(_) => msg_type::BLOCK_PART,
            Message::GetBlock { .. } => msg_type::GET_BLOCK,
            Message::TipAnnounce { .. } => msg_type::TIP_ANNOUNCE,
            Message::SessionRequest { .. } => msg_type::SESSION_REQUEST,
            Message::SessionResponse { .. } => msg_type::SESSION_RESPONSE,
            Message::HandoverRequest { .. } => msg_type::HANDOVER_REQUEST,
            Message::KeyRenewal { .. } => msg_type::KEY_RENEWAL,
            Message::ControlAck { .. } => msg_type::CONTROL_ACK,
            Message::KeyRenewalReply { .. } => msg_type::KEY_RENEWAL_REPLY,
            Message::PathChallenge { .. } => msg_type::PATH_CHALLENGE,
            Message::PathResponse { .. } => msg_type::PATH_RESPONSE,
            Message::Headers { .. } => msg_type::HEADERS,
            Message::GetHeaders { .. } => msg_type::GET_HEADERS,
        }
    }

    /// Short lower-case name, for events and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Message::TxSubmit { .. } => "tx_submit",
            Message::TxAck { .. } => "tx_ack",
            Message::Query { .. } => "query",
            Message::Reply { .. } => "reply",
            Message::TxRelay { .. } => "tx_relay",
            Message::BlockPart(_) => "block_part",
            Message::GetBlock { .. } => "get_block",
            Message::TipAnnounce { .. } => "tip_announce",
            Message::SessionRequest { .. } => "session_request",
            Message::SessionResponse { .. } => "session_response",
            Message::HandoverRequest { .. } => "handover_request",
            Message::KeyRenewal { .. } => "key_renewal",
            Message::ControlAck { .. } => "control_ack",
            Message::KeyRenewalReply { .. } => "key_renewal_reply",
            Message::PathChallenge { .. } => "path_challenge",
            Message::PathResponse { .. } => "path_response",
            Message::Headers { .. } => "headers",
            Message::GetHeaders { .. } => "get_headers",
        }
    }

    /// Parses one datagram. Total: any input gives a message or an error.
    pub fn parse(data: &[u8]) -> Result<Message, WireError> {
        let mut r = Reader::new(data);
        let magic = r.array::<2>("magic")?;
        if magic != MAGIC {
            return Err(WireError::BadMagic(magic));
        }
        let version = r.u8("version")?;
        if version != VERSION {
            return Err(WireError::BadVersion {
                what: "BINFM message",
                version,
            });
        }
        let kind = r.u8("message type")?;
        let msg = match kind {
            msg_type::TX_SUBMIT => Message::TxSubmit {
                tx: ToallTx::read(&mut r)?,
            },
            msg_type::TX_RELAY => Message::TxRelay {
                tx: ToallTx::read(&mut r)?,
            },
            msg_type::TX_ACK => {
                let tx_id = r.array("ack tx id")?;
                let status = r.u8("ack status")?;
                let reason = r.u8("ack reason")?;
                let status = TxStatus::from_code(status, reason)?;
                let ip = Ipv4Addr::from(r.array::<4>("ack observed ip")?);
                let port = r.u16("ack observed port")?;
                Message::TxAck {
                    tx_id,
                    status,
                    observed: SocketAddrV4::new(ip, port),
                }
            }
            msg_type::QUERY => {
                let request_id = r.u32("query request id")?;
                let hash_addr = r.array("query hash address")?;
                let flags = r.u8("query flags")?;
                check_flags(flags, FLAG0, "query flags")?;
                Message::Query {
                    request_id,
                    hash_addr,
                    want_unconfirmed: flags & FLAG0 != 0,
                }
            }
            msg_type::REPLY => {
                let request_id = r.u32("reply request id")?;
                let hash_addr = r.array("reply hash address")?;
                let flags = r.u8("reply flags")?;
                check_flags(flags, FLAG0 | FLAG1 | FLAG2 | FLAG3, "reply flags")?;
                if flags & FLAG3 != 0 && flags & FLAG1 == 0 {
                    return Err(WireError::BadValue {
                        field: "reply flags (a proof needs a tx)",
                        value: u64::from(flags),
                    });
                }
                let height = r.u64("reply height")?;
                let confirmations = r.u32("reply confirmations")?;
                let tx = if flags & FLAG1 != 0 {
                    Some(ToallTx::read(&mut r)?)
                } else {
                    None
                };
                let unconfirmed = if flags & FLAG2 != 0 {
                    Some(ToallTx::read(&mut r)?)
                } else {
                    None
                };
                let proof = if flags & FLAG3 != 0 {
                    Some(TxProof::read(&mut r)?)
                } else {
                    None
                };
                Message::Reply {
                    request_id,
                    hash_addr,
                    found: flags & FLAG0 != 0,
                    height,
                    confirmations,
                    tx,
                    unconfirmed,
                    proof,
                }
            }
            msg_type::BLOCK_PART => {
                let block_hash = r.array("block part hash")?;
                let part = r.u16("block part index")?;
                let parts = r.u16("block part count")?;
                if parts == 0 {
                    return Err(WireError::BadValue {
                        field: "block part count",
                        value: 0,
                    });
                }
                if part >= parts {
                    return Err(WireError::BadValue {
                        field: "block part index (must be below the count)",
                        value: u64::from(part),
                    });
                }
                let len = usize::from(r.u16("block part length")?);
                if len > MAX_PART_DATA {
                    return Err(WireError::OverBound {
                        field: "block part length",
                        len,
                        max: MAX_PART_DATA,
                    });
                }
                let data = r.bytes(len, "block part data")?.to_vec();
                Message::BlockPart(BlockPart {
                    block_hash,
                    part,
                    parts,
                    data,
                })
            }
            msg_type::GET_BLOCK => Message::GetBlock {
                block_hash: r.array("get block hash")?,
            },
            msg_type::TIP_ANNOUNCE => Message::TipAnnounce {
                tip_hash: r.array("tip hash")?,
                height: r.u64("tip height")?,
                total_work: r.array("tip total work")?,
            },
            msg_type::SESSION_REQUEST => Message::SessionRequest {
                caller: r.array("session request caller")?,
                callee: r.array("session request callee")?,
                nonce: r.array("session request nonce")?,
                ssrc: r.u32("session request ssrc")?,
                ephemeral: read_y(&mut r, "session request ephemeral")?,
                next: read_y(&mut r, "session request next ephemeral")?,
                public_key: r.array("session request public key")?,
                signature: r.array("session request signature")?,
            },
            msg_type::SESSION_RESPONSE => Message::SessionResponse {
                caller: r.array("session response caller")?,
                callee: r.array("session response callee")?,
                nonce: r.array("session response nonce")?,
                ssrc: r.u32("session response ssrc")?,
                ephemeral: read_y(&mut r, "session response ephemeral")?,
                next: read_y(&mut r, "session response next ephemeral")?,
                confirm: r.array("session response confirm")?,
            },
            msg_type::HANDOVER_REQUEST => {
                let sender = r.array("handover sender")?;
                let counter = r.u64("handover counter")?;
                let private_ip = Ipv4Addr::from(r.array::<4>("handover private ip")?);
                let private_port = r.u16("handover private port")?;
                let nat_ip = Ipv4Addr::from(r.array::<4>("handover nat ip")?);
                let nat_port = r.u16("handover nat port")?;
                Message::HandoverRequest {
                    sender,
                    counter,
                    private: SocketAddrV4::new(private_ip, private_port),
                    nat: SocketAddrV4::new(nat_ip, nat_port),
                    mac: r.array("handover mac")?,
                }
            }
            msg_type::KEY_RENEWAL => Message::KeyRenewal {
                sender: r.array("key renewal sender")?,
                counter: r.u64("key renewal counter")?,
                y: read_y(&mut r, "key renewal y")?,
                mac: r.array("key renewal mac")?,
            },
            msg_type::KEY_RENEWAL_REPLY => Message::KeyRenewalReply {
                sender: r.array("key renewal reply sender")?,
                counter: r.u64("key renewal reply counter")?,
                y: read_y(&mut r, "key renewal reply y")?,
                mac: r.array("key renewal reply mac")?,
            },
            msg_type::PATH_CHALLENGE => Message::PathChallenge {
                sender: r.array("path challenge sender")?,
                data: r.array("path challenge data")?,
                mac: r.array("path challenge mac")?,
            },
            msg_type::PATH_RESPONSE => Message::PathResponse {
                sender: r.array("path response sender")?,
                data: r.array("path response data")?,
                mac: r.array("path response mac")?,
            },
            msg_type::CONTROL_ACK => Message::ControlAck {
                sender: r.array("control ack sender")?,
                counter: r.u64("control ack counter")?,
                mac: r.array("control ack mac")?,
            },
            msg_type::HEADERS => Message::Headers {
                headers: proof::read_list(&mut r, 0, MAX_HEADERS, "headers count")?,
            },
            msg_type::GET_HEADERS => Message::GetHeaders {
                locator: proof::read_list(&mut r, 1, MAX_LOCATOR, "locator count")?,
            },
            other => return Err(WireError::UnknownType(other)),
        };
        r.finish()?;
        Ok(msg)
    }

    /// Encoded length.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN
            + match self {
                Message::TxSubmit { tx } | Message::TxRelay { tx } => tx.buffer_len(),
                Message::TxAck { .. } => 40,
                Message::Query { .. } => 37,
                Message::Reply {
                    tx,
                    unconfirmed,
                    proof,
                    ..
                } => {
                    49 + tx.as_ref().map_or(0, ToallTx::buffer_len)
                        + unconfirmed.as_ref().map_or(0, ToallTx::buffer_len)
                        + proof
                            .as_ref()
                            .filter(|_| tx.is_some())
                            .map_or(0, TxProof::buffer_len)
                }
                Message::BlockPart(p) => 38 + p.data.len().min(MAX_PART_DATA),
                Message::GetBlock { .. } => 32,
                Message::TipAnnounce { .. } => 72,
                Message::SessionRequest {
                    ephemeral, next, ..
                } => 180 + y_field_len(ephemeral) + y_field_len(next),
                Message::SessionResponse {
                    ephemeral, next, ..
                } => 100 + y_field_len(ephemeral) + y_field_len(next),
                Message::HandoverRequest { .. } => 68,
                Message::KeyRenewal { y, .. } | Message::KeyRenewalReply { y, .. } => {
                    56 + y_field_len(y)
                }
                Message::ControlAck { .. } => 56,
                Message::PathChallenge { .. } | Message::PathResponse { .. } => 64,
                Message::Headers { headers } => {
                    1 + BLOCK_HEADER_LEN * headers.len().min(MAX_HEADERS)
                }
                Message::GetHeaders { locator } => 1 + 32 * locator.len().min(MAX_LOCATOR),
            }
    }

    /// The datagram. A BlockPart's data beyond [`MAX_PART_DATA`], a DH value beyond
    /// [`MAX_Y_LEN`], and lists beyond their bounds are cut (they could not be parsed back);
    /// nothing here makes any of them. An empty GetHeaders locator does not parse back.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(self.buffer_len());
        b.extend_from_slice(&MAGIC);
        b.push(VERSION);
        b.push(self.type_code());
        match self {
            Message::TxSubmit { tx } | Message::TxRelay { tx } => tx.write(&mut b),
            Message::TxAck {
                tx_id,
                status,
                observed,
            } => {
                let (code, reason) = status.code();
                b.extend_from_slice(tx_id);
                b.push(code);
                b.push(reason);
                b.extend_from_slice(&observed.ip().octets());
                b.extend_from_slice(&observed.port().to_be_bytes());
            }
            Message::Query {
                request_id,
                hash_addr,
                want_unconfirmed,
            } => {
                b.extend_from_slice(&request_id.to_be_bytes());
                b.extend_from_slice(hash_addr);
                b.push(if *want_unconfirmed { FLAG0 } else { 0 });
            }
            Message::Reply {
                request_id,
                hash_addr,
                found,
                height,
                confirmations,
                tx,
                unconfirmed,
                proof,
            } => {
                // A proof without its Tx would not parse back: it is left out.
                let proof = proof.as_ref().filter(|_| tx.is_some());
                let mut flags = 0;
                if proof.is_some() {
                    flags |= FLAG3;
                }
                if *found {
                    flags |= FLAG0;
                }
                if tx.is_some() {
                    flags |= FLAG1;
                }
                if unconfirmed.is_some() {
                    flags |= FLAG2;
                }
                b.extend_from_slice(&request_id.to_be_bytes());
                b.extend_from_slice(hash_addr);
                b.push(flags);
                b.extend_from_slice(&height.to_be_bytes());
                b.extend_from_slice(&confirmations.to_be_bytes());
                if let Some(tx) = tx {
                    tx.write(&mut b);
                }
                if let Some(tx) = unconfirmed {
                    tx.write(&mut b);
                }
                if let Some(p) = proof {
                    p.write(&mut b);
                }
            }
            Message::BlockPart(p) => {
                let data = p.data.get(..MAX_PART_DATA).unwrap_or(&p.data);
                b.extend_from_slice(&p.block_hash);
                b.extend_from_slice(&p.part.to_be_bytes());
                b.extend_from_slice(&p.parts.to_be_bytes());
                // data.len() <= MAX_PART_DATA < u16::MAX
                b.extend_from_slice(&(data.len() as u16).to_be_bytes());
                b.extend_from_slice(data);
            }
            Message::GetBlock { block_hash } => b.extend_from_slice(block_hash),
            Message::TipAnnounce {
                tip_hash,
                height,
                total_work,
            } => {
                b.extend_from_slice(tip_hash);
                b.extend_from_slice(&height.to_be_bytes());
                b.extend_from_slice(total_work);
            }
            Message::SessionRequest {
                caller,
                callee,
                nonce,
                ssrc,
                ephemeral,
                next,
                public_key,
                signature,
            } => {
                b.extend_from_slice(caller);
                b.extend_from_slice(callee);
                b.extend_from_slice(nonce);
                b.extend_from_slice(&ssrc.to_be_bytes());
                write_y(&mut b, ephemeral);
                write_y(&mut b, next);
                b.extend_from_slice(public_key);
                b.extend_from_slice(signature);
            }
            Message::SessionResponse {
                caller,
                callee,
                nonce,
                ssrc,
                ephemeral,
                next,
                confirm,
            } => {
                b.extend_from_slice(caller);
                b.extend_from_slice(callee);
                b.extend_from_slice(nonce);
                b.extend_from_slice(&ssrc.to_be_bytes());
                write_y(&mut b, ephemeral);
                write_y(&mut b, next);
                b.extend_from_slice(confirm);
            }
            Message::HandoverRequest {
                sender,
                counter,
                private,
                nat,
                mac,
            } => {
                b.extend_from_slice(sender);
                b.extend_from_slice(&counter.to_be_bytes());
                b.extend_from_slice(&private.ip().octets());
                b.extend_from_slice(&private.port().to_be_bytes());
                b.extend_from_slice(&nat.ip().octets());
                b.extend_from_slice(&nat.port().to_be_bytes());
                b.extend_from_slice(mac);
            }
            Message::KeyRenewal {
                sender,
                counter,
                y,
                mac,
            }
            | Message::KeyRenewalReply {
                sender,
                counter,
                y,
                mac,
            } => {
                b.extend_from_slice(sender);
                b.extend_from_slice(&counter.to_be_bytes());
                write_y(&mut b, y);
                b.extend_from_slice(mac);
            }
            Message::PathChallenge { sender, data, mac }
            | Message::PathResponse { sender, data, mac } => {
                b.extend_from_slice(sender);
                b.extend_from_slice(data);
                b.extend_from_slice(mac);
            }
            Message::ControlAck {
                sender,
                counter,
                mac,
            } => {
                b.extend_from_slice(sender);
                b.extend_from_slice(&counter.to_be_bytes());
                b.extend_from_slice(mac);
            }
            Message::Headers { headers } => proof::write_list(&mut b, headers, MAX_HEADERS),
            Message::GetHeaders { locator } => proof::write_list(&mut b, locator, MAX_LOCATOR),
        }
        b
    }

    /// Writes the datagram into `buf`; returns its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        copy_into(&self.to_bytes(), buf)
    }
}

/// The bytes a message's MAC (or a SessionResponse's `confirm`) covers: the whole encoded
/// datagram, header included, with the 16-byte tag field zeroed. Zeroing rather than
/// cutting keeps the tag's position fixed, so the MAC also covers the type code and every
/// length. Messages without a tag give their plain encoding.
pub fn mac_input(msg: &Message) -> Vec<u8> {
    let mut bytes = msg.to_bytes();
    let has_tag = matches!(
        msg,
        Message::SessionResponse { .. }
            | Message::HandoverRequest { .. }
            | Message::KeyRenewal { .. }
            | Message::ControlAck { .. }
            | Message::KeyRenewalReply { .. }
            | Message::PathChallenge { .. }
            | Message::PathResponse { .. }
    );
    if has_tag {
        // The tag is the last field of each of these.
        let start = bytes.len().saturating_sub(MAC_LEN);
        bytes[start..].fill(0);
    }
    bytes
}

/// The bytes a Session Request's signature covers: [`SESSION_REQUEST_LABEL`], then the whole
/// encoded datagram without its last [`SIGNATURE_LEN`] bytes (the signature). Covers the
/// header, both hash addresses, nonce, SSRC, both DH values and the public key. Other
/// messages give their plain encoding.
pub fn signing_input(msg: &Message) -> Vec<u8> {
    let bytes = msg.to_bytes();
    let end = if matches!(msg, Message::SessionRequest { .. }) {
        bytes.len().saturating_sub(SIGNATURE_LEN)
    } else {
        bytes.len()
    };
    let mut out = Vec::with_capacity(SESSION_REQUEST_LABEL.len() + end);
    out.extend_from_slice(SESSION_REQUEST_LABEL);
    out.extend_from_slice(&bytes[..end]);
    out
}

/// A length-prefixed DH value: `len u16` then the bytes, `len <= MAX_Y_LEN`.
fn read_y(r: &mut Reader<'_>, field: &'static str) -> Result<Vec<u8>, WireError> {
    let len = usize::from(r.u16(field)?);
    if len > MAX_Y_LEN {
        return Err(WireError::OverBound {
            field,
            len,
            max: MAX_Y_LEN,
        });
    }
    Ok(r.bytes(len, field)?.to_vec())
}

/// Encoded length of a DH value field (the value cut at [`MAX_Y_LEN`], plus its length).
fn y_field_len(y: &[u8]) -> usize {
    2 + y.len().min(MAX_Y_LEN)
}

fn write_y(b: &mut Vec<u8>, y: &[u8]) {
    let y = y.get(..MAX_Y_LEN).unwrap_or(y);
    // y.len() <= MAX_Y_LEN < u16::MAX
    b.extend_from_slice(&(y.len() as u16).to_be_bytes());
    b.extend_from_slice(y);
}

/// Largest block [`split_block`] can carry: `u16::MAX` parts of [`MAX_PART_DATA`] bytes.
pub const MAX_BLOCK_BYTES: usize = u16::MAX as usize * MAX_PART_DATA;

/// Cuts a block's bytes into [`Message::BlockPart`]s of at most [`MAX_PART_DATA`] bytes, in
/// order. An empty block is one empty part. A block over [`MAX_BLOCK_BYTES`] (78 MB) is an
/// error rather than a silently cut block.
pub fn split_block(block_hash: [u8; 32], bytes: &[u8]) -> Result<Vec<Message>, WireError> {
    let parts = bytes.len().div_ceil(MAX_PART_DATA).max(1);
    let parts = u16::try_from(parts).map_err(|_| WireError::OverBound {
        field: "block length",
        len: bytes.len(),
        max: MAX_BLOCK_BYTES,
    })?;
    if bytes.is_empty() {
        return Ok(vec![Message::BlockPart(BlockPart {
            block_hash,
            part: 0,
            parts: 1,
            data: Vec::new(),
        })]);
    }
    Ok(bytes
        .chunks(MAX_PART_DATA)
        .zip(0u16..)
        .map(|(chunk, part)| {
            Message::BlockPart(BlockPart {
                block_hash,
                part,
                parts,
                data: chunk.to_vec(),
            })
        })
        .collect())
}

#[cfg(test)]
mod tests;
