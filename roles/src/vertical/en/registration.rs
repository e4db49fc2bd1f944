//! The vertical EN's registration of its public contact with its home location server
//! (mobility step), retransmitted with backoff until acknowledged.

use super::VerticalNode;
use super::events::VerticalEvent;
use crate::Time;
use crate::session::retransmit::{Backoff, RTO_INITIAL, RTO_MAX};
use binfm_stack::wire::vertical::{Id, VmMessage};
use std::net::SocketAddrV4;

/// The contact being registered until the location server acknowledges it.
#[derive(Debug, Clone)]
pub(super) struct Registration {
    pub(super) contact: SocketAddrV4,
    pub(super) backoff: Backoff,
}

impl VerticalNode {
    pub(super) fn register(&mut self, now: Time, contact: SocketAddrV4) {
        self.reg = Some(Registration {
            contact,
            backoff: Backoff::new(RTO_INITIAL, RTO_MAX, now),
        });
        self.send_register(now);
    }

    pub(super) fn send_register(&mut self, now: Time) {
        let Some(reg) = &mut self.reg else { return };
        reg.backoff.on_send(now);
        let (contact, tries) = (reg.contact, reg.backoff.tries());
        self.ev(VerticalEvent::RegisterSent {
            contact,
            r#try: tries,
        });
        let bytes = VmMessage::Register {
            id: self.id,
            contact,
        }
        .to_bytes();
        self.send(self.location, bytes);
    }

    /// The location server acknowledged a registration (the current one, if it names it).
    pub(super) fn on_register_ack(&mut self, id: Id, contact: SocketAddrV4) {
        if id == self.id && self.reg.as_ref().is_some_and(|r| r.contact == contact) {
            self.reg = None;
            self.registered = Some(contact);
            self.ev(VerticalEvent::Registered { contact });
        }
    }

    /// Retransmits the registration if due.
    pub(super) fn registration_due(&mut self, now: Time) {
        if self.reg.as_ref().is_some_and(|r| r.backoff.next() <= now) {
            self.send_register(now);
        }
    }
}
