//! Tests of the vertical model's messages: byte layouts, round trips and malformed inputs.

use super::*;
use proptest::prelude::*;

fn header(kind: u8) -> Vec<u8> {
    vec![b'V', b'M', 1, kind]
}

fn check(msg: VmMessage, bytes: Vec<u8>) {
    assert_eq!(msg.buffer_len(), bytes.len(), "{}", msg.name());
    assert_eq!(msg.to_bytes(), bytes, "{}", msg.name());
    assert_eq!(VmMessage::parse(&bytes), Ok(msg.clone()), "{}", msg.name());
    let mut buf = vec![0u8; bytes.len()];
    assert_eq!(msg.emit(&mut buf), Ok(bytes.len()));
    assert_eq!(buf, bytes);
    assert!(VmMessage::looks_like(&bytes));
    // Every proper prefix is truncated; one more byte is trailing.
    for cut in 0..bytes.len() {
        assert!(
            VmMessage::parse(&bytes[..cut]).is_err(),
            "{} cut {cut}",
            msg.name()
        );
    }
    let mut long = bytes.clone();
    long.push(0);
    assert_eq!(
        VmMessage::parse(&long),
        Err(WireError::TrailingBytes { len: 1 })
    );
}

const C: [u8; 6] = [198, 51, 100, 7, 0x13, 0xc4]; // 198.51.100.7:5060

fn contact() -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 7), 5060)
}

#[test]
fn register_fixtures() {
    for (kind, msg) in [
        (
            1,
            VmMessage::Register {
                id: [0x11; 32],
                contact: contact(),
            },
        ),
        (
            2,
            VmMessage::RegisterAck {
                id: [0x11; 32],
                contact: contact(),
            },
        ),
    ] {
        let mut b = header(kind);
        b.extend_from_slice(&[0x11; 32]);
        b.extend_from_slice(&C);
        assert_eq!(b.len(), 42);
        check(msg, b);
    }
}

#[test]
fn lookup_and_resolve_fixtures() {
    for kind in [3u8, 5] {
        let mut b = header(kind);
        b.extend_from_slice(&[0, 0, 1, 2]);
        b.extend_from_slice(&[0x22; 32]);
        let msg = if kind == 3 {
            VmMessage::Lookup {
                request_id: 258,
                id: [0x22; 32],
            }
        } else {
            VmMessage::Resolve {
                request_id: 258,
                id: [0x22; 32],
            }
        };
        check(msg, b);
    }
    for kind in [4u8, 6] {
        for found in [None, Some(contact())] {
            let mut b = header(kind);
            b.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
            b.extend_from_slice(&[0x22; 32]);
            match found {
                None => b.push(0),
                Some(_) => {
                    b.push(1);
                    b.extend_from_slice(&C);
                }
            }
            let msg = if kind == 4 {
                VmMessage::LookupReply {
                    request_id: 0xdead_beef,
                    id: [0x22; 32],
                    contact: found,
                }
            } else {
                VmMessage::Resolved {
                    request_id: 0xdead_beef,
                    id: [0x22; 32],
                    contact: found,
                }
            };
            check(msg, b);
        }
        let mut b = header(kind);
        b.extend_from_slice(&[0; 36]);
        b.push(2);
        assert_eq!(
            VmMessage::parse(&b),
            Err(WireError::BadValue {
                field: "found flag",
                value: 2
            })
        );
    }
}

#[test]
fn invite_fixtures() {
    for kind in [7u8, 8] {
        let mut b = header(kind);
        b.extend_from_slice(&[0xaa; 32]);
        b.extend_from_slice(&[0xbb; 32]);
        b.extend_from_slice(&C);
        b.extend_from_slice(&[0xca, 0xfe, 0xba, 0xbe]);
        assert_eq!(b.len(), 78);
        let (caller, callee, contact, ssrc) = ([0xaa; 32], [0xbb; 32], contact(), 0xcafe_babe);
        let msg = if kind == 7 {
            VmMessage::Invite {
                caller,
                callee,
                contact,
                ssrc,
            }
        } else {
            VmMessage::InviteOk {
                caller,
                callee,
                contact,
                ssrc,
            }
        };
        assert_eq!(mac_input(&msg), b, "no tag");
        check(msg, b);
    }
}

