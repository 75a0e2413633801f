//! Builds the GraphiQL playground bundle that `src/playground` embeds.
//!
//! `gateway/playground/` is an npm project pinned by its `package-lock.json`. This script
//! installs it (`npm ci`, skipped when `node_modules` already matches the lock file) and
//! bundles it with esbuild into `$OUT_DIR/playground/graphiql.{js,css}`. It reruns only
//! when the npm project's own files change. Needs `node` and `npm` (and the npm registry
//! the first time).

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(env_var("CARGO_MANIFEST_DIR"));
    let project = manifest_dir.join("playground");
    let out_dir = PathBuf::from(env_var("OUT_DIR")).join("playground");

    for file in ["package.json", "package-lock.json", "build.mjs", "src"] {
        println!("cargo::rerun-if-changed={}", project.join(file).display());
    }
    println!("cargo::rerun-if-changed=build.rs");

    require_tool("node");
    require_tool("npm");

    // Several builds (other target directories, rust-analyzer) may share this checkout's
    // node_modules: one installs at a time.
    let lock_path = project.join(".build.lock");
    let lock = File::create(&lock_path)
        .unwrap_or_else(|error| fail(&format!("cannot create {}: {error}", lock_path.display())));
    lock.lock()
        .unwrap_or_else(|error| fail(&format!("cannot lock {}: {error}", lock_path.display())));

    install_if_stale(&project);
    run(
        Command::new("node")
            .arg("build.mjs")
            .arg(&out_dir)
            .current_dir(&project),
        "bundling the playground (node build.mjs)",
    );
    for file in ["graphiql.js", "graphiql.css"] {
        if !out_dir.join(file).is_file() {
            fail(&format!("the playground build did not write {file}"));
        }
    }
}

/// `npm ci` unless `node_modules` was installed from this very lock file (a copy of which
/// is kept in `node_modules` after a successful install).
fn install_if_stale(project: &Path) {
    let lock_file = project.join("package-lock.json");
    let stamp = project
        .join("node_modules")
        .join(".gantry-installed-lock.json");
    let wanted = fs::read(&lock_file)
        .unwrap_or_else(|error| fail(&format!("cannot read {}: {error}", lock_file.display())));
    if fs::read(&stamp).is_ok_and(|installed| installed == wanted) {
        return;
    }
    run(
        Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(project),
        "installing the playground's npm packages (npm ci in gateway/playground)",
    );
    fs::write(&stamp, &wanted)
        .unwrap_or_else(|error| fail(&format!("cannot write {}: {error}", stamp.display())));
}

fn require_tool(tool: &str) {
    let found = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success());
    if !found {
        fail(&format!(
            "`{tool}` was not found. The gateway embeds a GraphiQL playground built with \
             Node.js: install node and npm (Debian: `apt-get install nodejs npm`) and build again."
        ));
    }
}

fn run(command: &mut Command, what: &str) {
    let output = command
        .output()
        .unwrap_or_else(|error| fail(&format!("{what}: could not start: {error}")));
    if !output.status.success() {
        fail(&format!(
            "{what} failed ({}):\n{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
}

fn env_var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| fail(&format!("{name} is not set")))
}

fn fail(message: &str) -> ! {
    eprintln!("error: gantry-gateway build: {message}");
    panic!("gantry-gateway build: {message}");
}
