//! UDP echo (RFC 862) server and a client that probes it: the simplest traffic that shows a
//! NAT at work, with a sequence number and send time in each probe so round trips and losses
//! can be measured from events.

use crate::{Time, Transmit};
use std::collections::VecDeque;
use std::net::SocketAddrV4;
use std::time::Duration;

crate::event_enum! {
    /// What the echo server and client report.
    pub enum EchoEvent {
        /// The server echoed a datagram (`seq` when it is long enough to be a probe).
        Request = "echo.request" { from: SocketAddrV4, bytes: usize, seq: Option<u64> },
        /// The client sent probe `seq`.
        Sent = "echo.sent" { seq: u64, to: SocketAddrV4 },
        /// A reply too short to be a probe.
        Malformed = "echo.malformed" { bytes: usize },
        /// The reply to probe `seq`, `rtt_ns` after it was sent.
        Reply = "echo.reply" { seq: u64, rtt_ns: u64, from: SocketAddrV4 },
    }
}

/// Bytes at the start of a probe: sequence number (u64 BE) then send time in ns (u64 BE).
pub const PROBE_HEADER: usize = 16;

/// Echoes every datagram back to its sender.
#[derive(Debug)]
pub struct EchoServer {
    port: u16,
    out: VecDeque<Transmit>,
    events: VecDeque<EchoEvent>,
    served: u64,
}

impl EchoServer {
    /// A server on `port`.
    pub fn new(port: u16) -> Self {
        EchoServer {
            port,
            out: VecDeque::new(),
            events: VecDeque::new(),
            served: 0,
        }
    }

    /// The port served.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Datagrams echoed so far.
    pub fn served(&self) -> u64 {
        self.served
    }

    /// Echoes `data` back to `from`.
    pub fn handle_datagram(
        &mut self,
        _now: Time,
        from: SocketAddrV4,
        to: SocketAddrV4,
        data: &[u8],
    ) {
        if to.port() != self.port {
            return;
        }
        self.served += 1;
        self.events.push_back(EchoEvent::Request {
            from,
            bytes: data.len(),
            seq: probe_seq(data),
        });
        self.out.push_back(Transmit {
            src_ip: None,
            src_port: self.port,
            dst: from,
            payload: data.to_vec(),
        });
    }

    /// Next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    /// Next event.
    pub fn poll_event(&mut self) -> Option<EchoEvent> {
        self.events.pop_front()
    }
}

/// Configuration of an echo client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EchoClientConfig {
    /// Local UDP port.
    pub local_port: u16,
    /// The echo server.
    pub target: SocketAddrV4,
    /// Time between probes.
    pub interval: Duration,
    /// Probes to send (0 = until stopped).
    pub count: u64,
    /// Payload size in bytes (at least [`PROBE_HEADER`]).
    pub size: usize,
}

/// Sends numbered probes at a fixed interval once started, and reports each reply.
#[derive(Debug)]
pub struct EchoClient {
    config: EchoClientConfig,
    next_send: Option<Time>,
    sent: u64,
    received: u64,
    out: VecDeque<Transmit>,
    events: VecDeque<EchoEvent>,
}

impl EchoClient {
    /// A stopped client.
    pub fn new(config: EchoClientConfig) -> Self {
        EchoClient {
            config,
            next_send: None,
            sent: 0,
            received: 0,
            out: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The local port.
    pub fn local_port(&self) -> u16 {
        self.config.local_port
    }

    /// Starts (or resumes) probing at `now` (the host has an address).
    pub fn start(&mut self, now: Time) {
        if self.next_send.is_none() && !self.done() {
            self.next_send = Some(now);
        }
    }

    /// Stops probing (the host lost its address).
    pub fn stop(&mut self) {
        self.next_send = None;
    }

    fn done(&self) -> bool {
        self.config.count != 0 && self.sent >= self.config.count
    }

    /// Probes sent and replies received.
    pub fn counts(&self) -> (u64, u64) {
        (self.sent, self.received)
    }

    /// Sends the probes that are due.
    pub fn handle_timeout(&mut self, now: Time) {
        while let Some(at) = self.next_send {
            if at > now {
                break;
            }
            let mut payload = vec![0u8; self.config.size.max(PROBE_HEADER)];
            payload[..8].copy_from_slice(&self.sent.to_be_bytes());
            let ns = u64::try_from(now.as_nanos()).unwrap_or(u64::MAX);
            payload[8..16].copy_from_slice(&ns.to_be_bytes());
            self.events.push_back(EchoEvent::Sent {
                seq: self.sent,
                to: self.config.target,
            });
            self.out.push_back(Transmit {
                src_ip: None,
                src_port: self.config.local_port,
                dst: self.config.target,
                payload,
            });
            self.sent += 1;
            self.next_send = if self.done() {
                None
            } else {
                Some(at + self.config.interval)
            };
        }
    }

    /// Handles a reply.
    pub fn handle_datagram(
        &mut self,
        now: Time,
        from: SocketAddrV4,
        to: SocketAddrV4,
        data: &[u8],
    ) {
        if to.port() != self.config.local_port || from != self.config.target {
            return;
        }
        let (Some(seq), Some(sent_ns)) = (probe_seq(data), probe_time(data)) else {
            self.events
                .push_back(EchoEvent::Malformed { bytes: data.len() });
            return;
        };
        self.received += 1;
        let now_ns = u64::try_from(now.as_nanos()).unwrap_or(u64::MAX);
        self.events.push_back(EchoEvent::Reply {
            seq,
            rtt_ns: now_ns.saturating_sub(sent_ns),
            from,
        });
    }

    /// When the next probe is due.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.next_send
    }

    /// Next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    /// Next event.
    pub fn poll_event(&mut self) -> Option<EchoEvent> {
        self.events.pop_front()
    }
}

fn probe_seq(data: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(data.get(..8)?.try_into().ok()?))
}

