//! The testbed's site-specific DHCP options (RFC 2132 site range 224..=254).
//!
//! BINFM hands a joining end node everything it needs in the DHCP exchange itself (paper,
//! Figure 3): the NAT's public address, and (our addition) the super nodes to talk to, nearest
//! first. Carrying them in DHCP avoids an extra STUN or discovery round trip.
//!
//! ```text
//! Option 224, NAT public address (exactly 4 bytes of data):
//!  0      1      2      3      4      5
//! +------+------+------+------+------+------+
//! | 224  |  4   |   IPv4 address (BE)       |
//! +------+------+------+------+------+------+
//!
//! Option 225, super nodes (1..=42 entries of 6 bytes; nearest first, the rest fallbacks):
//! +------+------+------ ... ------+--------+------ ... ------+--------+---
//! | 225  | 6*n  | IPv4 address 1  | port 1 | IPv4 address 2  | port 2 | ...
//! +------+------+------ ... ------+--------+------ ... ------+--------+---
//! ```
//!
//! 42 entries (252 bytes) is the most that fits one option without RFC 3396 splitting, which
//! dhcproto does not do for unknown codes on encode.
//!
//! dhcproto decodes both codes as [`DhcpOption::Unknown`]; the raw parsers here are total and
//! [`SiteOptions::parse`] turns a bad option into an [`OptionError`] naming the option.

use std::net::{Ipv4Addr, SocketAddrV4};

use dhcproto::Decodable;
use dhcproto::v4::{DhcpOption, DhcpOptions, Message, OptionCode, UnknownOption};

/// Option code: the NAT's public IPv4 address (4 bytes).
pub const OPT_NAT_PUBLIC_ADDR: u8 = 224;
/// Option code: super nodes, 6-byte entries (IPv4 address, UDP port; big-endian).
pub const OPT_SUPER_NODES: u8 = 225;
/// Data length of [`OPT_NAT_PUBLIC_ADDR`].
pub const NAT_PUBLIC_ADDR_LEN: usize = 4;
/// Length of one [`OPT_SUPER_NODES`] entry.
pub const SUPER_NODE_ENTRY_LEN: usize = 6;
/// Most entries [`OPT_SUPER_NODES`] may carry (252 bytes: one option, no splitting).
pub const MAX_SUPER_NODES: usize = 42;

/// What is wrong with one of our site options.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionError {
    /// The data length does not fit the option's layout.
    #[error("DHCP option {code}: data is {len} bytes, expected {expected}")]
    BadLength {
        /// Option code.
        code: u8,
        /// Length found.
        len: usize,
        /// Human-readable expectation.
        expected: &'static str,
    },
    /// The super node list is present but empty.
    #[error("DHCP option {code}: no entries (at least one super node is required)")]
    Empty {
        /// Option code.
        code: u8,
    },
    /// More super nodes than one option can carry.
    #[error("DHCP option {code}: {count} entries, at most {max} allowed")]
    TooMany {
        /// Option code.
        code: u8,
        /// Entries found.
        count: usize,
        /// Limit.
        max: usize,
    },
    /// An address that cannot be used as a destination (0.0.0.0 or 255.255.255.255).
    #[error("DHCP option {code}: entry {index} has unusable address {addr}")]
    BadAddress {
        /// Option code.
        code: u8,
        /// Entry index (0 for option 224).
        index: usize,
        /// The address found.
        addr: Ipv4Addr,
    },
    /// A super node entry with UDP port 0.
    #[error("DHCP option {code}: entry {index} has UDP port 0")]
    ZeroPort {
        /// Option code.
        code: u8,
        /// Entry index.
        index: usize,
    },
    /// dhcproto decoded the code as something other than raw bytes (a newer dhcproto that
    /// knows the code); we refuse rather than guess.
    #[error("DHCP option {code}: not decoded as raw bytes by dhcproto")]
    NotRaw {
        /// Option code.
        code: u8,
    },
}

