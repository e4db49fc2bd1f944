//! The BINFM end node as a [`Role`]: a bound lease makes it register, and the end-node
//! commands (call, hang up, rekey) are the ones the vertical model's end node takes too.

use super::EndNode;
use crate::Time;
use crate::role::{CallView, Command, Role, role_io};

impl Role for EndNode {
    fn port(&self) -> u16 {
        EndNode::port(self)
    }

    fn handle_command(&mut self, now: Time, command: &Command) {
        match command {
            Command::Bound { lease, .. } => self.on_address(
                now,
                lease.address,
                lease.nat_public,
                lease.super_nodes.clone(),
            ),
            Command::Unbound => self.on_address_lost(),
            Command::Call(peer) => self.call(now, *peer),
            Command::Hangup(peer) => self.hangup(now, *peer),
            Command::Rekey => self.rekey(now),
            _ => {}
        }
    }

    role_io!();

    fn calls(&self) -> Vec<CallView<'_>> {
        EndNode::calls(self)
            .iter()
            .map(|c| CallView {
                peer: c.peer,
                media: &c.media,
            })
            .collect()
    }
}
