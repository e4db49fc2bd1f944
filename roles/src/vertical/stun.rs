//! STUN server (RFC 8489 Binding): answers each Binding request with the address it came from,
//! as XOR-MAPPED-ADDRESS. Stateless: no credentials, no allocation (the vertical model's NAT
//! step needs only the mapping).
//!
//! It also serves RFC 3489 ("classic") clients, as RFC 8489 section 11 (RFC 5389 section
//! 12.2) describes: a request without the magic cookie is answered with MAPPED-ADDRESS and the
//! whole 128-bit transaction id echoed. A request of either dialect with a
//! comprehension-required attribute the server does not understand (a classic client's
//! CHANGE-REQUEST, for one) gets a 420 error response with UNKNOWN-ATTRIBUTES (RFC 8489
//! section 6.3.1, formed per 6.3.1.1; RFC 5389 section 7.3.1).

use super::events::StunEvent;
use crate::{Time, Transmit};
use binfm_stack::wire::stun::{BindingReply, BindingRequest, Class, StunMessage, is_stun};
use std::collections::VecDeque;
use std::net::SocketAddrV4;

/// SOFTWARE attribute of the answers.
pub const SOFTWARE: &str = "binfm vertical stun";
/// Outputs queued at most (the driver drains after every input; this only bounds misuse).
pub const MAX_QUEUE: usize = 1024;

/// Sans-IO STUN server.
#[derive(Debug, Clone)]
pub struct StunServer {
    port: u16,
    out: VecDeque<Transmit>,
    events: VecDeque<StunEvent>,
    /// Binding requests answered with a success response (either dialect).
    pub answered: u64,
    /// Requests answered with 420 (Unknown Attribute).
    pub refused: u64,
    /// Datagrams dropped (not STUN, not a Binding request, malformed).
    pub dropped: u64,
}

impl StunServer {
    /// A server answering from UDP `port` (normally [`binfm_stack::wire::ports::STUN`]).
    pub fn new(port: u16) -> Self {
        StunServer {
            port,
            out: VecDeque::new(),
            events: VecDeque::new(),
            answered: 0,
            refused: 0,
            dropped: 0,
        }
    }

    /// A datagram for the server's port.
    pub fn handle_datagram(
        &mut self,
        _now: Time,
        from: SocketAddrV4,
        _to: SocketAddrV4,
        data: &[u8],
    ) {
        // What the RFC 8489 reader below does not take: a classic request, or a request (of
        // either dialect) with an unknown comprehension-required attribute.
        if let Ok(req) = BindingRequest::parse(data) {
            if let Some(reply) = BindingReply::unknown_attribute(&req) {
                let attributes = req.unknown.iter().map(|k| format!("{k:#06x}")).collect();
                self.answer(
                    from,
                    reply,
                    StunEvent::UnknownAttribute { from, attributes },
                );
                return;
            }
            if req.is_classic() {
                let reply = BindingReply::Mapped {
                    transaction: req.transaction,
                    mapped: from,
                };
                self.answer(from, reply, StunEvent::BindingClassic { mapped: from });
                return;
            }
        }
        let req = match StunMessage::parse(data) {
            Ok(m) if m.class == Class::Request => m,
            Ok(_) => {
                self.drop_one(from, "not a request");
                return;
            }
            Err(e) => {
                let reason = if is_stun(data) {
                    "malformed"
                } else {
                    "not stun"
                };
                self.dropped += 1;
                if self.events.len() < MAX_QUEUE {
                    self.events.push_back(StunEvent::Dropped {
                        from,
                        reason,
                        error: Some(e.to_string()),
                    });
                }
                return;
            }
        };
        if self.out.len() >= MAX_QUEUE {
            self.dropped += 1;
            return;
        }
        let resp =
            StunMessage::binding_response(req.transaction_id, from, Some(SOFTWARE.to_owned()));
        self.answered += 1;
        self.events.push_back(StunEvent::Binding { mapped: from });
        self.out.push_back(Transmit {
            src_ip: None,
            src_port: self.port,
            dst: from,
            payload: resp.to_bytes(),
        });
    }

