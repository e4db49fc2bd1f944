//! The EN's address and registration (paper, Figure 7): a signed ToALL Tx with its private
//! and (H16-guessed, then SN-corrected) NAT endpoint and DH public value, retransmitted with
//! backoff, failing over to the next SN of the DHCP list after [`TRIES_PER_SN`] tries.

use super::EndNode;
use super::events::EnEvent;
use crate::Time;
use crate::nat::h16;
use crate::session::retransmit::{Backoff, RTO_INITIAL, RTO_MAX};
use crate::util::{hex, millis};
use binfm_stack::wire::binfm::{Message, TxStatus};
use binfm_stack::wire::toall::ToallTx;
use std::net::{Ipv4Addr, SocketAddrV4};

/// Unanswered tries before moving to the next super node.
pub const TRIES_PER_SN: u32 = 3;

/// The Tx being registered until an SN acknowledges it.
#[derive(Debug)]
pub(super) struct Registration {
    pub(super) tx: ToallTx,
    pub(super) tx_id: [u8; 32],
    pub(super) backoff: Backoff,
}

impl EndNode {
    /// A new address from DHCP: remember it and register (paper, Figure 7).
    pub fn on_address(
        &mut self,
        now: Time,
        private_ip: Ipv4Addr,
        nat_public: Option<Ipv4Addr>,
        sns: Vec<SocketAddrV4>,
    ) {
        let private = SocketAddrV4::new(private_ip, self.port);
        // Without a NAT the EN is its own public endpoint.
        let nat = match nat_public {
            Some(ip) => SocketAddrV4::new(ip, h16(private_ip, self.port)),
            None => private,
        };
        let moved = self.private.is_some_and(|p| p != private) || self.had_address_before;
        self.private = Some(private);
        self.nat = Some(nat);
        if !sns.is_empty() {
            self.sns = sns;
            self.sn_index = 0;
        }
        if moved {
            self.hand_over(now, private, nat);
        }
        self.had_address_before = false;
        self.register(now, "new_address");
    }

    /// The address was lost (lease expired, moving): stop retransmitting.
    pub fn on_address_lost(&mut self) {
        if self.private.is_some() {
            self.had_address_before = true;
        }
        self.private = None;
        self.reg = None;
    }

    /// Renews the DH key pair and registers the new Y (key renewal, paper Figure 10).
    pub fn renew_key(&mut self, now: Time, rng: &mut impl rand::CryptoRng) {
        self.wallet.renew_dh(rng);
        self.register(now, "key_renewal");
    }

    pub(super) fn register(&mut self, now: Time, why: &'static str) {
        let (Some(private), Some(nat)) = (self.private, self.nat) else {
            return;
        };
        self.wallet.set_addresses(private, nat);
        let tx = self.wallet.next_tx(millis(now));
        let tx_id = tx.id();
        self.events.push_back(
            EnEvent::Register {
                seq: tx.out.seq,
                why,
                private,
                nat,
                hash_addr: hex(&tx.out.hash_addr),
            }
            .into(),
        );
        self.reg = Some(Registration {
            tx,
            tx_id,
            backoff: Backoff::new(RTO_INITIAL, RTO_MAX, now),
        });
        self.send_registration(now);
    }

    pub(super) fn send_registration(&mut self, now: Time) {
        let Some(sn) = self.super_node() else {
            self.events.push_back(EnEvent::NoSuperNode {}.into());
            self.reg = None;
            return;
        };
        let Some(reg) = &mut self.reg else { return };
        reg.backoff.on_send(now);
        let payload = Message::TxSubmit { tx: reg.tx.clone() }.to_bytes();
        self.events.push_back(
            EnEvent::TxSent {
                seq: reg.tx.out.seq,
                r#try: reg.backoff.tries(),
                sn,
            }
            .into(),
        );
        self.send(sn, payload);
    }

    pub(super) fn on_ack(
        &mut self,
        now: Time,
        from: SocketAddrV4,
        tx_id: [u8; 32],
        status: TxStatus,
        observed: SocketAddrV4,
    ) {
        let Some(reg) = &self.reg else { return };
        if reg.tx_id != tx_id {
            return; // an ack for an older registration
        }
        match status {
            TxStatus::Accepted | TxStatus::Duplicate => {
                let seq = reg.tx.out.seq;
                self.events.push_back(
                    EnEvent::Registered {
                        seq,
                        sn: from,
                        observed,
                    }
                    .into(),
                );
                self.registered = self.reg.take().map(|r| r.tx);
            }
            TxStatus::EndpointMismatch => {
                let guessed = self.nat;
                self.events
                    .push_back(EnEvent::EndpointCorrected { guessed, observed }.into());
                if self.nat == Some(observed) {
                    // The SN insists on what we already sent: do not loop; keep retransmitting.
                    return;
                }
                self.nat = Some(observed);
                self.register(now, "endpoint_corrected");
            }
            other => {
                self.events.push_back(
                    EnEvent::RegisterRejected {
                        status: format!("{other:?}"),
                    }
                    .into(),
                );
                self.reg = None;
            }
        }
    }

    /// Retransmits the registration if due; fails over after [`TRIES_PER_SN`] tries.
    pub(super) fn registration_due(&mut self, now: Time) {
        if let Some(reg) = &self.reg
            && reg.backoff.next() <= now
        {
            let tries = reg.backoff.tries();
            if tries >= TRIES_PER_SN && tries.is_multiple_of(TRIES_PER_SN) {
                self.fail_over();
            }
            self.send_registration(now);
        }
    }

    pub(super) fn fail_over(&mut self) {
        if self.sns.len() > 1 {
            let from = self.super_node();
            self.sn_index = (self.sn_index + 1) % self.sns.len();
            self.events.push_back(
                EnEvent::SnFailover {
                    from,
                    to: self.super_node(),
                }
                .into(),
            );
        }
    }
}
