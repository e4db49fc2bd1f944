//! No import circles between modules: for every module of the workspace's crates, its child
//! modules must form a directed acyclic graph, where A → B means code in A's subtree uses an
//! item of B's subtree. A circle means neither side can be understood, tested or moved
//! without the other, so each module should stand on its own floor.
//!
//! The scan is plain string work, no dependency: comments, doc comments, strings and
//! `#[cfg(test)]` items are dropped, then every `use` tree and every `crate::…`, `super::…`
//! and `self::…` path is resolved to a module, following `use` bindings (re-exports count as
//! uses of what they re-export). Glob imports (`use super::*`) give no edge.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The crates checked: the name used in messages and the source directory, relative to the
/// workspace root. Binary roots (`main.rs`) are separate crates and are left out.
const CRATES: &[(&str, &str)] = &[
    ("stack", "stack/src"),
    ("roles", "roles/src"),
    ("testbed", "testbed/src"),
    ("fuzzing", "fuzzing/src"),
];

/// A module path inside one crate: `[]` is the crate root, `["wire", "binfm"]` is
/// `crate::wire::binfm`.
type ModPath = Vec<String>;

#[test]
fn no_new_import_circles_between_modules() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut found = BTreeSet::new();
    for (name, dir) in CRATES {
        let dir = root.join(dir);
        if dir.is_dir() {
            found.extend(cycles(name, &crate_files(&dir)));
        }
    }
    assert!(
        found.is_empty(),
        "import circles between modules (A -> B: code in A uses an item of B):\n{}",
        found.iter().map(|c| format!("  {c}\n")).collect::<String>()
    );
}

#[test]
fn a_synthetic_circle_is_found_and_tests_comments_and_strings_are_not_edges() {
    let files = vec![
        (vec![], "mod a; mod b; mod c; pub use c::Deep;".to_string()),
        (
            vec!["a".into()],
            "use crate::b::{X, Y as Z};\n/// [`crate::c::Deep`]\npub struct A;".into(),
        ),
        (
            vec!["b".into()],
            "pub struct X; pub struct Y;\nfn f() -> usize { let _ = \"crate::c::Deep\"; super::super_fn(); let _ = super::Deep; 0 }\n\
             #[cfg(test)]\nmod tests { use crate::a::A; }"
                .into(),
        ),
        (
            vec!["c".into()],
            "pub struct Deep; mod inner { fn g() { let _ = crate::a::A; } } // crate::b::X".into(),
        ),
    ];
    assert_eq!(cycles("t", &files), ["t: a -> b -> c -> a"]);
    let acyclic = &files[..2];
    assert!(cycles("t", acyclic).is_empty());
}

/// Every `.rs` file under `dir` as (module path, source), except binary roots.
fn crate_files(dir: &Path) -> Vec<(ModPath, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let Ok(rel) = p.strip_prefix(dir) else {
                continue;
            };
            let rel = rel.with_extension("");
            if p.extension().is_none_or(|x| x != "rs")
                || rel == Path::new("main")
                || rel.starts_with("bin")
            {
                continue;
            }
            let mut parts: Vec<String> = rel
                .iter()
                .map(|s| s.to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|l| l == "lib" || l == "mod") {
                parts.pop();
            }
            if let Ok(src) = std::fs::read_to_string(&p) {
                out.push((parts, src));
            }
        }
    }
    out.sort();
    out
}

/// What one crate's files say: its modules, the paths its code names and its `use` bindings.
#[derive(Debug, Default)]
struct Scan {
    /// Every module: one per file, plus inline `mod x { … }`.
    modules: BTreeSet<ModPath>,
    /// Modules declared `#[cfg(test)] mod x;`: their files are skipped.
    test_modules: BTreeSet<ModPath>,
    /// (module where the path is written, the path as written).
    refs: Vec<(ModPath, Vec<String>)>,
    /// (module, name bound by a `use`) → (module of the `use`, the path as written).
    bindings: BTreeMap<(ModPath, String), (ModPath, Vec<String>)>,
}

