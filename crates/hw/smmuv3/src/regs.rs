//! Register map and register fields (reference `smmuv3.md` §1).
//!
//! Offsets are relative to the base of the 128 KiB programming interface: page 0 at
//! 0, page 1 at [`PAGE1`]. Register fields are [`Field`]s of word 0.

use crate::field::Field;

/// Offset of register page 1.
pub const PAGE1: u64 = 0x1_0000;
/// Size of the whole programming interface (two 64 KiB pages).
pub const MMIO_SIZE: u64 = 0x2_0000;

/// ID register 0 (features).
pub const IDR0: u64 = 0x0;
/// ID register 1 (sizes).
pub const IDR1: u64 = 0x4;
/// ID register 2.
pub const IDR2: u64 = 0x8;
/// ID register 3 (newer features: RIL, BBML, FWB, ...).
pub const IDR3: u64 = 0xC;
/// ID register 4 (IMPLEMENTATION DEFINED).
pub const IDR4: u64 = 0x10;
/// ID register 5 (OAS, granules, VAX).
pub const IDR5: u64 = 0x14;
/// Implementation identification.
pub const IIDR: u64 = 0x18;
/// Architecture revision.
pub const AIDR: u64 = 0x1C;
/// Control register 0 (enables).
pub const CR0: u64 = 0x20;
/// Acknowledge of CR0.
pub const CR0ACK: u64 = 0x24;
/// Control register 1 (table/queue memory attributes).
pub const CR1: u64 = 0x28;
/// Control register 2 (E2H, RECINVSID, PTM).
pub const CR2: u64 = 0x2C;
/// Status register.
pub const STATUSR: u64 = 0x40;
/// Global bypass attributes.
pub const GBPA: u64 = 0x44;
/// Interrupt enables.
pub const IRQ_CTRL: u64 = 0x50;
/// Acknowledge of IRQ_CTRL.
pub const IRQ_CTRLACK: u64 = 0x54;
/// Global errors (toggled by the SMMU).
pub const GERROR: u64 = 0x60;
/// Global error acknowledge (written by software).
pub const GERRORN: u64 = 0x64;
/// GERROR MSI address.
pub const GERROR_IRQ_CFG0: u64 = 0x68;
/// GERROR MSI data.
pub const GERROR_IRQ_CFG1: u64 = 0x70;
/// GERROR MSI attributes.
pub const GERROR_IRQ_CFG2: u64 = 0x74;
/// Stream table base.
pub const STRTAB_BASE: u64 = 0x80;
/// Stream table configuration.
pub const STRTAB_BASE_CFG: u64 = 0x88;
/// Command queue base.
pub const CMDQ_BASE: u64 = 0x90;
/// Command queue producer index (software).
pub const CMDQ_PROD: u64 = 0x98;
/// Command queue consumer index (SMMU).
pub const CMDQ_CONS: u64 = 0x9C;
/// Event queue base.
pub const EVTQ_BASE: u64 = 0xA0;
/// Event queue producer index (SMMU), page 1.
pub const EVTQ_PROD: u64 = PAGE1 + 0xA8;
/// Event queue consumer index (software), page 1.
pub const EVTQ_CONS: u64 = PAGE1 + 0xAC;
/// Event queue MSI address.
pub const EVTQ_IRQ_CFG0: u64 = 0xB0;
/// Event queue MSI data.
pub const EVTQ_IRQ_CFG1: u64 = 0xB8;
/// Event queue MSI attributes.
pub const EVTQ_IRQ_CFG2: u64 = 0xBC;
/// PRI queue base.
pub const PRIQ_BASE: u64 = 0xC0;
/// PRI queue producer index, page 1.
pub const PRIQ_PROD: u64 = PAGE1 + 0xC8;
/// PRI queue consumer index, page 1.
pub const PRIQ_CONS: u64 = PAGE1 + 0xCC;
/// PRI queue MSI address.
pub const PRIQ_IRQ_CFG0: u64 = 0xD0;
/// PRI queue MSI data.
pub const PRIQ_IRQ_CFG1: u64 = 0xD8;
/// PRI queue MSI attributes.
pub const PRIQ_IRQ_CFG2: u64 = 0xDC;

