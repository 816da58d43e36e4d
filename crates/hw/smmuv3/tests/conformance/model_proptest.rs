//! Property test: random map / unmap (with TLBI + CMD_SYNC) sequences on a stage-1
//! table against a plain `BTreeMap` reference, translating every page after each step.

use std::collections::BTreeMap;

use iommu_testkit::smmu::cmd::{self, Range};
use iommu_types::PhysAddr;
use proptest::prelude::*;
use smmuv3_model::Access;

use crate::common::*;

#[derive(Clone, Debug)]
enum Op {
    Map { page: u64, target: u64 },
    Unmap { page: u64 },
    Remap { page: u64, target: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..64u64, 0..16u64).prop_map(|(page, target)| Op::Map { page, target }),
        (0..64u64).prop_map(|page| Op::Unmap { page }),
        (0..64u64, 0..16u64).prop_map(|(page, target)| Op::Remap { page, target }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn translations_match_reference(ops in proptest::collection::vec(op(), 1..40), fast in any::<bool>()) {
        let fx = Fx::with(smmuv3_model::SmmuConfig::builder().sanitizer(!fast).build());
        let mut rig = fx.rig();
        let (mut t, _) = s1_stream(&fx, &rig, 1, 3);
        let data = fx.alloc(16 * 4096);
        let mut reference: BTreeMap<u64, u64> = BTreeMap::new();
        // Pages spread over two level-3 tables and two level-1 entries.
        let va = |p: u64| if p < 32 { p << 12 } else { (1 << 30) + ((p - 32) << 12) };
        for o in ops {
            match o {
                Op::Map { page, target } if !reference.contains_key(&page) => {
                    t.map(va(page), data + (target << 12), 3, RW);
                    reference.insert(page, target);
                }
                Op::Unmap { page } | Op::Remap { page, .. } if reference.contains_key(&page) => {
                    let slot = t.slot(va(page), 3, 0);
                    fx.m().write_u64(PhysAddr(slot), 0).unwrap();
                    rig.submit_sync(&[cmd::tlbi_nh_va(0, 3, va(page), Range { leaf: true, ..Default::default() })]);
                    reference.remove(&page);
                    if let Op::Remap { target, .. } = o {
                        t.map(va(page), data + (target << 12), 3, RW);
                        reference.insert(page, target);
                    }
                }
                _ => {}
            }
            for p in 0..64u64 {
                let r = fx.smmu.translate(1, None, va(p) + 8, Access::READ);
                match reference.get(&p) {
                    Some(tg) => prop_assert_eq!(r.map(|t| t.pa.0).ok(), Some(data + (tg << 12) + 8)),
                    None => prop_assert!(r.is_err()),
                }
            }
        }
        prop_assert_eq!(fx.smmu.sanitizer_reports(), vec![]);
    }
}
