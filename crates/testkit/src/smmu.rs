//! Build SMMUv3 structures from raw bits for tests (reference `smmuv3.md` §1–§5):
//! STEs, CDs, L1 descriptors, commands, LPAE tables at any granule / start level
//! (with concatenated stage-2 roots), plus [`SmmuRig`], which programs an SMMU's
//! registers through any [`Mmio`] the way a test (not a driver) would.
//!
//! Every bit position here is written out independently of the model's own field
//! definitions, so a test that builds with these helpers and translates with the
//! model checks both readings of the specification.

use iommu_types::{Mmio, PhysAddr, PhysMem};

fn put(w: &mut u64, lo: u32, width: u32, v: u64) {
    let m = if width == 64 {
        u64::MAX
    } else {
        (1u64 << width) - 1
    };
    *w = (*w & !(m << lo)) | ((v & m) << lo);
}

// ------------------------------------------------------------------ registers

/// Register offsets (page 0, and page 1 at 0x10000).
pub mod reg {
    /// IDR0.
    pub const IDR0: u64 = 0x0;
    /// IDR1.
    pub const IDR1: u64 = 0x4;
    /// IDR3.
    pub const IDR3: u64 = 0xC;
    /// IDR5.
    pub const IDR5: u64 = 0x14;
    /// CR0.
    pub const CR0: u64 = 0x20;
    /// CR0ACK.
    pub const CR0ACK: u64 = 0x24;
    /// CR1.
    pub const CR1: u64 = 0x28;
    /// CR2.
    pub const CR2: u64 = 0x2C;
    /// GBPA.
    pub const GBPA: u64 = 0x44;
    /// IRQ_CTRL.
    pub const IRQ_CTRL: u64 = 0x50;
    /// IRQ_CTRLACK.
    pub const IRQ_CTRLACK: u64 = 0x54;
    /// GERROR.
    pub const GERROR: u64 = 0x60;
    /// GERRORN.
    pub const GERRORN: u64 = 0x64;
    /// STRTAB_BASE.
    pub const STRTAB_BASE: u64 = 0x80;
    /// STRTAB_BASE_CFG.
    pub const STRTAB_BASE_CFG: u64 = 0x88;
    /// CMDQ_BASE.
    pub const CMDQ_BASE: u64 = 0x90;
    /// CMDQ_PROD.
    pub const CMDQ_PROD: u64 = 0x98;
    /// CMDQ_CONS.
    pub const CMDQ_CONS: u64 = 0x9C;
    /// EVTQ_BASE.
    pub const EVTQ_BASE: u64 = 0xA0;
    /// EVTQ_PROD (page 1).
    pub const EVTQ_PROD: u64 = 0x100A8;
    /// EVTQ_CONS (page 1).
    pub const EVTQ_CONS: u64 = 0x100AC;
    /// CR0 bits.
    pub const CR0_SMMUEN: u32 = 1;
    /// CR0.EVTQEN.
    pub const CR0_EVTQEN: u32 = 1 << 2;
    /// CR0.CMDQEN.
    pub const CR0_CMDQEN: u32 = 1 << 3;
    /// CR2.RECINVSID.
    pub const CR2_RECINVSID: u32 = 1 << 1;
    /// GERROR.CMDQ_ERR.
    pub const GERROR_CMDQ_ERR: u32 = 1;
}

// ------------------------------------------------------------------ STE

/// An STE under construction (raw dwords).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SteBits(pub [u64; 8]);

