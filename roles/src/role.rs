//! The one interface every role implements, in the spirit of quinn-proto and str0m: input
//! goes in (a datagram, a timeout, a command) with the current time, typed output is polled
//! (datagrams to send, the next timer, events, an address change, bytes to persist).
//!
//! A driver holds roles as `Box<dyn Role>` and never needs to know which role it holds:
//! after every input it drains `poll_transmit`, `poll_event`, `poll_config` and
//! `poll_persist`, then asks `poll_timeout` when to wake the role next. Roles that need
//! something a datagram cannot carry (a new lease, "call B", "stop mining") get it as a
//! [`Command`]; a role ignores the commands that do not concern it.

use crate::address::{ConfigChange, Lease};
use crate::event::Event;
use crate::session::media::MediaSession;
use crate::work::Work;
use crate::{Time, Transmit};
use binfm_stack::wire::toall::HashAddr;
use std::any::Any;
use std::net::{Ipv4Addr, SocketAddrV4};

/// What a driver tells a role besides datagrams and timeouts.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// The host starts (at time zero, or after a restart). `address` is the role's port's
    /// address when it is configured statically (`None` while DHCP has not bound one).
    Start {
        /// The static address of the role's port, if any.
        address: Option<Ipv4Addr>,
    },
    /// The role's port got an address from DHCP, on network `segment` (topology order).
    Bound {
        /// The lease as the DHCP client reported it.
        lease: Lease,
        /// The network the host is on now.
        segment: usize,
    },
    /// The role's port lost its address.
    Unbound,
    /// The host was attached to another network: ask for an address there.
    Moved,
    /// The host leaves its network: give its address back now.
    Release,
    /// The run is ending: stop work that would go on by itself (mining), keep answering.
    WindDown,
    /// End node: call the peer with this hash address.
    Call(HashAddr),
    /// End node: hang up the call with this peer.
    Hangup(HashAddr),
    /// End node: renew the key of every active call.
    Rekey,
}

/// What a server role's socket buffers each way (see [`Role::socket_buffer`]).
pub const SERVER_SOCKET_BUFFER: usize = 256 * 1024;
/// What a client role's socket buffers each way: 5 full-size datagrams. An emulated host's
/// stack is polled after every packet it receives, so a client's socket holds one received
/// datagram at a time, and a send that finds the buffer full moves queued datagrams onto the
/// link until it fits (`IpStack::send_udp`); thousands of client hosts fit in memory only
/// with small buffers (docs/scale.md).
pub const CLIENT_SOCKET_BUFFER: usize = 8 * 1024;
// Room for several datagrams of a full 1,500-byte MTU.
const _: () = assert!(CLIENT_SOCKET_BUFFER >= 4 * 1500);

/// A sans-IO protocol role bound to one UDP port of a host.
///
/// `Any` is a supertrait so that reports can read a role's own state
/// (`(role as &dyn Any).downcast_ref::<SuperNode>()`) without the driver knowing the type.
pub trait Role: std::fmt::Debug + Any {
    /// The UDP port the role receives on.
    fn port(&self) -> u16;

    /// Bytes its socket should buffer each way in an emulated host (a server takes bursts,
    /// a client little: thousands of client hosts fit in memory only with small buffers).
    fn socket_buffer(&self) -> usize {
        SERVER_SOCKET_BUFFER
    }

    /// A command from the driver; roles ignore what does not concern them.
    fn handle_command(&mut self, now: Time, command: &Command) {
        let _ = (now, command);
    }

    /// A datagram arrived on the role's port.
    fn handle_datagram(&mut self, now: Time, from: SocketAddrV4, to: SocketAddrV4, payload: &[u8]);

    /// Datagrams that arrived together on the role's port (a driver that reads its socket
    /// until it is empty): the same as [`Role::handle_datagram`] on each in order, which is
    /// what roles without a faster way do; a super node verifies the burst's Txs in one batch.
    fn handle_datagrams(&mut self, now: Time, to: SocketAddrV4, burst: &[(SocketAddrV4, &[u8])]) {
        for (from, payload) in burst {
            self.handle_datagram(now, *from, to, payload);
        }
    }

