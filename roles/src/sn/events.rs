//! The events of the super node (`sn.*`). Hashes and owners are lower-case hex; refusals are
//! reported by `sn.drop` with a sample of the refused message ([`DropSample`]).

use crate::event::{Field, FieldSink};
use std::net::SocketAddrV4;

crate::event_enum! {
    /// What a super node reports.
    pub enum SnEvent {
        /// At most one per reason per `DROP_EVENT_INTERVAL`: `count` refusals of `reason`
        /// since the previous report (this one included), `total` so far, and this refusal's
        /// fields.
        Drop = "sn.drop" {
            reason: &'static str,
            count: u64,
            total: u64,
            [flatten] sample: DropSample,
        },
        /// A Query answered for a known address (unknown ones are `sn.drop` samples).
        Query = "sn.query" { peer: String, found: bool, from: SocketAddrV4, request_id: u32 },
        /// A peer announced a tip we lack: we ask for its blocks.
        CatchUp = "sn.catch_up" { height: u64, from: SocketAddrV4 },
        /// A TxSubmit whose NAT endpoint is not where it came from.
        EndpointMismatch = "sn.endpoint_mismatch" {
            owner: String,
            claimed: SocketAddrV4,
            observed: SocketAddrV4,
        },
        /// A Tx entered the mempool (`relayed_by` is `null` when an EN submitted it).
        TxAccepted = "sn.tx_accepted" {
            owner: String,
            seq: u64,
            [null] relayed_by: Option<SocketAddrV4>,
        },
        /// A block that does not decode (no `hash`) or does not validate.
        BlockRejected = "sn.block_rejected" {
            hash: Option<String>,
            reason: String,
            [null] from: Option<SocketAddrV4>,
        },
        /// A peer's block extended the best chain.
        BlockAccepted = "sn.block_accepted" {
            hash: String,
            height: u64,
            txs: usize,
            from: SocketAddrV4,
        },
        /// Our own block extended the best chain.
        BlockMined = "sn.block_mined" { hash: String, height: u64, txs: usize },
        /// The best chain switched branches.
        Reorg = "sn.reorg" { removed: usize, added: usize, height: u64, hash: String },
        /// A Tx of a removed block went back to the mempool.
        TxRequeued = "sn.tx_requeued" { owner: String, seq: u64 },
        /// A valid block on a side branch.
        SideBlock = "sn.side_block" { hash: String },
        /// A block whose parent is `missing`.
        Orphan = "sn.orphan" { hash: String, missing: String },
        /// A Tx is on the best chain at `height`.
        TxConfirmed = "sn.tx_confirmed" { owner: String, seq: u64, height: u64 },
    }
}

/// The fields of one refused message, carried by `sn.drop`.
#[derive(Debug, Clone, PartialEq)]
pub enum DropSample {
    /// Not a message.
    Malformed { from: SocketAddrV4, error: String },
    /// Over a per-source rate limit.
    RateLimited { from: SocketAddrV4 },
    /// A Query for an address the SN does not know (answered, but counted as a refusal).
    UnknownQuery {
        peer: String,
        found: bool,
        from: SocketAddrV4,
        request_id: u32,
    },
    /// A GetBlock for a block the SN does not have.
    UnknownBlock { hash: String, from: SocketAddrV4 },
    /// A message an SN does not take (`message` is its short name).
    Unexpected {
        message: &'static str,
        from: SocketAddrV4,
    },
    /// A Tx that fails verification.
    InvalidTx {
        error: String,
        owner: String,
        from: SocketAddrV4,
    },
    /// A verified Tx the mempool refused.
    TxRefused {
        error: String,
        owner: String,
        seq: u64,
        relayed_by: Option<SocketAddrV4>,
    },
}

impl DropSample {
    /// Writes the sample's fields after those of `sn.drop`, in today's order.
    pub fn write_fields(&self, sink: &mut dyn FieldSink) {
        match self {
            DropSample::Malformed { from, error } => {
                from.write("from", sink);
                error.write("error", sink);
            }
            DropSample::RateLimited { from } => from.write("from", sink),
            DropSample::UnknownQuery {
                peer,
                found,
                from,
                request_id,
            } => {
                peer.write("peer", sink);
                found.write("found", sink);
                from.write("from", sink);
                request_id.write("request_id", sink);
            }
            DropSample::UnknownBlock { hash, from } => {
                hash.write("hash", sink);
                from.write("from", sink);
            }
            DropSample::Unexpected { message, from } => {
                message.write("message", sink);
                from.write("from", sink);
            }
            DropSample::InvalidTx { error, owner, from } => {
                error.write("error", sink);
                owner.write("owner", sink);
                from.write("from", sink);
            }
            DropSample::TxRefused {
                error,
                owner,
                seq,
                relayed_by,
            } => {
                error.write("error", sink);
                owner.write("owner", sink);
                seq.write("seq", sink);
                match relayed_by {
                    Some(r) => r.write("relayed_by", sink),
                    None => sink.null("relayed_by"),
                }
            }
        }
    }
}