impl SteBits {
    /// V=1, Config=abort.
    pub fn abort() -> Self {
        let mut s = Self::default();
        put(&mut s.0[0], 0, 1, 1);
        s
    }
    /// V=1, Config=bypass.
    pub fn bypass() -> Self {
        Self::abort().config(4)
    }
    /// Set Config (3 bits at 1).
    pub fn config(mut self, c: u64) -> Self {
        put(&mut self.0[0], 1, 3, c);
        self
    }
    /// Set V.
    pub fn valid(mut self, v: bool) -> Self {
        put(&mut self.0[0], 0, 1, v as u64);
        self
    }
    /// Stage 1 with a CD (table) at `cd_ptr`, `cd_max` SSID bits, S1Fmt `fmt`.
    pub fn s1(cd_ptr: u64, cd_max: u32, fmt: u64) -> Self {
        let mut s = Self::abort().config(5);
        put(&mut s.0[0], 4, 2, fmt);
        put(&mut s.0[0], 6, 46, cd_ptr >> 6);
        put(&mut s.0[0], 59, 5, cd_max as u64);
        put(&mut s.0[1], 2, 2, 1); // S1CIR WBRA
        put(&mut s.0[1], 4, 2, 1); // S1COR
        put(&mut s.0[1], 6, 2, 3); // S1CSH ISH
        s
    }
    /// Stage 2 with `vmid`, granule shift, start level, IPA bits, output size
    /// encoding and table base; S2AA64 and S2R set.
    pub fn s2(
        vmid: u16,
        granule_shift: u32,
        start_level: u32,
        ias: u32,
        ps: u64,
        ttb: u64,
    ) -> Self {
        let mut s = Self::abort().config(6);
        s = s.with_s2(vmid, granule_shift, start_level, ias, ps, ttb);
        s
    }
    /// Add stage-2 fields and enable stage 2 (nested when built from
    /// [`SteBits::s1`]).
    pub fn with_s2(
        mut self,
        vmid: u16,
        granule_shift: u32,
        start_level: u32,
        ias: u32,
        ps: u64,
        ttb: u64,
    ) -> Self {
        let tg = match granule_shift {
            12 => 0,
            16 => 1,
            _ => 2,
        };
        let sl0 = if granule_shift == 12 {
            2 - start_level as u64
        } else {
            3 - start_level as u64
        };
        let config = (self.0[0] >> 1) & 7;
        put(&mut self.0[0], 1, 3, config | 0b110);
        put(&mut self.0[2], 0, 16, vmid as u64);
        put(&mut self.0[2], 32, 6, 64 - ias as u64);
        put(&mut self.0[2], 38, 2, sl0);
        put(&mut self.0[2], 40, 2, 1);
        put(&mut self.0[2], 42, 2, 1);
        put(&mut self.0[2], 44, 2, 3);
        put(&mut self.0[2], 46, 2, tg);
        put(&mut self.0[2], 48, 3, ps);
        put(&mut self.0[2], 51, 1, 1); // S2AA64
        put(&mut self.0[2], 58, 1, 1); // S2R
        put(&mut self.0[3], 4, 48, ttb >> 4);
        self
    }
    /// S1DSS.
    pub fn s1dss(mut self, v: u64) -> Self {
        put(&mut self.0[1], 0, 2, v);
        self
    }
    /// EATS.
    pub fn eats(mut self, v: u64) -> Self {
        put(&mut self.0[1], 28, 2, v);
        self
    }
    /// STRW.
    pub fn strw(mut self, v: u64) -> Self {
        put(&mut self.0[1], 30, 2, v);
        self
    }
    /// S2VMID.
    pub fn vmid(mut self, v: u16) -> Self {
        put(&mut self.0[2], 0, 16, v as u64);
        self
    }
    /// S2FWB (d1 bit 25).
    pub fn s2fwb(mut self, v: bool) -> Self {
        put(&mut self.0[1], 25, 1, v as u64);
        self
    }
    /// S2AFFD (d2 bit 53).
    pub fn s2affd(mut self, v: bool) -> Self {
        put(&mut self.0[2], 53, 1, v as u64);
        self
    }
    /// S2HA / S2HD (d2 bits 56 / 55).
    pub fn s2hw(mut self, ha: bool, hd: bool) -> Self {
        put(&mut self.0[2], 56, 1, ha as u64);
        put(&mut self.0[2], 55, 1, hd as u64);
        self
    }
    /// S2R (d2 bit 58).
    pub fn s2r(mut self, v: bool) -> Self {
        put(&mut self.0[2], 58, 1, v as u64);
        self
    }
    /// S2S (d2 bit 57).
    pub fn s2s(mut self, v: bool) -> Self {
        put(&mut self.0[2], 57, 1, v as u64);
        self
    }
    /// Write the STE at `pa`, dword 0 last (as a careful driver would).
    pub fn write(&self, mem: &dyn PhysMem, pa: u64) {
        for i in (0..8).rev() {
            mem.write_u64(PhysAddr(pa + 8 * i as u64), self.0[i])
                .expect("STE memory");
        }
    }

    /// Write the STE dword by dword in ascending order over a live entry: the
    /// non-hitless store sequence a buggy driver uses (dword 0, with V and
    /// Config, lands first).
    pub fn write_dword_by_dword(&self, mem: &dyn PhysMem, pa: u64) {
        for i in 0..8 {
            mem.write_u64(PhysAddr(pa + 8 * i as u64), self.0[i])
                .expect("STE memory");
        }
    }
}

