//! Fuzz the SMMUv3 model: random stream-table, CD and descriptor words, random
//! command-queue contents, register writes, translations, ATS and DMA. The harness is
//! `smmuv3_model::fuzzing::run`, also replayed by a bounded proptest in the model's
//! test suite; the model must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    smmuv3_model::fuzzing::run(data);
});
