//! Bounded replay of the fuzz harness (`smmuv3_model::fuzzing::run`) so CI exercises
//! it without nightly. `IOMMU_LONG_TESTS=1` runs many more cases.

use proptest::prelude::*;

fn cases() -> u32 {
    if std::env::var("IOMMU_LONG_TESTS").is_ok_and(|v| v == "1") {
        4096
    } else {
        64
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]
    #[test]
    fn fuzz_harness_never_panics(data in proptest::collection::vec(any::<u8>(), 0..3000)) {
        smmuv3_model::fuzzing::run(&data);
    }
}

#[test]
fn fuzz_harness_edge_inputs() {
    smmuv3_model::fuzzing::run(&[]);
    smmuv3_model::fuzzing::run(&[0xFF; 4096]);
    smmuv3_model::fuzzing::run(&[0x00; 4096]);
    let ramp: Vec<u8> = (0..4096u32).map(|i| (i * 37 % 251) as u8).collect();
    smmuv3_model::fuzzing::run(&ramp);
}