/// A two-level stream-table L1 descriptor: SPAN and L2 pointer.
pub fn l1_std(span: u64, l2: u64) -> u64 {
    let mut d = 0;
    put(&mut d, 0, 5, span);
    put(&mut d, 6, 46, l2 >> 6);
    d
}

/// An L1 CD descriptor: V and L2 pointer.
pub fn l1_cd(valid: bool, l2: u64) -> u64 {
    let mut d = 0;
    put(&mut d, 0, 1, valid as u64);
    put(&mut d, 12, 40, l2 >> 12);
    d
}

// ------------------------------------------------------------------ CD

/// A CD under construction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CdBits(pub [u64; 8]);

/// The MAIR Linux uses (index 0 NC, 1 WB, 2 device, 3 inner-NC/outer-WB).
pub const LINUX_MAIR: u64 = 0xF404_FF44;

impl CdBits {
    /// A valid AArch64 CD: TTB0 at `ttb0` with `va_bits` and `granule_shift`,
    /// IPS 48 bits, EPD1, R, A, ASET, `asid`, MAIR = [`LINUX_MAIR`].
    pub fn s1(asid: u16, ttb0: u64, va_bits: u32, granule_shift: u32) -> Self {
        let mut c = Self::default();
        let tg = match granule_shift {
            12 => 0,
            16 => 1,
            _ => 2,
        };
        let w = &mut c.0[0];
        put(w, 0, 6, 64 - va_bits as u64);
        put(w, 6, 2, tg);
        put(w, 8, 2, 1);
        put(w, 10, 2, 1);
        put(w, 12, 2, 3);
        put(w, 30, 1, 1); // EPD1
        put(w, 31, 1, 1); // V
        put(w, 32, 3, 5); // IPS 48
        put(w, 41, 1, 1); // AA64
        put(w, 45, 1, 1); // R
        put(w, 46, 1, 1); // A
        put(w, 47, 1, 1); // ASET
        put(w, 48, 16, asid as u64);
        put(&mut c.0[1], 4, 48, ttb0 >> 4);
        c.0[3] = LINUX_MAIR;
        c
    }
    /// Enable TTB1 at `ttb1` (EPD1 = 0) with `va_bits` and granule.
    pub fn ttb1(mut self, ttb1: u64, va_bits: u32, granule_shift: u32) -> Self {
        let tg1 = match granule_shift {
            14 => 1,
            12 => 2,
            _ => 3,
        };
        put(&mut self.0[0], 16, 6, 64 - va_bits as u64);
        put(&mut self.0[0], 22, 2, tg1);
        put(&mut self.0[0], 30, 1, 0);
        put(&mut self.0[2], 4, 48, ttb1 >> 4);
        self
    }
    /// EPD0.
    pub fn epd0(mut self, v: bool) -> Self {
        put(&mut self.0[0], 14, 1, v as u64);
        self
    }
    /// V.
    pub fn valid(mut self, v: bool) -> Self {
        put(&mut self.0[0], 31, 1, v as u64);
        self
    }
    /// ASID.
    pub fn asid(mut self, v: u16) -> Self {
        put(&mut self.0[0], 48, 16, v as u64);
        self
    }
    /// TTB0.
    pub fn ttb0(mut self, v: u64) -> Self {
        put(&mut self.0[1], 4, 48, v >> 4);
        self
    }
    /// IPS encoding.
    pub fn ips(mut self, v: u64) -> Self {
        put(&mut self.0[0], 32, 3, v);
        self
    }
    /// HA / HD (bits 43 / 42).
    pub fn hw(mut self, ha: bool, hd: bool) -> Self {
        put(&mut self.0[0], 43, 1, ha as u64);
        put(&mut self.0[0], 42, 1, hd as u64);
        self
    }
    /// AFFD (bit 35).
    pub fn affd(mut self, v: bool) -> Self {
        put(&mut self.0[0], 35, 1, v as u64);
        self
    }
    /// R (bit 45).
    pub fn record(mut self, v: bool) -> Self {
        put(&mut self.0[0], 45, 1, v as u64);
        self
    }
    /// A (bit 46).
    pub fn abort_on_fault(mut self, v: bool) -> Self {
        put(&mut self.0[0], 46, 1, v as u64);
        self
    }
    /// TBI0 (bit 38).
    pub fn tbi0(mut self, v: bool) -> Self {
        put(&mut self.0[0], 38, 1, v as u64);
        self
    }
    /// WXN (bit 36).
    pub fn wxn(mut self, v: bool) -> Self {
        put(&mut self.0[0], 36, 1, v as u64);
        self
    }
    /// S (bit 44).
    pub fn stall(mut self, v: bool) -> Self {
        put(&mut self.0[0], 44, 1, v as u64);
        self
    }
    /// Write at `pa`, dword 0 last.
    pub fn write(&self, mem: &dyn PhysMem, pa: u64) {
        for i in (0..8).rev() {
            mem.write_u64(PhysAddr(pa + 8 * i as u64), self.0[i])
                .expect("CD memory");
        }
    }
}