/// Every elementary circle among sibling modules of one crate, as `crate::parent: a -> b -> a`
/// (the crate root as just `crate`), each starting at its smallest module name.
fn cycles(crate_name: &str, files: &[(ModPath, String)]) -> Vec<String> {
    let mut scan = Scan::default();
    for (module, _) in files {
        scan.modules.insert(module.clone());
    }
    for (module, src) in files {
        scan_file(&mut scan, module, &tokens(&strip(src)));
    }
    let tests = scan.test_modules.clone();
    let in_tests = |m: &ModPath| tests.iter().any(|t| m.starts_with(t));
    scan.modules.retain(|m| !in_tests(m));
    let mut graphs: BTreeMap<ModPath, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (from, path) in &scan.refs {
        if in_tests(from) {
            continue;
        }
        let Some(to) = resolve(&scan, from, path, 0) else {
            continue;
        };
        let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
        let (Some(a), Some(b)) = (from.get(common), to.get(common)) else {
            continue;
        };
        let mut child = to[..common].to_vec();
        child.push(b.clone());
        if scan.modules.contains(&child) {
            graphs
                .entry(to[..common].to_vec())
                .or_default()
                .entry(a.clone())
                .or_default()
                .insert(b.clone());
        }
    }
    let mut out = Vec::new();
    for (parent, graph) in &graphs {
        let label = std::iter::once(crate_name.to_string())
            .chain(parent.iter().cloned())
            .collect::<Vec<_>>()
            .join("::");
        for circle in elementary_cycles(graph) {
            out.push(format!("{label}: {}", circle.join(" -> ")));
        }
    }
    out
}

/// Absolute module path (possibly ending in item names) of `path` written in module `at`,
/// following `use` bindings; `None` for paths outside the crate (std, other crates).
fn resolve(scan: &Scan, at: &ModPath, path: &[String], depth: usize) -> Option<Vec<String>> {
    if depth > 16 {
        return None;
    }
    let first = path.first()?;
    let mut abs: Vec<String> = match first.as_str() {
        "crate" => path[1..].to_vec(),
        "self" => at.iter().chain(&path[1..]).cloned().collect(),
        "super" => {
            let ups = path.iter().take_while(|s| *s == "super").count();
            let keep = at.len().checked_sub(ups)?;
            at[..keep].iter().chain(&path[ups..]).cloned().collect()
        }
        _ => {
            let mut child = at.clone();
            child.push(first.clone());
            if scan.modules.contains(&child) {
                at.iter().chain(path).cloned().collect()
            } else {
                let (bound_at, bound) = scan.bindings.get(&(at.clone(), first.clone()))?;
                let mut target = resolve(scan, bound_at, bound, depth + 1)?;
                target.extend(path[1..].iter().cloned());
                target
            }
        }
    };
    // A name bound by a `use` in a module stands for what it imports.
    for _ in 0..16 {
        let known = (0..=abs.len())
            .take_while(|i| scan.modules.contains(&abs[..*i]))
            .last()?;
        let Some(name) = abs.get(known) else {
            break;
        };
        let Some((bound_at, bound)) = scan.bindings.get(&(abs[..known].to_vec(), name.clone()))
        else {
            break;
        };
        let Some(mut target) = resolve(scan, bound_at, bound, depth + 1) else {
            break;
        };
        target.extend(abs[known + 1..].iter().cloned());
        if target == abs {
            break;
        }
        abs = target;
    }
    Some(abs)
}