/// Why a datagram is not a DHCP message we can decode safely.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// Shorter than the fixed header plus the magic cookie (240 bytes).
    #[error("DHCP message: {len} bytes, shorter than the 240-byte header")]
    Truncated {
        /// Length found.
        len: usize,
    },
    /// The magic cookie is not 99.130.83.99 (RFC 2131 section 3).
    #[error("DHCP message: bad magic cookie {0:02x?}")]
    BadMagic([u8; 4]),
    /// `hlen` above 16: dhcproto 0.15 would panic slicing `chaddr`.
    #[error("DHCP message: hardware address length {0} above 16")]
    BadHlen(u8),
    /// An option length that dhcproto 0.15 only checks with `debug_assert!` (or underflows on).
    #[error("DHCP message: option {code} has invalid length {len}")]
    OptionLength {
        /// Option code.
        code: u8,
        /// Total data length (after RFC 3396 concatenation).
        len: usize,
    },
    /// dhcproto rejected the message.
    #[error("DHCP message: {0}")]
    Decode(String),
}

/// Offset of the options: fixed header (236 bytes) plus the magic cookie.
pub const OPTIONS_OFFSET: usize = 240;
/// The DHCP magic cookie.
pub const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];

/// Lengths dhcproto 0.15 trusts without a real check (debug_assert or `len - n`).
fn option_len_ok(code: u8, len: usize) -> bool {
    match code {
        80 => len == 0,        // Rapid Commit
        81 => len >= 3,        // Client FQDN: `len - 3`
        94 => len == 3,        // Client Network Interface
        151 => len >= 1,       // BLQ status code: `len - 1`
        152..=155 => len == 4, // BLQ times
        _ => true,
    }
}

/// Decodes a DHCP message without ever panicking.
///
/// dhcproto 0.15's decoder is not total: a `hlen` above 16 makes `Message::chaddr` panic, and
/// a few option lengths are only `debug_assert!`ed. This checks those first (walking the
/// options the way dhcproto does, concatenating consecutive same-code options per RFC 3396)
/// and then hands the bytes to dhcproto. Every role decodes through here.
pub fn decode_message(data: &[u8]) -> Result<Message, MessageError> {
    if data.len() < OPTIONS_OFFSET {
        return Err(MessageError::Truncated { len: data.len() });
    }
    let hlen = data.get(2).copied().unwrap_or(0);
    if hlen > 16 {
        return Err(MessageError::BadHlen(hlen));
    }
    let mut magic = [0u8; 4];
    magic.copy_from_slice(data.get(236..OPTIONS_OFFSET).unwrap_or(&[0; 4]));
    if magic != MAGIC_COOKIE {
        return Err(MessageError::BadMagic(magic));
    }
    let check = |group: Option<(u8, usize)>| match group {
        Some((code, len)) if !option_len_ok(code, len) => {
            Err(MessageError::OptionLength { code, len })
        }
        _ => Ok(()),
    };
    let mut i = OPTIONS_OFFSET;
    let mut group: Option<(u8, usize)> = None;
    while let Some(&code) = data.get(i) {
        if code == 0 || code == 255 {
            check(group.take())?;
            if code == 255 {
                break;
            }
            i += 1;
            continue;
        }
        let Some(&len) = data.get(i + 1) else { break };
        let len = usize::from(len);
        i += 2 + len;
        group = match group {
            Some((c, total)) if c == code => Some((c, total + len)),
            other => {
                check(other)?;
                Some((code, len))
            }
        };
    }
    check(group)?;
    Message::from_bytes(data).map_err(|e| MessageError::Decode(e.to_string()))
}

fn usable(addr: Ipv4Addr) -> bool {
    !addr.is_unspecified() && !addr.is_broadcast()
}

/// Parses the data of option 224. Total: any input gives a value or an error.
pub fn parse_nat_public(data: &[u8]) -> Result<Ipv4Addr, OptionError> {
    let bytes: [u8; NAT_PUBLIC_ADDR_LEN] = data.try_into().map_err(|_| OptionError::BadLength {
        code: OPT_NAT_PUBLIC_ADDR,
        len: data.len(),
        expected: "exactly 4",
    })?;
    let addr = Ipv4Addr::from(bytes);
    if !usable(addr) {
        return Err(OptionError::BadAddress {
            code: OPT_NAT_PUBLIC_ADDR,
            index: 0,
            addr,
        });
    }
    Ok(addr)
}

