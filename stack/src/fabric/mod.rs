//! The emulated fabric: layer-3 segments whose members exchange IP packets through emulated
//! channels, and static routes computed from the topology.
//!
//! The fabric decides *when* (or whether) a packet reaches which member; what a member does
//! with it (deliver to its IP stack, translate, forward) is the business of the node code in
//! the drivers.

mod routing;
mod segment;

pub use routing::{NatSide, Route, RouteGraphNode, RoutePort, RouteTable, compute_routes};
pub use segment::{Dest, Member, MemberId, Segment, SegmentDrop, Transmission};
