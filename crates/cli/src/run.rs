//! `iommu run` and `iommu inspect` (issue 7; the scenario language is documented in
//! `docs/scenarios.md`).

use crate::{EXIT_FAILED, EXIT_UNAVAILABLE, EXIT_USAGE};
use clap::Args;
use iommu_sim::Error;
use iommu_sim::interp::{ScenarioOutcome, inspect_scenario, run_scenario};
use iommu_sim::scenario::{Scenario, parse_bytes};

/// Options of `iommu run`.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  iommu run scenarios/strict_replay.scn\n  iommu run scenarios/*.scn --json\n\n\
Each file is parsed and checked first; errors are printed as file:line:column: message. Then it is \
executed on a fresh simulated platform and every `expect` is evaluated; the first failed expectation \
of a file is printed as file:line:column and why. The language is described in docs/scenarios.md.\n\n\
Exit status: 0 all passed, 1 an expectation failed, 2 a file could not be read or parsed, \
3 execution is not available in this build."
)]
pub struct RunArgs {
    /// Scenario files to execute, in order.
    #[arg(required = true, value_name = "SCENARIO")]
    files: Vec<String>,
    /// Print one JSON object per file instead of text.
    #[arg(long)]
    json: bool,
}

/// Options of `iommu inspect`.
#[derive(Args, Debug)]
#[command(
    after_help = "Example:\n  iommu inspect scenarios/asid_lifecycle.scn\n\n\
Executes the scenario (expectations included) and prints the final stream-table entries, context \
descriptors and page tables of every SMMU, decoded field by field from simulated memory."
)]
pub struct InspectArgs {
    /// The scenario file.
    #[arg(value_name = "SCENARIO")]
    file: String,
}

/// Read and parse one file; diagnostics are printed.
fn load(path: &str) -> Result<Scenario, Error> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.into(),
        source,
    })?;
    parse_bytes(path, &bytes).map_err(Error::Scenario)
}

fn print_load_error(e: &Error) {
    match e {
        Error::Scenario(diags) => {
            for d in diags {
                eprintln!("{d}");
            }
        }
        other => eprintln!("iommu: error: {other}"),
    }
}

/// `iommu run`.
pub fn run_main(a: RunArgs) -> Result<u8, Error> {
    let (mut bad_input, mut unavailable, mut failed) = (false, false, false);
    for path in &a.files {
        let scenario = match load(path) {
            Ok(s) => s,
            Err(e) => {
                print_load_error(&e);
                bad_input = true;
                continue;
            }
        };
        match run_scenario(&scenario) {
            Ok(outcome) => {
                failed |= !outcome.passed();
                report(&outcome, a.json);
            }
            Err(e @ Error::Unavailable(_)) => {
                eprintln!(
                    "{path}: parsed and checked ({} statements), but not executed: {e}",
                    scenario.stmts.len()
                );
                unavailable = true;
            }
            Err(e) => {
                eprintln!("{path}: {e}");
                failed = true;
            }
        }
    }
    Ok(if bad_input {
        EXIT_USAGE
    } else if unavailable {
        EXIT_UNAVAILABLE
    } else if failed {
        EXIT_FAILED
    } else {
        0
    })
}

fn report(o: &ScenarioOutcome, json: bool) {
    if json {
        println!("{}", serde_json::to_string(o).unwrap_or_default());
        return;
    }
    if o.passed() {
        println!(
            "PASS {} ({} statements, {} expectations)",
            o.file, o.executed, o.expectations
        );
    } else {
        for f in &o.failures {
            println!(
                "FAIL {}:{}:{}: {}",
                o.file, f.pos.line, f.pos.col, f.message
            );
        }
    }
}

/// `iommu inspect`.
pub fn inspect_main(a: InspectArgs) -> Result<u8, Error> {
    let scenario = match load(&a.file) {
        Ok(s) => s,
        Err(e) => {
            print_load_error(&e);
            return Ok(EXIT_USAGE);
        }
    };
    print!("{}", inspect_scenario(&scenario)?);
    Ok(0)
}