// ------------------------------------------------------------------ commands

/// Command opcodes.
pub mod op {
    /// PREFETCH_CONFIG.
    pub const PREFETCH_CONFIG: u64 = 0x01;
    /// CFGI_STE.
    pub const CFGI_STE: u64 = 0x03;
    /// CFGI_STE_RANGE.
    pub const CFGI_STE_RANGE: u64 = 0x04;
    /// CFGI_CD.
    pub const CFGI_CD: u64 = 0x05;
    /// CFGI_CD_ALL.
    pub const CFGI_CD_ALL: u64 = 0x06;
    /// TLBI_NH_ALL.
    pub const TLBI_NH_ALL: u64 = 0x10;
    /// TLBI_NH_ASID.
    pub const TLBI_NH_ASID: u64 = 0x11;
    /// TLBI_NH_VA.
    pub const TLBI_NH_VA: u64 = 0x12;
    /// TLBI_NH_VAA.
    pub const TLBI_NH_VAA: u64 = 0x13;
    /// TLBI_EL2_ALL.
    pub const TLBI_EL2_ALL: u64 = 0x20;
    /// TLBI_EL2_ASID.
    pub const TLBI_EL2_ASID: u64 = 0x21;
    /// TLBI_EL2_VA.
    pub const TLBI_EL2_VA: u64 = 0x22;
    /// TLBI_EL2_VAA.
    pub const TLBI_EL2_VAA: u64 = 0x23;
    /// TLBI_S12_VMALL.
    pub const TLBI_S12_VMALL: u64 = 0x28;
    /// TLBI_S2_IPA.
    pub const TLBI_S2_IPA: u64 = 0x2A;
    /// TLBI_NSNH_ALL.
    pub const TLBI_NSNH_ALL: u64 = 0x30;
    /// ATC_INV.
    pub const ATC_INV: u64 = 0x40;
    /// CMD_SYNC.
    pub const SYNC: u64 = 0x46;
}

/// Commands as raw dword pairs.
pub mod cmd {
    use super::{op, put};

