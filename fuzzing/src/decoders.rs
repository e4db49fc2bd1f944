//! The decoder targets: DHCP options, ToALL Txs, BINFM messages, blocks and topology text.

use std::path::Path;

use binfm_roles::chain::Block;
use binfm_roles::wallet::verify_tx;
use binfm_stack::wire::binfm::{Message, mac_input, split_block};
use binfm_stack::wire::dhcp_options::{
    SiteOptions, decode_message, parse_nat_public, parse_super_nodes,
};
use binfm_stack::wire::toall::{ToallTx, TxOut};

use binfm_testbed::topology::Topology;

/// DHCP message decoding (our guard in front of dhcproto) and the site options 224/225.
pub fn dhcp_options(data: &[u8]) {
    let _ = parse_nat_public(data);
    let _ = parse_super_nodes(data);
    let Ok(msg) = decode_message(data) else {
        return;
    };
    if let Ok(site) = SiteOptions::parse(msg.opts()) {
        // What parses re-emits to the same options.
        let mut opts = msg.opts().clone();
        site.emit(&mut opts);
        assert_eq!(
            SiteOptions::parse(&opts).as_ref(),
            Ok(&site),
            "site options"
        );
    }
}

/// ToALL Tx and TxOut framing: canonical round trip, then the validity check.
pub fn toall_tx(data: &[u8]) {
    if let Ok(out) = TxOut::parse(data) {
        assert_eq!(out.signing_bytes(), data, "TxOut re-encodes to its input");
        assert_eq!(out.buffer_len(), data.len());
    }
    let Ok(tx) = ToallTx::parse(data) else {
        return;
    };
    let bytes = tx.to_bytes();
    assert_eq!(bytes, data, "ToallTx re-encodes to its input");
    assert_eq!(tx.buffer_len(), data.len());
    assert_eq!(ToallTx::parse(&bytes).as_ref(), Ok(&tx));
    let _ = tx.id();
    let _ = verify_tx(&tx);
}

/// Every BINFM control message: canonical round trip, `emit`, and the MAC input.
pub fn binfm_message(data: &[u8]) {
    let Ok(msg) = Message::parse(data) else {
        return;
    };
    let bytes = msg.to_bytes();
    assert_eq!(bytes, data, "{} re-encodes to its input", msg.name());
    assert_eq!(msg.buffer_len(), data.len(), "{}", msg.name());
    let mut buf = vec![0u8; data.len()];
    assert_eq!(msg.emit(&mut buf), Ok(data.len()));
    assert_eq!(Message::parse(&bytes).as_ref(), Ok(&msg));
    assert_eq!(mac_input(&msg).len(), data.len());
}

/// A block of ToALL Txs: decode, canonical round trip, hashes.
pub fn block(data: &[u8]) {
    let Ok(block) = Block::<ToallTx>::decode(data) else {
        return;
    };
    assert_eq!(block.encode(), data, "block re-encodes to its input");
    assert_eq!(block.encoded_len(), data.len());
    let _ = block.hash();
    let _ = block.computed_merkle_root();
    // A decoded block always fits in the parts that carry blocks between SNs.
    assert!(split_block(block.hash(), data).is_ok());
}

/// Topology text (UTF-8 only; the file loader reads UTF-8).
pub fn topology(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = Topology::from_str(text, Path::new("fuzz.toml")) {
        let _ = e.to_string();
    }
}