#[test]
fn key_exchange_fixtures() {
    for kind in [9u8, 10] {
        let mut b = header(kind);
        b.extend_from_slice(&[0xaa; 32]);
        b.extend_from_slice(&[0, 0, 0, 3]);
        b.extend_from_slice(&[0x44; 16]);
        b.extend_from_slice(&[0, 3, 1, 2, 3]);
        b.extend_from_slice(&[0x55; 16]);
        assert_eq!(b.len(), 77);
        let (from, epoch, nonce, y, mac) = ([0xaa; 32], 3, [0x44; 16], vec![1, 2, 3], [0x55; 16]);
        let msg = if kind == 9 {
            VmMessage::KeyExchange {
                from,
                epoch,
                nonce,
                y,
                mac,
            }
        } else {
            VmMessage::KeyExchangeReply {
                from,
                epoch,
                nonce,
                y,
                mac,
            }
        };
        let mut zeroed = b.clone();
        zeroed[61..].fill(0);
        assert_eq!(mac_input(&msg), zeroed);
        check(msg, b);
    }
    // A Y length over the bound is refused before reading it.
    let mut b = header(9);
    b.extend_from_slice(&[0; 52]);
    b.extend_from_slice(&[0x02, 0x01]);
    assert_eq!(
        VmMessage::parse(&b),
        Err(WireError::OverBound {
            field: "y length",
            len: 513,
            max: MAX_Y_LEN
        })
    );
}

#[test]
fn re_invite_fixture() {
    let mut b = header(11);
    b.extend_from_slice(&[0xaa; 32]);
    b.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 9]);
    b.extend_from_slice(&C);
    b.extend_from_slice(&[0x66; 16]);
    assert_eq!(b.len(), 66);
    let msg = VmMessage::ReInvite {
        from: [0xaa; 32],
        counter: 9,
        contact: contact(),
        mac: [0x66; 16],
    };
    let mut zeroed = b.clone();
    zeroed[50..].fill(0);
    assert_eq!(mac_input(&msg), zeroed);
    check(msg, b);
}

#[test]
fn header_errors() {
    assert!(matches!(
        VmMessage::parse(b"BF\x01\x01"),
        Err(WireError::BadValue { .. })
    ));
    assert_eq!(
        VmMessage::parse(b"VM\x02\x01"),
        Err(WireError::BadVersion {
            what: "vertical message",
            version: 2
        })
    );
    assert_eq!(
        VmMessage::parse(b"VM\x01\x00"),
        Err(WireError::UnknownType(0))
    );
    assert_eq!(
        VmMessage::parse(b"VM\x01\x0c"),
        Err(WireError::UnknownType(12))
    );
    assert!(matches!(
        VmMessage::parse(b"V"),
        Err(WireError::Truncated { .. })
    ));
}

fn arb_addr() -> impl Strategy<Value = SocketAddrV4> {
    (any::<u32>(), any::<u16>()).prop_map(|(ip, p)| SocketAddrV4::new(Ipv4Addr::from(ip), p))
}

