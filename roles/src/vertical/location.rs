//! Location server of one domain (the vertical model's mobility step, paper Figure 1 steps
//! 3-5): stores `id -> contact` from `Register`, answers `Lookup` for ids registered here at
//! once, and for any other id asks the peer domains' servers with `Resolve` (the inter-domain
//! T_III path) and relays their `Resolved` answer back to the end node as a `LookupReply`.
//!
//! Which server to ask: the id's home domain if the server was told it
//! ([`LocationServer::set_home`]), otherwise every peer; the first positive answer wins, and
//! "not found" goes back once every asked peer said so (or [`RESOLVE_TIMEOUT`] passed).
//! A `Resolve` is answered from the local table only, so requests never loop. Tables are
//! bounded. Registrations are not authenticated (as a plain registrar without digest
//! authentication; docs/vertical.md says what that allows).

use super::events::LocationEvent;
use crate::util::{millis_f64, short_hex};
use crate::{Time, Transmit};
use binfm_stack::wire::vertical::{Id, VmMessage};
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddrV4;
use std::time::Duration;

/// Bindings stored at most (new ids beyond are refused; known ids can always update).
pub const MAX_BINDINGS: usize = 65_536;
/// Resolutions in flight at most.
pub const MAX_PENDING: usize = 1024;
/// A resolution unanswered this long is answered "not found".
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(4);
/// Home-domain directory entries at most.
pub const MAX_HOMES: usize = 65_536;

#[derive(Debug, Clone)]
struct Pending {
    client: SocketAddrV4,
    client_request: u32,
    id: Id,
    /// Peers asked that have not answered yet.
    waiting: Vec<SocketAddrV4>,
    started: Time,
    deadline: Time,
}

/// Sans-IO location server.
#[derive(Debug, Clone)]
pub struct LocationServer {
    domain: String,
    port: u16,
    peers: Vec<(String, SocketAddrV4)>,
    homes: BTreeMap<Id, String>,
    bindings: BTreeMap<Id, SocketAddrV4>,
    pending: BTreeMap<u32, Pending>,
    next_request_id: u32,
    out: VecDeque<Transmit>,
    events: VecDeque<LocationEvent>,
}

