//! The UDP discard service (RFC 863, port 9): it takes every datagram and answers nothing.
//! A target for traffic whose replies do not matter (a load that must not be reflected) and
//! the smallest example of a role.

use crate::event::Event;
use crate::role::Role;
use crate::{Time, Transmit};
use std::net::SocketAddrV4;

/// The discard service's well-known port (RFC 863).
pub const PORT: u16 = 9;

/// Counts what it was sent and drops it.
#[derive(Debug, Default, Clone)]
pub struct Discard {
    datagrams: u64,
    bytes: u64,
}

impl Discard {
    /// A discard service with nothing received yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Datagrams and payload bytes received so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.datagrams, self.bytes)
    }
}

impl Role for Discard {
    fn port(&self) -> u16 {
        PORT
    }

    fn handle_datagram(
        &mut self,
        _now: Time,
        _from: SocketAddrV4,
        _to: SocketAddrV4,
        payload: &[u8],
    ) {
        self.datagrams += 1;
        self.bytes += payload.len() as u64;
    }

    fn handle_timeout(&mut self, _now: Time) {}

    fn poll_timeout(&self) -> Option<Time> {
        None
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        None
    }

    fn poll_event(&mut self) -> Option<Event> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn counts_everything_and_answers_nothing() {
        let mut d = Discard::new();
        let from = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 40000);
        let to = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), PORT);
        for n in [0usize, 1, 1400] {
            d.handle_datagram(Time::ZERO, from, to, &vec![0xab; n]);
        }
        assert_eq!(d.counts(), (3, 1401));
        assert_eq!(d.poll_transmit(), None);
        assert!(d.poll_event().is_none());
        assert_eq!(d.poll_timeout(), None);
    }
}
