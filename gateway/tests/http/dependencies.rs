//! What an operator's program links when it depends on the gateway: no ORM and no SQL
//! driver, so a gateway binary does not carry the subgraphs' database stack.

use std::process::Command;

#[test]
fn the_gateway_links_no_orm_and_no_sql_driver() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .args([
            "tree",
            "-p",
            "gantry-gateway",
            "-e",
            "normal",
            "--locked",
            "--offline",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let packages: Vec<&str> = stdout
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert!(
        packages.contains(&"gantry-identity"),
        "the tree was read: {packages:?}"
    );
    let database: Vec<&&str> = packages
        .iter()
        .filter(|name| {
            name.starts_with("sea-orm") || name.starts_with("sea-query") || name.starts_with("sqlx")
        })
        .collect();
    assert!(
        database.is_empty(),
        "the gateway links {database:?}; keep kit's `db` feature off"
    );
}