/// Circles of a small directed graph, each starting at its smallest node.
fn elementary_cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    fn walk(
        graph: &BTreeMap<String, BTreeSet<String>>,
        start: &str,
        path: &mut Vec<String>,
        out: &mut Vec<Vec<String>>,
    ) {
        let Some(last) = path.last().cloned() else {
            return;
        };
        for next in graph.get(&last).into_iter().flatten() {
            if next == start {
                let mut circle = path.clone();
                circle.push(start.to_string());
                out.push(circle);
            } else if next.as_str() > start && !path.contains(next) {
                path.push(next.clone());
                walk(graph, start, path, out);
                path.pop();
            }
        }
    }
    let mut out = Vec::new();
    for start in graph.keys() {
        walk(graph, start, &mut vec![start.clone()], &mut out);
    }
    out
}

/// The source with comments, strings and char literals blanked out (lifetimes dropped).
fn strip(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    let mut i = 0;
    while i < c.len() {
        let at = |k: usize| c.get(k).copied().unwrap_or(' ');
        if at(i) == '/' && at(i + 1) == '/' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if at(i) == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < c.len() {
                if at(i) == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if at(i) == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if at(i) == 'r' && (i == 0 || !ident(at(i - 1))) && matches!(at(i + 1), '"' | '#') {
            let hashes = c[i + 1..].iter().take_while(|&&h| h == '#').count();
            if at(i + 1 + hashes) != '"' {
                out.push(c[i]);
                i += 1;
                continue;
            }
            i += hashes + 2;
            while i < c.len() && !(c[i] == '"' && (1..=hashes).all(|k| at(i + k) == '#')) {
                i += 1;
            }
            i += hashes + 1;
            out.push(' ');
        } else if at(i) == '"' {
            i += 1;
            while i < c.len() && c[i] != '"' {
                i += if c[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push(' ');
        } else if at(i) == '\'' {
            if at(i + 1) == '\\' {
                i += 2;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if at(i + 2) == '\'' {
                i += 3;
            } else {
                i += 1; // a lifetime: its name stays as a harmless word
            }
            out.push(' ');
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// Words and punctuation; `::` is one token.
fn tokens(src: &str) -> Vec<String> {
    let c: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        if c[i].is_alphanumeric() || c[i] == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            out.push(c[start..i].iter().collect());
        } else if c[i] == ':' && c.get(i + 1) == Some(&':') {
            out.push("::".into());
            i += 2;
        } else {
            if !c[i].is_whitespace() {
                out.push(c[i].to_string());
            }
            i += 1;
        }
    }
    out
}

/// Records the modules, paths and `use` bindings of one file's tokens.
fn scan_file(scan: &mut Scan, file_module: &ModPath, t: &[String]) {
    // (module, brace depth inside it) for inline `mod x { … }`.
    let mut scopes: Vec<(ModPath, usize)> = vec![(file_module.clone(), 0)];
    let mut depth = 0usize;
    let mut i = 0;
    let tok = |k: usize| t.get(k).map(String::as_str).unwrap_or("");
    while i < t.len() {
        let here = scopes.last().map(|s| s.0.clone()).unwrap_or_default();
        match tok(i) {
            "#" if tok(i + 1) == "[" || (tok(i + 1) == "!" && tok(i + 2) == "[") => {
                let bang = usize::from(tok(i + 1) == "!");
                let end = matching(t, i + 1 + bang);
                let is_test = t
                    .get(i + 2 + bang..end)
                    .is_some_and(|a| a == ["cfg", "(", "test", ")"]);
                i = end + 1;
                if is_test && bang == 0 {
                    i = skip_item(scan, &here, t, i);
                }
            }
            "{" => {
                depth += 1;
                i += 1;
            }
            "}" => {
                if scopes.len() > 1 && scopes.last().is_some_and(|s| s.1 == depth) {
                    scopes.pop();
                }
                depth = depth.saturating_sub(1);
                i += 1;
            }
            "mod" if tok(i + 2) == "{" => {
                let mut inner = here.clone();
                inner.push(tok(i + 1).to_string());
                scan.modules.insert(inner.clone());
                depth += 1;
                scopes.push((inner, depth));
                i += 3;
            }
            "use" => {
                let mut leaves = Vec::new();
                i = use_tree(t, i + 1, &[], &mut leaves);
                for (path, name) in leaves {
                    if let Some(name) = name {
                        scan.bindings
                            .insert((here.clone(), name), (here.clone(), path.clone()));
                    }
                    scan.refs.push((here.clone(), path));
                }
            }
            "crate" | "super" | "self" if tok(i + 1) == "::" => {
                let mut path = vec![tok(i).to_string()];
                i += 1;
                while tok(i) == "::" && is_word(tok(i + 1)) {
                    path.push(tok(i + 1).to_string());
                    i += 2;
                }
                scan.refs.push((here, path));
            }
            _ => i += 1,
        }
    }
}

/// Skips the item after a `#[cfg(test)]` (noting `mod x;` as a test module); returns the
/// index after it.
fn skip_item(scan: &mut Scan, here: &ModPath, t: &[String], mut i: usize) -> usize {
    while t.get(i).is_some_and(|s| s == "#") {
        i = matching(t, i + 1) + 1;
    }
    let start = i;
    while i < t.len() {
        match t[i].as_str() {
            ";" => {
                if i >= start + 2 && t[i - 2] == "mod" {
                    let mut m = here.clone();
                    m.push(t[i - 1].clone());
                    scan.test_modules.insert(m);
                }
                return i + 1;
            }
            "{" | "(" | "[" => {
                let end = matching(t, i);
                if t[i] == "{" {
                    return end + 1;
                }
                i = end + 1;
            }
            _ => i += 1,
        }
    }
    i
}

/// Index of the bracket closing the one opened at `open` (or the last token).
fn matching(t: &[String], open: usize) -> usize {
    let mut depth = 0i32;
    for (k, s) in t.iter().enumerate().skip(open) {
        match s.as_str() {
            "{" | "(" | "[" => depth += 1,
            "}" | ")" | "]" => {
                depth -= 1;
                if depth == 0 {
                    return k;
                }
            }
            _ => {}
        }
    }
    t.len().saturating_sub(1)
}

fn is_word(s: &str) -> bool {
    s.chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
}

/// Parses a `use` tree from `i` (after `use` or inside braces) under `prefix`; pushes each
/// leaf's full path with the name it binds (`None` for a glob). Returns the index after it.
fn use_tree(
    t: &[String],
    mut i: usize,
    prefix: &[String],
    leaves: &mut Vec<(Vec<String>, Option<String>)>,
) -> usize {
    let tok = |k: usize| t.get(k).map(String::as_str).unwrap_or("");
    let mut path = prefix.to_vec();
    if tok(i) == "::" {
        i += 1; // `use ::name` is an extern crate: no leaf inside this crate
        path.push("::".into());
    }
    loop {
        match tok(i) {
            "{" => {
                i += 1;
                while !matches!(tok(i), "}" | "") {
                    i = use_tree(t, i, &path, leaves);
                    if tok(i) == "," {
                        i += 1;
                    }
                }
                i += 1;
                break;
            }
            "*" => {
                leaves.push((path.clone(), None));
                i += 1;
                break;
            }
            w if is_word(w) => {
                let name = if w == "self" && !path.is_empty() {
                    path.last().cloned().unwrap_or_default()
                } else {
                    path.push(w.to_string());
                    w.to_string()
                };
                i += 1;
                if tok(i) == "::" {
                    i += 1;
                    continue;
                }
                let bound = if tok(i) == "as" {
                    i += 2;
                    tok(i - 1).to_string()
                } else {
                    name
                };
                leaves.push((path.clone(), Some(bound)));
                break;
            }
            _ => break,
        }
    }
    if prefix.is_empty() {
        while !matches!(tok(i), ";" | "") {
            i += 1;
        }
        i += 1;
    }
    leaves.retain(|(p, _)| p.first().is_none_or(|f| f != "::"));
    i
}