    /// The time returned by [`Role::poll_timeout`] has come.
    fn handle_timeout(&mut self, now: Time);

    /// When the role must next be woken without new input.
    fn poll_timeout(&self) -> Option<Time>;

    /// The next datagram to send.
    fn poll_transmit(&mut self) -> Option<Transmit>;

    /// The next event for the run's log.
    fn poll_event(&mut self) -> Option<Event>;

    /// An address change the host must apply (a DHCP client's lease).
    fn poll_config(&mut self) -> Option<ConfigChange> {
        None
    }

    /// The next record to append to the role's durable log (a super node's blocks).
    fn poll_persist(&mut self) -> Option<Vec<u8>> {
        None
    }

    /// The calls of an end node, whichever model it runs (empty for other roles).
    fn calls(&self) -> Vec<CallView<'_>> {
        Vec::new()
    }

    /// The expensive operations the role performed since this was last called (DH, ed25519,
    /// Query handling, block validation), leaving zero behind. A virtual-time driver charges
    /// their cost as time before the outputs of the same input leave; a live driver drops
    /// the tally (the work took real time). Roles with no such work keep the default.
    fn take_work(&mut self) -> Work {
        Work::NONE
    }
}

/// The commands both models' end nodes take, so one dispatch serves both
/// ([`end_node_command`]); each model only says what a new address means for it.
pub trait EndNodeCommands {
    /// The host's port got `lease` on network `segment`.
    fn on_bound(&mut self, now: Time, lease: &Lease, segment: usize);
    /// The host's port lost its address.
    fn on_unbound(&mut self);
    /// Call `peer`.
    fn call(&mut self, now: Time, peer: HashAddr);
    /// Hang up the call with `peer`.
    fn hangup(&mut self, now: Time, peer: HashAddr);
    /// Renew the key of every active call.
    fn rekey(&mut self, now: Time);
}

/// [`Role::handle_command`] of an end node, whichever model it runs.
pub fn end_node_command(en: &mut impl EndNodeCommands, now: Time, command: &Command) {
    match command {
        Command::Bound { lease, segment } => en.on_bound(now, lease, *segment),
        Command::Unbound => en.on_unbound(),
        Command::Call(peer) => en.call(now, *peer),
        Command::Hangup(peer) => en.hangup(now, *peer),
        Command::Rekey => en.rekey(now),
        _ => {}
    }
}

/// What reports read of one call, whichever model ran it: the peer and the media.
#[derive(Debug, Clone, Copy)]
pub struct CallView<'a> {
    /// The peer's hash address (or vertical id, the same 32 bytes).
    pub peer: HashAddr,
    /// The call's audio both ways.
    pub media: &'a MediaSession,
}

impl<'a> CallView<'a> {
    /// The view of a call with `peer`.
    pub fn new(peer: HashAddr, media: &'a MediaSession) -> Self {
        CallView { peer, media }
    }
}

/// Implements the I/O half of [`Role`] by calling a role's inherent methods of the same
/// names (`handle_datagram`, `handle_timeout`, `poll_timeout`, `poll_transmit`,
/// `poll_event`), so an `impl Role` block only spells out what differs.
macro_rules! role_io {
    () => {
        fn handle_datagram(
            &mut self,
            now: $crate::Time,
            from: std::net::SocketAddrV4,
            to: std::net::SocketAddrV4,
            payload: &[u8],
        ) {
            Self::handle_datagram(self, now, from, to, payload);
        }
        fn handle_timeout(&mut self, now: $crate::Time) {
            Self::handle_timeout(self, now);
        }
        fn poll_timeout(&self) -> Option<$crate::Time> {
            Self::poll_timeout(self)
        }
        fn poll_transmit(&mut self) -> Option<$crate::Transmit> {
            Self::poll_transmit(self)
        }
        fn poll_event(&mut self) -> Option<$crate::event::Event> {
            Self::poll_event(self).map(Into::into)
        }
    };
}
pub(crate) use role_io;
