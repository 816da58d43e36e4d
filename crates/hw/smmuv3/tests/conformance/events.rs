//! Event record layouts and event-queue overflow.

use iommu_testkit::smmu::{SteBits, Tables, pte, reg};
use iommu_types::Mmio;
use smmuv3_model::{Access, Event, EventClass, EventId};

use crate::common::*;

#[test]
fn translation_fault_record_layout() {
    let fx = Fx::new();
    let mut rig = fx.rig();
    let cdt = fx.cd_table(4);
    let t = Tables::s1(fx.m(), 12, 48);
    iommu_testkit::smmu::CdBits::s1(1, t.root, 48, 12).write(fx.m(), cdt + 64 * 5);
    rig.set_ste(9, SteBits::s1(cdt, 4, 0));
    fx.smmu
        .translate(
            9,
            Some(5),
            0x0000_1234_5678_9ABC,
            Access::WRITE.privileged(),
        )
        .unwrap_err();
    let ev = rig.events();
    assert_eq!(ev.len(), 1);
    let w = ev[0];
    // d0: ID 0x10, SSV bit 11, SSID [31:12], SID [63:32].
    assert_eq!(w[0], 0x10 | (1 << 11) | (5 << 12) | (9u64 << 32));
    // d1: PnU bit 33, RnW bit 35 = 0 (write), S2 = 0, CLASS [41:40] = IN (2).
    assert_eq!(w[1], (1 << 33) | (2 << 40));
    assert_eq!(w[2], 0x0000_1234_5678_9ABC);
    assert_eq!(w[3], 0);
    let d = Event::from_words(&w).unwrap();
    assert_eq!(
        (d.id, d.sid, d.ssid, d.class),
        (EventId::FTranslation, 9, Some(5), EventClass::Input)
    );
    assert_eq!(d.to_words(), w);
}

#[test]
fn stage2_fault_record_carries_ipa() {
    let fx = Fx::new();
    let mut rig = fx.rig();
    let mut t = Tables::new(fx.m(), 12, 1, 40);
    t.map(0x5000, fx.page(), 3, pte::AF | pte::S2_WB | pte::S2_READ);
    rig.set_ste(3, SteBits::s2(2, 12, 1, 40, 5, t.root));
    fx.smmu
        .translate(3, None, 0x5123, Access::WRITE)
        .unwrap_err();
    let w = rig.events()[0];
    assert_eq!(w[0], 0x13 | (3u64 << 32));
    assert_eq!(w[1], (1 << 39) | (2 << 40), "S2 bit 39, class IN, write");
    assert_eq!(w[2], 0x5123);
    assert_eq!(w[3], 0x5000, "IPA[51:12]");
}

#[test]
fn config_and_fetch_abort_records() {
    let fx = Fx::new();
    let mut rig = fx.rig();
    fx.smmu
        .translate(7, None, 0x1000, Access::READ)
        .unwrap_err(); // C_BAD_STE
    let w = rig.events()[0];
    assert_eq!(w, [0x04 | (7u64 << 32), 0, 0, 0]);
    // STE pointing at a CD in unbacked memory: F_CD_FETCH with FetchAddr.
    rig.set_ste(8, SteBits::s1(0x10_0000_0000, 0, 0));
    fx.smmu
        .translate(8, None, 0x1000, Access::READ)
        .unwrap_err();
    let w = rig.events()[0];
    assert_eq!(w[0] & 0xff, 0x09);
    assert_eq!(w[3], 0x10_0000_0000, "FetchAddr[51:3] in place");
    // Table in unbacked memory: F_WALK_EABT.
    let cd = fx.cd_table(0);
    iommu_testkit::smmu::CdBits::s1(1, 0x20_0000_0000, 48, 12).write(fx.m(), cd);
    rig.set_ste(10, SteBits::s1(cd, 0, 0));
    let f = fx.smmu.translate(10, None, 0x0, Access::READ).unwrap_err();
    assert_eq!(f.id(), Some(EventId::FWalkEabt));
    assert_eq!(rig.events()[0][3], 0x20_0000_0000);
}

#[test]
fn event_queue_overflow_sets_ovflg_and_drops() {
    let fx = Fx::new();
    let mut rig = iommu_testkit::smmu::SmmuRig::linear(&*fx.smmu, fx.m(), 6, 4, 1); // 2-entry event queue
    for sid in 0..3 {
        fx.smmu.translate(sid, None, 0, Access::READ).unwrap_err();
    }
    let prod = fx.smmu.read32(reg::EVTQ_PROD);
    assert_eq!(prod >> 31, 1, "OVFLG toggled");
    assert_eq!(prod & 0x3, 2, "two records: index 0, wrap 1");
    // A fourth fault while overflow is unacknowledged does not toggle OVFLG back.
    fx.smmu.translate(3, None, 0, Access::READ).unwrap_err();
    assert_eq!(fx.smmu.read32(reg::EVTQ_PROD) >> 31, 1);
    let ev = rig.events(); // consumes and acknowledges (OVACKFLG = OVFLG)
    assert_eq!(ev.len(), 2);
    assert_eq!(ev[0][0] >> 32, 0);
    assert_eq!(ev[1][0] >> 32, 1);
    assert_eq!(fx.smmu.stats().events_dropped, 2);
    fx.smmu.translate(5, None, 0, Access::READ).unwrap_err();
    assert_eq!(rig.events()[0][0] >> 32, 5);
}

