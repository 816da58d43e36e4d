//! Register map and ID-register decode (`smmuv3.md` §1).
//!
//! Offsets are byte offsets from the SMMU base; the event and PRI queue PROD/CONS
//! live in page 1 (base + 0x10000). Register fields are [`Field`]s of word 0.

use crate::field::Field;

/// Register offsets (`smmuv3.md` §1).
pub mod off {
    /// Feature register 0.
    pub const IDR0: u64 = 0x0000;
    /// Feature register 1 (sizes).
    pub const IDR1: u64 = 0x0004;
    /// Feature register 2.
    pub const IDR2: u64 = 0x0008;
    /// Feature register 3 (RIL, ...).
    pub const IDR3: u64 = 0x000C;
    /// Feature register 4 (implementation defined).
    pub const IDR4: u64 = 0x0010;
    /// Feature register 5 (OAS, granules).
    pub const IDR5: u64 = 0x0014;
    /// Implementation identification.
    pub const IIDR: u64 = 0x0018;
    /// Architecture revision.
    pub const AIDR: u64 = 0x001C;
    /// Global control 0 (enables).
    pub const CR0: u64 = 0x0020;
    /// Acknowledge of CR0.
    pub const CR0ACK: u64 = 0x0024;
    /// Global control 1 (memory attributes).
    pub const CR1: u64 = 0x0028;
    /// Global control 2.
    pub const CR2: u64 = 0x002C;
    /// Status.
    pub const STATUSR: u64 = 0x0040;
    /// Global bypass attributes.
    pub const GBPA: u64 = 0x0044;
    /// Interrupt enables.
    pub const IRQ_CTRL: u64 = 0x0050;
    /// Acknowledge of IRQ_CTRL.
    pub const IRQ_CTRLACK: u64 = 0x0054;
    /// Global errors (toggled by the SMMU).
    pub const GERROR: u64 = 0x0060;
    /// Global error acknowledge (written by software).
    pub const GERRORN: u64 = 0x0064;
    /// GERROR MSI address.
    pub const GERROR_IRQ_CFG0: u64 = 0x0068;
    /// Stream table base.
    pub const STRTAB_BASE: u64 = 0x0080;
    /// Stream table configuration.
    pub const STRTAB_BASE_CFG: u64 = 0x0088;
    /// Command queue base.
    pub const CMDQ_BASE: u64 = 0x0090;
    /// Command queue producer index (software).
    pub const CMDQ_PROD: u64 = 0x0098;
    /// Command queue consumer index (SMMU) and error code.
    pub const CMDQ_CONS: u64 = 0x009C;
    /// Event queue base.
    pub const EVTQ_BASE: u64 = 0x00A0;
    /// Event queue producer index (page 1, SMMU).
    pub const EVTQ_PROD: u64 = 0x100A8;
    /// Event queue consumer index (page 1, software).
    pub const EVTQ_CONS: u64 = 0x100AC;
    /// Event queue MSI address.
    pub const EVTQ_IRQ_CFG0: u64 = 0x00B0;
    /// PRI queue base.
    pub const PRIQ_BASE: u64 = 0x00C0;
    /// PRI queue producer index (page 1).
    pub const PRIQ_PROD: u64 = 0x100C8;
    /// PRI queue consumer index (page 1).
    pub const PRIQ_CONS: u64 = 0x100CC;
}

