//! The vertical model's end node as a [`Role`]: a lease bound on a network makes it run STUN
//! against that network's server (set with [`VerticalNode::set_stun_servers`]), register and
//! re-invite its calls; the end-node commands are the ones the BINFM end node takes.

use super::VerticalNode;
use crate::Time;
use crate::address::Lease;
use crate::role::{CallView, Command, EndNodeCommands, Role, end_node_command, role_io};
use binfm_stack::wire::vertical::Id;

impl EndNodeCommands for VerticalNode {
    fn on_bound(&mut self, now: Time, lease: &Lease, segment: usize) {
        match self.stun_server_of(segment) {
            Some(stun) => self.on_address(now, lease.address, stun),
            // No STUN server here: the EN has an address but cannot learn its contact.
            None => self.on_address_lost(),
        }
    }
    fn on_unbound(&mut self) {
        self.on_address_lost();
    }
    fn call(&mut self, now: Time, peer: Id) {
        VerticalNode::call(self, now, peer);
    }
    fn hangup(&mut self, now: Time, peer: Id) {
        VerticalNode::hangup(self, now, peer);
    }
    fn rekey(&mut self, now: Time) {
        VerticalNode::rekey(self, now);
    }
}

impl Role for VerticalNode {
    fn socket_buffer(&self) -> usize {
        crate::role::CLIENT_SOCKET_BUFFER
    }
    fn port(&self) -> u16 {
        VerticalNode::port(self)
    }

    fn handle_command(&mut self, now: Time, command: &Command) {
        end_node_command(self, now, command);
    }

    role_io!();

    fn take_work(&mut self) -> crate::work::Work {
        VerticalNode::take_work(self)
    }

    fn calls(&self) -> Vec<CallView<'_>> {
        VerticalNode::calls(self)
            .iter()
            .map(|c| CallView::new(c.peer, &c.media))
            .collect()
    }
}
