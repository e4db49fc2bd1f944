//! Issue 12: every attack as a scenario step (`attack KIND ...`, docs/topology.md), run on the
//! fabric and measured in `results.json` (`attacks`).
//!
//! `topologies/attacks.toml` runs them all; with the defences of issue 12 merged no attack
//! works, and `attacks_toml_reports_no_attack_worked` checks every entry. The other tests run
//! one attack each and assert its secure outcome.

use super::common;

use binfm_roles::en::events::EnEvent;
use binfm_testbed::driver::SETTLE;
use binfm_testbed::topology::Topology;
use serde_json::Value;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// `topologies/attacks.toml` without its scenario, with `steps` instead and `duration`.
fn attacks_with(duration: &str, steps: &[(&str, &str)]) -> Topology {
    let text = std::fs::read_to_string(common::root().join("topologies/attacks.toml")).unwrap();
    let base = &text[..text.find("# The paper's story").unwrap()];
    let mut t = base.replace("duration = \"45s\"", &format!("duration = \"{duration}\""));
    for (at, what) in steps {
        t.push_str(&format!("\n[[scenario]]\nat = \"{at}\"\ndo = \"{what}\"\n"));
    }
    Topology::from_str(&t, Path::new("attacks-with.toml")).unwrap()
}

/// Runs `topo` in virtual time (with the settle time) and returns its `attacks` entries.
fn run(topo: &Topology) -> Vec<Value> {
    let mut net = common::memory_net(topo);
    let stop = AtomicBool::new(false);
    net.start().unwrap();
    net.run_until(topo.duration, &stop).unwrap();
    net.settle(SETTLE, &stop).unwrap();
    net.attack_results()
}

/// The only entry of kind `kind`.
fn one<'a>(attacks: &'a [Value], kind: &str) -> &'a Value {
    let v: Vec<&Value> = attacks.iter().filter(|a| a["kind"] == kind).collect();
    assert_eq!(v.len(), 1, "{kind}: {attacks:#?}");
    v[0]
}

