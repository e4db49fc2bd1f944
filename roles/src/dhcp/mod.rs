//! DHCP (RFC 2131 subset) server and client as sans-IO roles, carrying the BINFM site
//! options (NAT public address, super nodes; see `binfm_stack::wire::dhcp_options`).
//!
//! Everything runs over layer-3 UDP broadcast (no Ethernet, no ARP): a client without an
//! address sends from 0.0.0.0:68 to 255.255.255.255:67, and the server answers such a client
//! at 255.255.255.255:68. See `docs/dhcp.md` for the state machines, timers and events.

mod client;
pub mod events;
mod server;

pub use client::{ClientConfig, ClientState, ConfigChange, DhcpClient, Lease};
pub use server::{DECLINE_HOLD, DhcpServer, ServerConfig, ServerStats};

use std::net::Ipv4Addr;
use std::time::Duration;

use binfm_stack::wire::dhcp_options::{MAGIC_COOKIE, OPTIONS_OFFSET};
use dhcproto::Decodable;
use dhcproto::v4::Message;

/// How long the server holds an offered address for the client it offered it to.
pub const OFFER_HOLD: Duration = Duration::from_secs(10);

/// Subnet mask of a prefix length (clamped to 32).
pub(crate) fn mask_of(prefix_len: u8) -> Ipv4Addr {
    let p = u32::from(prefix_len.min(32));
    Ipv4Addr::from(u32::MAX.checked_shl(32 - p).unwrap_or(0))
}

/// Prefix length of a subnet mask (leading ones; a non-contiguous mask is cut at its first 0).
pub(crate) fn prefix_of(mask: Ipv4Addr) -> u8 {
    // leading_ones of a u32 is at most 32.
    u32::from(mask).leading_ones() as u8
}

pub(crate) use crate::util::hex;

/// Seconds as carried in DHCP (u32; 0xffffffff means infinite, so stay below it; at least 1).
pub(crate) fn wire_secs(d: Duration) -> u32 {
    d.as_secs().clamp(1, u64::from(u32::MAX - 1)) as u32
}

/// An all-zero BOOTREQUEST with the magic cookie and no options.
///
/// Decoded from a template because dhcproto's constructors draw a xid from the global RNG,
/// which roles must not touch.
pub(crate) fn blank_message() -> Message {
    let mut b = [0u8; OPTIONS_OFFSET];
    b[0] = 1; // BOOTREQUEST
    b[1] = 1; // Ethernet (RFC 1700); the testbed has no Ethernet but chaddr is 6 bytes
    b[236..].copy_from_slice(&MAGIC_COOKIE);
    Message::from_bytes(&b).unwrap_or_default()
}