    /// PREFETCH_CONFIG.
    pub fn prefetch_config(sid: u32) -> [u64; 2] {
        let mut w = [op::PREFETCH_CONFIG, 0];
        put(&mut w[0], 32, 32, sid as u64);
        w
    }
    /// CFGI_STE.
    pub fn cfgi_ste(sid: u32, leaf: bool) -> [u64; 2] {
        let mut w = [op::CFGI_STE, leaf as u64];
        put(&mut w[0], 32, 32, sid as u64);
        w
    }
    /// CFGI_STE_RANGE.
    pub fn cfgi_ste_range(sid: u32, range: u32) -> [u64; 2] {
        let mut w = [op::CFGI_STE_RANGE, range as u64 & 31];
        put(&mut w[0], 32, 32, sid as u64);
        w
    }
    /// CFGI_ALL (CFGI_STE_RANGE with Range = 31).
    pub fn cfgi_all() -> [u64; 2] {
        cfgi_ste_range(0, 31)
    }
    /// CFGI_CD.
    pub fn cfgi_cd(sid: u32, ssid: u32, leaf: bool) -> [u64; 2] {
        let mut w = [op::CFGI_CD, leaf as u64];
        put(&mut w[0], 12, 20, ssid as u64);
        put(&mut w[0], 32, 32, sid as u64);
        w
    }
    /// CFGI_CD_ALL.
    pub fn cfgi_cd_all(sid: u32) -> [u64; 2] {
        let mut w = [op::CFGI_CD_ALL, 0];
        put(&mut w[0], 32, 32, sid as u64);
        w
    }
    /// TLBI_NH_ALL.
    pub fn tlbi_nh_all(vmid: u16) -> [u64; 2] {
        let mut w = [op::TLBI_NH_ALL, 0];
        put(&mut w[0], 32, 16, vmid as u64);
        w
    }
    /// TLBI_NH_ASID.
    pub fn tlbi_nh_asid(vmid: u16, asid: u16) -> [u64; 2] {
        let mut w = [op::TLBI_NH_ASID, 0];
        put(&mut w[0], 32, 16, vmid as u64);
        put(&mut w[0], 48, 16, asid as u64);
        w
    }
    /// Range fields of a TLBI by address.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct Range {
        /// TG (0 = single address).
        pub tg: u64,
        /// SCALE.
        pub scale: u64,
        /// NUM.
        pub num: u64,
        /// TTL.
        pub ttl: u64,
        /// Leaf.
        pub leaf: bool,
    }
    fn by_addr(opcode: u64, vmid: u16, asid: u16, addr: u64, r: Range) -> [u64; 2] {
        let mut w = [opcode, 0];
        put(&mut w[0], 12, 5, r.num);
        put(&mut w[0], 20, 5, r.scale);
        put(&mut w[0], 32, 16, vmid as u64);
        put(&mut w[0], 48, 16, asid as u64);
        put(&mut w[1], 0, 1, r.leaf as u64);
        put(&mut w[1], 8, 2, r.ttl);
        put(&mut w[1], 10, 2, r.tg);
        w[1] |= addr & !0xFFF;
        w
    }
    /// TLBI_NH_VA.
    pub fn tlbi_nh_va(vmid: u16, asid: u16, addr: u64, r: Range) -> [u64; 2] {
        by_addr(op::TLBI_NH_VA, vmid, asid, addr, r)
    }
    /// TLBI_NH_VAA.
    pub fn tlbi_nh_vaa(vmid: u16, addr: u64, r: Range) -> [u64; 2] {
        by_addr(op::TLBI_NH_VAA, vmid, 0, addr, r)
    }
    /// TLBI_EL2_ALL.
    pub fn tlbi_el2_all() -> [u64; 2] {
        [op::TLBI_EL2_ALL, 0]
    }
    /// TLBI_EL2_ASID.
    pub fn tlbi_el2_asid(asid: u16) -> [u64; 2] {
        let mut w = [op::TLBI_EL2_ASID, 0];
        put(&mut w[0], 48, 16, asid as u64);
        w
    }
    /// TLBI_EL2_VA.
    pub fn tlbi_el2_va(asid: u16, addr: u64, r: Range) -> [u64; 2] {
        by_addr(op::TLBI_EL2_VA, 0, asid, addr, r)
    }
    /// TLBI_EL2_VAA.
    pub fn tlbi_el2_vaa(addr: u64, r: Range) -> [u64; 2] {
        by_addr(op::TLBI_EL2_VAA, 0, 0, addr, r)
    }
    /// TLBI_S12_VMALL.
    pub fn tlbi_s12_vmall(vmid: u16) -> [u64; 2] {
        let mut w = [op::TLBI_S12_VMALL, 0];
        put(&mut w[0], 32, 16, vmid as u64);
        w
    }
    /// TLBI_S2_IPA.
    pub fn tlbi_s2_ipa(vmid: u16, ipa: u64, r: Range) -> [u64; 2] {
        let mut w = by_addr(op::TLBI_S2_IPA, vmid, 0, ipa & ((1 << 52) - 1), r);
        w[0] &= !(0xFFFFu64 << 48);
        w
    }
    /// TLBI_NSNH_ALL.
    pub fn tlbi_nsnh_all() -> [u64; 2] {
        [op::TLBI_NSNH_ALL, 0]
    }
    /// ATC_INV.
    pub fn atc_inv(sid: u32, ssid: Option<u32>, addr: u64, size: u64) -> [u64; 2] {
        let mut w = [op::ATC_INV, 0];
        if let Some(s) = ssid {
            put(&mut w[0], 11, 1, 1);
            put(&mut w[0], 12, 20, s as u64);
        }
        put(&mut w[0], 32, 32, sid as u64);
        put(&mut w[1], 0, 6, size);
        w[1] |= addr & !0xFFF;
        w
    }
    /// CMD_SYNC with completion signal `cs` (0 none, 1 MSI, 2 SEV).
    pub fn sync(cs: u64, msi_addr: u64, msi_data: u32) -> [u64; 2] {
        let mut w = [op::SYNC, 0];
        put(&mut w[0], 12, 2, cs);
        put(&mut w[0], 22, 2, 3);
        put(&mut w[0], 24, 4, 0xF);
        put(&mut w[0], 32, 32, msi_data as u64);
        put(&mut w[1], 2, 50, msi_addr >> 2);
        w
    }
    /// A raw command with only an opcode.
    pub fn raw(opcode: u64) -> [u64; 2] {
        [opcode & 0xff, 0]
    }
}

// ------------------------------------------------------------------ tables

