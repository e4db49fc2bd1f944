//! The events of a BINFM call (`call.*`), reported by the end node's call handling and by
//! the call itself. A leaf module: `en`, `call` and their tests use it, it uses neither.
//! `peer` is the peer's hash address in hex (short hex in the call's own events).

use std::net::SocketAddrV4;

crate::event_enum! {
    /// What happens to a BINFM call.
    pub enum CallEvent {
        /// A call could not be set up or went away (`reason`).
        Failed = "call.failed" { peer: String, reason: String },
        /// We place a call.
        Started = "call.started" { peer: String, ssrc: u32 },
        /// A Session Request refused (1st, 10th, 100th, ...; `from` is `null` when unknown).
        Refused = "call.refused" {
            reason: &'static str,
            peer: String,
            [null] from: Option<SocketAddrV4>,
            count: u64,
        },
        /// A call ended.
        Ended = "call.ended" { peer: String, frames_sent: u64, frames_received: u64 },
        /// We sent a Key Renewal for `epoch`.
        RekeySent = "call.rekey_sent" { peer: String, epoch: u32 },
        /// We sent a Handover Request from our new addresses.
        HandoverSent = "call.handover_sent" {
            peer: String,
            private: SocketAddrV4,
            nat_guess: SocketAddrV4,
        },
        /// The peer is not registered yet: we look it up again later.
        PeerNotFoundYet = "call.peer_not_found_yet" {
            peer: String,
            retry: u32,
            retry_in_ms: u64,
        },
        /// The callee's Response did not match its registered key and a new lookup still
        /// gave that key (its renewal not on the chain yet): we look it up again later.
        PeerKeyPending = "call.peer_key_pending" {
            peer: String,
            retry: u32,
            retry_in_ms: u64,
        },
        /// A Session Request was sent.
        RequestSent = "call.request_sent" { peer: String, to: SocketAddrV4 },
        /// Keys are installed: media flows (`peer_addr` left out when unknown).
        Active = "call.active" {
            peer: String,
            role: &'static str,
            peer_addr: Option<SocketAddrV4>,
        },
        /// A Session Request not meant for us.
        RequestRefused = "call.request_refused" { reason: &'static str, from: SocketAddrV4 },
        /// A repeated Session Request: the Response was sent again.
        ResponseResent = "call.response_resent" { peer: String, to: SocketAddrV4 },
        /// A Session Request for us.
        Incoming = "call.incoming" { peer: String, from: SocketAddrV4 },
        /// The Session Response did not verify (`retry`: the call waits for another one).
        ConfirmFailed = "call.confirm_failed" { peer: String, reason: &'static str, retry: bool },
        /// A Handover Request refused (`peer` left out when no call matches).
        HandoverRejected = "call.handover_rejected" {
            peer: Option<String>,
            reason: &'static str,
            from: SocketAddrV4,
        },
        /// The peer moved to `new_addr` (the endpoint its Handover Request names under the
        /// MAC, sent from `from`): validated next, and sent to within the
        /// anti-amplification budget until then.
        HandoverAccepted = "call.handover_accepted" {
            peer: String,
            new_addr: SocketAddrV4,
            from: SocketAddrV4,
        },
        /// A Key Renewal refused (`peer` or `from` left out).
        RekeyRejected = "call.rekey_rejected" {
            peer: Option<String>,
            reason: &'static str,
            from: Option<SocketAddrV4>,
        },
        /// A Key Renewal accepted: we now expect `epoch`.
        RekeyAccepted = "call.rekey_accepted" { peer: String, epoch: u32 },
        /// A control message was never acknowledged.
        ControlGaveUp = "call.control_gave_up" { what: &'static str, peer: String },
        /// The renewed key is in use both ways: the peer sent under it (`index`: that frame)
        /// or its Key Renewal Reply confirmed it (no `index`).
        RekeyComplete = "call.rekey_complete" { peer: String, epoch: u32, index: Option<u64> },
        /// No authenticated packet from the peer for `idle_ms` (RFC 7675): media stopped and
        /// the call ended (`heard_peer`: whether anything authenticated came at all).
        ConsentExpired = "call.consent_expired" { peer: String, idle_ms: u64, heard_peer: bool },
        /// The peer's new endpoint answered our path challenge: media and control go there.
        PathValidated = "call.path_validated" { peer: String, addr: SocketAddrV4 },
        /// A path challenge or response refused (`peer` left out when no call matches).
        PathRejected = "call.path_rejected" {
            peer: Option<String>,
            reason: &'static str,
            from: SocketAddrV4,
        },
        /// The first media frame decrypted.
        FirstFrame = "call.first_frame" { peer: String, index: u64 },
        /// Audio resumed after a pause.
        MediaResumed = "call.media_resumed" { peer: String, gap_ms: f64, index: u64 },
        /// The first media packet refused for `reason`.
        MediaRefused = "call.media_refused" { peer: String, reason: &'static str },
    }
}