impl LocationServer {
    /// The server of `domain`, on UDP `port` (normally
    /// [`binfm_stack::wire::ports::LOCATION`]), with the peer domains' servers.
    pub fn new(domain: impl Into<String>, port: u16, peers: Vec<(String, SocketAddrV4)>) -> Self {
        LocationServer {
            domain: domain.into(),
            port,
            peers,
            homes: BTreeMap::new(),
            bindings: BTreeMap::new(),
            pending: BTreeMap::new(),
            next_request_id: 1,
            out: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Tells the server which domain `id` belongs to (like the domain part of a SIP
    /// address): lookups for it then go to that domain's server only. Returns false when
    /// the directory is full.
    pub fn set_home(&mut self, id: Id, domain: impl Into<String>) -> bool {
        if self.homes.len() >= MAX_HOMES && !self.homes.contains_key(&id) {
            return false;
        }
        self.homes.insert(id, domain.into());
        true
    }

    /// The domain name.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Where `id` is registered here.
    pub fn binding(&self, id: &Id) -> Option<SocketAddrV4> {
        self.bindings.get(id).copied()
    }

    /// Resolutions in flight.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    fn send(&mut self, dst: SocketAddrV4, msg: &VmMessage) {
        self.out.push_back(Transmit {
            src_ip: None,
            src_port: self.port,
            dst,
            payload: msg.to_bytes(),
        });
    }

    /// A datagram for the server's port.
    pub fn handle_datagram(
        &mut self,
        now: Time,
        from: SocketAddrV4,
        _to: SocketAddrV4,
        data: &[u8],
    ) {
        let msg = match VmMessage::parse(data) {
            Ok(m) => m,
            Err(e) => {
                self.events.push_back(LocationEvent::Malformed {
                    from,
                    error: e.to_string(),
                });
                return;
            }
        };
        match msg {
            VmMessage::Register { id, contact } => self.on_register(from, id, contact),
            VmMessage::Lookup { request_id, id } => self.on_lookup(now, from, request_id, id),
            VmMessage::Resolve { request_id, id } => self.on_resolve(from, request_id, id),
            VmMessage::Resolved {
                request_id,
                id,
                contact,
            } => self.on_resolved(now, from, request_id, id, contact),
            other => self.events.push_back(LocationEvent::Unexpected {
                from,
                message: other.name(),
            }),
        }
    }

    fn on_register(&mut self, from: SocketAddrV4, id: Id, contact: SocketAddrV4) {
        if self.bindings.len() >= MAX_BINDINGS && !self.bindings.contains_key(&id) {
            self.events.push_back(LocationEvent::RegisterRefused {
                id: short_hex(&id),
                reason: "table full",
            });
            return;
        }
        let old = self.bindings.insert(id, contact);
        if old != Some(contact) {
            self.events.push_back(LocationEvent::Registered {
                id: short_hex(&id),
                contact,
                from,
            });
        }
        self.send(from, &VmMessage::RegisterAck { id, contact });
    }

    fn on_lookup(&mut self, now: Time, from: SocketAddrV4, client_request: u32, id: Id) {
        if let Some(&contact) = self.bindings.get(&id) {
            self.events.push_back(LocationEvent::LookupLocal {
                id: short_hex(&id),
                contact,
            });
            self.reply(from, client_request, id, Some(contact));
            return;
        }
        // A retransmitted Lookup while its resolution is in flight: ask the silent peers again
        // (the first Resolve or its answer may have been lost).
        if let Some((&rid, p)) = self
            .pending
            .iter()
            .find(|(_, p)| p.client == from && p.client_request == client_request && p.id == id)
        {
            let again = p.waiting.clone();
            for peer in again {
                self.send(
                    peer,
                    &VmMessage::Resolve {
                        request_id: rid,
                        id,
                    },
                );
            }
            return;
        }
        let targets: Vec<SocketAddrV4> = match self.homes.get(&id) {
            Some(home) if *home == self.domain => Vec::new(),
            Some(home) => self
                .peers
                .iter()
                .filter(|(d, _)| d == home)
                .map(|(_, a)| *a)
                .collect(),
            None => self.peers.iter().map(|(_, a)| *a).collect(),
        };
        if targets.is_empty() {
            self.events.push_back(LocationEvent::LookupNotFound {
                id: short_hex(&id),
                reason: "not registered here, no peer to ask",
            });
            self.reply(from, client_request, id, None);
            return;
        }
        if self.pending.len() >= MAX_PENDING {
            self.events.push_back(LocationEvent::LookupRefused {
                id: short_hex(&id),
                reason: "too many resolutions in flight",
            });
            return;
        }
        let rid = self.next_request_id;
        self.next_request_id = self.next_request_id.wrapping_add(1).max(1);
        for &peer in &targets {
            self.events.push_back(LocationEvent::ResolveSent {
                id: short_hex(&id),
                request_id: rid,
                peer,
            });
            self.send(
                peer,
                &VmMessage::Resolve {
                    request_id: rid,
                    id,
                },
            );
        }
        self.pending.insert(
            rid,
            Pending {
                client: from,
                client_request,
                id,
                waiting: targets,
                started: now,
                deadline: now + RESOLVE_TIMEOUT,
            },
        );
    }

    fn on_resolve(&mut self, from: SocketAddrV4, request_id: u32, id: Id) {
        if !self.peers.iter().any(|(_, a)| *a == from) {
            self.events.push_back(LocationEvent::ResolveRefused {
                from,
                reason: "not a peer server",
            });
            return;
        }
        let contact = self.bindings.get(&id).copied();
        self.events.push_back(LocationEvent::ResolveAnswered {
            id: short_hex(&id),
            found: contact.is_some(),
            peer: from,
        });
        self.send(
            from,
            &VmMessage::Resolved {
                request_id,
                id,
                contact,
            },
        );
    }

    fn on_resolved(
        &mut self,
        now: Time,
        from: SocketAddrV4,
        request_id: u32,
        id: Id,
        contact: Option<SocketAddrV4>,
    ) {
        let Some(p) = self.pending.get_mut(&request_id) else {
            return; // late or duplicate
        };
        if p.id != id || !p.waiting.contains(&from) {
            self.events
                .push_back(LocationEvent::ResolvedRejected { from, request_id });
            return;
        }
        p.waiting.retain(|a| *a != from);
        if contact.is_none() && !p.waiting.is_empty() {
            return; // other peers may know it
        }
        let Some(p) = self.pending.remove(&request_id) else {
            return;
        };
        let ms = millis_f64(now.saturating_sub(p.started));
        self.events.push_back(LocationEvent::Resolved {
            id: short_hex(&id),
            found: contact.is_some(),
            resolve_ms: ms,
            peer: from,
        });
        self.reply(p.client, p.client_request, id, contact);
    }

    fn reply(&mut self, to: SocketAddrV4, request_id: u32, id: Id, contact: Option<SocketAddrV4>) {
        self.send(
            to,
            &VmMessage::LookupReply {
                request_id,
                id,
                contact,
            },
        );
    }

    /// Answers "not found" for resolutions past their deadline.
    pub fn handle_timeout(&mut self, now: Time) {
        let due: Vec<u32> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(k, _)| *k)
            .collect();
        for rid in due {
            if let Some(p) = self.pending.remove(&rid) {
                self.events.push_back(LocationEvent::ResolveTimeout {
                    id: short_hex(&p.id),
                    request_id: rid,
                });
                self.reply(p.client, p.client_request, p.id, None);
            }
        }
    }

    /// The next resolution deadline.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.pending.values().map(|p| p.deadline).min()
    }

