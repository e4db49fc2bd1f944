//! The events of a vertical end node and its calls (`vertical.*`). `peer` is the peer's id
//! in short hex; times are milliseconds as floats.

use std::net::SocketAddrV4;

crate::event_enum! {
    /// What a vertical end node reports.
    pub enum VerticalEvent {
        /// Our addresses: the local one and the STUN server we use.
        Address = "vertical.address" { local: SocketAddrV4, stun: SocketAddrV4 },
        /// A datagram that does not parse.
        Malformed = "vertical.malformed" { from: SocketAddrV4, error: String },
        /// A message a vertical end node does not expect.
        Unexpected = "vertical.unexpected" { from: SocketAddrV4, message: &'static str },
        /// A REGISTER was sent (again).
        RegisterSent = "vertical.register_sent" { contact: SocketAddrV4, r#try: u32 },
        /// The location server registered our contact.
        Registered = "vertical.registered" { contact: SocketAddrV4 },
        /// We place a call.
        CallStarted = "vertical.call_started" { peer: String, ssrc: u32 },
        /// A call could not be set up or went away.
        CallFailed = "vertical.call_failed" { peer: String, reason: &'static str },
        /// A call ended.
        Ended = "vertical.ended" { peer: String, frames_sent: u64, frames_received: u64 },
        /// An INVITE refused.
        InviteRefused = "vertical.invite_refused" { reason: &'static str, from: SocketAddrV4 },
        /// An INVITE for us.
        Incoming = "vertical.incoming" {
            peer: String,
            contact: SocketAddrV4,
            from: SocketAddrV4,
        },
        /// We answered an INVITE.
        InviteOkSent = "vertical.invite_ok_sent" { peer: String, contact: SocketAddrV4 },
        /// The callee answered.
        InviteOk = "vertical.invite_ok" { peer: String, contact: SocketAddrV4 },
        /// We sent our key for `epoch`.
        KeySent = "vertical.key_sent" { peer: String, epoch: u32 },
        /// We sent a re-INVITE from our new contact.
        ReinviteSent = "vertical.reinvite_sent" { peer: String, contact: SocketAddrV4 },
        /// A re-INVITE refused (`peer` left out when no call matches).
        ReinviteRejected = "vertical.reinvite_rejected" {
            peer: Option<String>,
            reason: &'static str,
            from: SocketAddrV4,
        },
        /// The peer moved to `contact`.
        ReinviteAccepted = "vertical.reinvite_accepted" {
            peer: String,
            contact: SocketAddrV4,
            from: SocketAddrV4,
        },
        /// A lookup was sent (again).
        LookupSent = "vertical.lookup_sent" { peer: String, request_id: u32, r#try: u32 },
        /// A lookup reply we do not trust.
        LookupRejected = "vertical.lookup_rejected" { request_id: u32, reason: &'static str },
        /// The location server does not know the peer.
        LookupNotFound = "vertical.lookup_not_found" { peer: String, rtt_ms: f64 },
        /// The peer's contact.
        Resolved = "vertical.resolved" { peer: String, contact: SocketAddrV4, rtt_ms: f64 },
        /// An INVITE was sent.
        InviteSent = "vertical.invite_sent" { peer: String, to: SocketAddrV4 },
        /// A STUN request was sent (`for`: what needs the answer, comma-separated).
        StunSent = "vertical.stun_sent" { r#try: u32, r#for: String, server: SocketAddrV4 },
        /// STUN gave no usable answer.
        StunFailed = "vertical.stun_failed" { reason: &'static str },
        /// STUN told us our public address.
        StunMapped = "vertical.stun_mapped" {
            mapped: SocketAddrV4,
            server: SocketAddrV4,
            rtt_ms: f64,
        },
        /// Media from an SSRC no call knows.
        MediaUnknownSsrc = "vertical.media_unknown_ssrc" { from: SocketAddrV4 },
        /// We switched to the renewed sending key.
        RekeySwitched = "vertical.rekey_switched" { peer: String, epoch: u32 },
        /// A control message was never acknowledged.
        ControlGaveUp = "vertical.control_gave_up" { what: &'static str, peer: String },
        /// We sent a key renewal for `epoch`.
        RekeySent = "vertical.rekey_sent" { peer: String, epoch: u32 },
        /// A key message refused (`peer` or `from` left out).
        KeyRejected = "vertical.key_rejected" {
            peer: Option<String>,
            reason: &'static str,
            from: Option<SocketAddrV4>,
        },
        /// Keys are installed: media flows.
        Active = "vertical.active" { peer: String, role: &'static str, setup_ms: f64 },
        /// A key renewal accepted.
        RekeyAccepted = "vertical.rekey_accepted" { peer: String, epoch: u32 },
        /// Our key renewal completed.
        RekeyDone = "vertical.rekey_done" { peer: String, epoch: u32, rekey_ms: f64 },
        /// The first media frame decrypted.
        FirstFrame = "vertical.first_frame" { peer: String, index: u64 },
        /// Audio resumed after a pause.
        MediaResumed = "vertical.media_resumed" { peer: String, gap_ms: f64, index: u64 },
        /// The first media packet refused for `reason`.
        MediaRefused = "vertical.media_refused" { peer: String, reason: &'static str },
    }
}
