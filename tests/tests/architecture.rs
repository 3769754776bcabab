//! ARCHITECTURE.md's crate table is true: every workspace crate has a row, and each crate's
//! voxpipe dependencies (normal, not dev) are among those its row allows.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// `crate -> allowed voxpipe dependencies`, from the table under "## Crates".
fn table() -> BTreeMap<String, BTreeSet<String>> {
    let text = std::fs::read_to_string(repo().join("ARCHITECTURE.md")).unwrap();
    let section = text.split("## Crates").nth(1).unwrap().split("\n## ").next().unwrap();
    let names = |cell: &str| -> BTreeSet<String> {
        cell.split('`').skip(1).step_by(2).map(str::to_string).filter(|n| n.starts_with("voxpipe")).collect()
    };
    section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let name = cells[1].trim_matches('`').to_string();
            (name, names(cells[3]))
        })
        .collect()
}

/// `crate -> voxpipe dependencies`, from `cargo metadata`.
fn actual() -> BTreeMap<String, BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["kind"].is_null())
                .filter_map(|d| d["name"].as_str())
                .filter(|n| n.starts_with("voxpipe"))
                .map(str::to_string)
                .collect();
            (p["name"].as_str().unwrap().to_string(), deps)
        })
        .collect()
}

#[test]
fn the_crate_table_matches_cargo_metadata() {
    let (table, actual) = (table(), actual());
    let documented: BTreeSet<&String> = table.keys().collect();
    let crates: BTreeSet<&String> = actual.keys().collect();
    assert_eq!(documented, crates, "ARCHITECTURE.md's crate table and the workspace differ");
    for (name, deps) in &actual {
        let extra: Vec<&String> = deps.difference(&table[name]).collect();
        assert!(extra.is_empty(), "{name} depends on {extra:?}, which ARCHITECTURE.md does not allow");
    }
    // The core stays at the bottom.
    assert!(actual["voxpipe-core"].is_empty());
}