    /// Next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    /// Next event.
    pub fn poll_event(&mut self) -> Option<LocationEvent> {
        self.events.pop_front()
    }
}

impl crate::role::Role for LocationServer {
    fn port(&self) -> u16 {
        binfm_stack::wire::ports::LOCATION
    }
    crate::role::role_io!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    fn addr(last: u8, port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, last), port)
    }

    const LS1: u8 = 1;
    const LS2: u8 = 2;

    fn servers() -> (LocationServer, LocationServer) {
        let a = LocationServer::new("one", 5060, vec![("two".into(), addr(LS2, 5060))]);
        let b = LocationServer::new("two", 5060, vec![("one".into(), addr(LS1, 5060))]);
        (a, b)
    }

    fn msgs(s: &mut LocationServer) -> Vec<(SocketAddrV4, VmMessage)> {
        std::iter::from_fn(|| s.poll_transmit())
            .map(|t| (t.dst, VmMessage::parse(&t.payload).unwrap()))
            .collect()
    }

    #[test]
    fn register_then_local_lookup() {
        let (mut a, _) = servers();
        let reg = VmMessage::Register {
            id: [7; 32],
            contact: addr(50, 4000),
        };
        a.handle_datagram(Time::ZERO, addr(50, 4000), addr(LS1, 5060), &reg.to_bytes());
        assert_eq!(
            msgs(&mut a),
            vec![(
                addr(50, 4000),
                VmMessage::RegisterAck {
                    id: [7; 32],
                    contact: addr(50, 4000)
                }
            )]
        );
        let q = VmMessage::Lookup {
            request_id: 9,
            id: [7; 32],
        };
        a.handle_datagram(Time::ZERO, addr(60, 4000), addr(LS1, 5060), &q.to_bytes());
        assert_eq!(
            msgs(&mut a),
            vec![(
                addr(60, 4000),
                VmMessage::LookupReply {
                    request_id: 9,
                    id: [7; 32],
                    contact: Some(addr(50, 4000))
                }
            )]
        );
    }

    #[test]
    fn remote_lookup_goes_through_the_peer_and_unknown_is_not_found() {
        let (mut a, mut b) = servers();
        let reg = VmMessage::Register {
            id: [8; 32],
            contact: addr(70, 4000),
        };
        b.handle_datagram(Time::ZERO, addr(70, 4000), addr(LS2, 5060), &reg.to_bytes());
        msgs(&mut b);
        for (id, want) in [([8; 32], Some(addr(70, 4000))), ([9; 32], None)] {
            let q = VmMessage::Lookup { request_id: 1, id };
            a.handle_datagram(Time::ZERO, addr(60, 4000), addr(LS1, 5060), &q.to_bytes());
            let out = msgs(&mut a);
            assert_eq!(out.len(), 1);
            assert_eq!(out[0].0, addr(LS2, 5060));
            assert!(matches!(out[0].1, VmMessage::Resolve { .. }));
            b.handle_datagram(
                Time::ZERO,
                addr(LS1, 5060),
                addr(LS2, 5060),
                &out[0].1.to_bytes(),
            );
            let back = msgs(&mut b);
            a.handle_datagram(
                Time::ZERO,
                addr(LS2, 5060),
                addr(LS1, 5060),
                &back[0].1.to_bytes(),
            );
            assert_eq!(
                msgs(&mut a),
                vec![(
                    addr(60, 4000),
                    VmMessage::LookupReply {
                        request_id: 1,
                        id,
                        contact: want
                    }
                )]
            );
            assert_eq!(a.pending(), 0);
        }
    }

    #[test]
    fn resolve_from_a_stranger_is_refused_and_silence_times_out() {
        let (mut a, mut b) = servers();
        let r = VmMessage::Resolve {
            request_id: 1,
            id: [1; 32],
        };
        b.handle_datagram(Time::ZERO, addr(99, 5060), addr(LS2, 5060), &r.to_bytes());
        assert!(msgs(&mut b).is_empty());
        let q = VmMessage::Lookup {
            request_id: 3,
            id: [1; 32],
        };
        a.handle_datagram(Time::ZERO, addr(60, 4000), addr(LS1, 5060), &q.to_bytes());
        msgs(&mut a);
        assert_eq!(a.poll_timeout(), Some(RESOLVE_TIMEOUT));
        a.handle_timeout(RESOLVE_TIMEOUT);
        assert_eq!(
            msgs(&mut a),
            vec![(
                addr(60, 4000),
                VmMessage::LookupReply {
                    request_id: 3,
                    id: [1; 32],
                    contact: None
                }
            )]
        );
        // A home-domain id that is not registered at home: not found at once.
        a.set_home([2; 32], "one");
        let q = VmMessage::Lookup {
            request_id: 4,
            id: [2; 32],
        };
        a.handle_datagram(Time::ZERO, addr(60, 4000), addr(LS1, 5060), &q.to_bytes());
        assert!(matches!(
            msgs(&mut a)[..],
            [(_, VmMessage::LookupReply { contact: None, .. })]
        ));
    }

    #[test]
    fn pending_table_is_bounded() {
        let (mut a, _) = servers();
        for i in 0..(MAX_PENDING as u32 + 10) {
            let q = VmMessage::Lookup {
                request_id: i,
                id: [3; 32],
            };
            a.handle_datagram(Time::ZERO, addr(60, 4000), addr(LS1, 5060), &q.to_bytes());
        }
        assert_eq!(a.pending(), MAX_PENDING);
    }

    proptest! {
        #[test]
        fn handle_datagram_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200), from_peer in any::<bool>()) {
            let (mut a, _) = servers();
            let from = if from_peer { addr(LS2, 5060) } else { addr(60, 4000) };
            a.handle_datagram(Time::ZERO, from, addr(LS1, 5060), &data);
            let mut v = b"VM\x01".to_vec();
            v.extend_from_slice(&data);
            a.handle_datagram(Time::ZERO, from, addr(LS1, 5060), &v);
            a.handle_timeout(Time::from_secs(10));
            while a.poll_transmit().is_some() {}
        }
    }
}
