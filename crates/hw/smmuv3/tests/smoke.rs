//! Smoke test of the basic stage-1 path.
mod common;
use common::*;
use smmuv3_model::{Access, TranslationKind};

#[test]
fn smoke_s1_page() {
    let fx = Fx::new();
    let rig = fx.rig();
    let (mut t, _) = s1_stream(&fx, &rig, 1, 5);
    let pa = fx.page();
    t.map(0x1234_5000, pa, 3, RW);
    let tr = fx
        .smmu
        .translate(1, None, 0x1234_5678, Access::READ)
        .unwrap();
    assert_eq!(tr.pa.0, pa + 0x678);
    assert_eq!(tr.kind, TranslationKind::Stage1);
    let tr = fx
        .smmu
        .translate(1, None, 0x1234_5678, Access::WRITE)
        .unwrap();
    assert!(tr.cached);
    assert!(fx.smmu.sanitizer_reports().is_empty());
}
