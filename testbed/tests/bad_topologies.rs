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