/// IDR0 fields (§1.1).
pub mod idr0 {
    use super::Field;
    /// Stage 2 supported.
    pub const S2P: Field = Field::bit(0, 0);
    /// Stage 1 supported.
    pub const S1P: Field = Field::bit(0, 1);
    /// Translation table formats.
    pub const TTF: Field = Field::bits(0, 3, 2);
    /// Coherent table walks and queue accesses.
    pub const COHACC: Field = Field::bit(0, 4);
    /// Broadcast TLB maintenance.
    pub const BTM: Field = Field::bit(0, 5);
    /// Hardware table update.
    pub const HTTU: Field = Field::bits(0, 7, 6);
    /// Dormant hint.
    pub const DORMHINT: Field = Field::bit(0, 8);
    /// EL2 regime.
    pub const HYP: Field = Field::bit(0, 9);
    /// PCIe ATS.
    pub const ATS: Field = Field::bit(0, 10);
    /// NS stage-1-only ATS.
    pub const NS1ATS: Field = Field::bit(0, 11);
    /// 16-bit ASIDs.
    pub const ASID16: Field = Field::bit(0, 12);
    /// MSIs.
    pub const MSI: Field = Field::bit(0, 13);
    /// WFE wake-up events.
    pub const SEV: Field = Field::bit(0, 14);
    /// Address translation operations.
    pub const ATOS: Field = Field::bit(0, 15);
    /// PCIe PRI.
    pub const PRI: Field = Field::bit(0, 16);
    /// VMID wildcard.
    pub const VMW: Field = Field::bit(0, 17);
    /// 16-bit VMIDs.
    pub const VMID16: Field = Field::bit(0, 18);
    /// Two-level CD tables.
    pub const CD2L: Field = Field::bit(0, 19);
    /// Virtual ATOS.
    pub const VATOS: Field = Field::bit(0, 20);
    /// Table endianness.
    pub const TTENDIAN: Field = Field::bits(0, 22, 21);
    /// Stall model.
    pub const STALL_MODEL: Field = Field::bits(0, 25, 24);
    /// Termination model.
    pub const TERM_MODEL: Field = Field::bit(0, 26);
    /// Stream table levels.
    pub const ST_LEVEL: Field = Field::bits(0, 28, 27);
}

/// IDR1 fields (§1.2).
pub mod idr1 {
    use super::Field;
    /// StreamID bits.
    pub const SIDSIZE: Field = Field::bits(0, 5, 0);
    /// SubstreamID bits.
    pub const SSIDSIZE: Field = Field::bits(0, 10, 6);
    /// log2 max PRI queue entries.
    pub const PRIQS: Field = Field::bits(0, 15, 11);
    /// log2 max event queue entries.
    pub const EVENTQS: Field = Field::bits(0, 20, 16);
    /// log2 max command queue entries.
    pub const CMDQS: Field = Field::bits(0, 25, 21);
    /// Attribute type override supported (STE.SHCFG etc.).
    pub const ATTR_TYPES_OVR: Field = Field::bit(0, 27);
    /// Preset bases are relative.
    pub const REL: Field = Field::bit(0, 28);
    /// Queue bases fixed.
    pub const QUEUES_PRESET: Field = Field::bit(0, 29);
    /// Stream table base fixed.
    pub const TABLES_PRESET: Field = Field::bit(0, 30);
}

/// IDR3 fields (§1.2).
pub mod idr3 {
    use super::Field;
    /// Stage-2 forced write-back.
    pub const FWB: Field = Field::bit(0, 8);
    /// Range invalidation.
    pub const RIL: Field = Field::bit(0, 10);
    /// Break-before-make level.
    pub const BBML: Field = Field::bits(0, 12, 11);
}

/// IDR5 fields (§1.2).
pub mod idr5 {
    use super::Field;
    /// Output address size.
    pub const OAS: Field = Field::bits(0, 2, 0);
    /// 4K granule.
    pub const GRAN4K: Field = Field::bit(0, 4);
    /// 16K granule.
    pub const GRAN16K: Field = Field::bit(0, 5);
    /// 64K granule.
    pub const GRAN64K: Field = Field::bit(0, 6);
    /// Virtual address extension.
    pub const VAX: Field = Field::bits(0, 11, 10);
    /// Max stalled transactions.
    pub const STALL_MAX: Field = Field::bits(0, 31, 16);
}

