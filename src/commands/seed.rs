//! `gantry seed --users N --posts-per-user M`: realistic data for demos and benchmarks
//! (see [`crate::seed`]). Prints what it inserted and how to sign in as a seeded user.

use anyhow::Context;
use gantry_users::domain::Password;

use crate::cli::{CommonArgs, SeedArgs};
use crate::seed::{self, Progress, SeedOptions};

pub async fn run(common: &CommonArgs, args: SeedArgs) -> anyhow::Result<()> {
    let password = Password::parse(&args.password, "password", &[])
        .map_err(|err| anyhow::anyhow!("--password: {}", err.message))?;
    let db = super::open_database(common).await?;
    // Hashed once for every seeded user: one Argon2id hash costs ~20 ms of CPU.
    let password_hash = gantry_users::password::hash(&password)
        .await
        .map_err(|err| anyhow::anyhow!("hashing the seed password: {}", err.message))?;

    let options = SeedOptions {
        users: args.users,
        posts_per_user: args.posts_per_user,
        seed: args.seed,
    };
    let progress = if args.quiet {
        Progress::hidden()
    } else {
        Progress::stderr()
    };
    let summary = seed::seed(&db, options, password_hash, progress)
        .await
        .context("seeding the database")?;

    println!("{summary}");
    if args.users > 0 {
        println!(
            "log in as {} / {}",
            seed::plan::username(args.seed, 0),
            args.password
        );
    }
    Ok(())
}
