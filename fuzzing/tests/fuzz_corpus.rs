//! Corpus regression without a fuzzing engine: every file of `fuzz/corpus/<target>/` and
//! `fuzz/artifacts/<target>/` (crashes once found, kept after the fix) goes through the same
//! function the fuzz target calls (`binfm_fuzzing`). A panic names the file.

use binfm_fuzzing as fuzzing;
use std::path::{Path, PathBuf};

/// The workspace root (tests run with the crate folder as working directory).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn files_of(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn replay(kind: &str) -> usize {
    let root = root().join("fuzz").join(kind);
    let mut count = 0;
    for target in fuzzing::TARGETS {
        for file in files_of(&root.join(target)) {
            let data = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let ran = std::panic::catch_unwind(|| fuzzing::run(target, &data));
            assert!(
                matches!(ran, Ok(true)),
                "{target}: {} makes the target panic",
                file.display()
            );
            count += 1;
        }
    }
    count
}

#[test]
fn fuzz_corpus_replays_without_panics() {
    let n = replay("corpus");
    // Every target has its seeds in the repository.
    for target in fuzzing::TARGETS {
        let dir = root().join("fuzz/corpus").join(target);
        assert!(
            !files_of(&dir).is_empty(),
            "{} has no corpus files",
            dir.display()
        );
    }
    assert!(n >= fuzzing::TARGETS.len());
}

#[test]
fn fuzz_artifacts_replay_without_panics() {
    // Absent until the fuzzer finds something; each found crash stays as a regression case.
    replay("artifacts");
}

#[test]
fn fuzz_seeds_are_valid_and_replay() {
    let seeds = fuzzing::seeds(&root());
    for target in fuzzing::TARGETS {
        assert!(
            seeds.iter().any(|(t, _, _)| *t == target),
            "no seed for {target}"
        );
    }
    for (target, name, bytes) in &seeds {
        assert!(fuzzing::run(target, bytes), "{target}/{name}");
    }
}

/// Writes the seed corpus: `cargo test -p binfm-fuzzing --test fuzz_corpus -- --ignored`.
#[test]
#[ignore = "writes fuzz/corpus/; run by hand after a wire format changes"]
fn write_seed_corpus() {
    let root = root();
    for (target, name, bytes) in fuzzing::seeds(&root) {
        let dir = root.join("fuzz/corpus").join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
    }
}

#[test]
fn vertical_roles_start_with_an_active_call() {
    use binfm_roles::vertical::en::VState;
    assert_eq!(
        fuzzing::vertical::vertical_roles_start_states(),
        (Some(VState::Active), Some(VState::Active))
    );
}

/// The fuzzer cannot forge MACs: the `vertical_roles` seeds carry authentic messages (and
/// commands that make the roles exchange them) so the code behind the checks is reached.
#[test]
fn vertical_roles_seeds_reach_the_authenticated_paths() {
    let seeds = fuzzing::seeds(&root());
    let events = |name: &str| {
        let (_, _, bytes) = seeds
            .iter()
            .find(|(t, n, _)| *t == "vertical_roles" && n == name)
            .unwrap_or_else(|| panic!("no seed {name}"));
        fuzzing::vertical::vertical_roles_events(bytes)
    };
    let count = |ev: &[String], kind: &str| ev.iter().filter(|e| *e == kind).count();
    let ev = events("callee_authentic_control");
    assert_eq!(count(&ev, "vertical.rekey_accepted"), 1, "{ev:?}");
    assert_eq!(count(&ev, "vertical.rekey_switched"), 1, "{ev:?}");
    assert_eq!(count(&ev, "vertical.reinvite_accepted"), 1, "{ev:?}");
    assert_eq!(
        count(&ev, "vertical.reinvite_rejected"),
        2,
        "replayed, forged: {ev:?}"
    );
    let ev = events("new_caller_setup");
    assert_eq!(count(&ev, "vertical.active"), 1, "{ev:?}");
    let ev = events("new_caller_delivered");
    assert_eq!(count(&ev, "vertical.active"), 2, "C and B: {ev:?}");
    // A's rekey, B's rekeys (with A and with C), A's move, B re-addressed, both hang up.
    let ev = events("commands");
    assert!(count(&ev, "vertical.rekey_done") >= 2, "{ev:?}");
    assert!(count(&ev, "vertical.rekey_switched") >= 2, "{ev:?}");
    assert!(count(&ev, "vertical.reinvite_accepted") >= 3, "{ev:?}");
    assert_eq!(count(&ev, "vertical.ended"), 2, "{ev:?}");
}

/// The `stun` seeds include what an RFC 3489 client sends, so the fuzzer starts on the server's
/// classic and 420 paths.
#[test]
fn stun_seeds_reach_the_classic_and_420_paths() {
    use binfm_stack::wire::stun::{BindingReply, BindingRequest};
    let seeds = fuzzing::seeds(&root());
    let seed = |name: &str| {
        seeds
            .iter()
            .find(|(t, n, _)| *t == "stun" && n == name)
            .map(|(_, _, b)| b.clone())
            .unwrap_or_else(|| panic!("no stun seed {name}"))
    };
    let plain = BindingRequest::parse(&seed("classic_request")).unwrap();
    assert!(plain.is_classic() && plain.unknown.is_empty());
    let change = BindingRequest::parse(&seed("classic_change_request")).unwrap();
    assert!(change.is_classic());
    assert_eq!(change.unknown, vec![0x0003]);
    assert!(matches!(
        BindingReply::parse(&seed("classic_mapped_response")),
        Ok(BindingReply::Mapped { .. })
    ));
    assert!(matches!(
        BindingReply::parse(&seed("classic_420")),
        Ok(BindingReply::UnknownAttribute { attributes, .. }) if attributes == [0x0003]
    ));
}

#[test]
fn roles_seeds_reach_the_authenticated_session_paths() {
    let seeds = fuzzing::seeds(&root());
    let (_, _, bytes) = seeds
        .iter()
        .find(|(t, n, _)| *t == "roles" && n == "en_authentic_session")
        .expect("no seed en_authentic_session");
    let ev = fuzzing::roles_en_events(bytes);
    let count = |kind: &str| ev.iter().filter(|e| *e == kind).count();
    assert_eq!(count("call.active"), 1, "{ev:?}");
    assert_eq!(count("call.first_frame"), 1, "{ev:?}");
    assert_eq!(count("call.rekey_accepted"), 1, "{ev:?}");
    assert_eq!(count("call.handover_accepted"), 1, "{ev:?}");
    assert_eq!(count("call.path_validated"), 1, "{ev:?}");
    // The committed copy is the one generated (rerun `write_seed_corpus` after a change).
    let committed = std::fs::read(root().join("fuzz/corpus/roles/seed-en_authentic_session"))
        .expect("committed seed");
    assert_eq!(
        &committed, bytes,
        "fuzz/corpus/roles/seed-en_authentic_session is stale"
    );
}
