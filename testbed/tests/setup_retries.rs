//! Call setup survives the two things the loss sweep found: a callee whose Tx is not in a
//! block yet ("not found" is asked again, bounded), and a lost Session Response (the callee
//! answers the caller's retransmitted Request with the Response it sent); and a callee that
//! renewed its key a moment before the call (its new key is asked for again, bounded).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use binfm_testbed::events::JsonRecord as Record;
use common::{memory_net, paper_with};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

fn run(steps: &str, until: Duration) -> Vec<Record> {
    let mut net = memory_net(&paper_with(steps));
    net.start().unwrap();
    net.run_until(until, &AtomicBool::new(false)).unwrap();
    net.events.json_records()
}

fn times(ev: &[Record], host: &str, kind: &str) -> Vec<Duration> {
    ev.iter()
        .filter(|e| e.host == host && e.kind == kind)
        .map(|e| e.t)
        .collect()
}

#[test]
fn a_call_to_a_peer_not_yet_in_a_block_asks_again_and_succeeds() {
    // B registers at 84 ms; its Tx is in a block some hundreds of ms later. A calls at 100 ms.
    let ev = run(
        "[[scenario]]\nat = \"100ms\"\ndo = \"call a b\"\n",
        Duration::from_secs(8),
    );
    let not_yet = times(&ev, "a", "call.peer_not_found_yet");
    assert!(!not_yet.is_empty(), "the first Reply said not found");
    assert!(not_yet.len() <= 5, "bounded retries: {not_yet:?}");
    assert!(times(&ev, "a", "call.failed").is_empty());
    let active = times(&ev, "a", "call.active");
    assert_eq!(active.len(), 1);
    // Each retry waits one second after the Reply.
    assert!(active[0] >= not_yet[0] + Duration::from_secs(1));
    assert_eq!(times(&ev, "b", "call.first_frame").len(), 1);
}

#[test]
fn a_lost_session_response_is_sent_again() {
    // The public segment loses everything from 3.35 s to 3.45 s: B's Response (sent at
    // 3.36 s) is lost, A retransmits its Request, B answers with the same Response.
    let ev = run(
        "[[scenario]]\nat = \"3s\"\ndo = \"call a b\"\n\n[[scenario]]\nat = \"3.35s\"\ndo = \"loss public 100%\"\n\n[[scenario]]\nat = \"3.45s\"\ndo = \"loss public 0%\"\n",
        Duration::from_secs(8),
    );
    let resent = times(&ev, "b", "call.response_resent");
    assert!(!resent.is_empty(), "B resent its Response");
    assert_eq!(
        times(&ev, "b", "call.incoming").len(),
        1,
        "one call, not two"
    );
    let active = times(&ev, "a", "call.active");
    assert_eq!(active.len(), 1);
    assert!(
        active[0] > Duration::from_millis(3560),
        "later than without loss"
    );
    assert_eq!(times(&ev, "b", "call.first_frame").len(), 1);
    assert!(times(&ev, "a", "call.control_gave_up").is_empty());
}

#[test]
fn a_call_to_a_peer_whose_key_renewal_is_not_in_a_block_yet_waits_for_the_new_key() {
    // B renews its key at 2 s (accepted at 2.04 s); with this seed no block holds the new Tx
    // until 4.31 s. A calls at 3 s and gets B's old key twice (3.08 s, and again after the
    // key check failed at 3.56 s); it asks again each second until the new key is in a block.
    let ev = run(
        "[[scenario]]\nat = \"2s\"\ndo = \"rekey b\"\n\n[[scenario]]\nat = \"3s\"\ndo = \"call a b\"\n",
        Duration::from_secs(8),
    );
    assert_eq!(times(&ev, "a", "call.confirm_failed").len(), 1);
    let pending = times(&ev, "a", "call.peer_key_pending");
    assert!(
        !pending.is_empty(),
        "the second Reply still had the old key"
    );
    assert!(pending.len() <= 5, "bounded retries: {pending:?}");
    assert!(times(&ev, "a", "call.failed").is_empty());
    let active = times(&ev, "a", "call.active");
    assert_eq!(active.len(), 1);
    assert!(active[0] >= pending[0] + Duration::from_secs(1));
    assert_eq!(times(&ev, "b", "call.incoming").len(), 1, "one call");
    for host in ["a", "b"] {
        assert_eq!(times(&ev, host, "call.first_frame").len(), 1, "{host}");
    }
}
