//! The module map holds: data flows one way (README "Architecture", DESIGN.md §2),
//! so every `crate::` path in the harness's code points to its own layer or an
//! earlier one, and no two files import each other, however indirectly. Unit-test
//! modules (`#[cfg(test)]`, at the end of a file, or a file of tests marked
//! `#![cfg(test)]`) may reach further for fixtures.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, earliest first: each file belongs to the one with the longest
/// matching path prefix (relative to `harness/src`).
const LAYERS: &[(&str, &[&str])] = &[
    ("base", &["host/", "qmp.rs", "stats.rs"]),
    // What to run: the vocabulary a profile, the CLI and a record speak.
    ("spec", &["migration/scenario.rs", "migration/link_speed.rs", "migration/strategy.rs", "machine/hardware.rs", "network/address.rs", "network/shape.rs", "load/spec.rs"]),
    ("profile", &["experiment/profile.rs"]),
    ("site", &["guest/", "network/", "machine/", "setup.rs"]),
    ("load", &["load/"]),
    ("migration", &["migration/"]),
    ("record", &["record/"]),
    ("runner", &["experiment/"]),
    ("summary", &["summary/"]),
    ("rank", &["rank/"]),
    ("report", &["report/"]),
    ("cli", &["cli/", "main.rs", "lib.rs"]),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn layer_of(rel: &str) -> Option<(usize, &'static str)> {
    LAYERS
        .iter()
        .enumerate()
        .flat_map(|(i, (name, prefixes))| prefixes.iter().filter(|p| rel.starts_with(**p)).map(move |p| (p.len(), i, *name)))
        .max()
        .map(|(_, i, name)| (i, name))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module path of a file: `migration/driver.rs` → ["migration", "driver"].
fn module_of(rel: &str) -> Vec<String> {
    let mut parts: Vec<String> = rel.trim_end_matches(".rs").split('/').map(String::from).collect();
    if parts.last().is_some_and(|l| l == "mod" || l == "lib" || l == "main") {
        parts.pop();
    }
    parts
}

/// The file a module path names, trying the longest prefix that is a file:
/// `migration::driver::drive` → `migration/driver.rs`.
fn file_of(path: &[String], files: &BTreeSet<String>) -> Option<String> {
    for n in (1..=path.len()).rev() {
        let stem = path[..n].join("/");
        for candidate in [format!("{stem}.rs"), format!("{stem}/mod.rs")] {
            if files.contains(&candidate) {
                return Some(candidate);
            }
        }
    }
    None
}

/// The code before the first `#[cfg(test)]`, without comments (doc links name
/// modules they do not import). A file of unit tests of its own (its first line of
/// code `#![cfg(test)]`: the tests of a long file moved beside it) has none.
fn code(text: &str) -> String {
    let first_code = text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with("//"));
    let body = if first_code == Some("#![cfg(test)]") { "" } else { text.split("#[cfg(test)]").next().unwrap_or("") };
    body.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n")
}

/// Every module path this file's code names: `crate::a::b`, `migbench::a::b`,
/// `super::a` (resolved), and the items of `use x::{a, b::{c}}` groups.
fn references(rel: &str, code: &str) -> Vec<Vec<String>> {
    let me = module_of(rel);
    let in_bin = rel.starts_with("cli/") || rel == "main.rs";
    let mut out = Vec::new();
    let bytes: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let rest: String = bytes[i..bytes.len().min(i + 10)].iter().collect();
        let boundary = i == 0 || !(bytes[i - 1].is_alphanumeric() || bytes[i - 1] == '_' || bytes[i - 1] == ':');
        let root: Option<(usize, Vec<String>)> = if !boundary {
            None
        } else if rest.starts_with("crate::") && !in_bin {
            Some((7, Vec::new()))
        } else if rest.starts_with("migbench::") {
            Some((10, Vec::new()))
        } else if rest.starts_with("super::") {
            // The parent of this file's module (a mod.rs is its folder's module).
            let mut base = me.clone();
            base.pop();
            Some((7, base))
        } else {
            None
        };
        let Some((skip, base)) = root else {
            i += 1;
            continue;
        };
        i += skip;
        // Read `a::b::c` (identifiers joined by ::), then an optional `{...}` group.
        let mut path = base;
        loop {
            let start = i;
            while i < bytes.len() && (bytes[i].is_alphanumeric() || bytes[i] == '_') {
                i += 1;
            }
            if start == i {
                break;
            }
            path.push(bytes[start..i].iter().collect());
            if bytes.get(i) == Some(&':') && bytes.get(i + 1) == Some(&':') {
                i += 2;
                if bytes.get(i) == Some(&'{') {
                    let mut depth = 0;
                    let start = i;
                    while i < bytes.len() {
                        match bytes[i] {
                            '{' => depth += 1,
                            '}' => {
                                depth -= 1;
                                if depth == 0 {
                                    break;
                                }
                            }
                            _ => {}
                        }
                        i += 1;
                    }
                    let group: String = bytes[start + 1..i].iter().collect();
                    // Each top-level entry of the group extends the path.
                    let mut entry = String::new();
                    let mut d = 0;
                    for c in group.chars().chain(std::iter::once(',')) {
                        match c {
                            '{' => d += 1,
                            '}' => d -= 1,
                            ',' if d == 0 => {
                                let first: Vec<String> = entry.trim().split("::").take(1).map(|s| s.split_whitespace().next().unwrap_or("").to_string()).collect();
                                if let Some(f) = first.first().filter(|f| !f.is_empty() && *f != "self") {
                                    let mut p = path.clone();
                                    p.push(f.clone());
                                    // Deeper names inside the entry (`b::c`) matter only when b is a module.
                                    let mut deeper = p.clone();
                                    deeper.extend(entry.trim().split("::").skip(1).take_while(|s| s.chars().all(|c| c.is_alphanumeric() || c == '_')).map(String::from));
                                    out.push(deeper);
                                }
                                entry.clear();
                                continue;
                            }
                            _ => {}
                        }
                        entry.push(c);
                    }
                    break;
                }
            } else {
                break;
            }
        }
        if !path.is_empty() {
            out.push(path);
        }
    }
    out
}

