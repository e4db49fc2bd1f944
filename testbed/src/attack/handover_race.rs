//! `handover-race`: an attacker that sniffs its segment sends every Handover Request it sees
//! again, at once, from its own address to the same destination. When its copy arrives first
//! and the peer takes the UDP source as the new media address, the call's media comes to the
//! attacker and the genuine request is refused as a replay.

use super::packet::{Udp, udp_packet};
use super::{ATTACKER_PORT, Outbox};
use binfm_stack::wire::binfm::Message;
use binfm_stack::wire::rtp::is_rtp;
use binfm_stack::wire::toall::HashAddr;
use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddrV4};

/// The state and counts of one `handover-race` step.
#[derive(Debug)]
pub struct HandoverRace {
    me: Ipv4Addr,
    seen: BTreeSet<(HashAddr, u64)>,
    /// Handover Requests copied and sent again.
    pub copied: u64,
    /// Packets delivered to the attacker since the step.
    pub received_packets: u64,
    /// Their IPv4 bytes.
    pub received_bytes: u64,
    /// Of those: RTP media.
    pub media_packets: u64,
    /// Their IPv4 bytes.
    pub media_bytes: u64,
}

impl HandoverRace {
    /// An attacker at `me`.
    pub fn new(me: Ipv4Addr) -> Self {
        HandoverRace {
            me,
            seen: BTreeSet::new(),
            copied: 0,
            received_packets: 0,
            received_bytes: 0,
            media_packets: 0,
            media_bytes: 0,
        }
    }

    /// The attacker's address.
    pub fn address(&self) -> Ipv4Addr {
        self.me
    }

    pub(super) fn on_tap(&mut self, udp: Udp<'_>, out: &mut Outbox) {
        if *udp.src.ip() == self.me {
            return;
        }
        let Ok(Message::HandoverRequest {
            sender, counter, ..
        }) = Message::parse(udp.payload)
        else {
            return;
        };
        if !self.seen.insert((sender, counter)) {
            return; // a retransmission, or the same request seen on another hop
        }
        self.copied += 1;
        let from = SocketAddrV4::new(self.me, ATTACKER_PORT);
        out.push_back(udp_packet(from, udp.dst, udp.payload));
    }

    pub(super) fn on_receive(&mut self, len: usize, udp: Option<Udp<'_>>) {
        self.received_packets += 1;
        self.received_bytes += len as u64;
        if udp.is_some_and(|u| is_rtp(u.payload)) {
            self.media_packets += 1;
            self.media_bytes += len as u64;
        }
    }
}