/// IDR0 fields.
pub mod idr0 {
    use super::Field;
    /// Stage 2 supported.
    pub const S2P: Field = Field::new(0, 0, 1);
    /// Stage 1 supported.
    pub const S1P: Field = Field::new(0, 1, 1);
    /// Translation table formats (2 = AArch64).
    pub const TTF: Field = Field::bits(0, 3, 2);
    /// Coherent table walks and queue accesses.
    pub const COHACC: Field = Field::new(0, 4, 1);
    /// Broadcast TLB maintenance.
    pub const BTM: Field = Field::new(0, 5, 1);
    /// Hardware translation table update (1 AF, 2 AF+dirty).
    pub const HTTU: Field = Field::bits(0, 7, 6);
    /// EL2 translation regime supported.
    pub const HYP: Field = Field::new(0, 9, 1);
    /// PCIe ATS supported.
    pub const ATS: Field = Field::new(0, 10, 1);
    /// 16-bit ASIDs.
    pub const ASID16: Field = Field::new(0, 12, 1);
    /// MSIs supported.
    pub const MSI: Field = Field::new(0, 13, 1);
    /// SEV supported.
    pub const SEV: Field = Field::new(0, 14, 1);
    /// PRI supported.
    pub const PRI: Field = Field::new(0, 16, 1);
    /// 16-bit VMIDs.
    pub const VMID16: Field = Field::new(0, 18, 1);
    /// Two-level CD tables supported.
    pub const CD2L: Field = Field::new(0, 19, 1);
    /// Translation table endianness (2 = little only).
    pub const TTENDIAN: Field = Field::bits(0, 22, 21);
    /// Stall model (1 = terminate only).
    pub const STALL_MODEL: Field = Field::bits(0, 25, 24);
    /// Terminate model.
    pub const TERM_MODEL: Field = Field::new(0, 26, 1);
    /// Stream table levels (1 = two-level supported).
    pub const ST_LEVEL: Field = Field::bits(0, 28, 27);
}

/// IDR1 fields.
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
    /// Attribute type override (SHCFG/MTCFG honoured).
    pub const ATTR_TYPES_OVR: Field = Field::new(0, 27, 1);
}

/// IDR3 fields.
pub mod idr3 {
    use super::Field;
    /// Hierarchical attribute disable.
    pub const HAD: Field = Field::new(0, 2, 1);
    /// Stage-2 EL0/EL1 execute distinction.
    pub const XNX: Field = Field::new(0, 4, 1);
    /// Stage-2 forced write-back.
    pub const FWB: Field = Field::new(0, 8, 1);
    /// Range invalidation.
    pub const RIL: Field = Field::new(0, 10, 1);
    /// Break-before-make level.
    pub const BBML: Field = Field::bits(0, 12, 11);
}

/// IDR5 fields.
pub mod idr5 {
    use super::Field;
    /// Output address size encoding.
    pub const OAS: Field = Field::bits(0, 2, 0);
    /// 4 KiB granule.
    pub const GRAN4K: Field = Field::new(0, 4, 1);
    /// 16 KiB granule.
    pub const GRAN16K: Field = Field::new(0, 5, 1);
    /// 64 KiB granule.
    pub const GRAN64K: Field = Field::new(0, 6, 1);
    /// VA extent (0 = 48 bits, 1 = 52 bits).
    pub const VAX: Field = Field::bits(0, 11, 10);
    /// Maximum stalled transactions.
    pub const STALL_MAX: Field = Field::bits(0, 31, 16);
}

/// CR0 fields (also CR0ACK).
pub mod cr0 {
    use super::Field;
    /// Translation enable.
    pub const SMMUEN: Field = Field::new(0, 0, 1);
    /// PRI queue enable.
    pub const PRIQEN: Field = Field::new(0, 1, 1);
    /// Event queue enable.
    pub const EVTQEN: Field = Field::new(0, 2, 1);
    /// Command queue enable.
    pub const CMDQEN: Field = Field::new(0, 3, 1);
    /// ATS check.
    pub const ATSCHK: Field = Field::new(0, 4, 1);
    /// VMID wildcard.
    pub const VMW: Field = Field::bits(0, 8, 6);
    /// Bits of CR0 that exist.
    pub const VALID_MASK: u32 = 0x1DF;
}

/// CR2 fields.
pub mod cr2 {
    use super::Field;
    /// EL2-E2H regime.
    pub const E2H: Field = Field::new(0, 0, 1);
    /// Record C_BAD_STREAMID.
    pub const RECINVSID: Field = Field::new(0, 1, 1);
    /// Private TLB maintenance.
    pub const PTM: Field = Field::new(0, 2, 1);
}

