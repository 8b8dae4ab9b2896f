//! The crate graph of `docs/architecture.md`, checked against the manifests: every dependency
//! between the workspace's crates (normal, build or dev) runs down the layers the map names,
//! so none can close a cycle, and every crate says in a `//!` doc why it exists.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// Each workspace crate and the workspace crates it may depend on: the map's arrows.
const ALLOWED: &[(&str, &[&str])] = &[
    ("headroom-sketch", &[]),
    ("headroom-status", &[]),
    ("headroom-storage", &["headroom-sketch"]),
    (
        "headroom-ingest",
        &["headroom-storage", "headroom-status", "headroom-sketch"],
    ),
    (
        "headroom-analytics",
        &["headroom-storage", "headroom-status", "headroom-sketch"],
    ),
    ("headroom-loadgen", &[]),
    (
        "headroom",
        &[
            "headroom-analytics",
            "headroom-ingest",
            "headroom-loadgen",
            "headroom-storage",
            "headroom-status",
            "headroom-sketch",
        ],
    ),
];

/// The workspace's crates with the workspace crates each depends on, and its manifest path.
fn workspace() -> BTreeMap<String, (BTreeSet<String>, String)> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    let packages = meta["packages"].as_array().unwrap();
    let names: BTreeSet<String> = packages
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    packages
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["name"].as_str().unwrap().to_owned())
                .filter(|d| names.contains(d))
                .collect();
            let manifest = p["manifest_path"].as_str().unwrap().to_owned();
            (p["name"].as_str().unwrap().to_owned(), (deps, manifest))
        })
        .collect()
}

#[test]
fn dependencies_between_crates_follow_the_map() {
    let crates = workspace();
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    for (name, (deps, _)) in &crates {
        let Some(may) = allowed.get(name.as_str()) else {
            panic!("crate {name} is not on the map: add it to docs/architecture.md and here");
        };
        for dep in deps {
            assert!(
                may.contains(&dep.as_str()),
                "{name} depends on {dep}, which the map does not allow (it may use {may:?})"
            );
        }
    }
    assert_eq!(
        crates.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        allowed.keys().copied().collect::<BTreeSet<_>>(),
        "the map names crates the workspace does not have"
    );
    // The map itself runs one way: no walk down from a crate is longer than the crates are
    // many, and none comes back to where it started.
    fn reaches(from: &str, to: &str, steps: usize, allowed: &BTreeMap<&str, &[&str]>) -> bool {
        steps == 0
            || allowed[from]
                .iter()
                .any(|d| *d == to || reaches(d, to, steps - 1, allowed))
    }
    for name in allowed.keys() {
        assert!(
            !reaches(name, name, allowed.len(), &allowed),
            "the map has a cycle through {name}"
        );
    }
}

#[test]
fn every_crate_says_why_it_exists() {
    for (name, (_, manifest)) in workspace() {
        let dir = Path::new(&manifest).parent().unwrap();
        let root = ["src/lib.rs", "src/main.rs"]
            .iter()
            .map(|f| dir.join(f))
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("{name}: no src/lib.rs or src/main.rs"));
        let text = std::fs::read_to_string(&root).unwrap();
        assert!(
            text.trim_start().starts_with("//!"),
            "{}: the crate root has no //! doc",
            root.display()
        );
    }
}