/// Parses the data of option 225. Total: any input gives a value or an error.
pub fn parse_super_nodes(data: &[u8]) -> Result<Vec<SocketAddrV4>, OptionError> {
    let code = OPT_SUPER_NODES;
    if data.is_empty() {
        return Err(OptionError::Empty { code });
    }
    if !data.len().is_multiple_of(SUPER_NODE_ENTRY_LEN) {
        return Err(OptionError::BadLength {
            code,
            len: data.len(),
            expected: "a multiple of 6",
        });
    }
    let count = data.len() / SUPER_NODE_ENTRY_LEN;
    if count > MAX_SUPER_NODES {
        return Err(OptionError::TooMany {
            code,
            count,
            max: MAX_SUPER_NODES,
        });
    }
    let mut out = Vec::with_capacity(count);
    for (index, entry) in data.chunks_exact(SUPER_NODE_ENTRY_LEN).enumerate() {
        let (addr, port) = match entry {
            [a, b, c, d, p0, p1] => (
                Ipv4Addr::new(*a, *b, *c, *d),
                u16::from_be_bytes([*p0, *p1]),
            ),
            // chunks_exact only yields 6-byte slices; kept total anyway.
            _ => {
                return Err(OptionError::BadLength {
                    code,
                    len: data.len(),
                    expected: "a multiple of 6",
                });
            }
        };
        if !usable(addr) {
            return Err(OptionError::BadAddress { code, index, addr });
        }
        if port == 0 {
            return Err(OptionError::ZeroPort { code, index });
        }
        out.push(SocketAddrV4::new(addr, port));
    }
    Ok(out)
}

/// Data of option 224.
pub fn emit_nat_public(addr: Ipv4Addr) -> [u8; NAT_PUBLIC_ADDR_LEN] {
    addr.octets()
}

/// Data of option 225. Takes at most [`MAX_SUPER_NODES`] entries (the nearest ones; the tail
/// is only fallbacks) so the option always fits.
pub fn emit_super_nodes(nodes: &[SocketAddrV4]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nodes.len().min(MAX_SUPER_NODES) * SUPER_NODE_ENTRY_LEN);
    for node in nodes.iter().take(MAX_SUPER_NODES) {
        out.extend_from_slice(&node.ip().octets());
        out.extend_from_slice(&node.port().to_be_bytes());
    }
    out
}

/// Our site options as carried in a DHCPOFFER/DHCPACK.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SiteOptions {
    /// The NAT's public address (option 224), if the segment is behind a NAT.
    pub nat_public: Option<Ipv4Addr>,
    /// Super nodes (option 225), nearest first; empty when not configured.
    pub super_nodes: Vec<SocketAddrV4>,
}

fn raw_option(opts: &DhcpOptions, code: u8) -> Result<Option<&[u8]>, OptionError> {
    match opts.get(OptionCode::from(code)) {
        None => Ok(None),
        Some(DhcpOption::Unknown(raw)) => Ok(Some(raw.data())),
        Some(_) => Err(OptionError::NotRaw { code }),
    }
}

impl SiteOptions {
    /// Reads options 224 and 225 from decoded DHCP options; absent options stay empty.
    pub fn parse(opts: &DhcpOptions) -> Result<SiteOptions, OptionError> {
        let nat_public = raw_option(opts, OPT_NAT_PUBLIC_ADDR)?
            .map(parse_nat_public)
            .transpose()?;
        let super_nodes = raw_option(opts, OPT_SUPER_NODES)?
            .map(parse_super_nodes)
            .transpose()?
            .unwrap_or_default();
        Ok(SiteOptions {
            nat_public,
            super_nodes,
        })
    }