#[test]
fn events_not_recorded_when_evtq_disabled() {
    let fx = Fx::new();
    let _rig = fx.rig();
    fx.smmu.write32(reg::CR0, reg::CR0_SMMUEN | reg::CR0_CMDQEN);
    let f = fx.smmu.translate(2, None, 0, Access::READ).unwrap_err();
    assert!(!f.recorded);
}

#[test]
fn registers_raz_wi_and_id_values() {
    let fx = Fx::new();
    let m = &*fx.smmu;
    for off in [
        0x8u64,
        0x10,
        0x30,
        0x400,
        0xFFC,
        0x1_0000,
        0x1_FFFC,
        0x2_0000,
        0xFFFF_FFFF_FFFF_FFF0,
        3,
    ] {
        m.write32(off, 0xFFFF_FFFF);
        assert_eq!(m.read32(off), 0, "offset {off:#x}");
        m.write64(off, u64::MAX);
    }
    let idr0 = m.read32(reg::IDR0);
    assert_eq!(idr0 & 3, 3, "S1P and S2P");
    assert_eq!((idr0 >> 2) & 3, 2, "AArch64 tables");
    assert_eq!(m.read32(reg::IDR1) & 0x3F, 16);
    assert_ne!(m.read32(reg::IDR3) & (1 << 10), 0, "RIL");
    assert_eq!(m.read32(reg::IDR5) & 7, 5, "48-bit OAS");
    // 64-bit registers: 64-bit access and two 32-bit halves agree.
    m.write64(reg::STRTAB_BASE, 0x1234_5678_9AC0);
    assert_eq!(m.read64(reg::STRTAB_BASE), 0x1234_5678_9AC0);
    assert_eq!(m.read32(reg::STRTAB_BASE + 4), 0x1234);
    m.write32(reg::IRQ_CTRL, 5);
    assert_eq!(m.read32(reg::IRQ_CTRLACK), 5);
    let s = m.stats();
    assert!(s.mmio_reads > 0 && s.mmio_writes > 0);
}

#[test]
fn bad_substream_record_has_ssid_without_ssv_and_evtq_abort() {
    let fx = Fx::new();
    let mut rig = fx.rig();
    rig.set_ste(4, SteBits::bypass());
    fx.smmu
        .translate(4, Some(9), 0x1000, Access::READ)
        .unwrap_err();
    let w = rig.events()[0];
    assert_eq!(
        w[0],
        0x08 | (9 << 12) | (4u64 << 32),
        "C_BAD_SUBSTREAMID: SSID, SSV = 0"
    );
    assert_eq!(Event::from_words(&w).unwrap().ssid, Some(9));
    // Event queue base in unbacked memory: GERROR.EVTQ_ABT_ERR.
    fx.smmu.write32(reg::CR0, reg::CR0_SMMUEN | reg::CR0_CMDQEN);
    fx.smmu.write64(reg::EVTQ_BASE, 0x10_0000_0000 | 4);
    fx.smmu.write32(
        reg::CR0,
        reg::CR0_SMMUEN | reg::CR0_CMDQEN | reg::CR0_EVTQEN,
    );
    let f = fx.smmu.translate(5, None, 0, Access::READ).unwrap_err();
    assert!(!f.recorded);
    assert_ne!(fx.smmu.read32(reg::GERROR) & (1 << 2), 0);
}

#[test]
fn recording_mmio_sees_the_enable_handshake() {
    use iommu_testkit::mmio::{Access as A, RecordingMmio};
    let fx = Fx::new();
    let rec = RecordingMmio::new(&*fx.smmu);
    let _rig = iommu_testkit::smmu::SmmuRig::linear(&rec, fx.m(), 4, 4, 4);
    let log = rec.log();
    let cr0 = log
        .iter()
        .position(|a| matches!(a, A::Write32(reg::CR0, _)))
        .unwrap();
    assert!(matches!(log[cr0 + 1], A::Read32(reg::CR0ACK, v) if v == 0xD));
    assert!(
        log[..cr0]
            .iter()
            .any(|a| matches!(a, A::Write64(reg::STRTAB_BASE, _)))
    );
    assert_eq!(
        fx.smmu.stats().mmio_writes as usize,
        log.iter().filter(|a| a.is_write()).count()
    );
}