/// Leaf descriptor bits.
pub mod pte {
    /// Valid.
    pub const VALID: u64 = 1;
    /// Table / page.
    pub const TABLE: u64 = 1 << 1;
    /// Stage-1 AttrIndx = 1 (WB in [`super::LINUX_MAIR`]).
    pub const S1_ATTR_WB: u64 = 1 << 2;
    /// Stage-1 AttrIndx = 2 (device).
    pub const S1_ATTR_DEV: u64 = 2 << 2;
    /// Stage-1 AP[1]: unprivileged access.
    pub const S1_USER: u64 = 1 << 6;
    /// Stage-1 AP[2]: read-only.
    pub const S1_RDONLY: u64 = 1 << 7;
    /// Inner shareable.
    pub const SH_IS: u64 = 3 << 8;
    /// Access flag.
    pub const AF: u64 = 1 << 10;
    /// Not global.
    pub const NG: u64 = 1 << 11;
    /// DBM.
    pub const DBM: u64 = 1 << 51;
    /// PXN.
    pub const PXN: u64 = 1 << 53;
    /// UXN / XN.
    pub const UXN: u64 = 1 << 54;
    /// Stage-2 MemAttr = 0xF (WB).
    pub const S2_WB: u64 = 0xF << 2;
    /// Stage-2 MemAttr = 0x1 (device).
    pub const S2_DEV: u64 = 0x1 << 2;
    /// Stage-2 read.
    pub const S2_READ: u64 = 1 << 6;
    /// Stage-2 write.
    pub const S2_WRITE: u64 = 1 << 7;
    /// Stage-2 XN (both bits, as Linux writes it).
    pub const S2_XN: u64 = 3 << 53;
    /// APTable[1] (no write below) on a table descriptor.
    pub const AP_TABLE_RO: u64 = 1 << 62;
    /// Typical stage-1 read/write user page attributes (without type bits).
    pub const S1_RW: u64 = AF | NG | SH_IS | S1_ATTR_WB | S1_USER;
    /// Typical stage-2 read/write attributes.
    pub const S2_RW: u64 = AF | SH_IS | S2_WB | S2_READ | S2_WRITE;
}

/// An LPAE table tree in memory, built from raw descriptors.
pub struct Tables<'m> {
    mem: &'m dyn PhysMem,
    /// Granule shift.
    pub granule_shift: u32,
    /// Start level.
    pub start_level: u32,
    /// Input bits (including concatenation at the start level).
    pub ia_bits: u32,
    /// Root table PA.
    pub root: u64,
    /// Every table page allocated (root first).
    pub tables: Vec<u64>,
}

impl std::fmt::Debug for Tables<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tables")
            .field("root", &self.root)
            .field("start_level", &self.start_level)
            .finish()
    }
}

impl<'m> Tables<'m> {
    /// Allocate a root for `ia_bits` input bits starting at `start_level`. For a
    /// stage-2 root with more bits than one table holds, the root is the
    /// concatenation of up to 16 tables.
    pub fn new(mem: &'m dyn PhysMem, granule_shift: u32, start_level: u32, ia_bits: u32) -> Self {
        let shift = Self::shift_of(granule_shift, start_level);
        let bits = ia_bits - shift;
        let bytes = (8u64 << bits).max(1 << granule_shift);
        let root = mem.alloc_pages(bytes, bytes).expect("root table");
        Self {
            mem,
            granule_shift,
            start_level,
            ia_bits,
            root: root.0,
            tables: vec![root.0],
        }
    }

    /// Standard stage-1 geometry for `va_bits` (start level from the formula).
    pub fn s1(mem: &'m dyn PhysMem, granule_shift: u32, va_bits: u32) -> Self {
        let bpl = granule_shift - 3;
        let levels = (va_bits - granule_shift).div_ceil(bpl);
        Self::new(mem, granule_shift, 4 - levels, va_bits)
    }

    fn shift_of(g: u32, level: u32) -> u32 {
        g + (g - 3) * (3 - level)
    }

    fn index(&self, ia: u64, level: u32) -> u64 {
        let shift = Self::shift_of(self.granule_shift, level);
        let bits = if level == self.start_level {
            self.ia_bits - shift
        } else {
            self.granule_shift - 3
        };
        (ia >> shift) & ((1u64 << bits) - 1)
    }

