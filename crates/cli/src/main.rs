//! `llvq`: the command-line face of the library crates. Logic lives in the crates; this binary
//! parses flags, calls them, and turns typed errors into messages and exit codes.

mod cmd;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "llvq", version, about = "Leech lattice vector quantization for LLMs")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Inspect the Leech lattice: theta series, shells, classes.
    #[command(subcommand)]
    Lattice(cmd::lattice::LatticeCmd),
    /// Encode and decode Leech lattice points through stdin/stdout.
    #[command(subcommand)]
    Codec(cmd::codec::CodecCmd),
    /// Print benchmark tables (medians, throughput) for the codec.
    #[command(subcommand)]
    Bench(cmd::bench::BenchCmd),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Lattice(c) => cmd::lattice::run(c),
        Command::Codec(c) => cmd::codec::run(c),
        Command::Bench(c) => cmd::bench::run(c),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}