/// CR0 / CR0ACK bits (§1.3).
pub mod cr0 {
    /// Translation enable.
    pub const SMMUEN: u32 = 1 << 0;
    /// PRI queue enable.
    pub const PRIQEN: u32 = 1 << 1;
    /// Event queue enable.
    pub const EVTQEN: u32 = 1 << 2;
    /// Command queue enable.
    pub const CMDQEN: u32 = 1 << 3;
    /// Check ATS translated requests.
    pub const ATSCHK: u32 = 1 << 4;
}

/// CR1 fields (§1.3).
pub mod cr1 {
    use super::Field;
    /// Queue inner cacheability.
    pub const QUEUE_IC: Field = Field::bits(0, 1, 0);
    /// Queue outer cacheability.
    pub const QUEUE_OC: Field = Field::bits(0, 3, 2);
    /// Queue shareability.
    pub const QUEUE_SH: Field = Field::bits(0, 5, 4);
    /// Table inner cacheability.
    pub const TABLE_IC: Field = Field::bits(0, 7, 6);
    /// Table outer cacheability.
    pub const TABLE_OC: Field = Field::bits(0, 9, 8);
    /// Table shareability.
    pub const TABLE_SH: Field = Field::bits(0, 11, 10);
    /// Write-back cacheable.
    pub const CACHE_WB: u64 = 1;
    /// Inner shareable.
    pub const SH_ISH: u64 = 3;
}

/// CR2 bits (§1.3).
pub mod cr2 {
    /// EL2-E2H regime.
    pub const E2H: u32 = 1 << 0;
    /// Record C_BAD_STREAMID.
    pub const RECINVSID: u32 = 1 << 1;
    /// Private TLB maintenance (ignore broadcast TLBI).
    pub const PTM: u32 = 1 << 2;
}

/// GBPA bits (§1.4).
pub mod gbpa {
    /// Abort incoming traffic while SMMUEN=0.
    pub const ABORT: u32 = 1 << 20;
    /// Update in progress (set by software, cleared by the SMMU).
    pub const UPDATE: u32 = 1 << 31;
}

/// GERROR / GERRORN bits (§1.7).
pub mod gerror {
    /// Command queue error (code in CMDQ_CONS.ERR).
    pub const CMDQ_ERR: u32 = 1 << 0;
    /// Event queue write abort.
    pub const EVTQ_ABT_ERR: u32 = 1 << 2;
    /// PRI queue write abort.
    pub const PRIQ_ABT_ERR: u32 = 1 << 3;
    /// CMD_SYNC MSI write abort.
    pub const MSI_CMDQ_ABT_ERR: u32 = 1 << 4;
    /// Service failure mode.
    pub const SFM_ERR: u32 = 1 << 8;
    /// All defined bits.
    pub const ERR_MASK: u32 = 0x1fd;
}

/// STRTAB_BASE / STRTAB_BASE_CFG fields (§1.5).
pub mod strtab {
    use super::Field;
    /// Base address bits 51:6.
    pub const BASE_ADDR: Field = Field::bits(0, 51, 6);
    /// Read-allocate hint.
    pub const BASE_RA: Field = Field::bit(0, 62);
    /// log2 number of StreamIDs covered.
    pub const CFG_LOG2SIZE: Field = Field::bits(0, 5, 0);
    /// SID bits resolved by the level-2 table.
    pub const CFG_SPLIT: Field = Field::bits(0, 10, 6);
    /// Format: 0 linear, 1 two-level.
    pub const CFG_FMT: Field = Field::bits(0, 17, 16);
    /// FMT value: linear.
    pub const FMT_LINEAR: u64 = 0;
    /// FMT value: two-level.
    pub const FMT_2LVL: u64 = 1;
}

/// Queue base and index register fields (§1.6).
pub mod queue {
    use super::Field;
    /// log2 number of entries.
    pub const BASE_LOG2SIZE: Field = Field::bits(0, 4, 0);
    /// Base address bits 51:5.
    pub const BASE_ADDR: Field = Field::bits(0, 51, 5);
    /// Read (CMDQ) / write (EVTQ, PRIQ) allocate hint.
    pub const BASE_ALLOC: Field = Field::bit(0, 62);
    /// CMDQ_CONS error code.
    pub const CONS_ERR: Field = Field::bits(0, 30, 24);
    /// EVTQ_PROD overflow flag / EVTQ_CONS overflow acknowledge.
    pub const OVF: u32 = 1 << 31;
}