    /// Address of the descriptor for `ia` at `level`, creating tables on the way
    /// (table descriptors carry `table_bits` in addition to valid|table).
    pub fn slot(&mut self, ia: u64, level: u32, table_bits: u64) -> u64 {
        let mut table = self.root;
        for l in self.start_level..level {
            let d_pa = table + 8 * self.index(ia, l);
            let d = self.mem.read_u64(PhysAddr(d_pa)).unwrap();
            table = if d & 3 == 3 {
                d & 0x0000_FFFF_FFFF_F000 & !((1u64 << self.granule_shift) - 1)
            } else {
                let g = 1u64 << self.granule_shift;
                let t = self.mem.alloc_pages(g, g).expect("table").0;
                self.tables.push(t);
                self.mem
                    .write_u64(PhysAddr(d_pa), t | 3 | table_bits)
                    .unwrap();
                t
            };
        }
        table + 8 * self.index(ia, level)
    }

    /// Map `ia → oa` as a leaf at `level` with attribute bits `attrs` (type bits are
    /// added: page at level 3, block above). Returns the descriptor address.
    pub fn map(&mut self, ia: u64, oa: u64, level: u32, attrs: u64) -> u64 {
        let slot = self.slot(ia, level, 0);
        let ty = if level == 3 { 3 } else { 1 };
        self.mem.write_u64(PhysAddr(slot), oa | attrs | ty).unwrap();
        slot
    }

    /// Write a raw descriptor for `ia` at `level`.
    pub fn set_raw(&mut self, ia: u64, level: u32, d: u64) -> u64 {
        let slot = self.slot(ia, level, 0);
        self.mem.write_u64(PhysAddr(slot), d).unwrap();
        slot
    }

    /// Leaf size at `level`.
    pub fn size_at(&self, level: u32) -> u64 {
        1u64 << Self::shift_of(self.granule_shift, level)
    }
}

// ------------------------------------------------------------------ rig

/// Programs an SMMU (any [`Mmio`]) for tests: a linear or two-level stream table,
/// a command queue and an event queue in memory, then enables it.
pub struct SmmuRig<'a> {
    /// The registers.
    pub mmio: &'a dyn Mmio,
    /// The memory.
    pub mem: &'a dyn PhysMem,
    /// Stream table base.
    pub strtab: u64,
    /// log2 of StreamIDs covered.
    pub sid_bits: u32,
    /// Two-level split (0 = linear).
    pub split: u32,
    /// Command queue base and log2 size.
    pub cmdq: (u64, u32),
    /// Event queue base and log2 size.
    pub evtq: (u64, u32),
    /// Software's copy of CMDQ_PROD.
    pub prod: u32,
    /// Software's copy of EVTQ_CONS.
    pub evt_cons: u32,
}

impl std::fmt::Debug for SmmuRig<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmmuRig")
            .field("strtab", &self.strtab)
            .finish_non_exhaustive()
    }
}

impl<'a> SmmuRig<'a> {
    /// A rig with a linear stream table of 2^`sid_bits` STEs (all zero: invalid),
    /// a command queue of 2^`cmdq_log2` and an event queue of 2^`evtq_log2` entries,
    /// enabled (SMMUEN, CMDQEN, EVTQEN, RECINVSID).
    pub fn linear(
        mmio: &'a dyn Mmio,
        mem: &'a dyn PhysMem,
        sid_bits: u32,
        cmdq_log2: u32,
        evtq_log2: u32,
    ) -> Self {
        let bytes = 64u64 << sid_bits;
        let strtab = mem.alloc_pages(bytes, bytes).unwrap().0;
        let mut r = Self::queues(mmio, mem, strtab, sid_bits, 0, cmdq_log2, evtq_log2);
        r.enable();
        r
    }

    /// A rig with a two-level stream table (SPLIT = `split`), no L2 tables yet.
    pub fn two_level(mmio: &'a dyn Mmio, mem: &'a dyn PhysMem, sid_bits: u32, split: u32) -> Self {
        let l1 = 8u64 << (sid_bits - split);
        let strtab = mem.alloc_pages(l1, l1.max(64)).unwrap().0;
        let mut r = Self::queues(mmio, mem, strtab, sid_bits, split, 6, 6);
        r.enable();
        r
    }

    fn queues(
        mmio: &'a dyn Mmio,
        mem: &'a dyn PhysMem,
        strtab: u64,
        sid_bits: u32,
        split: u32,
        cmdq_log2: u32,
        evtq_log2: u32,
    ) -> Self {
        let cq = 16u64 << cmdq_log2;
        let eq = 32u64 << evtq_log2;
        let cmdq = mem.alloc_pages(cq, cq.max(32)).unwrap().0;
        let evtq = mem.alloc_pages(eq, eq.max(32)).unwrap().0;
        Self {
            mmio,
            mem,
            strtab,
            sid_bits,
            split,
            cmdq: (cmdq, cmdq_log2),
            evtq: (evtq, evtq_log2),
            prod: 0,
            evt_cons: 0,
        }
    }