    /// Writes exactly these site options: sets the configured ones and removes any stale
    /// 224/225 already in `opts`. An empty super node list emits no option 225 (the option
    /// must not be empty); more than [`MAX_SUPER_NODES`] are cut to the nearest ones.
    pub fn emit(&self, opts: &mut DhcpOptions) {
        let nat_code = OptionCode::from(OPT_NAT_PUBLIC_ADDR);
        let sn_code = OptionCode::from(OPT_SUPER_NODES);
        opts.remove(nat_code);
        opts.remove(sn_code);
        if let Some(addr) = self.nat_public {
            opts.insert(DhcpOption::Unknown(UnknownOption::new(
                nat_code,
                emit_nat_public(addr).to_vec(),
            )));
        }
        if !self.super_nodes.is_empty() {
            opts.insert(DhcpOption::Unknown(UnknownOption::new(
                sn_code,
                emit_super_nodes(&self.super_nodes),
            )));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dhcproto::Encodable;
    use dhcproto::v4::{MessageType, Opcode};
    use proptest::prelude::*;

    /// A complete DHCPOFFER as our server sends it: 10.1.0.100/24 from server 10.1.0.2,
    /// router 10.1.0.1, lease 3600 s, NAT public 203.0.113.1, two super nodes on port 8080.
    fn offer_fixture() -> Vec<u8> {
        let mut b = vec![
            0x02, 0x01, 0x06, 0x00, // op=BOOTREPLY, htype=Ethernet, hlen=6, hops=0
            0x39, 0x03, 0xf3, 0x26, // xid
            0x00, 0x00, 0x80, 0x00, // secs=0, flags=broadcast
            0x00, 0x00, 0x00, 0x00, // ciaddr
            0x0a, 0x01, 0x00, 0x64, // yiaddr 10.1.0.100
            0x00, 0x00, 0x00, 0x00, // siaddr
            0x00, 0x00, 0x00, 0x00, // giaddr
            0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, // chaddr 02:00:00:00:00:01 ...
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // ... padded to 16 bytes
        ];
        b.extend_from_slice(&[0u8; 64 + 128]); // sname, file: unused
        b.extend_from_slice(&[
            0x63, 0x82, 0x53, 0x63, // magic cookie
            0x01, 0x04, 0xff, 0xff, 0xff, 0x00, // 1 subnet mask 255.255.255.0
            0x03, 0x04, 0x0a, 0x01, 0x00, 0x01, // 3 router 10.1.0.1
            0x33, 0x04, 0x00, 0x00, 0x0e, 0x10, // 51 lease time 3600
            0x35, 0x01, 0x02, // 53 message type OFFER
            0x36, 0x04, 0x0a, 0x01, 0x00, 0x02, // 54 server id 10.1.0.2
            0x3a, 0x04, 0x00, 0x00, 0x07, 0x08, // 58 T1 1800
            0x3b, 0x04, 0x00, 0x00, 0x0c, 0x4e, // 59 T2 3150
            0xe0, 0x04, 0xcb, 0x00, 0x71, 0x01, // 224 NAT public 203.0.113.1
            0xe1, 0x0c, // 225 super nodes, 2 entries
            0xc6, 0x33, 0x64, 0x0a, 0x1f, 0x90, //   198.51.100.10:8080
            0xc6, 0x33, 0x64, 0x0b, 0x1f, 0x90, //   198.51.100.11:8080
            0xff, // end
        ]);
        b
    }

    fn decode(bytes: &[u8]) -> Message {
        decode_message(bytes).expect("fixture decodes")
    }

    #[test]
    fn decode_message_rejects_what_dhcproto_would_panic_on() {
        let mut bad_hlen = offer_fixture();
        bad_hlen[2] = 17;
        assert_eq!(decode_message(&bad_hlen), Err(MessageError::BadHlen(17)));

        // Option 152 (BLQ base time) with 3 bytes: a debug_assert in dhcproto 0.15.
        let mut bad_opt = header();
        bad_opt.extend_from_slice(&[152, 3, 1, 2, 3, 255]);
        assert_eq!(
            decode_message(&bad_opt),
            Err(MessageError::OptionLength { code: 152, len: 3 })
        );

        // Split across two consecutive options (RFC 3396): 2 + 2 bytes is fine.
        let mut split = header();
        split.extend_from_slice(&[152, 2, 0, 0, 152, 2, 0, 1, 255]);
        assert!(decode_message(&split).is_ok());

        let mut bad_magic = offer_fixture();
        bad_magic[236] = 0;
        assert!(matches!(
            decode_message(&bad_magic),
            Err(MessageError::BadMagic(_))
        ));
        assert_eq!(
            decode_message(&[1, 2, 3]),
            Err(MessageError::Truncated { len: 3 })
        );
    }

    #[test]
    fn offer_fixture_decodes_and_reencodes_identically() {
        let bytes = offer_fixture();
        let msg = decode(&bytes);
        assert_eq!(msg.opcode(), Opcode::BootReply);
        assert_eq!(msg.xid(), 0x3903_f326);
        assert_eq!(msg.yiaddr(), Ipv4Addr::new(10, 1, 0, 100));
        assert_eq!(msg.chaddr(), &[2, 0, 0, 0, 0, 1]);
        assert_eq!(msg.opts().msg_type(), Some(MessageType::Offer));
        let site = SiteOptions::parse(msg.opts()).expect("site options parse");
        assert_eq!(site.nat_public, Some(Ipv4Addr::new(203, 0, 113, 1)));
        assert_eq!(
            site.super_nodes,
            vec![
                SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 10), 8080),
                SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 11), 8080),
            ]
        );
        assert_eq!(msg.to_vec().expect("encodes"), bytes);
    }

    #[test]
    fn emit_then_encode_matches_fixture() {
        let mut msg = decode(&offer_fixture());
        let site = SiteOptions::parse(msg.opts()).expect("parse");
        // Rebuild the site options from the struct: the encoding must not change.
        msg.opts_mut().remove(OptionCode::from(OPT_NAT_PUBLIC_ADDR));
        msg.opts_mut().remove(OptionCode::from(OPT_SUPER_NODES));
        site.emit(msg.opts_mut());
        assert_eq!(msg.to_vec().expect("encodes"), offer_fixture());
    }

    #[test]
    fn absent_options_parse_to_empty() {
        assert_eq!(
            SiteOptions::parse(&DhcpOptions::new()),
            Ok(SiteOptions::default())
        );
    }

    #[test]
    fn emit_removes_stale_and_skips_empty() {
        let mut opts = DhcpOptions::new();
        SiteOptions {
            nat_public: Some(Ipv4Addr::new(192, 0, 2, 1)),
            super_nodes: vec![SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 9), 9000)],
        }
        .emit(&mut opts);
        assert_eq!(opts.len(), 2);
        SiteOptions::default().emit(&mut opts);
        assert!(opts.is_empty());
    }

    #[test]
    fn emit_caps_super_nodes() {
        let nodes: Vec<_> = (1..=50u8)
            .map(|i| SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, i), 1000))
            .collect();
        let data = emit_super_nodes(&nodes);
        assert_eq!(data.len(), 252);
        assert_eq!(parse_super_nodes(&data).expect("parse")[..], nodes[..42]);
    }

    #[test]
    fn nat_public_errors() {
        assert_eq!(
            parse_nat_public(&[1, 2, 3]),
            Err(OptionError::BadLength {
                code: 224,
                len: 3,
                expected: "exactly 4"
            })
        );
        assert!(matches!(
            parse_nat_public(&[0, 0, 0, 0]),
            Err(OptionError::BadAddress { code: 224, .. })
        ));
        assert!(parse_nat_public(&[]).is_err());
        assert!(parse_nat_public(&[1, 2, 3, 4, 5]).is_err());
    }

    #[test]
    fn super_node_errors() {
        assert_eq!(
            parse_super_nodes(&[]),
            Err(OptionError::Empty { code: 225 })
        );
        assert!(matches!(
            parse_super_nodes(&[10, 0, 0, 1, 0x1f]),
            Err(OptionError::BadLength {
                code: 225,
                len: 5,
                ..
            })
        ));
        assert_eq!(
            parse_super_nodes(&[0u8; 43 * 6].map(|_| 1)),
            Err(OptionError::TooMany {
                code: 225,
                count: 43,
                max: 42
            })
        );
        assert_eq!(
            parse_super_nodes(&[10, 0, 0, 1, 0x1f, 0x90, 10, 0, 0, 2, 0, 0]),
            Err(OptionError::ZeroPort {
                code: 225,
                index: 1
            })
        );
        assert!(matches!(
            parse_super_nodes(&[255, 255, 255, 255, 0, 1]),
            Err(OptionError::BadAddress { index: 0, .. })
        ));
    }

    #[test]
    fn error_messages_name_the_option() {
        let mut opts = DhcpOptions::new();
        opts.insert(DhcpOption::Unknown(UnknownOption::new(
            OptionCode::from(OPT_SUPER_NODES),
            vec![1, 2, 3],
        )));
        let err = SiteOptions::parse(&opts).expect_err("bad length");
        assert_eq!(
            err.to_string(),
            "DHCP option 225: data is 3 bytes, expected a multiple of 6"
        );
    }

    /// A valid BOOTREPLY header (236 bytes) plus the magic cookie, for fuzzing the options.
    fn header() -> Vec<u8> {
        let mut b = offer_fixture();
        b.truncate(240);
        b
    }

    fn arb_site() -> impl Strategy<Value = SiteOptions> {
        let addr = any::<u32>()
            .prop_map(Ipv4Addr::from)
            .prop_filter("usable", |a| usable(*a));
        (
            proptest::option::of(addr.clone()),
            proptest::collection::vec((addr, 1..=u16::MAX), 0..=MAX_SUPER_NODES),
        )
            .prop_map(|(nat_public, nodes)| SiteOptions {
                nat_public,
                super_nodes: nodes
                    .into_iter()
                    .map(|(a, p)| SocketAddrV4::new(a, p))
                    .collect(),
            })
    }

    proptest! {
        #[test]
        fn raw_parsers_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse_nat_public(&data);
            let _ = parse_super_nodes(&data);
        }

        #[test]
        fn decode_and_parse_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Ok(msg) = decode_message(&data) {
                let _ = msg.chaddr();
                let _ = msg.opts().msg_type();
                let _ = SiteOptions::parse(msg.opts());
            }
        }

        #[test]
        fn options_after_valid_header_never_panic(
            opts in proptest::collection::vec(any::<u8>(), 0..600),
            code in prop_oneof![Just(OPT_NAT_PUBLIC_ADDR), Just(OPT_SUPER_NODES)],
            len in any::<u8>(),
        ) {
            // Half structured: one of our codes with an arbitrary length byte, then noise.
            let mut data = header();
            data.extend_from_slice(&[code, len]);
            data.extend_from_slice(&opts);
            if let Ok(msg) = decode_message(&data) {
                let _ = msg.chaddr();
                let _ = msg.opts().msg_type();
                let _ = SiteOptions::parse(msg.opts());
            }
        }

        #[test]
        fn well_formed_tlvs_never_panic(
            tlvs in proptest::collection::vec(
                (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..10)),
                0..40,
            ),
        ) {
            // Correctly framed options with arbitrary codes and contents reach every
            // option decoder in dhcproto.
            let mut data = header();
            for (code, value) in &tlvs {
                data.push(*code);
                if *code != 0 && *code != 255 {
                    data.push(value.len() as u8);
                    data.extend_from_slice(value);
                }
            }
            data.push(255);
            if let Ok(msg) = decode_message(&data) {
                let _ = msg.chaddr();
                let _ = msg.opts().msg_type();
                let _ = SiteOptions::parse(msg.opts());
            }
        }

        #[test]
        fn emit_parse_roundtrip(site in arb_site()) {
            let mut msg = decode(&header());
            site.emit(msg.opts_mut());
            let bytes = msg.to_vec().expect("encodes");
            let back = decode_message(&bytes).expect("decodes");
            prop_assert_eq!(SiteOptions::parse(back.opts()), Ok(site));
        }
    }
}