struct Map {
    /// file → the files its code imports (other than itself).
    edges: BTreeMap<String, BTreeSet<String>>,
}

fn map() -> Map {
    let root = src();
    let mut paths = Vec::new();
    rust_files(&root, &mut paths);
    let files: BTreeSet<String> = paths.iter().map(|p| p.strip_prefix(&root).unwrap().to_string_lossy().into_owned()).collect();
    let mut edges = BTreeMap::new();
    for rel in &files {
        let text = std::fs::read_to_string(root.join(rel)).unwrap();
        let mut to = BTreeSet::new();
        for r in references(rel, &code(&text)) {
            if let Some(f) = file_of(&r, &files).filter(|f| f != rel) {
                to.insert(f);
            }
        }
        edges.insert(rel.clone(), to);
    }
    Map { edges }
}

#[test]
fn every_file_has_a_layer() {
    let m = map();
    let orphans: Vec<&String> = m.edges.keys().filter(|f| layer_of(f).is_none()).collect();
    assert!(orphans.is_empty(), "files in no layer of tests/architecture.rs's LAYERS: {orphans:?}");
}

#[test]
fn imports_point_to_the_same_or_an_earlier_layer() {
    let m = map();
    let mut wrong = Vec::new();
    for (from, tos) in &m.edges {
        let Some((lf, nf)) = layer_of(from) else { continue };
        for to in tos {
            if let Some((lt, nt)) = layer_of(to) {
                if lt > lf {
                    wrong.push(format!("{from} ({nf}) imports {to} ({nt})"));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "imports against the flow:\n  {}", wrong.join("\n  "));
}

#[test]
fn no_two_files_import_each_other() {
    let m = map();
    // Tarjan-free: a file is in a loop when it can reach itself.
    let mut loops = BTreeSet::new();
    for start in m.edges.keys() {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<(String, Vec<String>)> = m.edges[start].iter().map(|t| (t.clone(), vec![start.clone(), t.clone()])).collect();
        while let Some((at, way)) = stack.pop() {
            if &at == start {
                let mut cycle = way.clone();
                cycle.pop();
                // One spelling per loop: start from its smallest file.
                let k = (0..cycle.len()).min_by_key(|i| &cycle[*i]).unwrap();
                cycle.rotate_left(k);
                loops.insert(cycle.join(" → "));
                continue;
            }
            if !seen.insert(at.clone()) {
                continue;
            }
            for t in m.edges.get(&at).into_iter().flatten() {
                let mut w = way.clone();
                w.push(t.clone());
                stack.push((t.clone(), w));
            }
        }
    }
    assert!(loops.is_empty(), "import loops:\n  {}", loops.into_iter().collect::<Vec<_>>().join("\n  "));
}

/// The checker itself: a made-up upward import and a loop are found.
#[test]
fn the_checker_sees_paths_groups_and_super() {
    let refs = references("migration/driver.rs", &code("use super::measurement::{Health, Outcome};\nuse crate::record::{self, file::read_runs};\nfn f() { crate::report::x(); }\n"));
    let files: BTreeSet<String> =
        ["migration/measurement.rs", "record/mod.rs", "record/file.rs", "report/mod.rs"].iter().map(|s| s.to_string()).collect();
    let hit: BTreeSet<String> = refs.iter().filter_map(|r| file_of(r, &files)).collect();
    assert_eq!(hit, files, "{refs:?}");
    assert_eq!(layer_of("migration/scenario.rs").unwrap().1, "spec");
    assert_eq!(layer_of("migration/driver.rs").unwrap().1, "migration");
    assert!(layer_of("report/mod.rs").unwrap().0 > layer_of("record/file.rs").unwrap().0);
}
