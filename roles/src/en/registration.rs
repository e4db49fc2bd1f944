//! The EN's address and registration (paper, Figure 7): a signed ToALL Tx with its private
//! and (H16-guessed, then SN-corrected) NAT endpoint and DH public value, retransmitted with
//! backoff, failing over to the next SN of the DHCP list after [`TRIES_PER_SN`] tries.

use super::events::EnEvent;
use super::light::KEEPALIVE_INTERVAL;
use super::{EndNode, Purpose};
use crate::Time;
use crate::nat::h16;
use crate::session::retransmit::{Backoff, RTO_INITIAL, RTO_MAX};
use crate::util::{hex, millis};
use crate::work::Op;
use binfm_stack::wire::binfm::{Message, TxStatus, reject};
use binfm_stack::wire::toall::ToallTx;
use std::net::{Ipv4Addr, SocketAddrV4};

/// Unanswered tries before moving to the next super node.
pub const TRIES_PER_SN: u32 = 3;
/// Lookups of our own latest seq after stale-seq refusals, per start of the node.
pub const MAX_RESUME_RETRIES: u32 = 3;

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
        self.nat_public = nat_public;
        if !sns.is_empty() {
            self.sns = sns;
            self.sn_index = 0;
        }
        if moved {
            self.hand_over(now, private, nat);
        }
        self.had_address_before = false;
        self.register(now, "new_address");
        if !self.resume_asked {
            // A (re)started node may have signed Txs before: ask the chain for our latest
            // seq (in parallel with the first registration, so a fresh start loses no time;
            // after a restart the stale first Tx is refused and we register again above it).
            self.resume_asked = true;
            let me = self.wallet.hash_addr();
            self.query(now, me, Purpose::Resume, self.sn_index);
        }
    }

    /// The chain's answer about our own address: `seq` is the latest Tx we signed that our SN
    /// knows (`None`: none). Continue above it, and register again if what we sent (or had
    /// accepted, or had refused) is not above it.
    pub(super) fn resume_from(&mut self, now: Time, sn: SocketAddrV4, seq: Option<u64>) {
        let found = seq.unwrap_or(0);
        if let Some(seq) = seq {
            self.events
                .push_back(EnEvent::SeqResumed { seq, sn }.into());
            self.wallet.resume_after(seq);
        }
        let stale = match (&self.reg, &self.registered) {
            (Some(r), _) => r.tx.out.seq <= found,
            (None, Some(t)) => t.out.seq <= found,
            (None, None) => true,
        };
        if stale {
            self.register(now, "resume");
        }
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
        self.work.add(Op::DhKeygen);
        self.register(now, "key_renewal");
    }

    pub(super) fn register(&mut self, now: Time, why: &'static str) {
        let (Some(private), Some(nat)) = (self.private, self.nat) else {
            return;
        };
        self.wallet.set_addresses(private, nat);
        let tx = self.wallet.next_tx(millis(now));
        self.work.add(Op::Sign);
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
                self.keepalive_at = Some(now + KEEPALIVE_INTERVAL);
            }
            TxStatus::EndpointMismatch => {
                let guessed = self.nat;
                // The SN says where our Tx came from. Only the port may differ from our guess:
                // the address must be the NAT's public one from DHCP (or our own without a
                // NAT). Anything else is an SN (or a spoofer) trying to have us register an
                // endpoint we do not own: refused, and nothing is signed with it.
                let own_ip = self.nat_public.or(self.private.map(|p| *p.ip()));
                if own_ip != Some(*observed.ip()) {
                    self.events.push_back(
                        EnEvent::EndpointRefused {
                            sn: from,
                            observed,
                            expected_ip: own_ip,
                        }
                        .into(),
                    );
                    return;
                }
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
                // Our seq is behind the chain's (a restart lost it): look it up, then
                // register above it; a few times at most.
                if other == TxStatus::Rejected(reject::STALE_SEQ)
                    && self.resume_retries < MAX_RESUME_RETRIES
                {
                    self.resume_retries += 1;
                    let me = self.wallet.hash_addr();
                    self.query(now, me, Purpose::Resume, self.sn_index);
                }
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
