//! Fuzz the scenario parser: any bytes must give a scenario or diagnostics, never a
//! panic, and every diagnostic must point inside the input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match iommu_sim::scenario::parse_bytes("fuzz.scn", data) {
        Ok(scenario) => {
            let lines = data.split(|&b| b == b'\n').count();
            assert!(scenario.stmts.len() <= lines);
        }
        Err(diags) => {
            assert!(!diags.is_empty());
            assert!(diags.len() <= iommu_sim::scenario::MAX_DIAGNOSTICS);
            let lines = data.split(|&b| b == b'\n').count();
            for d in &diags {
                assert!(d.pos.line >= 1 && d.pos.col >= 1);
                assert!(d.pos.line as usize <= lines.max(1));
                // Rendering must not panic either.
                let _ = d.to_string();
            }
        }
    }
});
