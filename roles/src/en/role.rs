//! The BINFM end node as a [`Role`]: a bound lease makes it register, and the end-node
//! commands (call, hang up, rekey) are the ones the vertical model's end node takes too.

use super::EndNode;
use crate::Time;
use crate::address::Lease;
use crate::role::{CallView, Command, EndNodeCommands, Role, end_node_command, role_io};
use binfm_stack::wire::toall::HashAddr;

impl EndNodeCommands for EndNode {
    fn on_bound(&mut self, now: Time, lease: &Lease, _segment: usize) {
        self.on_address(
            now,
            lease.address,
            lease.nat_public,
            lease.super_nodes.clone(),
        );
    }
    fn on_unbound(&mut self) {
        self.on_address_lost();
    }
    fn call(&mut self, now: Time, peer: HashAddr) {
        EndNode::call(self, now, peer);
    }
    fn hangup(&mut self, now: Time, peer: HashAddr) {
        EndNode::hangup(self, now, peer);
    }
    fn rekey(&mut self, now: Time) {
        EndNode::rekey(self, now);
    }
}

impl Role for EndNode {
    fn socket_buffer(&self) -> usize {
        crate::role::CLIENT_SOCKET_BUFFER
    }
    fn port(&self) -> u16 {
        EndNode::port(self)
    }

    fn handle_command(&mut self, now: Time, command: &Command) {
        end_node_command(self, now, command);
    }

    role_io!();

    fn take_work(&mut self) -> crate::work::Work {
        EndNode::take_work(self)
    }

    fn calls(&self) -> Vec<CallView<'_>> {
        EndNode::calls(self)
            .iter()
            .map(|c| CallView::new(c.peer, &c.media))
            .collect()
    }
}
