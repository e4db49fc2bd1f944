//! The vertical model's end node as a [`Role`]: a lease bound on a network makes it run STUN
//! against that network's server (set with [`VerticalNode::set_stun_servers`]), register and
//! re-invite its calls; the end-node commands are the ones the BINFM end node takes.

use super::VerticalNode;
use crate::Time;
use crate::role::{CallView, Command, Role, role_io};

impl Role for VerticalNode {
    fn port(&self) -> u16 {
        VerticalNode::port(self)
    }

    fn handle_command(&mut self, now: Time, command: &Command) {
        match command {
            Command::Bound { lease, segment } => match self.stun_server_of(*segment) {
                Some(stun) => self.on_address(now, lease.address, stun),
                // No STUN server here: the EN has an address but cannot learn its contact.
                None => self.on_address_lost(),
            },
            Command::Unbound => self.on_address_lost(),
            Command::Call(peer) => self.call(now, *peer),
            Command::Hangup(peer) => self.hangup(now, *peer),
            Command::Rekey => self.rekey(now),
            _ => {}
        }
    }

    role_io!();

    fn calls(&self) -> Vec<CallView<'_>> {
        VerticalNode::calls(self)
            .iter()
            .map(|c| CallView {
                peer: c.peer,
                media: &c.media,
            })
            .collect()
    }
}
