//! `lying-sn`: a super node that lies about one EN. It runs the honest code; the attack sees
//! what is delivered to it (to learn the EN's Txs) and rewrites what it sends:
//! - `mismatch`: every TxAck for a Tx of the EN becomes `EndpointMismatch` naming the SN's own
//!   endpoint (its address, the EN port), and a Tx that names that endpoint is acknowledged
//!   as accepted and relayed to the SN's peers, which take relays without the endpoint check.
//! - `stale`: a Reply carrying a Tx of the EN carries the oldest Tx of it the SN has seen.
//! - `notfound`: a Reply about the EN says "not found".

use super::Outbox;
use super::packet::{Udp, udp_packet};
use crate::topology::attack_step::Lie;
use binfm_roles::wallet::verify_tx;
use binfm_stack::wire::binfm::{Message, TxStatus};
use binfm_stack::wire::ports;
use binfm_stack::wire::toall::{HashAddr, ToallTx};
use std::net::SocketAddrV4;

/// A lie told in a Reply: to whom, for which request, and the seqs involved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyLie {
    /// Where the Reply went.
    pub to: SocketAddrV4,
    /// Its request id.
    pub request_id: u32,
    /// The seq of the Tx the honest Reply carried.
    pub genuine_seq: u64,
    /// The seq of the Tx served instead (0 for "not found").
    pub served_seq: u64,
}

/// The state and counts of one `lying-sn` step.
#[derive(Debug)]
pub struct LyingSn {
    lie: Lie,
    about: HashAddr,
    me: SocketAddrV4,
    peers: Vec<SocketAddrV4>,
    /// Txs of the EN seen by the SN, in order of arrival.
    txs: Vec<ToallTx>,
    /// TxAcks rewritten.
    pub acks_forged: u64,
    /// Valid Txs signed by the EN that name the SN's endpoint.
    pub forged_txs_signed: u64,
    /// Their seqs.
    pub forged_seqs: Vec<u64>,
    /// TxRelays of such Txs sent to the peers.
    pub relayed: u64,
    /// Replies rewritten.
    pub reply_lies: Vec<ReplyLie>,
}

impl LyingSn {
    /// SN `me` (with `peers`) lying `lie` about `about`.
    pub fn new(lie: Lie, about: HashAddr, me: SocketAddrV4, peers: Vec<SocketAddrV4>) -> Self {
        LyingSn {
            lie,
            about,
            me,
            peers,
            txs: Vec::new(),
            acks_forged: 0,
            forged_txs_signed: 0,
            forged_seqs: Vec::new(),
            relayed: 0,
            reply_lies: Vec::new(),
        }
    }

    /// The lie.
    pub fn lie(&self) -> Lie {
        self.lie
    }

    /// The endpoint a `mismatch` lie names: the SN's address and the EN port.
    pub fn forged_endpoint(&self) -> SocketAddrV4 {
        SocketAddrV4::new(*self.me.ip(), ports::EN)
    }

    /// A datagram delivered to the SN: Txs of the EN are remembered; under `mismatch` a valid
    /// Tx naming the forged endpoint is relayed to the peers.
    pub fn on_sn_delivery(&mut self, udp: Udp<'_>, out: &mut Outbox) {
        if udp.dst.port() != ports::SN {
            return;
        }
        let (tx, submitted) = match Message::parse(udp.payload) {
            Ok(Message::TxSubmit { tx }) => (tx, true),
            Ok(Message::TxRelay { tx }) => (tx, false),
            _ => return,
        };
        if tx.out.hash_addr != self.about || self.txs.iter().any(|t| t.id() == tx.id()) {
            return;
        }
        let names_me = SocketAddrV4::new(tx.out.nat_ip, tx.out.nat_port) == self.forged_endpoint();
        if self.lie == Lie::Mismatch && submitted && names_me && verify_tx(&tx).is_ok() {
            self.forged_txs_signed += 1;
            self.forged_seqs.push(tx.out.seq);
            let relay = Message::TxRelay { tx: tx.clone() }.to_bytes();
            for p in &self.peers {
                out.push_back(udp_packet(self.me, *p, &relay));
                self.relayed += 1;
            }
        }
        self.txs.push(tx);
    }

    /// A packet the SN sends: the lie in its place, or `None` to send it as it is.
    pub fn rewrite(&mut self, udp: Udp<'_>) -> Option<Vec<u8>> {
        if udp.src.port() != ports::SN {
            return None;
        }
        let msg = Message::parse(udp.payload).ok()?;
        let lie = match (self.lie, msg) {
            (Lie::Mismatch, Message::TxAck { tx_id, .. }) => {
                let tx = self.txs.iter().find(|t| t.id() == tx_id)?;
                let forged = self.forged_endpoint();
                let status = if SocketAddrV4::new(tx.out.nat_ip, tx.out.nat_port) == forged {
                    TxStatus::Accepted
                } else {
                    TxStatus::EndpointMismatch
                };
                self.acks_forged += 1;
                Message::TxAck {
                    tx_id,
                    status,
                    observed: forged,
                }
            }
            (
                Lie::Stale,
                Message::Reply {
                    request_id,
                    hash_addr,
                    found,
                    height,
                    confirmations,
                    tx: Some(tx),
                    ..
                },
            ) if hash_addr == self.about => {
                let oldest = self.txs.iter().min_by_key(|t| t.out.seq)?;
                if oldest.out.seq >= tx.out.seq {
                    return None;
                }
                self.reply_lies.push(ReplyLie {
                    to: udp.dst,
                    request_id,
                    genuine_seq: tx.out.seq,
                    served_seq: oldest.out.seq,
                });
                Message::Reply {
                    request_id,
                    hash_addr,
                    found,
                    height,
                    confirmations,
                    tx: Some(oldest.clone()),
                    unconfirmed: None,
                    // The old Tx is served without a Merkle proof (this attacker does not
                    // build one for an old block).
                    proof: None,
                }
            }
            (
                Lie::NotFound,
                Message::Reply {
                    request_id,
                    hash_addr,
                    tx,
                    unconfirmed,
                    ..
                },
            ) if hash_addr == self.about && (tx.is_some() || unconfirmed.is_some()) => {
                let genuine_seq = tx.or(unconfirmed).map_or(0, |t| t.out.seq);
                self.reply_lies.push(ReplyLie {
                    to: udp.dst,
                    request_id,
                    genuine_seq,
                    served_seq: 0,
                });
                Message::Reply {
                    request_id,
                    hash_addr,
                    found: false,
                    height: 0,
                    confirmations: 0,
                    tx: None,
                    unconfirmed: None,
                    proof: None,
                }
            }
            _ => return None,
        };
        Some(udp_packet(udp.src, udp.dst, &lie.to_bytes()))
    }
}
