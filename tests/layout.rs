//! The tree keeps its architecture (README "Architecture"): these checks read `src/` as text.
//! - one CLI layer: nothing outside `src/cli/` (and `main.rs`) uses clap or prints to stdout;
//! - dependencies point down: a top-level module imports only modules listed before it in
//!   `lib.rs` (what `../shared/tools/modcycles.py` cannot see: an edge up that makes no cycle yet);
//! - files are read in one sitting (at most 900 lines), and every folder's `mod.rs` opens with
//!   a `//!` paragraph on what it owns.
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
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
    out.sort();
}

/// The file's code: line comments and an inline `#[cfg(test)] mod tests` dropped (unit tests
/// may look anywhere and print).
fn code(p: &Path) -> String {
    let text = std::fs::read_to_string(p).unwrap();
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => &text[..],
    };
    text.lines()
        .map(|l| match l.find("//") {
            // Keep "//" inside string literals such as URLs ("http://").
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn rel(p: &Path) -> String {
    p.strip_prefix(src()).unwrap().display().to_string()
}

fn outside_cli() -> Vec<PathBuf> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    files
        .into_iter()
        .filter(|p| {
            let r = rel(p);
            !r.starts_with("cli/") && r != "main.rs"
        })
        .collect()
}

#[test]
fn only_the_cli_layer_parses_flags() {
    let bad: Vec<String> = outside_cli()
        .iter()
        .filter(|p| {
            let c = code(p);
            c.contains("clap::")
                || c.contains("use clap")
                || c.contains("#[arg(")
                || c.contains("#[command(")
        })
        .map(|p| rel(p))
        .collect();
    assert!(bad.is_empty(), "clap outside src/cli/: {bad:?}");
}

#[test]
fn only_the_cli_layer_prints_results() {
    let bad: Vec<String> = outside_cli()
        .iter()
        .filter(|p| {
            let c = code(p);
            // eprintln!/eprint! (warnings, progress) are allowed: they contain "print" after 'e'.
            c.match_indices("print!(")
                .chain(c.match_indices("println!("))
                .any(|(i, _)| i == 0 || !c[..i].ends_with('e'))
        })
        .map(|p| rel(p))
        .collect();
    assert!(bad.is_empty(), "stdout printing outside src/cli/: {bad:?}");
}

#[test]
fn files_are_read_in_one_sitting() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let long: Vec<(String, usize)> = files
        .iter()
        .map(|p| (rel(p), std::fs::read_to_string(p).unwrap().lines().count()))
        .filter(|(_, n)| *n > 900)
        .collect();
    assert!(long.is_empty(), "files over 900 lines: {long:?}");
}

#[test]
fn every_folder_says_what_it_owns() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let bad: Vec<String> = files
        .iter()
        .filter(|p| p.file_name().unwrap() == "mod.rs")
        .filter(|p| !std::fs::read_to_string(p).unwrap().starts_with("//! "))
        .map(|p| rel(p))
        .collect();
    assert!(
        bad.is_empty(),
        "mod.rs without an opening //! paragraph: {bad:?}"
    );
}

#[test]
fn modules_import_only_those_listed_before_them() {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    let order: Vec<&str> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .map(|l| l.trim_end_matches(';'))
        .collect();
    assert!(order.len() >= 8, "lib.rs lists {order:?}");
    let rank = |m: &str| order.iter().position(|o| *o == m);
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut up = Vec::new();
    for p in &files {
        let r = rel(p);
        let Some(own) = r.split('/').next().map(|s| s.trim_end_matches(".rs")) else {
            continue;
        };
        let Some(own_rank) = rank(own) else { continue };
        let c = code(p);
        for (i, _) in c.match_indices("crate::") {
            let rest = &c[i + 7..];
            // `crate::{a, b::c}` names several modules at once.
            let names: Vec<String> = match rest.strip_prefix('{') {
                Some(group) => group[..group.find('}').unwrap_or(group.len())]
                    .split(',')
                    .map(|s| s.trim().split("::").next().unwrap_or("").to_string())
                    .collect(),
                None => vec![rest
                    .chars()
                    .take_while(|ch| ch.is_alphanumeric() || *ch == '_')
                    .collect()],
            };
            for used in names {
                if rank(&used).is_some_and(|k| k > own_rank) {
                    up.push(format!("{r} uses crate::{used}"));
                }
            }
        }
    }
    up.sort();
    up.dedup();
    assert!(up.is_empty(), "imports up the lib.rs order: {up:?}");
}