/// GBPA fields.
pub mod gbpa {
    use super::Field;
    /// Memory attributes.
    pub const MEMATTR: Field = Field::bits(0, 3, 0);
    /// Memory type config.
    pub const MTCFG: Field = Field::new(0, 4, 1);
    /// Allocation config.
    pub const ALLOCCFG: Field = Field::bits(0, 11, 8);
    /// Shareability config.
    pub const SHCFG: Field = Field::bits(0, 13, 12);
    /// Privilege config.
    pub const PRIVCFG: Field = Field::bits(0, 17, 16);
    /// Instruction config.
    pub const INSTCFG: Field = Field::bits(0, 19, 18);
    /// Abort all traffic while SMMUEN = 0.
    pub const ABORT: Field = Field::new(0, 20, 1);
    /// Update handshake.
    pub const UPDATE: Field = Field::new(0, 31, 1);
    /// Writable bits other than UPDATE.
    pub const VALUE_MASK: u32 = 0x001F_3F1F;
}

/// GERROR / GERRORN bits.
pub mod gerror {
    /// Command queue error.
    pub const CMDQ_ERR: u32 = 1 << 0;
    /// Event queue write abort.
    pub const EVTQ_ABT_ERR: u32 = 1 << 2;
    /// PRI queue write abort.
    pub const PRIQ_ABT_ERR: u32 = 1 << 3;
    /// CMD_SYNC MSI write abort.
    pub const MSI_CMDQ_ABT_ERR: u32 = 1 << 4;
    /// Event queue MSI abort.
    pub const MSI_EVTQ_ABT_ERR: u32 = 1 << 5;
    /// PRI queue MSI abort.
    pub const MSI_PRIQ_ABT_ERR: u32 = 1 << 6;
    /// GERROR MSI abort.
    pub const MSI_GERROR_ABT_ERR: u32 = 1 << 7;
    /// Service failure mode.
    pub const SFM_ERR: u32 = 1 << 8;
    /// All defined bits.
    pub const MASK: u32 = 0x1FD;
}

/// STRTAB_BASE / STRTAB_BASE_CFG fields.
pub mod strtab {
    use super::Field;
    /// Base address [51:6].
    pub const BASE_ADDR: Field = Field::bits(0, 51, 6);
    /// Read-allocate hint.
    pub const BASE_RA: Field = Field::new(0, 62, 1);
    /// log2 of the number of StreamIDs covered.
    pub const CFG_LOG2SIZE: Field = Field::bits(0, 5, 0);
    /// Two-level split.
    pub const CFG_SPLIT: Field = Field::bits(0, 10, 6);
    /// Format (0 linear, 1 two-level).
    pub const CFG_FMT: Field = Field::bits(0, 17, 16);
    /// Linear format.
    pub const FMT_LINEAR: u64 = 0;
    /// Two-level format.
    pub const FMT_2LVL: u64 = 1;
}

/// Queue base and index fields (CMDQ, EVTQ, PRIQ).
pub mod queue {
    use super::Field;
    /// log2 number of entries.
    pub const BASE_LOG2SIZE: Field = Field::bits(0, 4, 0);
    /// Base address [51:5].
    pub const BASE_ADDR: Field = Field::bits(0, 51, 5);
    /// Read/write allocate hint.
    pub const BASE_RWA: Field = Field::new(0, 62, 1);
    /// CMDQ_CONS error code.
    pub const CONS_ERR: Field = Field::bits(0, 30, 24);
    /// EVTQ_PROD / PRIQ_PROD overflow flag.
    pub const PROD_OVFLG: Field = Field::new(0, 31, 1);
    /// EVTQ_CONS / PRIQ_CONS overflow acknowledge.
    pub const CONS_OVACKFLG: Field = Field::new(0, 31, 1);
}

/// Command error codes (CMDQ_CONS.ERR).
pub mod cerror {
    /// No error.
    pub const NONE: u32 = 0;
    /// Illegal command.
    pub const ILL: u32 = 1;
    /// Abort while fetching a command.
    pub const ABT: u32 = 2;
    /// ATC invalidation sync failure.
    pub const ATC_INV_SYNC: u32 = 3;
}

/// Decode an OAS / IPS / S2PS encoding to a number of address bits.
pub const fn oas_bits(enc: u64) -> u32 {
    match enc {
        0 => 32,
        1 => 36,
        2 => 40,
        3 => 42,
        4 => 44,
        5 => 48,
        _ => 52,
    }
}

/// Encode a number of address bits as an OAS encoding (rounding down to a legal size).
pub const fn oas_encoding(bits: u32) -> u64 {
    match bits {
        0..=35 => 0,
        36..=39 => 1,
        40..=41 => 2,
        42..=43 => 3,
        44..=47 => 4,
        48..=51 => 5,
        _ => 6,
    }
}