/// Every register field this driver names, for the driver/model cross-check.
pub const FIELDS: &[(&str, Field)] = &[
    ("IDR0.S2P", idr0::S2P),
    ("IDR0.S1P", idr0::S1P),
    ("IDR0.TTF", idr0::TTF),
    ("IDR0.COHACC", idr0::COHACC),
    ("IDR0.BTM", idr0::BTM),
    ("IDR0.HTTU", idr0::HTTU),
    ("IDR0.HYP", idr0::HYP),
    ("IDR0.ATS", idr0::ATS),
    ("IDR0.ASID16", idr0::ASID16),
    ("IDR0.MSI", idr0::MSI),
    ("IDR0.SEV", idr0::SEV),
    ("IDR0.PRI", idr0::PRI),
    ("IDR0.VMID16", idr0::VMID16),
    ("IDR0.CD2L", idr0::CD2L),
    ("IDR0.TTENDIAN", idr0::TTENDIAN),
    ("IDR0.STALL_MODEL", idr0::STALL_MODEL),
    ("IDR0.ST_LEVEL", idr0::ST_LEVEL),
    ("IDR1.SIDSIZE", idr1::SIDSIZE),
    ("IDR1.SSIDSIZE", idr1::SSIDSIZE),
    ("IDR1.PRIQS", idr1::PRIQS),
    ("IDR1.EVENTQS", idr1::EVENTQS),
    ("IDR1.CMDQS", idr1::CMDQS),
    ("IDR1.ATTR_TYPES_OVR", idr1::ATTR_TYPES_OVR),
    ("IDR1.REL", idr1::REL),
    ("IDR1.QUEUES_PRESET", idr1::QUEUES_PRESET),
    ("IDR1.TABLES_PRESET", idr1::TABLES_PRESET),
    ("IDR3.FWB", idr3::FWB),
    ("IDR3.RIL", idr3::RIL),
    ("IDR3.BBML", idr3::BBML),
    ("IDR5.OAS", idr5::OAS),
    ("IDR5.GRAN4K", idr5::GRAN4K),
    ("IDR5.GRAN16K", idr5::GRAN16K),
    ("IDR5.GRAN64K", idr5::GRAN64K),
    ("IDR5.VAX", idr5::VAX),
    ("STRTAB_BASE.ADDR", strtab::BASE_ADDR),
    ("STRTAB_BASE_CFG.LOG2SIZE", strtab::CFG_LOG2SIZE),
    ("STRTAB_BASE_CFG.SPLIT", strtab::CFG_SPLIT),
    ("STRTAB_BASE_CFG.FMT", strtab::CFG_FMT),
    ("Q_BASE.LOG2SIZE", queue::BASE_LOG2SIZE),
    ("Q_BASE.ADDR", queue::BASE_ADDR),
    ("CMDQ_CONS.ERR", queue::CONS_ERR),
];

/// Output/intermediate address size in bits for an IDR5.OAS / IPS / S2PS encoding.
pub const fn oas_bits(enc: u64) -> Option<u32> {
    match enc {
        0 => Some(32),
        1 => Some(36),
        2 => Some(40),
        3 => Some(42),
        4 => Some(44),
        5 => Some(48),
        6 => Some(52),
        _ => None,
    }
}

/// The IDR5.OAS / CD.IPS / STE.S2PS encoding of an address size in bits (rounded up).
pub const fn oas_encoding(bits: u32) -> Option<u64> {
    match bits {
        0..=32 => Some(0),
        33..=36 => Some(1),
        37..=40 => Some(2),
        41..=42 => Some(3),
        43..=44 => Some(4),
        45..=48 => Some(5),
        49..=52 => Some(6),
        _ => None,
    }
}

