//! Well-known UDP ports used by the testbed. One place, so the capture dissector, the roles
//! and the docs agree.

/// DHCP server port (RFC 2131).
pub const DHCP_SERVER: u16 = 67;
/// DHCP client port (RFC 2131).
pub const DHCP_CLIENT: u16 = 68;
/// UDP echo (RFC 862), used by the foundation topologies.
pub const ECHO: u16 = 7;
/// BINFM super node: ENs (registration, Query) and peer SNs (relay, blocks) send here.
pub const SN: u16 = 7400;
/// BINFM end node control port (TxAck and Reply come back here; sessions come later).
pub const EN: u16 = 7401;
/// STUN server (RFC 8489), used by the vertical model's NAT step.
pub const STUN: u16 = 3478;
/// Vertical model location server (registration, lookup, inter-domain resolution); the SIP
/// registrar port, as the vertical model's location service stands in for SIP's.
pub const LOCATION: u16 = 5060;
