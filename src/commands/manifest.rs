//! `gantry manifest DIR`: prints the persisted-operation manifest (Apollo's format) for the
//! `.graphql` operation files under DIR, as a mobile build step runs before shipping. The
//! output is deterministic: the same operations give the same bytes.

use std::path::{Path, PathBuf};

use anyhow::Context;
use gantry_gateway::persisted::generate::manifest_from_files;

use crate::cli::ManifestArgs;

pub fn run(args: &ManifestArgs) -> anyhow::Result<()> {
    let json = manifest_json(&args.dir)?;
    println!("{json}");
    Ok(())
}

/// The manifest for the `.graphql` files under `dir`, pretty-printed.
pub fn manifest_json(dir: &Path) -> anyhow::Result<String> {
    let mut paths = Vec::new();
    graphql_files(dir, &mut paths)?;
    paths.sort();
    let mut files = Vec::with_capacity(paths.len());
    for path in paths {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let name = path
            .strip_prefix(dir)
            .unwrap_or(&path)
            .display()
            .to_string();
        files.push((name, text));
    }
    let manifest = manifest_from_files(&files)?;
    Ok(serde_json::to_string_pretty(&manifest)?)
}

fn graphql_files(dir: &Path, into: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("reading the folder {}", dir.display()))?;
    for entry in entries {
        let path = entry
            .with_context(|| format!("reading the folder {}", dir.display()))?
            .path();
        if path.is_dir() {
            graphql_files(&path, into)?;
        } else if path.extension().is_some_and(|ext| ext == "graphql") {
            into.push(path);
        }
    }
    Ok(())
}