/// One server and N clients on one segment, no network: transmits are handed over at once.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::Transmit;
    use binfm_stack::Time;
    use binfm_stack::wire::dhcp_options::decode_message;
    use binfm_stack::wire::ports::{DHCP_CLIENT, DHCP_SERVER};
    use dhcproto::Encodable;
    use dhcproto::v4::{DhcpOption, MessageType, Opcode};
    use events::{DhcpClientEvent, DhcpServerEvent};
    use std::net::SocketAddrV4;

    const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 2);

    fn config(pool_end: u8) -> ServerConfig {
        ServerConfig {
            server_ip: SERVER_IP,
            prefix_len: 24,
            router: Ipv4Addr::new(10, 1, 0, 1),
            pool_start: Ipv4Addr::new(10, 1, 0, 100),
            pool_end: Ipv4Addr::new(10, 1, 0, pool_end),
            lease_time: Duration::from_secs(60),
            nat_public: Some(Ipv4Addr::new(203, 0, 113, 1)),
            super_nodes: vec![
                SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 10), 8080),
                SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 11), 8080),
            ],
        }
    }

    fn client(i: u8) -> DhcpClient {
        DhcpClient::new(
            ClientConfig {
                client_id: format!("en-{i}").into_bytes(),
                hw_addr: [2, 0, 0, 0, 0, i],
            },
            u64::from(i),
        )
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Origin {
        Server,
        Client(usize),
    }

    struct Net {
        now: Time,
        server: DhcpServer,
        server_up: bool,
        clients: Vec<DhcpClient>,
        /// OFFERs still to drop.
        drop_offers: usize,
        sent: Vec<(Time, Origin, Transmit)>,
        server_events: Vec<DhcpServerEvent>,
        client_events: Vec<Vec<(Time, DhcpClientEvent)>>,
        configs: Vec<Vec<ConfigChange>>,
    }

    impl Net {
        fn new(server: ServerConfig, n: u8) -> Net {
            Net {
                now: Time::ZERO,
                server: DhcpServer::new(server),
                server_up: true,
                clients: (1..=n).map(client).collect(),
                drop_offers: 0,
                sent: vec![],
                server_events: vec![],
                client_events: vec![vec![]; usize::from(n)],
                configs: vec![vec![]; usize::from(n)],
            }
        }

        fn drain_outputs(&mut self) {
            while let Some(e) = self.server.poll_event() {
                self.server_events.push(e);
            }
            for (i, c) in self.clients.iter_mut().enumerate() {
                while let Some(e) = c.poll_event() {
                    self.client_events[i].push((self.now, e));
                }
                while let Some(cfg) = c.poll_config() {
                    self.configs[i].push(cfg);
                }
            }
        }

        /// Delivers datagrams until nobody has anything to send.
        fn pump(&mut self) {
            loop {
                let mut moved = false;
                for i in 0..self.clients.len() {
                    while let Some(t) = self.clients[i].poll_transmit() {
                        moved = true;
                        self.sent.push((self.now, Origin::Client(i), t.clone()));
                        if self.server_up && t.dst.port() == DHCP_SERVER {
                            let src = t.src_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
                            let from = SocketAddrV4::new(src, t.src_port);
                            self.server
                                .handle_datagram(self.now, from, t.dst, &t.payload);
                        }
                    }
                }
                while let Some(t) = self.server.poll_transmit() {
                    moved = true;
                    self.sent.push((self.now, Origin::Server, t.clone()));
                    let is_offer = decode_message(&t.payload)
                        .is_ok_and(|m| m.opts().msg_type() == Some(MessageType::Offer));
                    if is_offer && self.drop_offers > 0 {
                        self.drop_offers -= 1;
                        continue;
                    }
                    let from = SocketAddrV4::new(t.src_ip.unwrap_or(SERVER_IP), t.src_port);
                    for c in self.clients.iter_mut() {
                        let addressed = t.dst.ip().is_broadcast()
                            || c.lease().is_some_and(|l| l.address == *t.dst.ip());
                        if addressed && t.dst.port() == DHCP_CLIENT {
                            c.handle_datagram(self.now, from, t.dst, &t.payload);
                        }
                    }
                }
                self.drain_outputs();
                if !moved {
                    return;
                }
            }
        }

        fn next_timeout(&self) -> Option<Time> {
            let server = self.server.poll_timeout().filter(|_| self.server_up);
            self.clients
                .iter()
                .filter_map(|c| c.poll_timeout())
                .chain(server)
                .min()
        }

        /// Runs in virtual time up to `end`.
        fn run_until(&mut self, end: Time) {
            for _ in 0..100_000 {
                self.pump();
                match self.next_timeout() {
                    Some(t) if t <= end => {
                        self.now = self.now.max(t);
                        if self.server_up
                            && self.server.poll_timeout().is_some_and(|t| t <= self.now)
                        {
                            self.server.handle_timeout(self.now);
                        }
                        for c in self.clients.iter_mut() {
                            if c.poll_timeout().is_some_and(|t| t <= self.now) {
                                c.handle_timeout(self.now);
                            }
                        }
                    }
                    _ => {
                        self.now = end;
                        return;
                    }
                }
            }
            panic!("virtual time did not advance");
        }

        fn kinds(&self, i: usize) -> Vec<&'static str> {
            self.client_events[i]
                .iter()
                .map(|(_, e)| e.kind())
                .collect()
        }

        fn server_kinds(&self) -> Vec<&'static str> {
            self.server_events.iter().map(|e| e.kind()).collect()
        }
    }

    fn secs(s: u64) -> Time {
        Time::from_secs(s)
    }

    #[test]
    fn full_dora_carries_site_options() {
        let mut net = Net::new(config(110), 1);
        net.clients[0].start(Time::ZERO);
        net.run_until(secs(1));
        let lease = net.clients[0].lease().expect("bound").clone();
        assert_eq!(lease.address, Ipv4Addr::new(10, 1, 0, 100));
        assert_eq!(lease.prefix_len, 24);
        assert_eq!(lease.router, Some(Ipv4Addr::new(10, 1, 0, 1)));
        assert_eq!(lease.server, SERVER_IP);
        assert_eq!(lease.lease_time, secs(60));
        assert_eq!(
            (lease.t1, lease.t2),
            (secs(30), Duration::from_millis(52_000))
        );
        assert_eq!(lease.nat_public, Some(Ipv4Addr::new(203, 0, 113, 1)));
        assert_eq!(lease.super_nodes, config(110).super_nodes);
        assert_eq!(net.configs[0], vec![ConfigChange::Bound(lease)]);
        assert_eq!(
            net.kinds(0),
            ["dhcp.discover", "dhcp.offer", "dhcp.request", "dhcp.ack"]
        );
        assert_eq!(net.server_kinds(), ["dhcp.server.offer", "dhcp.server.ack"]);
        let ack = &net.client_events[0][3].1;
        let DhcpClientEvent::Ack {
            nat_public,
            super_nodes,
            ..
        } = ack
        else {
            panic!("not an ack: {ack:?}");
        };
        assert_eq!(*nat_public, Some(Ipv4Addr::new(203, 0, 113, 1)));
        assert_eq!(super_nodes, &config(110).super_nodes);
        // Addressing on layer 3: the client has no address, the server answers by broadcast.
        let (_, _, discover) = &net.sent[0];
        assert_eq!(discover.src_ip, Some(Ipv4Addr::UNSPECIFIED));
        assert_eq!(
            discover.dst,
            SocketAddrV4::new(Ipv4Addr::BROADCAST, DHCP_SERVER)
        );
        for (_, origin, t) in &net.sent {
            if *origin == Origin::Server {
                assert_eq!(t.src_ip, Some(SERVER_IP));
                assert_eq!(t.src_port, DHCP_SERVER);
                assert_eq!(t.dst, SocketAddrV4::new(Ipv4Addr::BROADCAST, DHCP_CLIENT));
            }
        }
    }

    #[test]
    fn renewal_at_t1_extends_the_lease() {
        let mut net = Net::new(config(110), 1);
        net.clients[0].start(Time::ZERO);
        net.run_until(secs(31));
        let lease = net.clients[0].lease().expect("bound").clone();
        assert_eq!(lease.obtained_at, secs(30));
        assert_eq!(net.clients[0].state(), ClientState::Bound);
        assert!(net.kinds(0).contains(&"dhcp.renewed"));
        // Renewal is unicast from the leased address to the server, and answered by unicast.
        let renew = net
            .sent
            .iter()
            .find(|(t, o, _)| *t == secs(30) && *o == Origin::Client(0))
            .map(|(_, _, tx)| tx)
            .expect("renewal REQUEST");
        assert_eq!(renew.src_ip, Some(lease.address));
        assert_eq!(renew.dst, SocketAddrV4::new(SERVER_IP, DHCP_SERVER));
        let reply = net
            .sent
            .iter()
            .find(|(t, o, _)| *t == secs(30) && *o == Origin::Server)
            .map(|(_, _, tx)| tx)
            .expect("renewal ACK");
        assert_eq!(reply.dst, SocketAddrV4::new(lease.address, DHCP_CLIENT));
        assert_eq!(net.server.active_leases(), vec![(lease.address, secs(90))]);
        // Same configuration: the host glue is not told again.
        assert_eq!(net.configs[0].len(), 1);
        // Keeps renewing for a long time without ever losing the address.
        net.run_until(secs(600));
        assert_eq!(net.configs[0].len(), 1);
        assert!(net.clients[0].lease().is_some());
    }

    #[test]
    fn release_frees_the_address_for_another_client() {
        let mut net = Net::new(config(100), 2);
        net.clients[0].start(Time::ZERO);
        net.run_until(secs(1));
        net.clients[1].start(net.now);
        net.run_until(secs(2));
        assert!(net.clients[1].lease().is_none());
        net.clients[0].release(net.now);
        net.run_until(secs(20));
        assert!(net.server_kinds().contains(&"dhcp.server.release"));
        assert_eq!(net.configs[0].last(), Some(&ConfigChange::Unbound));
        assert_eq!(net.clients[0].state(), ClientState::Init);
        assert_eq!(
            net.clients[1].lease().map(|l| l.address),
            Some(Ipv4Addr::new(10, 1, 0, 100))
        );
        assert!(net.kinds(0).contains(&"dhcp.release"));
    }

    #[test]
    fn a_returning_client_gets_its_address_back() {
        let mut net = Net::new(config(110), 2);
        net.clients[0].start(Time::ZERO);
        net.run_until(secs(1));
        let first = net.clients[0].lease().expect("bound").address;
        net.clients[0].release(net.now);
        net.clients[1].start(net.now);
        net.run_until(secs(2));
        net.clients[0].start(net.now);
        net.run_until(secs(3));
        assert_eq!(net.clients[0].lease().map(|l| l.address), Some(first));
        assert_ne!(net.clients[1].lease().map(|l| l.address), Some(first));
    }

    #[test]
    fn request_for_a_wrong_address_is_naked() {
        let mut server = DhcpServer::new(config(110));
        let mut m = blank_message();
        m.set_opcode(Opcode::BootRequest)
            .set_xid(42)
            .set_chaddr(&[2, 0, 0, 0, 0, 1]);
        m.opts_mut()
            .insert(DhcpOption::MessageType(MessageType::Request));
        m.opts_mut()
            .insert(DhcpOption::RequestedIpAddress(Ipv4Addr::new(10, 9, 9, 9)));
        let from = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, DHCP_CLIENT);
        let to = SocketAddrV4::new(Ipv4Addr::BROADCAST, DHCP_SERVER);
        server.handle_datagram(Time::ZERO, from, to, &m.to_vec().expect("encodes"));
        let t = server.poll_transmit().expect("NAK");
        assert_eq!(t.dst, SocketAddrV4::new(Ipv4Addr::BROADCAST, DHCP_CLIENT));
        let nak = decode_message(&t.payload).expect("decodes");
        assert_eq!(nak.opts().msg_type(), Some(MessageType::Nak));
        assert_eq!(nak.xid(), 42);
        let e = server.poll_event().expect("event");
        assert!(
            matches!(&e, DhcpServerEvent::Nak { reason, .. } if reason == "address not on this network"),
            "{e:?}"
        );
        // SELECTING with our server id but an address we did not offer.
        m.opts_mut().insert(DhcpOption::ServerIdentifier(SERVER_IP));
        m.opts_mut()
            .insert(DhcpOption::RequestedIpAddress(Ipv4Addr::new(10, 1, 0, 105)));
        server.handle_datagram(Time::ZERO, from, to, &m.to_vec().expect("encodes"));
        assert!(server.poll_transmit().is_some());
        assert_eq!(server.stats().naks, 2);
        assert!(server.active_leases().is_empty());
    }

    #[test]
    fn moved_client_rebinding_is_naked_and_rediscovers() {
        let mut net = Net::new(config(110), 1);
        net.clients[0].start(Time::ZERO);
        net.run_until(secs(1));
        // The client moves to another segment without noticing: a different server answers.
        let mut other = config(110);
        other.server_ip = Ipv4Addr::new(10, 2, 0, 2);
        other.router = Ipv4Addr::new(10, 2, 0, 1);
        other.pool_start = Ipv4Addr::new(10, 2, 0, 100);
        other.pool_end = Ipv4Addr::new(10, 2, 0, 110);
        net.server = DhcpServer::new(other);
        net.run_until(secs(60));
        let kinds = net.kinds(0);
        assert!(kinds.contains(&"dhcp.nak"), "{kinds:?}");
        assert_eq!(net.configs[0][1], ConfigChange::Unbound);
        assert_eq!(
            net.clients[0].lease().map(|l| l.address),
            Some(Ipv4Addr::new(10, 2, 0, 100))
        );
    }

    #[test]
    fn pool_of_two_serves_only_two_of_three() {
        let mut net = Net::new(config(101), 3);
        for i in 0..3 {
            net.clients[i].start(Time::ZERO);
        }
        net.run_until(secs(5));
        let bound = net.clients.iter().filter(|c| c.lease().is_some()).count();
        assert_eq!(bound, 2);
        assert!(net.clients[2].lease().is_none());
        assert!(!net.kinds(2).contains(&"dhcp.offer"));
        let exhausted = net
            .server_events
            .iter()
            .find_map(|e| match e {
                DhcpServerEvent::PoolExhausted { client, pool_size } => Some((client, *pool_size)),
                _ => None,
            })
            .expect("pool_exhausted");
        assert_eq!(exhausted, (&hex(b"en-3"), 2));
    }

    #[test]
    fn lost_offer_is_recovered_by_retransmission() {
        let mut net = Net::new(config(110), 1);
        net.drop_offers = 1;
        net.clients[0].start(Time::ZERO);
        net.run_until(secs(3));
        assert!(net.clients[0].lease().is_some());
        let discovers: Vec<Time> = net.client_events[0]
            .iter()
            .filter(|(_, e)| e.kind() == "dhcp.discover")
            .map(|(t, _)| *t)
            .collect();
        assert_eq!(discovers.len(), 2);
        assert!(discovers[1] >= Duration::from_millis(900));
        assert!(discovers[1] <= Duration::from_millis(1100));
        // The second DISCOVER gets the same address (the first offer is still held for us).
        assert_eq!(
            net.clients[0].lease().map(|l| l.address),
            Some(Ipv4Addr::new(10, 1, 0, 100))
        );
    }

    #[test]
    fn lease_expires_without_a_server() {
        let mut net = Net::new(config(110), 1);
        net.clients[0].start(Time::ZERO);
        net.run_until(secs(1));
        net.server_up = false;
        net.run_until(secs(61));
        assert!(net.clients[0].lease().is_none());
        assert_eq!(net.clients[0].state(), ClientState::Selecting);
        assert!(matches!(
            net.configs[0][..],
            [ConfigChange::Bound(_), ConfigChange::Unbound]
        ));
        let kinds = net.kinds(0);
        assert!(kinds.contains(&"dhcp.expired"));
        // It tried to renew (unicast) and to rebind (broadcast) before giving up.
        let phases: Vec<_> = net.client_events[0]
            .iter()
            .filter_map(|(_, e)| match e {
                DhcpClientEvent::Request { phase, .. } => Some(*phase),
                _ => None,
            })
            .collect();
        assert!(
            phases.contains(&"renew") && phases.contains(&"rebind"),
            "{phases:?}"
        );
        // Expired at exactly obtained_at + lease_time.
        let expired_at = net.client_events[0]
            .iter()
            .find(|(_, e)| e.kind() == "dhcp.expired")
            .map(|(t, _)| *t);
        assert_eq!(expired_at, Some(secs(60)));
    }

    #[test]
    fn server_expires_leases_nobody_renews() {
        let mut net = Net::new(config(110), 1);
        net.clients[0].start(Time::ZERO);
        net.run_until(secs(1));
        // The client vanishes (no release); the server frees the address at lease end.
        net.clients.clear();
        net.run_until(secs(61));
        assert!(net.server.active_leases().is_empty());
        assert!(net.server_kinds().contains(&"dhcp.server.expired"));
        assert_eq!(net.server.poll_timeout(), None);
    }

    #[test]
    fn helpers() {
        assert_eq!(mask_of(24), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(mask_of(0), Ipv4Addr::UNSPECIFIED);
        assert_eq!(mask_of(40), Ipv4Addr::BROADCAST);
        assert_eq!(prefix_of(Ipv4Addr::new(255, 255, 240, 0)), 20);
        assert_eq!(wire_secs(Duration::ZERO), 1);
    }
}