    /// Queues a [`BindingReply`] to `to` and reports `event`.
    fn answer(&mut self, to: SocketAddrV4, reply: BindingReply, event: StunEvent) {
        if self.out.len() >= MAX_QUEUE {
            self.dropped += 1;
            return;
        }
        match reply {
            BindingReply::Mapped { .. } => self.answered += 1,
            BindingReply::UnknownAttribute { .. } => self.refused += 1,
        }
        if self.events.len() < MAX_QUEUE {
            self.events.push_back(event);
        }
        self.out.push_back(Transmit {
            src_ip: None,
            src_port: self.port,
            dst: to,
            payload: reply.to_bytes(),
        });
    }

    fn drop_one(&mut self, from: SocketAddrV4, reason: &'static str) {
        self.dropped += 1;
        if self.events.len() < MAX_QUEUE {
            self.events.push_back(StunEvent::Dropped {
                from,
                reason,
                error: None,
            });
        }
    }

    /// Nothing is timed.
    pub fn handle_timeout(&mut self, _now: Time) {}

    /// Never: the server has no timers.
    pub fn poll_timeout(&self) -> Option<Time> {
        None
    }

    /// Next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    /// Next event.
    pub fn poll_event(&mut self) -> Option<StunEvent> {
        self.events.pop_front()
    }
}

