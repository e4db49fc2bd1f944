//! The events of the BINFM end node itself (`en.*`): registration, super-node failover and
//! lookups. Its calls report `call.*` ([`crate::call_events::CallEvent`]). Hash addresses
//! (`hash_addr`, `peer`) are lower-case hex.

use std::net::SocketAddrV4;

crate::event_enum! {
    /// What an end node reports about its registration and lookups.
    pub enum EnEvent {
        /// A new Tx registers our addresses (`why`: first, moved, key renewal, correction).
        Register = "en.register" {
            seq: u64,
            why: &'static str,
            private: SocketAddrV4,
            nat: SocketAddrV4,
            hash_addr: String,
        },
        /// No super node is known (no DHCP lease yet).
        NoSuperNode = "en.no_super_node" {},
        /// The registration Tx was sent (again).
        TxSent = "en.tx_sent" { seq: u64, r#try: u32, sn: SocketAddrV4 },
        /// The super node accepted the Tx and saw it come from `observed`.
        Registered = "en.registered" { seq: u64, sn: SocketAddrV4, observed: SocketAddrV4 },
        /// The NAT endpoint we guessed was wrong (`guessed` is `null` when there was none).
        EndpointCorrected = "en.endpoint_corrected" {
            [null] guessed: Option<SocketAddrV4>,
            observed: SocketAddrV4,
        },
        /// The super node refused the Tx.
        RegisterRejected = "en.register_rejected" { status: String },
        /// We moved to the next super node of the lease (`null` when none).
        SnFailover = "en.sn_failover" {
            [null] from: Option<SocketAddrV4>,
            [null] to: Option<SocketAddrV4>,
        },
        /// Media from an SSRC no call knows (1st, 10th, 100th, ...).
        MediaUnknownSsrc = "en.media_unknown_ssrc" { from: SocketAddrV4, count: u64 },
        /// A lookup was refused locally.
        LookupRefused = "en.lookup_refused" { reason: &'static str },
        /// A Query was sent (again).
        QuerySent = "en.query_sent" {
            request_id: u32,
            r#try: u32,
            peer: String,
            sn: SocketAddrV4,
        },
        /// A Reply we do not trust.
        ReplyRejected = "en.reply_rejected" { request_id: u32, reason: String },
        /// A Reply with the peer's registration.
        LookupOk = "en.lookup_ok" {
            request_id: u32,
            peer: String,
            seq: u64,
            private: SocketAddrV4,
            nat: SocketAddrV4,
            height: u64,
            confirmations: u32,
            unconfirmed: bool,
            rtt_ns: u64,
        },
        /// The super node does not know the peer.
        LookupNotFound = "en.lookup_not_found" { request_id: u32, peer: String, rtt_ns: u64 },
        /// No Reply after every try.
        LookupFailed = "en.lookup_failed" { request_id: u32, peer: String },
        /// A datagram that does not parse.
        Malformed = "en.malformed" { from: SocketAddrV4, error: String },
        /// A message an end node does not expect.
        Unexpected = "en.unexpected" { from: SocketAddrV4 },
    }
}
