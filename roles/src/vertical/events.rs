//! The events of the vertical model's servers: `stun.*` and `location.*` (`id` is the first
//! 8 bytes of an end node's id in hex). The end node's `vertical.*` events are still untyped
//! (phase 2 of the typed events).

use std::net::SocketAddrV4;

crate::event_enum! {
    /// What the STUN server reports.
    pub enum StunEvent {
        /// A request that was not answered; `error` is present when it did not parse.
        Dropped = "stun.dropped" {
            from: SocketAddrV4,
            reason: &'static str,
            error: Option<String>,
        },
        /// A Binding was answered with the observed source (XOR-MAPPED-ADDRESS, RFC 8489).
        Binding = "stun.binding" { mapped: SocketAddrV4 },
        /// An RFC 3489 client's Binding was answered with MAPPED-ADDRESS.
        BindingClassic = "stun.binding_classic" { mapped: SocketAddrV4 },
        /// A request with comprehension-required attributes the server does not understand
        /// got a 420 error response; `attributes` are their types (`0x0003`).
        UnknownAttribute = "stun.unknown_attribute" {
            from: SocketAddrV4,
            attributes: Vec<String>,
        },
    }
}

crate::event_enum! {
    /// What a location server reports.
    pub enum LocationEvent {
        /// A datagram that did not parse.
        Malformed = "location.malformed" { from: SocketAddrV4, error: String },
        /// A message a server does not take (`message` is its short name).
        Unexpected = "location.unexpected" { from: SocketAddrV4, message: &'static str },
        /// A Register refused.
        RegisterRefused = "location.register_refused" { id: String, reason: &'static str },
        /// A new or changed binding `id -> contact`.
        Registered = "location.registered" {
            id: String,
            contact: SocketAddrV4,
            from: SocketAddrV4,
        },
        /// A Lookup answered from the local table.
        LookupLocal = "location.lookup_local" { id: String, contact: SocketAddrV4 },
        /// A Lookup of an id not registered here, with no peer server to ask.
        LookupNotFound = "location.lookup_not_found" { id: String, reason: &'static str },
        /// A Lookup refused (too many resolutions in flight).
        LookupRefused = "location.lookup_refused" { id: String, reason: &'static str },
        /// A Resolve sent to a peer domain's server.
        ResolveSent = "location.resolve_sent" {
            id: String,
            request_id: u32,
            peer: SocketAddrV4,
        },
        /// A Resolve from a sender that is not a peer server.
        ResolveRefused = "location.resolve_refused" { from: SocketAddrV4, reason: &'static str },
        /// A peer's Resolve answered.
        ResolveAnswered = "location.resolve_answered" {
            id: String,
            found: bool,
            peer: SocketAddrV4,
        },
        /// A Resolved for no pending request.
        ResolvedRejected = "location.resolved_rejected" { from: SocketAddrV4, request_id: u32 },
        /// A peer's answer ended a resolution (`resolve_ms` since the Lookup).
        Resolved = "location.resolved" {
            id: String,
            found: bool,
            resolve_ms: f64,
            peer: SocketAddrV4,
        },
        /// No peer answered in time.
        ResolveTimeout = "location.resolve_timeout" { id: String, request_id: u32 },
    }
}
