//! Command queue behaviour against the model: CERROR_ILL recovery, batching,
//! wrap-around, and use from several threads (issue 4 "Command queue").

mod common;

use std::sync::Arc;

use common::*;
use iommu_types::Mmio;
use smmuv3::cmd::Cmd;
use smmuv3::cmdq::cerror;
use smmuv3::regs::off;
use smmuv3::{DriverConfig, SyncPref};
use smmuv3_model::SmmuConfig;

#[test]
fn cerror_ill_is_reported_skipped_and_processing_resumes() {
    for sync in [SyncPref::Msi, SyncPref::PollCons] {
        let r = rig_with(
            SmmuConfig::default(),
            DriverConfig {
                sync,
                ..own_asids()
            },
        );
        let before = r.hw.stats();
        let good = Cmd::TlbiNhAll { vmid: 0 }.encode().unwrap();
        let illegal = [0xFFu64, 0]; // unknown opcode
        r.drv.cmdq().submit_raw(&[good, illegal, good]).unwrap();
        // The hardware saw the error ...
        let after = r.hw.stats();
        assert_eq!(after.command_errors - before.command_errors, 1);
        // ... the driver reported it with the offending command ...
        let errs = r.drv.cmdq().errors();
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].code, cerror::ILL);
        assert_eq!(errs[0].cmd, illegal);
        // ... acknowledged it (GERRORN == GERROR) and the queue runs again.
        assert!(!r.hw.cmdq_error_active());
        assert_eq!(r.hw.read32(off::GERROR), r.hw.read32(off::GERRORN));
        let tlbi = smmuv3::cmd::op::TLBI_NH_ALL as usize;
        assert_eq!(
            after.commands[tlbi] - before.commands[tlbi],
            2,
            "both good commands ran"
        );
        r.drv.submit(&[Cmd::CfgiAll]).unwrap();
        assert_eq!(r.hw.stats().command_errors, after.command_errors);
    }
}

#[test]
fn reserved_range_encoding_is_never_emitted_by_the_driver() {
    // The driver refuses to encode it; a raw one is rejected by the hardware.
    let bad = smmuv3::cmd::TlbiRange {
        addr: 0x1000,
        leaf: false,
        tg: 1,
        ttl: 0,
        num: 0,
        scale: 0,
    };
    assert!(
        Cmd::TlbiNhVa {
            vmid: 0,
            asid: 1,
            range: bad
        }
        .encode()
        .is_err()
    );
    let r = rig();
    let raw = [0x12u64 | (1 << 48), 0x1000 | (1 << 10)];
    r.drv.cmdq().submit_raw(&[raw]).unwrap();
    assert_eq!(
        r.drv.cmdq().errors().len(),
        1,
        "model raises CERROR_ILL for it"
    );
}

#[test]
fn many_commands_wrap_the_queue() {
    let hw = SmmuConfig::builder().cmdq_log2(3).build(); // 8 entries
    let r = rig_with(hw, own_asids());
    let cmds: Vec<Cmd> = (0..100)
        .map(|i| Cmd::TlbiNhAsid { vmid: 0, asid: i })
        .collect();
    r.drv.submit(&cmds).unwrap();
    let st = r.hw.stats();
    assert_eq!(st.commands[smmuv3::cmd::op::TLBI_NH_ASID as usize], 100);
    assert_eq!(st.command_errors, 0);
}

#[test]
fn submissions_from_many_threads() {
    let r = rig();
    let drv = r.drv.clone();
    let before = r.hw.stats().commands[smmuv3::cmd::op::TLBI_NH_ASID as usize];
    let hs: Vec<_> = (0..4)
        .map(|t| {
            let d = Arc::clone(&drv);
            std::thread::spawn(move || {
                for i in 0..200u16 {
                    d.submit(&[Cmd::TlbiNhAsid {
                        vmid: 0,
                        asid: t * 1000 + i,
                    }])
                    .unwrap();
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    let after = r.hw.stats().commands[smmuv3::cmd::op::TLBI_NH_ASID as usize];
    assert_eq!(after - before, 800);
    assert!(r.drv.cmdq().errors().is_empty());
}

#[test]
fn a_stopped_queue_times_out_instead_of_spinning_forever() {
    for sync in [SyncPref::Msi, SyncPref::PollCons] {
        let r = rig_with(
            SmmuConfig::default(),
            DriverConfig {
                sync,
                poll_limit: 2000,
                ..own_asids()
            },
        );
        r.drv.disable().unwrap(); // CMDQEN off: nothing is consumed any more
        assert_eq!(
            r.drv.submit(&[Cmd::CfgiAll]),
            Err(smmuv3::Error::Timeout("CMD_SYNC completion"))
        );
    }
}

#[test]
fn event_queue_overflow_is_acknowledged_and_draining_continues() {
    let hw = SmmuConfig::builder().evtq_log2(2).build(); // 4 records
    let r = rig_with(hw, own_asids());
    r.drv.probe_stream(1, false).unwrap();
    let d = smmuv3::domain::SmmuDomain::new(&r.drv, smmuv3::domain::DomainStage::S1, 0x1000, false)
        .unwrap();
    d.attach_sids(&[1], false).unwrap();
    for i in 0..10u64 {
        let _ =
            r.hw.translate(1, None, 0x10_0000 + i * 0x1000, smmuv3_model::Access::READ);
    }
    let first = r.drv.drain_events().unwrap();
    assert!(!first.is_empty() && first.len() <= 4, "{}", first.len());
    assert_eq!(r.drv.event_overflows(), 1);
    // After the acknowledgement new faults are recorded again.
    let _ =
        r.hw.translate(1, None, 0xabc_d000, smmuv3_model::Access::READ);
    let next = r.drv.drain_events().unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].addr, 0xabc_d000);
}
