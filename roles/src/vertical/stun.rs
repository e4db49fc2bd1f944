//! STUN server (RFC 8489 Binding): answers each Binding request with the address it came from,
//! as XOR-MAPPED-ADDRESS. Stateless: no credentials, no allocation (the vertical model's NAT
//! step needs only the mapping).

use super::events::StunEvent;
use crate::{Time, Transmit};
use binfm_stack::wire::stun::{Class, StunMessage, is_stun};
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
    /// Binding requests answered.
    pub answered: u64,
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

    proptest! {
        #[test]
        fn handle_datagram_never_panics(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut s = StunServer::new(3478);
            s.handle_datagram(Time::ZERO, addr(9, 1), addr(1, 3478), &data);
            while s.poll_transmit().is_some() {}
        }
    }
}
