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
        /// An `EndpointMismatch` naming an address that is not our NAT's public one from
        /// DHCP (`expected_ip`; our own address without a NAT): ignored, nothing is signed
        /// with it.
        EndpointRefused = "en.endpoint_refused" {
            sn: SocketAddrV4,
            observed: SocketAddrV4,
            [null] expected_ip: Option<std::net::Ipv4Addr>,
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
        /// Our latest seq on the chain, learnt after a start: the next Tx goes above it.
        SeqResumed = "en.seq_resumed" { seq: u64, sn: SocketAddrV4 },
        /// We asked an SN for the block headers after our best one (light client).
        HeadersRequested = "en.headers_requested" { sn: SocketAddrV4, tip_height: u64 },
        /// A block header from an SN that does not check (proof of work, target, time).
        HeaderRejected = "en.header_rejected" { sn: SocketAddrV4, reason: String },
        /// A lookup is asked again of a second SN: the first said "not found"
        /// (`age_blocks` 0), or its Tx is `age_blocks` blocks old.
        LookupConfirm = "en.lookup_confirm" {
            request_id: u32,
            peer: String,
            sn: SocketAddrV4,
            age_blocks: u64,
        },
        /// The second SN proved a newer registration than the first SN gave.
        StaleReply = "en.stale_reply" {
            peer: String,
            first_seq: u64,
            second_seq: u64,
            second_sn: SocketAddrV4,
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
