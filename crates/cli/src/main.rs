//! The `iommu` command: simulate workloads, run and inspect scenarios, benchmark
//! (issue 7). `iommu --help` and `iommu help SUBCOMMAND` describe every option with
//! examples.
//!
//! Exit status: 0 success, 1 a scenario expectation failed, 2 bad arguments or a bad
//! scenario file, 3 the request needs a part of the stack this build does not have,
//! 4 any other failure.

mod bench;
mod run;
mod simulate;
mod table;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Exit status of a failed expectation.
const EXIT_FAILED: u8 = 1;
/// Exit status of bad input.
const EXIT_USAGE: u8 = 2;
/// Exit status of an unavailable feature.
const EXIT_UNAVAILABLE: u8 = 3;
/// Exit status of other failures.
const EXIT_OTHER: u8 = 4;

#[derive(Parser, Debug)]
#[command(
    name = "iommu",
    version,
    about = "Simulate, test and benchmark the iommu-stack IOMMU subsystem on executable SMMUv3 models",
    long_about = "iommu runs the iommu-stack IOMMU subsystem (page tables, the SMMUv3 driver, the IOMMU \
core, the IOVA allocator and the DMA API) against executable SMMUv3 hardware models, with simulated \
devices doing real DMA through them.\n\n\
Start with `iommu simulate` (no options): it compares strict and lazy invalidation on a network card \
and on a malicious device, and explains the table it prints.",
    after_help = "Examples:\n  iommu simulate\n  iommu simulate --workload attack --policy lazy --seed 7 --json\n  \
iommu run scenarios/*.scn\n  iommu inspect scenarios/strict_replay.scn\n  iommu bench\n  iommu bench map -t 2 -s 5 -g 4\n\n\
Exit status: 0 ok, 1 an expectation failed, 2 bad arguments or scenario, 3 not available in this build, 4 other error."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a workload of simulated devices and report throughput, hardware events,
    /// stale-translation windows and malicious accesses.
    Simulate(simulate::SimulateArgs),
    /// Execute scenario files; exit non-zero on any failed expectation.
    Run(run::RunArgs),
    /// Execute a scenario and print the final STEs, CDs and page tables decoded field
    /// by field.
    Inspect(run::InspectArgs),
    /// Micro benchmarks (ns/op), or `bench map`, a mirror of Linux's dma_map_benchmark.
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Simulate(a) => simulate::main(a),
        Command::Run(a) => run::run_main(a),
        Command::Inspect(a) => run::inspect_main(a),
        Command::Bench(a) => bench::main(a),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("iommu: error: {e}");
            ExitCode::from(exit_code_of(&e))
        }
    }
}

/// Exit status for a simulator error.
fn exit_code_of(e: &iommu_sim::Error) -> u8 {
    match e {
        iommu_sim::Error::Scenario(_) | iommu_sim::Error::Config(_) => EXIT_USAGE,
        iommu_sim::Error::Unavailable(_) => EXIT_UNAVAILABLE,
        iommu_sim::Error::Io { .. } => EXIT_USAGE,
        _ => EXIT_OTHER,
    }
}

/// Parse a size such as `4k`, `16k`, `64KiB`, `4096` (for clap).
fn parse_size_arg(s: &str) -> Result<u64, String> {
    iommu_sim::scenario::lexer::parse_size(s)
}

/// Parse a page or granule size: 4k, 16k or 64k.
fn parse_page_arg(s: &str) -> Result<u64, String> {
    match parse_size_arg(s)? {
        v @ (0x1000 | 0x4000 | 0x10000) => Ok(v),
        v => Err(format!("{v} is not 4k, 16k or 64k")),
    }
}
