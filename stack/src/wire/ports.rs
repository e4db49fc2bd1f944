//! Well-known UDP ports used by the testbed. One place, so the capture dissector, the roles
//! and the docs agree.

/// DHCP server port (RFC 2131).
pub const DHCP_SERVER: u16 = 67;
/// DHCP client port (RFC 2131).
pub const DHCP_CLIENT: u16 = 68;
/// UDP echo (RFC 862), used by the foundation topologies.
pub const ECHO: u16 = 7;
/// Super node: ENs and peer SNs send BINFM control messages here.
pub const SN: u16 = 7400;
/// End node control port (registration acks, replies).
pub const EN: u16 = 7401;