    fn enable(&mut self) {
        let m = self.mmio;
        m.write64(reg::STRTAB_BASE, self.strtab);
        let fmt = if self.split == 0 { 0 } else { 1 };
        m.write32(
            reg::STRTAB_BASE_CFG,
            self.sid_bits | (self.split << 6) | (fmt << 16),
        );
        m.write64(reg::CMDQ_BASE, self.cmdq.0 | self.cmdq.1 as u64);
        m.write32(reg::CMDQ_PROD, 0);
        m.write32(reg::CMDQ_CONS, 0);
        m.write64(reg::EVTQ_BASE, self.evtq.0 | self.evtq.1 as u64);
        m.write32(reg::EVTQ_PROD, 0);
        m.write32(reg::EVTQ_CONS, 0);
        m.write32(reg::CR2, reg::CR2_RECINVSID);
        let cr0 = reg::CR0_SMMUEN | reg::CR0_CMDQEN | reg::CR0_EVTQEN;
        m.write32(reg::CR0, cr0);
        assert_eq!(m.read32(reg::CR0ACK), cr0, "CR0ACK handshake");
    }

    /// Address of the STE of `sid` (linear table).
    pub fn ste_addr(&self, sid: u32) -> u64 {
        self.strtab + 64 * sid as u64
    }

    /// Write the STE of `sid` (linear table).
    pub fn set_ste(&self, sid: u32, ste: SteBits) {
        ste.write(self.mem, self.ste_addr(sid));
    }

    /// Address of L1 descriptor `l1idx` (two-level table).
    pub fn l1_addr(&self, l1idx: u32) -> u64 {
        self.strtab + 8 * l1idx as u64
    }

    /// Write L1 descriptor `l1idx` (two-level table), e.g. from [`l1_std`].
    pub fn set_l1(&self, l1idx: u32, desc: u64) {
        self.mem
            .write_u64(PhysAddr(self.l1_addr(l1idx)), desc)
            .expect("L1 descriptor memory");
    }

    /// Submit `n` lone CMD_SYNCs: `n` command-consumption points at which the
    /// model may fetch configuration speculatively.
    pub fn idle_syncs(&mut self, n: usize) {
        let v = vec![cmd::sync(0, 0, 0); n];
        self.submit(&v);
    }

    /// Write commands into the queue without publishing them.
    pub fn stage(&mut self, cmds: &[[u64; 2]]) {
        let (base, log2) = self.cmdq;
        let mask = (1u32 << (log2 + 1)) - 1;
        for c in cmds {
            let idx = self.prod & ((1 << log2) - 1);
            self.mem
                .write_words(PhysAddr(base + 16 * idx as u64), c)
                .unwrap();
            self.prod = (self.prod + 1) & mask;
        }
    }

    /// Write commands and publish them (CMDQ_PROD).
    pub fn submit(&mut self, cmds: &[[u64; 2]]) {
        self.stage(cmds);
        self.mmio.write32(reg::CMDQ_PROD, self.prod);
    }

    /// Submit commands followed by a CMD_SYNC (CS = none).
    pub fn submit_sync(&mut self, cmds: &[[u64; 2]]) {
        let mut v = cmds.to_vec();
        v.push(cmd::sync(0, 0, 0));
        self.submit(&v);
    }

    /// CMDQ_CONS as read from the SMMU.
    pub fn cons(&self) -> u32 {
        self.mmio.read32(reg::CMDQ_CONS)
    }

    /// Pop every pending event record (raw dwords).
    pub fn events(&mut self) -> Vec<[u64; 4]> {
        let (base, log2) = self.evtq;
        let mask = (1u32 << (log2 + 1)) - 1;
        let prod = self.mmio.read32(reg::EVTQ_PROD);
        let mut out = Vec::new();
        while (self.evt_cons & mask) != (prod & mask) {
            let idx = self.evt_cons & ((1 << log2) - 1);
            let mut w = [0u64; 4];
            self.mem
                .read_words(PhysAddr(base + 32 * idx as u64), &mut w)
                .unwrap();
            out.push(w);
            self.evt_cons = (self.evt_cons + 1) & mask;
        }
        let ovack = prod & (1 << 31);
        self.mmio.write32(reg::EVTQ_CONS, self.evt_cons | ovack);
        out
    }
}
