//! The layers of `docs/architecture.md`, checked on the source: each top-level module of
//! `src/` may import only the modules below it (and the crates a layer of its kind may use).
//! A transport (HTTP `server`, later Flight SQL and the console) reaches the core only through
//! `gateway`; the core never knows a transport; `policy` never knows who enforces it.
//!
//! The check reads `crate::…` paths (including grouped `use crate::{a, b::c}`) and the external
//! crates a file names at the start of a path; it is a test, so a new arrow running back up
//! fails the build of the merge request that draws it, with the file that does.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Each top-level module, the modules of the crate it may import (itself always allowed).
/// The composition root (`cli`, `hub`, `demo`) may import anything and is not listed.
const MAY_IMPORT: &[(&str, &[&str])] = &[
    // Transport: parses, calls one use case, encodes.
    (
        "server",
        &[
            "flight",
            "gateway",
            "config",
            "telemetry",
            "install_crypto_provider",
        ],
    ),
    // The second transport, Flight SQL: its listener is the server's.
    ("flight", &["gateway", "config", "telemetry"]),
    // Use cases: every security decision and audit fact, once, for every transport.
    (
        "gateway",
        &[
            "access",
            "audit",
            "config",
            "engine",
            "identity",
            "lookup",
            "policy",
            "private_fs",
            "pseudonym",
            "secrecy",
            "storage",
            "telemetry",
        ],
    ),
    // The cluster's roles and a gateway's client of it (internal gRPC, mutual TLS): plans
    // are the engine's, encoded by its codec; executors read the hub's bucket (`storage`).
    (
        "cluster",
        &["config", "engine", "private_fs", "secret_file", "storage"],
    ),
    // The core, each part knowing only what lies below it.
    (
        "engine",
        &[
            "access",
            "config",
            "file_stamp",
            "parquet_layout",
            "policy",
            "private_fs",
            "pseudonym",
            "secrecy",
            "storage",
        ],
    ),
    ("lookup", &["access", "file_stamp", "policy", "pseudonym"]),
    ("access", &["policy", "pseudonym"]),
    // Policy names the secrecy profiles and measures of its tables.
    ("policy", &["file_stamp", "identity", "secrecy"]),
    // Identity reads the console's client secret file (`identity::sign_in`).
    (
        "identity",
        &["config", "install_crypto_provider", "secret_file"],
    ),
    ("audit", &["config", "private_fs", "secret_file"]),
    ("pseudonym", &["config", "secret_file"]),
    // The statistical secret: cells in, a protection out (no microdata, no policy).
    ("secrecy", &[]),
    ("config", &[]),
    ("telemetry", &[]),
    ("file_stamp", &[]),
    // How the hub writes its own Parquet files (demo datasets, extracts).
    ("parquet_layout", &[]),
    // Datasets on object storage: the bucket, its versions, pinned reads.
    (
        "storage",
        &["config", "policy", "private_fs", "secret_file"],
    ),
    ("secret_file", &["private_fs"]),
    ("private_fs", &[]),
];

/// External crates only a transport may name (the use cases speak in domain types).
const TRANSPORT_CRATES: &[&str] = &[
    "axum",
    "http",
    "hyper",
    "hyper_util",
    "tower",
    "tower_http",
    "tonic",
    "arrow_flight",
];

/// Modules that must not name transport crates. (`identity` is an HTTP *client* of the
/// identity provider, with its own `identity::http` module: it may name `http`, never a server
/// crate.)
const TRANSPORT_FREE: &[(&str, &[&str])] = &[
    ("gateway", &[]),
    ("engine", &[]),
    ("lookup", &[]),
    ("access", &[]),
    ("policy", &[]),
    ("identity", &["http"]),
    ("audit", &[]),
    ("pseudonym", &[]),
    ("secrecy", &[]),
];

