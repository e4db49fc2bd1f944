//! Where the engine meets the world outside it. Virtual runs are closed: every member of every
//! segment is a node of the topology. The live driver opens a boundary: some members stand for
//! the kernel behind a TUN device, and every packet put on a segment is also shown outside.
//! The engine only calls these hooks; it knows nothing of TUN devices.

use binfm_stack::fabric::{Dest, MemberId};

/// Hooks the engine calls at its edge.
pub trait Boundary: std::fmt::Debug {
    /// Whether `member` of `segment` lives outside the engine (what link emulation delivers
    /// to it leaves through [`Boundary::delivered`] instead of reaching a node).
    fn is_outside(&self, segment: usize, member: MemberId) -> bool;

    /// Link emulation delivered `packet` to outside member `member` of `segment`.
    fn delivered(&mut self, segment: usize, member: MemberId, packet: Vec<u8>);

    /// A member inside the engine put `packet` on `segment` toward `dest`.
    fn sent(&mut self, segment: usize, from: MemberId, dest: Dest, packet: &[u8]);

    /// The host name events use for packets outside member `member` of `segment` sent.
    fn outside_name(&self, segment: usize, member: MemberId) -> String;

    /// Scenario step `index` concerns the outside (a kernel host's `exec` or `move`): the
    /// driver behind the boundary carries it out.
    fn outside_step(&mut self, index: usize);
}

/// The boundary of a virtual run: nothing is outside.
#[derive(Debug, Default, Clone, Copy)]
pub struct Closed;

impl Boundary for Closed {
    fn is_outside(&self, _segment: usize, _member: MemberId) -> bool {
        false
    }
    fn delivered(&mut self, _segment: usize, _member: MemberId, _packet: Vec<u8>) {}
    fn sent(&mut self, _segment: usize, _from: MemberId, _dest: Dest, _packet: &[u8]) {}
    fn outside_name(&self, _segment: usize, _member: MemberId) -> String {
        "outside".into()
    }
    fn outside_step(&mut self, _index: usize) {}
}
