use clap::Parser;

fn main() -> anyhow::Result<()> {
    gantry_bench::cli::run(gantry_bench::cli::Cli::parse())
}
