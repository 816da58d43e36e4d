//! Probe and bring-up against the model (issue 4 "Probe and bring-up").

mod common;

use common::*;
use iommu_types::Mmio;
use smmuv3::regs::{cr0, off};
use smmuv3::strtab::StrtabFormat;
use smmuv3::{DriverConfig, Error, Smmu, StrtabPref, SyncPref};
use smmuv3_model::{SmmuConfig, Stages};

fn cfgs() -> Vec<(SmmuConfig, DriverConfig)> {
    let mut v = Vec::new();
    for two_level in [false, true] {
        for (g4, g16, g64) in [
            (true, false, false),
            (false, true, false),
            (false, false, true),
        ] {
            for ril in [false, true] {
                for ats in [false, true] {
                    let hw = SmmuConfig::builder()
                        .two_level_strtab(two_level)
                        .gran4k(g4)
                        .gran16k(g16)
                        .gran64k(g64)
                        .ril(ril)
                        .ats(ats)
                        .msi(ril) // vary completion too
                        .build();
                    let mut d = own_asids();
                    d.strtab = if two_level {
                        StrtabPref::TwoLevel
                    } else {
                        StrtabPref::Linear
                    };
                    v.push((hw, d));
                }
            }
        }
    }
    v
}

#[test]
fn bring_up_on_many_configurations() {
    for (hw_cfg, d) in cfgs() {
        let want = d.strtab;
        let r = rig_with(hw_cfg.clone(), d);
        let f = r.drv.features();
        assert_eq!(f.ril, hw_cfg.ril);
        assert_eq!(f.ats, hw_cfg.ats);
        assert_eq!(f.pgsize_bitmap & 0x1000 != 0, hw_cfg.gran4k);
        assert_eq!(f.pgsize_bitmap & 0x4000 != 0, hw_cfg.gran16k);
        assert_eq!(f.pgsize_bitmap & 0x10000 != 0, hw_cfg.gran64k);
        let fmt = r.drv.strtab().format();
        assert_eq!(fmt == StrtabFormat::TwoLevel, want == StrtabPref::TwoLevel);
        // Hardware state: enabled, queues on, ACK mirrors.
        let c = r.hw.read32(off::CR0ACK);
        assert_ne!(c & cr0::SMMUEN, 0);
        assert_ne!(c & cr0::CMDQEN, 0);
        assert_ne!(c & cr0::EVTQEN, 0);
        assert_eq!(c & cr0::ATSCHK != 0, hw_cfg.ats);
        assert_eq!(r.hw.read32(off::GBPA) & (1 << 20), 1 << 20, "GBPA abort");
        // The init commands were consumed: CFGI_ALL, TLBI_NSNH_ALL, syncs.
        let st = r.hw.stats();
        assert!(st.syncs >= 2);
        assert_eq!(st.command_errors, 0);
        // An unprobed stream aborts (no translation).
        assert!(
            r.hw.translate(5, None, 0x1000, smmuv3_model::Access::READ)
                .is_err()
        );
        // Probing a stream in a 2-level table allocates an L2 table on demand.
        let before = r.drv.strtab().l2_tables();
        r.drv.probe_stream(0x1234, false).unwrap();
        if fmt == StrtabFormat::TwoLevel {
            assert_eq!(r.drv.strtab().l2_tables(), before + 1);
        }
        r.sanitizer_silent();
    }
}

#[test]
fn missing_features_are_clear_errors() {
    let mem = std::sync::Arc::new(iommu_memory::SimMemory::new());
    let mk = |hw: SmmuConfig, d: DriverConfig| {
        let m = std::sync::Arc::new(smmuv3_model::Smmu::new(hw, mem.clone()));
        Smmu::probe(m, mem.clone(), d).map(|_| ())
    };
    let s1_only = SmmuConfig::builder().stages(Stages::S1).build();
    assert_eq!(
        mk(
            s1_only,
            DriverConfig {
                need_s2: true,
                ..Default::default()
            }
        ),
        Err(Error::Unsupported("stage 2"))
    );
    let linear = SmmuConfig::builder().two_level_strtab(false).build();
    assert_eq!(
        mk(
            linear,
            DriverConfig {
                strtab: StrtabPref::TwoLevel,
                ..Default::default()
            }
        ),
        Err(Error::Unsupported("two-level stream tables"))
    );
    let no_msi = SmmuConfig::builder().msi(false).build();
    assert_eq!(
        mk(
            no_msi,
            DriverConfig {
                sync: SyncPref::Msi,
                ..Default::default()
            }
        ),
        Err(Error::Unsupported("MSI CMD_SYNC completion"))
    );
}

#[test]
fn probe_again_over_a_running_smmu() {
    // Firmware (or a previous driver) left the SMMU enabled: probe disables it
    // first (GBPA abort, CR0 = 0) and brings it up again with fresh tables.
    let r = rig();
    r.drv.probe_stream(1, false).unwrap();
    smmuv3::domain::StaticDomain::identity(&r.drv)
        .attach_sids(&[1])
        .unwrap();
    let again = Smmu::probe(r.hw.clone(), r.mem.clone(), own_asids()).unwrap();
    assert!(
        r.hw.translate(1, None, 0x1000, smmuv3_model::Access::READ)
            .is_err(),
        "new table: abort"
    );
    again.probe_stream(1, false).unwrap();
    smmuv3::domain::StaticDomain::identity(&again)
        .attach_sids(&[1])
        .unwrap();
    assert!(
        r.hw.translate(1, None, 0x1000, smmuv3_model::Access::READ)
            .is_ok()
    );
    assert_ne!(r.hw.read32(off::CR0ACK) & cr0::SMMUEN, 0);
}