fn n(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing in {v:#}"))
}

/// With the defences merged no attack of `topologies/attacks.toml` works: every entry says
/// `"worked": false`, each attack ran (its own figures show it), and the figures that decide
/// it are 0.
#[test]
fn attacks_toml_reports_no_attack_worked() {
    let topo = Topology::load(&common::root().join("topologies/attacks.toml")).unwrap();
    let attacks = run(&topo);
    assert_eq!(attacks.len(), 9, "{attacks:#?}");
    for a in &attacks {
        assert_eq!(a["worked"], false, "{a:#}");
    }
    // 1. Reflection: the request went out; nothing came back to the victim.
    let r = one(&attacks, "spoofed-session-request");
    assert_eq!(n(r, "requests_sent"), 1);
    assert_eq!(n(r, "bytes_to_victim"), 0, "{r:#}");
    assert_eq!(n(r, "media_packets_to_victim"), 0, "{r:#}");
    assert_eq!(n(r, "callee_calls_to_victim"), 0, "{r:#}");
    // 2. Handover race: the copy was sent; no media to the attacker, its copy not taken, and
    //    A's own tries not refused.
    let h = one(&attacks, "handover-race");
    assert!(n(h, "handover_requests_copied") >= 1, "{h:#}");
    assert_eq!(n(h, "media_packets_to_attacker"), 0, "{h:#}");
    assert_eq!(n(h, "handovers_accepted_from_attacker"), 0, "{h:#}");
    assert_eq!(n(h, "genuine_handovers_refused"), 0, "{h:#}");
    // 3. Lying SNs: each lie was told, none was taken.
    let lies: Vec<&Value> = attacks.iter().filter(|a| a["kind"] == "lying-sn").collect();
    let lie = |l: &str| *lies.iter().find(|a| a["lie"] == l).unwrap();
    let m = lie("mismatch");
    assert!(n(m, "acks_forged") >= 1, "{m:#}");
    assert_eq!(n(m, "forged_txs_signed"), 0, "{m:#}");
    assert_eq!(n(m, "honest_sns_serving_forged_endpoint"), 0, "{m:#}");
    let s = lie("stale");
    assert!(n(s, "stale_replies") >= 1, "{s:#}");
    assert_eq!(n(s, "stale_replies_accepted"), 0, "{s:#}");
    let f = lie("notfound");
    assert!(n(f, "false_not_found_replies") >= 1, "{f:#}");
    assert_eq!(n(f, "false_not_found_accepted"), 0, "{f:#}");
    assert_eq!(n(f, "calls_failed_peer_not_found"), 0, "{f:#}");
    // 4. Long-term keys: A and B's call recorded, keys tried for the first epoch and the
    //    renewal, not one frame opened.
    let k = one(&attacks, "long-term-keys");
    assert!(n(k, "sessions_recorded") >= 1, "{k:#}");
    assert!(n(k, "frames_recorded") > 1000, "{k:#}");
    assert!(n(k, "key_epochs_derived") >= 2, "{k:#}");
    assert_eq!(n(k, "frames_decrypted"), 0, "{k:#}");
    // 5. Lookup budget: the whole flood was sent; e's own call during it works.
    let f = one(&attacks, "lookup-flood");
    assert_eq!(n(f, "requests_sent"), 2500);
    assert_eq!(n(f, "genuine_calls_started"), 1, "{f:#}");
    assert_eq!(n(f, "genuine_calls_failed"), 0, "{f:#}");
    // 6. Key Renewal injection: forged renewals into the calls, a tampered copy and a replay
    //    of a's renewal; none applied, no call broken.
    let k = one(&attacks, "rekey-injection");
    assert!(n(k, "forged_injected") >= 2, "{k:#}");
    assert!(n(k, "tampered_injected") >= 1, "{k:#}");
    assert!(n(k, "replayed_injected") >= 1, "{k:#}");
    assert_eq!(n(k, "renewals_accepted"), 0, "{k:#}");
    assert_eq!(n(k, "calls_broken"), 0, "{k:#}");
    // 7. DHCP: eve's RELEASE of e's lease from its own address and its REQUEST for e's
    //    address: refused, nothing freed or bound.
    let d = one(&attacks, "dhcp-release");
    assert_eq!(n(d, "releases_sent"), 1, "{d:#}");
    assert!(n(d, "bind_attempts") >= 1, "{d:#}");
    assert_eq!(n(d, "leases_freed"), 0, "{d:#}");
    assert_eq!(n(d, "addresses_bound_to_attacker"), 0, "{d:#}");
}

/// Attack 1: with an authenticated Session Request the callee sends nothing to the victim.
#[test]
fn a_spoofed_session_request_reflects_nothing_to_the_victim() {
    let topo = attacks_with(
        "12s",
        &[(
            "6s",
            "attack spoofed-session-request mallory victim b as c x10",
        )],
    );
    let attacks = run(&topo);
    let r = one(&attacks, "spoofed-session-request");
    assert_eq!(n(r, "requests_sent"), 10, "the attack ran: {r:#}");
    assert_eq!(n(r, "bytes_to_victim"), 0, "{r:#}");
    assert_eq!(n(r, "media_packets_to_victim"), 0, "{r:#}");
    assert_eq!(n(r, "callee_calls_to_victim"), 0, "{r:#}");
    assert_eq!(r["worked"], false);
}

/// Attack 2: with path validation the racing copy moves no media to the attacker, and the
/// moved EN's own request is not refused.
#[test]
fn a_raced_handover_gives_the_attacker_no_media() {
    let topo = attacks_with(
        "16s",
        &[
            ("3s", "call a b"),
            ("9s", "attack handover-race mallory"),
            ("10s", "move a to lan-c"),
        ],
    );
    let attacks = run(&topo);
    let h = one(&attacks, "handover-race");
    assert_eq!(n(h, "handover_requests_copied"), 1, "the attack ran: {h:#}");
    assert_eq!(n(h, "media_packets_to_attacker"), 0, "{h:#}");
    assert_eq!(n(h, "handovers_accepted_from_attacker"), 0, "{h:#}");
    assert_eq!(n(h, "genuine_handovers_refused"), 0, "{h:#}");
    assert_eq!(h["worked"], false);
}

/// Attack 3, `mismatch`: the EN takes an EndpointMismatch only for its own NAT address, so it
/// signs no Tx naming the SN's endpoint and no honest SN serves one.
#[test]
fn a_forged_endpoint_mismatch_registers_no_foreign_endpoint() {
    let topo = attacks_with("8s", &[("0s", "attack lying-sn sn3 mismatch about d")]);
    let attacks = run(&topo);
    let m = one(&attacks, "lying-sn");
    assert!(n(m, "acks_forged") >= 1, "the attack ran: {m:#}");
    assert_eq!(n(m, "forged_txs_signed"), 0, "{m:#}");
    assert_eq!(n(m, "honest_sns_serving_forged_endpoint"), 0, "{m:#}");
    assert_eq!(m["worked"], false);
}

/// Attack 3, `stale`: a Reply carrying a Tx older than the freshness bound is not taken.
#[test]
fn a_stale_reply_is_not_taken() {
    let topo = attacks_with(
        "35s",
        &[
            ("0s", "attack lying-sn sn2 stale about a"),
            ("2s", "rekey a"),
            ("30s", "call b a"),
        ],
    );
    let attacks = run(&topo);
    let s = one(&attacks, "lying-sn");
    assert!(n(s, "stale_replies") >= 1, "the attack ran: {s:#}");
    assert_eq!(n(s, "stale_replies_accepted"), 0, "{s:#}");
    assert_eq!(s["worked"], false);
}

/// Attack 3, `notfound`: a false "not found" from one SN does not end the lookup.
#[test]
fn a_false_not_found_is_not_taken() {
    let topo = attacks_with(
        "12s",
        &[
            ("0s", "attack lying-sn sn3 notfound about a"),
            ("3s", "call e a"),
        ],
    );
    let attacks = run(&topo);
    let f = one(&attacks, "lying-sn");
    assert!(
        n(f, "false_not_found_replies") >= 1,
        "the attack ran: {f:#}"
    );
    assert_eq!(n(f, "false_not_found_accepted"), 0, "{f:#}");
    assert_eq!(n(f, "calls_failed_peer_not_found"), 0, "{f:#}");
    assert_eq!(f["worked"], false);
}

/// Attack 4: with ephemeral DH per session and per renewal, the long-term keys open no frame
/// of a recorded call.
#[test]
fn long_term_keys_decrypt_no_recorded_frame() {
    let topo = attacks_with(
        "16s",
        &[
            ("0s", "attack long-term-keys mallory"),
            ("3s", "call a b"),
            ("8s", "rekey a"),
            ("14s", "hangup a b"),
        ],
    );
    let attacks = run(&topo);
    let k = one(&attacks, "long-term-keys");
    assert_eq!(n(k, "sessions_recorded"), 1, "the attack ran: {k:#}");
    assert!(n(k, "frames_recorded") > 500, "{k:#}");
    assert_eq!(n(k, "frames_decrypted"), 0, "{k:#}");
    assert_eq!(k["worked"], false);
}

/// Attack 5: spoofed requests for unknown callers do not use up the callee's lookups or its
/// NAT's Query budget: its own call during the flood succeeds.
#[test]
fn a_lookup_flood_leaves_the_callees_own_call_working() {
    let topo = attacks_with(
        "14s",
        &[
            ("3s", "attack lookup-flood mallory e 500/s for 5s"),
            ("5s", "call e b"),
        ],
    );
    let attacks = run(&topo);
    let f = one(&attacks, "lookup-flood");
    assert_eq!(n(f, "requests_sent"), 2500, "the attack ran: {f:#}");
    assert_eq!(n(f, "genuine_calls_started"), 1, "{f:#}");
    assert_eq!(n(f, "genuine_calls_failed"), 0, "{f:#}");
    assert_eq!(f["worked"], false);
}

/// Attack 7 (`docs/security.md` row 7): Key Renewals injected by an attacker on the public
/// segment (forged with a random MAC, a genuine one with the attacker's DH value in it, and
/// the genuine one replayed) are refused; the call's renewal completes and its audio goes on.
#[test]
fn injected_key_renewals_are_refused_and_the_call_keeps_its_audio() {
    let topo = attacks_with(
        "16s",
        &[
            ("0s", "attack rekey-injection mallory"),
            ("3s", "call a b"),
            ("8s", "rekey a"),
            ("14s", "hangup a b"),
        ],
    );
    let attacks = run(&topo);
    let k = one(&attacks, "rekey-injection");
    // One forged renewal per direction of the call, a's renewal tampered and replayed.
    assert_eq!(n(k, "forged_injected"), 2, "the attack ran: {k:#}");
    assert_eq!(n(k, "tampered_injected"), 1, "{k:#}");
    assert_eq!(n(k, "replayed_injected"), 1, "{k:#}");
    assert_eq!(n(k, "calls_attacked"), 2, "{k:#}");
    assert_eq!(n(k, "renewals_accepted"), 0, "{k:#}");
    assert_eq!(n(k, "calls_broken"), 0, "{k:#}");
    assert_eq!(n(k, "epochs_desynced"), 0, "{k:#}");
    assert_eq!(n(k, "frames_refused"), 0, "{k:#}");
    // The forged and the tampered ones are refused (bad MAC); the replay only makes b send
    // its Reply again, which a refuses (no renewal pending).
    assert_eq!(n(k, "renewals_refused"), 3, "{k:#}");
    assert_eq!(n(k, "replies_refused"), 1, "{k:#}");
    assert_eq!(k["worked"], false);
}

/// Attack 21 (DHCP, N7): an attacker on e's LAN forges a RELEASE of e's lease from its own
/// address and asks for e's address (INIT-REBOOT without an offer, then a DISCOVER naming
/// it): the server frees nothing, ACKs nothing to it and offers it another address.
#[test]
fn a_dhcp_release_from_another_address_frees_nothing_and_binds_nothing() {
    let topo = attacks_with("6s", &[("0s", "attack dhcp-release eve e")]);
    let attacks = run(&topo);
    let d = one(&attacks, "dhcp-release");
    assert_eq!(d["variant"], "own-address");
    assert!(
        d["victim_address"].is_string(),
        "the attack saw e's lease: {d:#}"
    );
    assert_eq!(n(d, "releases_sent"), 1, "the attack ran: {d:#}");
    assert_eq!(n(d, "leases_freed"), 0, "{d:#}");
    assert_eq!(n(d, "addresses_bound_to_attacker"), 0, "{d:#}");
    assert_eq!(d["victim_address_reassigned"], false, "{d:#}");
    // Both refused: the RELEASE (not from the bound address) and the INIT-REBOOT REQUEST
    // (no offer, no lease); the DISCOVER got another address, which the attacker left.
    assert_eq!(n(d, "refused_by_server"), 2, "{d:#}");
    assert_eq!(n(d, "bind_attempts"), 1, "{d:#}");
    assert_eq!(n(d, "discovers_sent"), 1, "{d:#}");
    assert_eq!(n(d, "offers_of_victim_address"), 0, "{d:#}");
    assert_eq!(n(d, "offers_of_other_addresses"), 1, "{d:#}");
    assert_eq!(d["worked"], false);
}

/// The residual of N7, measured: a RELEASE with e's identifiers sent from e's own address
/// cannot be told from e's (DHCP has no authentication). The server frees e's lease, then
/// offers and ACKs e's address to the attacker; the step says so.
#[test]
fn a_fully_spoofed_dhcp_release_works_and_is_reported() {
    let topo = attacks_with("6s", &[("0s", "attack dhcp-release eve e spoofed")]);
    let attacks = run(&topo);
    let d = one(&attacks, "dhcp-release");
    assert_eq!(d["variant"], "spoofed");
    assert_eq!(n(d, "releases_sent"), 1, "{d:#}");
    assert_eq!(n(d, "leases_freed"), 1, "{d:#}");
    assert_eq!(n(d, "offers_of_victim_address"), 1, "{d:#}");
    assert_eq!(n(d, "addresses_bound_to_attacker"), 1, "{d:#}");
    assert_eq!(d["addresses_bound"][0], d["victim_address"], "{d:#}");
    assert_eq!(d["victim_address_reassigned"], true, "{d:#}");
    assert_eq!(d["worked"], true);
}

/// Issue 12, restart (`docs/security.md` row 19, N5), on the fabric: a registers (seq 1),
/// renews its key (seq 2), crashes and restarts with its state lost. The new start resumes
/// its seq from the chain and registers above it, and b's call to it afterwards comes up
/// with audio both ways.
#[test]
fn a_restarted_end_node_registers_above_its_old_seq_and_takes_calls() {
    let topo = attacks_with(
        "24s",
        &[
            ("3s", "rekey a"),
            ("6s", "crash a"),
            ("8s", "restart a"),
            ("16s", "call b a"),
        ],
    );
    let mut net = common::memory_net(&topo);
    let stop = AtomicBool::new(false);
    net.start().unwrap();
    net.run_until(topo.duration, &stop).unwrap();
    let records = &net.events.records;
    let restart = Duration::from_secs(8);
    let registered = |before: bool| -> Vec<u64> {
        records
            .iter()
            .filter(|r| r.host == "a" && (r.t < restart) == before)
            .filter_map(|r| match r.role_event::<EnEvent>() {
                Some(EnEvent::Registered { seq, .. }) => Some(*seq),
                _ => None,
            })
            .collect()
    };
    let (old, new) = (registered(true), registered(false));
    let old_max = old.iter().copied().max().unwrap_or(0);
    assert_eq!(
        old_max, 2,
        "a registered seq 1, then 2 at the rekey: {old:?}"
    );
    let resumed: Vec<u64> = records
        .iter()
        .filter(|r| r.host == "a" && r.t >= restart)
        .filter_map(|r| match r.role_event::<EnEvent>() {
            Some(EnEvent::SeqResumed { seq, .. }) => Some(*seq),
            _ => None,
        })
        .collect();
    assert_eq!(
        resumed.first(),
        Some(&old_max),
        "en.seq_resumed after the restart"
    );
    assert!(
        !new.is_empty() && new.iter().all(|s| *s > old_max),
        "registered after the restart {new:?}, above {old_max}"
    );
    let after_call = |host: &str, kind: &str| {
        records
            .iter()
            .any(|r| r.host == host && r.t >= Duration::from_secs(16) && r.kind() == kind)
    };
    assert!(after_call("b", "call.active"), "b's call to a is up");
    assert!(
        !after_call("b", "call.failed"),
        "b's call to a did not fail"
    );
    assert!(after_call("a", "call.first_frame"), "a hears b");
    assert!(after_call("b", "call.first_frame"), "b hears a");
}

/// The attack steps change nothing when a run has none: the same topology with and without an
/// attack that never acts (a lying SN about an EN nobody looks up) gives the same events.
#[test]
fn an_idle_attack_leaves_the_run_unchanged() {
    let plain = attacks_with("6s", &[("3s", "call a b")]);
    let idle = attacks_with(
        "6s",
        &[
            ("0s", "attack lying-sn sn1 notfound about e"),
            ("3s", "call a b"),
        ],
    );
    let kinds = |topo: &Topology| {
        let mut net = common::memory_net(topo);
        let stop = AtomicBool::new(false);
        net.start().unwrap();
        net.run_until(topo.duration, &stop).unwrap();
        net.events
            .records
            .iter()
            .filter(|r| !r.kind().starts_with("scenario") && !r.kind().starts_with("fault"))
            .map(|r| (r.t, r.host.clone(), r.kind()))
            .collect::<Vec<_>>()
    };
    let (a, b) = (kinds(&plain), kinds(&idle));
    assert!(a.len() > 100);
    assert_eq!(a, b);
}