impl crate::role::Role for StunServer {
    fn port(&self) -> u16 {
        binfm_stack::wire::ports::STUN
    }
    crate::role::role_io!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    fn addr(last: u8, port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, last), port)
    }

    #[test]
    fn answers_with_the_observed_source() {
        let mut s = StunServer::new(3478);
        let req = StunMessage::binding_request([5; 12]).to_bytes();
        s.handle_datagram(Time::ZERO, addr(9, 40000), addr(1, 3478), &req);
        let t = s.poll_transmit().unwrap();
        assert_eq!(t.dst, addr(9, 40000));
        assert_eq!(t.src_port, 3478);
        let resp = StunMessage::parse(&t.payload).unwrap();
        assert_eq!(resp.class, Class::SuccessResponse);
        assert_eq!(resp.transaction_id, [5; 12]);
        assert_eq!(resp.mapped, Some(addr(9, 40000)));
        assert_eq!(s.poll_event().unwrap().kind(), "stun.binding");
        assert!(s.poll_transmit().is_none());
        assert_eq!((s.answered, s.refused), (1, 0));
    }

    #[test]
    fn responses_and_garbage_are_dropped() {
        let mut s = StunServer::new(3478);
        let resp = StunMessage::binding_response([5; 12], addr(1, 1), None).to_bytes();
        s.handle_datagram(Time::ZERO, addr(9, 1), addr(1, 3478), &resp);
        s.handle_datagram(Time::ZERO, addr(9, 1), addr(1, 3478), b"VM\x01\x01");
        assert!(s.poll_transmit().is_none());
        assert_eq!(s.dropped, 2);
    }

    /// Bytes 4-19 of the classic requests below: a 128-bit RFC 3489 transaction id.
    const CLASSIC_TID: [u8; 16] = [
        0x5c, 0x0e, 0x31, 0xa7, 0x08, 0x7f, 0xd2, 0x44, 0x19, 0xe3, 0x6b, 0x90, 0x2d, 0x01, 0xc8,
        0x56,
    ];

    /// An RFC 3489 Binding Request as a classic client sends it: 20-byte header, type 0x0001,
    /// length, the 16-byte transaction id; with CHANGE-REQUEST (0x0003, length 4, value 0)
    /// when `change_request`.
    fn classic_request(change_request: bool) -> Vec<u8> {
        let mut b = vec![0x00, 0x01, 0x00, if change_request { 8 } else { 0 }];
        b.extend_from_slice(&CLASSIC_TID);
        if change_request {
            b.extend_from_slice(&[0x00, 0x03, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00]);
        }
        b
    }

    #[test]
    fn classic_request_gets_mapped_address() {
        let mut s = StunServer::new(3478);
        s.handle_datagram(
            Time::ZERO,
            addr(9, 40000),
            addr(1, 3478),
            &classic_request(false),
        );
        let t = s.poll_transmit().unwrap();
        assert_eq!(t.dst, addr(9, 40000));
        assert_eq!(t.src_port, 3478);
        let mut want = vec![0x01, 0x01, 0x00, 0x0c];
        want.extend_from_slice(&CLASSIC_TID);
        want.extend_from_slice(&[
            0x00, 0x01, 0x00, 0x08, 0x00, 0x01, 0x9c, 0x40, 203, 0, 113, 9,
        ]);
        assert_eq!(
            t.payload, want,
            "MAPPED-ADDRESS only, the 128-bit id echoed"
        );
        assert_eq!(
            BindingReply::parse(&t.payload),
            Ok(BindingReply::Mapped {
                transaction: CLASSIC_TID,
                mapped: addr(9, 40000)
            })
        );
        assert_eq!(
            s.poll_event(),
            Some(StunEvent::BindingClassic {
                mapped: addr(9, 40000)
            })
        );
        assert_eq!((s.answered, s.refused, s.dropped), (1, 0, 0));
        assert!(s.poll_transmit().is_none());
    }

    #[test]
    fn change_request_gets_420() {
        let mut s = StunServer::new(3478);
        s.handle_datagram(
            Time::ZERO,
            addr(9, 40000),
            addr(1, 3478),
            &classic_request(true),
        );
        let t = s.poll_transmit().unwrap();
        assert_eq!(t.dst, addr(9, 40000));
        assert_eq!(
            &t.payload[..4],
            &[0x01, 0x11, 0x00, 0x24],
            "Binding error response"
        );
        assert_eq!(&t.payload[4..20], &CLASSIC_TID);
        // ERROR-CODE 420, then UNKNOWN-ATTRIBUTES naming 0x0003.
        assert_eq!(
            &t.payload[20..28],
            &[0x00, 0x09, 0x00, 0x18, 0x00, 0x00, 0x04, 0x14]
        );
        assert_eq!(
            &t.payload[48..],
            &[0x00, 0x0a, 0x00, 0x04, 0x00, 0x03, 0x00, 0x03]
        );
        assert_eq!(
            BindingReply::parse(&t.payload),
            Ok(BindingReply::UnknownAttribute {
                transaction: CLASSIC_TID,
                attributes: vec![0x0003]
            })
        );
        assert_eq!(
            s.poll_event(),
            Some(StunEvent::UnknownAttribute {
                from: addr(9, 40000),
                attributes: vec!["0x0003".to_owned()]
            })
        );
        assert_eq!((s.answered, s.refused, s.dropped), (0, 1, 0));
    }

    #[test]
    fn rfc8489_request_with_unknown_attribute_gets_420() {
        let mut s = StunServer::new(3478);
        let mut req = StunMessage::binding_request([5; 12]).to_bytes();
        req[3] = 8;
        req.extend_from_slice(&[0x00, 0x03, 0x00, 0x04, 0, 0, 0, 0]);
        s.handle_datagram(Time::ZERO, addr(9, 1), addr(1, 3478), &req);
        let t = s.poll_transmit().unwrap();
        let m = StunMessage::parse(&t.payload).unwrap();
        assert_eq!(m.class, Class::ErrorResponse);
        assert_eq!(m.transaction_id, [5; 12]);
        assert!(matches!(
            BindingReply::parse(&t.payload),
            Ok(BindingReply::UnknownAttribute { attributes, .. }) if attributes == [0x0003]
        ));
        assert_eq!(s.refused, 1);
    }

    proptest! {
        #[test]
        fn handle_datagram_never_panics(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut s = StunServer::new(3478);
            s.handle_datagram(Time::ZERO, addr(9, 1), addr(1, 3478), &data);
            while s.poll_transmit().is_some() {}
        }
    }
}