fn probe_time(data: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(data.get(8..16)?.try_into().ok()?))
}

impl crate::role::Role for EchoServer {
    fn port(&self) -> u16 {
        EchoServer::port(self)
    }
    fn handle_datagram(&mut self, now: Time, from: SocketAddrV4, to: SocketAddrV4, payload: &[u8]) {
        EchoServer::handle_datagram(self, now, from, to, payload);
    }
    fn handle_timeout(&mut self, _now: Time) {}
    fn poll_timeout(&self) -> Option<Time> {
        None
    }
    fn poll_transmit(&mut self) -> Option<Transmit> {
        EchoServer::poll_transmit(self)
    }
    fn poll_event(&mut self) -> Option<crate::event::Event> {
        EchoServer::poll_event(self).map(Into::into)
    }
}

impl crate::role::Role for EchoClient {
    fn port(&self) -> u16 {
        self.local_port()
    }
    fn socket_buffer(&self) -> usize {
        crate::role::CLIENT_SOCKET_BUFFER
    }
    /// Probes while the host has an address.
    fn handle_command(&mut self, now: Time, command: &crate::role::Command) {
        use crate::role::Command;
        match command {
            Command::Start { address: Some(_) } | Command::Bound { .. } => self.start(now),
            Command::Unbound => self.stop(),
            _ => {}
        }
    }
    crate::role::role_io!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn client_and_server_round_trip() {
        let server_addr = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 10), 7);
        let client_addr = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 1), 40000);
        let mut s = EchoServer::new(7);
        let mut c = EchoClient::new(EchoClientConfig {
            local_port: 40000,
            target: server_addr,
            interval: Duration::from_secs(1),
            count: 2,
            size: 64,
        });
        assert_eq!(c.poll_timeout(), None, "not started");
        c.start(Time::ZERO);
        c.handle_timeout(Time::ZERO);
        let t = c.poll_transmit().unwrap();
        assert_eq!(t.payload.len(), 64);
        s.handle_datagram(Time::ZERO, client_addr, server_addr, &t.payload);
        let r = s.poll_transmit().unwrap();
        assert_eq!(r.dst, client_addr);
        c.handle_datagram(Time::from_millis(80), server_addr, client_addr, &r.payload);
        let ev: Vec<_> = std::iter::from_fn(|| c.poll_event()).collect();
        assert!(
            matches!(
                ev[1],
                EchoEvent::Reply {
                    rtt_ns: 80_000_000,
                    ..
                }
            ),
            "{ev:?}"
        );
        assert_eq!(c.poll_timeout(), Some(Time::from_secs(1)));
        c.handle_timeout(Time::from_secs(1));
        assert_eq!(c.poll_timeout(), None, "count reached");
        assert_eq!(c.counts(), (2, 1));
    }

    #[test]
    fn probe_byte_fixture() {
        let target = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 10), 7);
        let mut c = EchoClient::new(EchoClientConfig {
            local_port: 40000,
            target,
            interval: Duration::from_secs(1),
            count: 0,
            size: 20,
        });
        c.start(Time::from_nanos(0x0102_0304));
        c.handle_timeout(Time::from_nanos(0x0102_0304));
        let t = c.poll_transmit().unwrap();
        assert_eq!(
            t.payload,
            [
                0, 0, 0, 0, 0, 0, 0, 0, // seq 0
                0, 0, 0, 0, 1, 2, 3, 4, // sent at 0x01020304 ns
                0, 0, 0, 0, // padding to 20 bytes
            ]
        );
        assert_eq!(probe_seq(&t.payload), Some(0));
        assert_eq!(probe_time(&t.payload), Some(0x0102_0304));
    }

    #[test]
    fn short_reply_is_reported_not_panicked() {
        let server_addr = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 10), 7);
        let mut c = EchoClient::new(EchoClientConfig {
            local_port: 1,
            target: server_addr,
            interval: Duration::from_secs(1),
            count: 0,
            size: 0,
        });
        c.handle_datagram(
            Time::ZERO,
            server_addr,
            SocketAddrV4::new(Ipv4Addr::LOCALHOST, 1),
            &[1, 2, 3],
        );
        assert_eq!(c.poll_event().unwrap().kind(), "echo.malformed");
    }
}
