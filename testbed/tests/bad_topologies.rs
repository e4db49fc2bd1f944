//! `binfm check` on broken topology files: each file states the error it must produce
//! (`# expect: <line>: <text>` on its first line), and the check must report exactly that
//! line with that text.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use binfm_testbed::topology::Topology;
use std::process::Command;

fn cases() -> Vec<(std::path::PathBuf, usize, String)> {
    let dir = common::root().join("testbed/tests/bad-topologies");
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let first = text.lines().next().unwrap();
            let rest = first
                .strip_prefix("# expect: ")
                .expect("first line is `# expect: LINE: TEXT`");
            let (line, msg) = rest.split_once(": ").unwrap();
            (p, line.parse().unwrap(), msg.to_owned())
        })
        .collect();
    v.sort();
    v
}

#[test]
fn each_bad_topology_reports_its_error_at_its_line() {
    let cases = cases();
    assert!(
        cases.len() >= 5,
        "expected at least five broken topologies, found {}",
        cases.len()
    );
    for (path, line, msg) in cases {
        let err = Topology::load(&path).expect_err(&format!("{} should not load", path.display()));
        assert!(
            err.diagnostics
                .iter()
                .any(|d| d.line == Some(line) && d.message.contains(&msg)),
            "{}: wanted line {line} with `{msg}`, got:\n{err}",
            path.display()
        );
    }
}

#[test]
fn binfm_check_prints_file_line_and_message_and_fails() {
    for (path, line, msg) in cases() {
        let out = Command::new(env!("CARGO_BIN_EXE_binfm"))
            .arg("check")
            .arg(&path)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{} passed the check", path.display());
        let stderr = String::from_utf8_lossy(&out.stderr);
        let want = format!("{}:{line}: ", path.display());
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with(&want) && l.contains(&msg)),
            "stderr lacks `{want}...{msg}`:\n{stderr}"
        );
    }
}

#[test]
fn shipped_topologies_pass_the_check() {
    for e in std::fs::read_dir(common::root().join("topologies")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|e| e == "toml") {
            Topology::load(&p).unwrap_or_else(|e| panic!("{e}"));
        }
    }
}

/// `topologies/daemons.toml`'s all-virtual twin: A and B are virtual end nodes, the `exec`
/// steps that start the daemons are gone and the ctl steps are plain steps at their times.
#[test]
fn the_daemons_topology_has_an_all_virtual_twin() {
    let topo = Topology::load(&common::root().join("topologies/daemons.toml")).unwrap();
    let twin = topo.twin.as_deref().expect("daemons.toml has `twin` keys");
    assert!(twin.kernel_hosts.is_empty());
    assert!(twin.require_virtual().is_ok());
    for n in ["a", "b"] {
        let def = twin.nodes.iter().find(|d| d.name == n).unwrap();
        assert!(def.end_node.is_some(), "{n} is an end node in the twin");
    }
    let steps: Vec<(u128, String)> = twin
        .scenario
        .iter()
        .map(|s| (s.at.as_millis(), format!("{:?}", s.action)))
        .collect();
    assert_eq!(steps.len(), 4, "{steps:?}");
    let times: Vec<u128> = steps.iter().map(|s| s.0).collect();
    assert_eq!(times, [3000, 10000, 20000, 28000], "{steps:?}");
    // The live file's own steps are untouched, and its kernel hosts name their event logs.
    assert!(topo.kernel_hosts.iter().all(|k| k.events.is_some()));
    assert_eq!(topo.scenario.len(), 7);
}
