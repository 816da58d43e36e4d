//! The scenario language: a small line-oriented text format that builds a platform,
//! drives the DMA API and devices, and states expectations.
//!
//! The grammar and every command are documented in `docs/scenarios.md`. [`parse`]
//! turns text into a checked [`Scenario`] or a list of [`Diagnostic`]s
//! (`file:line:column: message`); it never panics, whatever the input (proptested
//! here and fuzzed by `fuzz/fuzz_targets/scenario_parser.rs`).

pub mod ast;
mod check;
pub mod lexer;
mod parser;

pub use ast::*;
pub use check::{HandleKind, check};
pub use parser::{Diagnostic, MAX_BUFFER, MAX_DIAGNOSTICS, MAX_READ, parse};

/// Parse arbitrary bytes as a scenario (invalid UTF-8 is reported, not a panic);
/// the entry point of the fuzz target.
pub fn parse_bytes(file: &str, bytes: &[u8]) -> Result<Scenario, Vec<Diagnostic>> {
    match core::str::from_utf8(bytes) {
        Ok(s) => parse(file, s),
        Err(e) => {
            let prefix = &bytes[..e.valid_up_to()];
            let line = prefix.iter().filter(|&&b| b == b'\n').count();
            let line_start = prefix
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |p| p + 1);
            let col =
                core::str::from_utf8(&prefix[line_start..]).map_or(1, |s| s.chars().count() + 1);
            Err(vec![Diagnostic {
                file: file.into(),
                pos: Pos {
                    line: u32::try_from(line)
                        .unwrap_or(u32::MAX - 1)
                        .saturating_add(1),
                    col: u32::try_from(col).unwrap_or(u32::MAX),
                },
                message: "file is not valid UTF-8".into(),
            }])
        }
    }
}

#[cfg(test)]
mod tests;