/// Stream table formats the hardware supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StLevels {
    /// Linear only.
    Linear,
    /// Linear and two-level.
    TwoLevel,
}

/// Features decoded from IDR0/1/3/5 (Linux `arm_smmu_device_hw_probe`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Features {
    /// Stage 1 supported.
    pub s1: bool,
    /// Stage 2 supported.
    pub s2: bool,
    /// AArch64 table format supported (TTF 2 or 3).
    pub aarch64: bool,
    /// Coherent walks and queues (IOMMU_CAP_CACHE_COHERENCY).
    pub coherent: bool,
    /// Broadcast TLB maintenance.
    pub btm: bool,
    /// Hardware access/dirty update level (IDR0.HTTU).
    pub httu: u8,
    /// EL2 regime.
    pub hyp: bool,
    /// PCIe ATS.
    pub ats: bool,
    /// MSIs (CMD_SYNC completion by MSI write).
    pub msi: bool,
    /// WFE events.
    pub sev: bool,
    /// PCIe PRI.
    pub pri: bool,
    /// Two-level CD tables.
    pub cd2l: bool,
    /// Stall model (IDR0.STALL_MODEL).
    pub stall_model: u8,
    /// Stream-table formats.
    pub st_levels: StLevels,
    /// ASID width in bits (8 or 16).
    pub asid_bits: u32,
    /// VMID width in bits (8 or 16).
    pub vmid_bits: u32,
    /// StreamID bits.
    pub sid_bits: u32,
    /// SubstreamID bits.
    pub ssid_bits: u32,
    /// log2 max command queue entries.
    pub cmdq_log2: u32,
    /// log2 max event queue entries.
    pub evtq_log2: u32,
    /// log2 max PRI queue entries.
    pub priq_log2: u32,
    /// STE attribute override supported.
    pub attr_types_ovr: bool,
    /// Bases are preset by hardware (unsupported by this driver).
    pub preset: bool,
    /// Range invalidation.
    pub ril: bool,
    /// Stage-2 forced write-back.
    pub fwb: bool,
    /// Break-before-make level.
    pub bbml: u8,
    /// Output address size in bits.
    pub oas: u32,
    /// Input (IPA) address size in bits: max(VA size, OAS), as Linux derives it.
    pub ias: u32,
    /// Page sizes supported (4K→4K|2M|1G, 16K→16K|32M, 64K→64K|512M).
    pub pgsize_bitmap: u64,
    /// Virtual address size in bits (48 or 52).
    pub vax_bits: u32,
}