fn arb_message() -> impl Strategy<Value = VmMessage> {
    let y = proptest::collection::vec(any::<u8>(), 0..=MAX_Y_LEN);
    prop_oneof![
        (any::<Id>(), arb_addr()).prop_map(|(id, contact)| VmMessage::Register { id, contact }),
        (any::<Id>(), arb_addr()).prop_map(|(id, contact)| VmMessage::RegisterAck { id, contact }),
        (any::<u32>(), any::<Id>())
            .prop_map(|(request_id, id)| VmMessage::Lookup { request_id, id }),
        (any::<u32>(), any::<Id>())
            .prop_map(|(request_id, id)| VmMessage::Resolve { request_id, id }),
        (any::<u32>(), any::<Id>(), proptest::option::of(arb_addr())).prop_map(
            |(request_id, id, contact)| VmMessage::LookupReply {
                request_id,
                id,
                contact
            }
        ),
        (any::<u32>(), any::<Id>(), proptest::option::of(arb_addr())).prop_map(
            |(request_id, id, contact)| VmMessage::Resolved {
                request_id,
                id,
                contact
            }
        ),
        (any::<Id>(), any::<Id>(), arb_addr(), any::<u32>()).prop_map(
            |(caller, callee, contact, ssrc)| VmMessage::Invite {
                caller,
                callee,
                contact,
                ssrc
            }
        ),
        (any::<Id>(), any::<Id>(), arb_addr(), any::<u32>()).prop_map(
            |(caller, callee, contact, ssrc)| VmMessage::InviteOk {
                caller,
                callee,
                contact,
                ssrc
            }
        ),
        (
            any::<Id>(),
            any::<u32>(),
            any::<[u8; 16]>(),
            y.clone(),
            any::<[u8; 16]>()
        )
            .prop_map(|(from, epoch, nonce, y, mac)| VmMessage::KeyExchange {
                from,
                epoch,
                nonce,
                y,
                mac
            }),
        (
            any::<Id>(),
            any::<u32>(),
            any::<[u8; 16]>(),
            y,
            any::<[u8; 16]>()
        )
            .prop_map(|(from, epoch, nonce, y, mac)| VmMessage::KeyExchangeReply {
                from,
                epoch,
                nonce,
                y,
                mac
            }),
        (any::<Id>(), any::<u64>(), arb_addr(), any::<[u8; 16]>()).prop_map(
            |(from, counter, contact, mac)| VmMessage::ReInvite {
                from,
                counter,
                contact,
                mac
            }
        ),
    ]
}

proptest! {
    #[test]
    fn roundtrip(msg in arb_message()) {
        let bytes = msg.to_bytes();
        prop_assert_eq!(bytes.len(), msg.buffer_len());
        prop_assert_eq!(VmMessage::parse(&bytes), Ok(msg));
    }

    #[test]
    fn parse_never_panics(data in proptest::collection::vec(any::<u8>(), 0..700)) {
        if let Ok(msg) = VmMessage::parse(&data) {
            prop_assert_eq!(msg.to_bytes(), data);
        }
    }

    #[test]
    fn parse_after_valid_header_never_panics(
        kind in 0u8..=12,
        body in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        let mut data = header(kind);
        data.extend_from_slice(&body);
        if let Ok(msg) = VmMessage::parse(&data) {
            prop_assert_eq!(msg.to_bytes(), data);
        }
    }

    #[test]
    fn mutated_messages_never_panic(msg in arb_message(), idx in any::<usize>(), val in any::<u8>(), cut in any::<usize>()) {
        let mut data = msg.to_bytes();
        let i = idx % data.len();
        data[i] = val;
        data.truncate(cut % (data.len() + 1));
        if let Ok(back) = VmMessage::parse(&data) {
            prop_assert_eq!(back.to_bytes(), data);
        }
    }

    #[test]
    fn mac_input_zeroes_only_the_tag(msg in arb_message()) {
        let bytes = msg.to_bytes();
        let input = mac_input(&msg);
        prop_assert_eq!(input.len(), bytes.len());
        let tagged = matches!(msg, VmMessage::KeyExchange { .. } | VmMessage::KeyExchangeReply { .. } | VmMessage::ReInvite { .. });
        let keep = if tagged { bytes.len() - MAC_LEN } else { bytes.len() };
        prop_assert_eq!(&input[..keep], &bytes[..keep]);
        prop_assert!(input[keep..].iter().all(|&b| b == 0));
    }
}
