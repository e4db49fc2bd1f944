//! The end node as a light client (`docs/chain.md`, "Light client"): it follows its super
//! node's block headers (pushed as blocks are mined, or asked for with a locator when one is
//! missing) and checks every confirmed Tx a Reply gives against them: the Merkle proof must
//! lead from the Tx id to the root of a header on its best header chain.
//!
//! All of this happens off a call's critical path: headers arrive as blocks join the chain,
//! long before a Query asks for a Tx in them; a Reply whose block the EN has not seen yet
//! but which extends its tip is checked on the spot (its header is in the proof).

use super::EndNode;
use super::events::EnEvent;
use crate::Time;
use crate::chain::merkle::root_from_path;
use crate::chain::{BlockHeader, HeaderAdd, HeaderChain, HeaderError};
use crate::util::millis;
use binfm_stack::wire::binfm::{MAX_HEADERS, MAX_LOCATOR, Message, RawHeader, TxProof};
use binfm_stack::wire::toall::ToallTx;
use std::net::SocketAddrV4;
use std::time::Duration;

/// A Tx whose block is more than this many blocks below the EN's best header is confirmed
/// with a second super node before it is used (a super node could otherwise serve an old
/// registration it knows to be superseded).
pub const FRESH_BLOCKS: u64 = 10;
/// Wait before asking for headers again when an answer did not come.
pub const HEADER_RETRY: Duration = Duration::from_millis(500);
/// How often a registered EN behind a NAT sends its SN a GetHeaders when nothing else
/// happens (`EndNode::keepalive_due`): half the 2 minutes a NAT keeps an idle mapping.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(60);

/// What a proof showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Proven {
    /// In a block of the best header chain at `height`, `age` blocks below the tip.
    InBlock { height: u64, age: u64 },
    /// The block is not known yet and does not extend the tip: headers are being fetched.
    Syncing,
}

impl EndNode {
    /// The header chain the EN follows.
    pub fn header_chain(&self) -> &HeaderChain {
        &self.headers
    }

    /// Uses `config`'s genesis and rules (the SNs' chain parameters); forgets the headers.
    pub fn set_chain_config(&mut self, config: crate::chain::ChainConfig) {
        self.headers = HeaderChain::new(config);
    }

    /// Asks `sn` for the best-chain headers after our locator (at most one request in flight
    /// per [`HEADER_RETRY`]).
    pub(super) fn request_headers(&mut self, now: Time, sn: SocketAddrV4) {
        if self
            .header_request
            .is_some_and(|(to, at)| to == sn && now.saturating_sub(at) < HEADER_RETRY)
        {
            return;
        }
        self.header_request = Some((sn, now));
        let locator = self.headers.locator(MAX_LOCATOR);
        self.events.push_back(
            EnEvent::HeadersRequested {
                sn,
                tip_height: self.headers.tip().1,
            }
            .into(),
        );
        self.send(sn, Message::GetHeaders { locator }.to_bytes());
    }

    /// Every [`KEEPALIVE_INTERVAL`] while registered from behind a NAT, a GetHeaders to the
    /// SN: it keeps the NAT's mapping of the registered endpoint alive (a mapping expires
    /// after 2 minutes without outbound traffic, RFC 4787 REQ-5, and then the NAT drops an
    /// incoming Session Request and every header push), and it catches up on headers whose
    /// pushes were lost.
    pub(super) fn keepalive_due(&mut self, now: Time) {
        let Some(at) = self.keepalive_at else { return };
        if at > now {
            return;
        }
        if let (Some(_), Some(_), Some(sn)) = (&self.registered, self.nat_public, self.super_node())
        {
            self.keepalive_at = Some(now + KEEPALIVE_INTERVAL);
            self.header_request = None;
            self.request_headers(now, sn);
        } else {
            self.keepalive_at = None;
        }
    }

    /// Headers from one of our super nodes, oldest first.
    pub(super) fn on_headers(&mut self, now: Time, from: SocketAddrV4, headers: &[RawHeader]) {
        self.header_request = None;
        let mut missing_parent = false;
        let mut added = 0;
        for raw in headers {
            let outcome = BlockHeader::decode(raw)
                .map_err(|_| HeaderError::BadVersion)
                .and_then(|h| self.headers.add(h, millis(now)));
            match outcome {
                Ok(HeaderAdd::NewTip | HeaderAdd::SideChain) => added += 1,
                Ok(HeaderAdd::Duplicate) => {}
                Err(HeaderError::UnknownParent) => missing_parent = true,
                Err(e) => {
                    self.events.push_back(
                        EnEvent::HeaderRejected {
                            sn: from,
                            reason: e.to_string(),
                        }
                        .into(),
                    );
                    return;
                }
            }
        }
        // A gap (pushes missed, a reorg longer than one message), or a full answer: ask on.
        if missing_parent || (headers.len() == MAX_HEADERS && added > 0) {
            self.request_headers(now, from);
        }
        // Lookups that waited for these headers are asked again at once.
        let waiting: Vec<u32> = self
            .queries
            .iter()
            .filter(|(_, q)| q.waiting_headers)
            .map(|(id, _)| *id)
            .collect();
        if !missing_parent {
            for id in waiting {
                if let Some(q) = self.queries.get_mut(&id) {
                    q.waiting_headers = false;
                }
                self.send_query(now, id);
            }
        }
    }

    /// Checks that `tx` is in a block of our best header chain, by `proof`. A block that
    /// extends our tip is taken from the proof itself; an unknown one that does not starts a
    /// header sync with `from` (`Ok(Proven::Syncing)`).
    pub(super) fn check_proof(
        &mut self,
        now: Time,
        from: SocketAddrV4,
        tx: &ToallTx,
        proof: &TxProof,
    ) -> Result<Proven, String> {
        let header =
            BlockHeader::decode(&proof.header).map_err(|e| format!("proof header: {e}"))?;
        let root = root_from_path(&tx.id(), u64::from(proof.index), &proof.siblings);
        if root != header.merkle_root {
            return Err("Merkle proof does not lead to the block's root".to_owned());
        }
        let hash = header.hash();
        if self.headers.best_height(&hash).is_none() {
            match self.headers.add(header, millis(now)) {
                Ok(_) => {}
                Err(HeaderError::UnknownParent) => {
                    self.request_headers(now, from);
                    return Ok(Proven::Syncing);
                }
                Err(e) => return Err(format!("proof block header: {e}")),
            }
        }
        let Some(height) = self.headers.best_height(&hash) else {
            return Err("block not on our best header chain".to_owned());
        };
        let age = self.headers.tip().1.saturating_sub(height);
        Ok(Proven::InBlock { height, age })
    }
}