impl Features {
    /// Decode the ID registers. Unknown OAS encodings are clamped to 48 bits as the
    /// Linux driver does for future values.
    pub fn decode(idr0: u32, idr1: u32, idr3: u32, idr5: u32) -> Features {
        let (i0, i1, i3, i5) = (idr0 as u64, idr1 as u64, idr3 as u64, idr5 as u64);
        let flag = |f: Field, v: u64| f.get_word(v) != 0;
        let ttf = idr0::TTF.get_word(i0);
        let mut pgsize = 0u64;
        if flag(idr5::GRAN4K, i5) {
            pgsize |= (1 << 12) | (1 << 21) | (1 << 30);
        }
        if flag(idr5::GRAN16K, i5) {
            pgsize |= (1 << 14) | (1 << 25);
        }
        if flag(idr5::GRAN64K, i5) {
            pgsize |= (1 << 16) | (1 << 29);
        }
        Features {
            s1: flag(idr0::S1P, i0),
            s2: flag(idr0::S2P, i0),
            aarch64: ttf == 2 || ttf == 3,
            coherent: flag(idr0::COHACC, i0),
            btm: flag(idr0::BTM, i0),
            httu: idr0::HTTU.get_word(i0) as u8,
            hyp: flag(idr0::HYP, i0),
            ats: flag(idr0::ATS, i0),
            msi: flag(idr0::MSI, i0),
            sev: flag(idr0::SEV, i0),
            pri: flag(idr0::PRI, i0),
            cd2l: flag(idr0::CD2L, i0),
            stall_model: idr0::STALL_MODEL.get_word(i0) as u8,
            st_levels: if idr0::ST_LEVEL.get_word(i0) == 1 {
                StLevels::TwoLevel
            } else {
                StLevels::Linear
            },
            asid_bits: if flag(idr0::ASID16, i0) { 16 } else { 8 },
            vmid_bits: if flag(idr0::VMID16, i0) { 16 } else { 8 },
            sid_bits: idr1::SIDSIZE.get_word(i1) as u32,
            ssid_bits: idr1::SSIDSIZE.get_word(i1) as u32,
            cmdq_log2: idr1::CMDQS.get_word(i1) as u32,
            evtq_log2: idr1::EVENTQS.get_word(i1) as u32,
            priq_log2: idr1::PRIQS.get_word(i1) as u32,
            attr_types_ovr: flag(idr1::ATTR_TYPES_OVR, i1),
            preset: flag(idr1::REL, i1)
                || flag(idr1::QUEUES_PRESET, i1)
                || flag(idr1::TABLES_PRESET, i1),
            ril: flag(idr3::RIL, i3),
            fwb: flag(idr3::FWB, i3),
            bbml: idr3::BBML.get_word(i3) as u8,
            oas: oas_bits(idr5::OAS.get_word(i5)).unwrap_or(48),
            ias: oas_bits(idr5::OAS.get_word(i5))
                .unwrap_or(48)
                .max(if idr5::VAX.get_word(i5) == 1 { 52 } else { 48 }),
            pgsize_bitmap: pgsize,
            vax_bits: if idr5::VAX.get_word(i5) == 1 { 52 } else { 48 },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_typical_idrs() {
        // IDR0: S2P|S1P|TTF=2|COHACC|ATS|ASID16|MSI|VMID16|CD2L|ST_LEVEL=1
        let idr0 = 1
            | 2
            | (2 << 2)
            | (1 << 4)
            | (1 << 10)
            | (1 << 12)
            | (1 << 13)
            | (1 << 18)
            | (1 << 19)
            | (1 << 27);
        // IDR1: SIDSIZE=16, SSIDSIZE=20, EVENTQS=19, CMDQS=19
        let idr1 = 16 | (20 << 6) | (19 << 16) | (19 << 21);
        let idr3 = 1 << 10;
        // IDR5: OAS=5 (48 bits), GRAN4K | GRAN64K
        let idr5 = 5 | (1 << 4) | (1 << 6);
        let f = Features::decode(idr0, idr1, idr3, idr5);
        assert!(f.s1 && f.s2 && f.aarch64 && f.coherent && f.ats && f.msi && f.cd2l && f.ril);
        assert!(!f.btm && !f.pri && !f.preset);
        assert_eq!((f.asid_bits, f.vmid_bits), (16, 16));
        assert_eq!(
            (f.sid_bits, f.ssid_bits, f.cmdq_log2, f.evtq_log2),
            (16, 20, 19, 19)
        );
        assert_eq!(f.st_levels, StLevels::TwoLevel);
        assert_eq!(f.oas, 48);
        assert_eq!(
            f.pgsize_bitmap,
            (1 << 12) | (1 << 21) | (1 << 30) | (1 << 16) | (1 << 29)
        );
        let g = Features::decode(2 << 2, 8, 0, 0);
        assert!(!g.s1 && !g.s2 && !g.ril);
        assert_eq!((g.asid_bits, g.vmid_bits, g.oas), (8, 8, 32));
        assert_eq!(g.st_levels, StLevels::Linear);
    }

    #[test]
    fn oas_encodings_roundtrip() {
        for enc in 0..7 {
            let bits = oas_bits(enc).unwrap();
            assert_eq!(oas_encoding(bits), Some(enc));
        }
        assert_eq!(oas_bits(7), None);
        assert_eq!(oas_encoding(39), Some(2));
    }
}