#[test]
fn the_layers_import_only_downwards() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut arrows = Vec::new();
    let mut checked = BTreeSet::new();
    for (module, allowed) in MAY_IMPORT {
        for file in module_files(&src, module) {
            checked.insert(*module);
            let text = std::fs::read_to_string(&file).unwrap();
            let code = without_comments(&text);
            for target in crate_imports(&code) {
                if target != *module && !allowed.contains(&target.as_str()) {
                    arrows.push(format!(
                        "{} imports crate::{target} ({module} may import: {})",
                        file.strip_prefix(&src).unwrap().display(),
                        allowed.join(", ")
                    ));
                }
            }
            if let Some((_, except)) = TRANSPORT_FREE.iter().find(|(m, _)| m == module) {
                for name in TRANSPORT_CRATES {
                    if !except.contains(name) && names_crate(&code, name) {
                        arrows.push(format!(
                            "{} names the transport crate `{name}`",
                            file.strip_prefix(&src).unwrap().display()
                        ));
                    }
                }
            }
        }
    }
    assert_eq!(checked.len(), MAY_IMPORT.len(), "every layer has files");
    // Every top-level module is placed somewhere (a new one must be given its layer).
    let placed: BTreeSet<&str> = MAY_IMPORT
        .iter()
        .map(|(m, _)| *m)
        .chain(["cli", "hub", "demo", "lib", "main"])
        .collect();
    for entry in std::fs::read_dir(&src).unwrap().flatten() {
        let name = entry
            .file_name()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        assert!(
            placed.contains(name.as_str()),
            "src/{name} has no layer in tests/integration/architecture.rs"
        );
    }
    assert!(
        arrows.is_empty(),
        "arrows running back up:\n{}",
        arrows.join("\n")
    );
}

/// The check itself sees what it must: a grouped import, a path in an expression, a transport
/// crate at the start of a path but not inside a word.
#[test]
fn the_import_reader_sees_grouped_and_inline_paths() {
    let code = "use crate::{engine::Format, policy::{Plan, x}};\nlet a = crate::audit::f();\n\
                use super::http_types; let h = axum::Router::new();";
    assert_eq!(
        crate_imports(code),
        BTreeSet::from(["audit".to_string(), "engine".into(), "policy".into()])
    );
    assert!(names_crate(code, "axum"));
    assert!(!names_crate(code, "http"));
}

/// The `.rs` files of a top-level module: `src/<m>.rs` and everything under `src/<m>/`.
fn module_files(src: &Path, module: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let single = src.join(format!("{module}.rs"));
    if single.is_file() {
        files.push(single);
    }
    let mut folders = vec![src.join(module)];
    while let Some(folder) = folders.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files
}

/// The code without `//` comments (doc comments name modules freely).
fn without_comments(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            // A `//` inside a string literal ("https://…") is rare in paths; keep the line's
            // start, which is where a path would be.
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules named by `crate::` paths, grouped ones included.
fn crate_imports(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // `$crate::`, `my_crate::`
        }
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level items of the group: after `{` and after each `,` at depth 0.
            let mut depth = 0;
            let mut item_start = true;
            let mut current = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        item_start = true;
                        continue;
                    }
                    _ => {}
                }
                if depth == 0 && item_start {
                    if c.is_alphanumeric() || c == '_' {
                        current.push(c);
                        continue;
                    }
                    if !current.is_empty() {
                        found.insert(std::mem::take(&mut current));
                        item_start = false;
                    }
                }
            }
            if !current.is_empty() {
                found.insert(current);
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found.remove("self");
    found
}

/// Whether `code` starts a path with the external crate `name` (`name::…`, `::name::…`).
fn names_crate(code: &str, name: &str) -> bool {
    let needle = format!("{name}::");
    code.match_indices(&needle).any(|(at, _)| {
        let before = code[..at].chars().next_back();
        // Not part of a longer name, not a path's later segment (`crate::x::http::`), unless
        // it is the leading `::name`.
        match before {
            None => true,
            Some(c) if c.is_alphanumeric() || c == '_' => false,
            Some(':') => code[..at].ends_with(" ::") || code[..at].ends_with("(::"),
            Some(_) => true,
        }
    })
}
