//! What the model implements and advertises in its ID registers (reference `smmuv3.md`
//! §1.1–1.2), and how adversarial its caches are (ARCHITECTURE.md "adversarial").

use crate::regs::{idr0, idr1, idr3, idr5, oas_encoding};

/// Capacity of one of the model's caches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capacity {
    /// Nothing is cached: every access walks (useful to measure walks).
    Disabled,
    /// At most this many entries; the least recently used one is evicted.
    Bounded(usize),
    /// Entries are kept until invalidated (the most adversarial choice, default).
    Unbounded,
}

impl Capacity {
    /// Whether the cache holds anything at all.
    pub fn enabled(self) -> bool {
        !matches!(self, Capacity::Disabled | Capacity::Bounded(0))
    }
}

/// Which translation stages the model implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stages {
    /// Stage 1 only.
    S1,
    /// Stage 2 only.
    S2,
    /// Both stages, including nesting.
    Both,
}

/// Hardware translation-table update support (IDR0.HTTU).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Httu {
    /// No hardware updates: AF = 0 faults (unless AFFD), DBM is ignored.
    None,
    /// Hardware access-flag update.
    Access,
    /// Hardware access-flag and dirty-state update.
    AccessDirty,
}

/// The model's configuration. Build one with [`SmmuConfig::builder`] (or use
/// [`SmmuConfig::default`]: everything supported, unbounded caches).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmmuConfig {
    /// Implemented stages.
    pub stages: Stages,
    /// Two-level stream tables supported.
    pub two_level_strtab: bool,
    /// Two-level CD tables supported.
    pub two_level_cd: bool,
    /// StreamID bits (IDR1.SIDSIZE, at most 32).
    pub sid_bits: u32,
    /// SubstreamID bits (IDR1.SSIDSIZE, at most 20).
    pub ssid_bits: u32,
    /// 16-bit ASIDs.
    pub asid16: bool,
    /// 16-bit VMIDs.
    pub vmid16: bool,
    /// Range invalidation (IDR3.RIL).
    pub ril: bool,
    /// PCIe ATS.
    pub ats: bool,
    /// Broadcast TLB maintenance (advertised only; the model has no CPU TLBIs).
    pub btm: bool,
    /// Coherent table walks and queue accesses.
    pub coherent: bool,
    /// EL2 regimes (IDR0.Hyp).
    pub hyp: bool,
    /// Hardware AF / dirty updates.
    pub httu: Httu,
    /// 4 KiB granule.
    pub gran4k: bool,
    /// 16 KiB granule.
    pub gran16k: bool,
    /// 64 KiB granule.
    pub gran64k: bool,
    /// Output address size in bits (32, 36, 40, 42, 44, 48 or 52).
    pub oas_bits: u32,
    /// 52-bit VAs with the 64 KiB granule (IDR5.VAX).
    pub vax52: bool,
    /// log2 of the maximum command queue entries (IDR1.CMDQS, at most 19).
    pub cmdq_log2: u32,
    /// log2 of the maximum event queue entries (IDR1.EVENTQS, at most 19).
    pub evtq_log2: u32,
    /// MSIs (and CMD_SYNC completion by MSI write).
    pub msi: bool,
    /// SEV for CMD_SYNC.
    pub sev: bool,
    /// Stage-2 forced write-back (IDR3.FWB).
    pub fwb: bool,
    /// Stage-2 EL0/EL1 execute distinction (IDR3.XNX).
    pub xnx: bool,
    /// Hierarchical attribute disable (IDR3.HAD).
    pub had: bool,
    /// STE attribute overrides honoured (IDR1.ATTR_TYPES_OVR).
    pub attr_types_ovr: bool,
    /// TLB capacity (leaf entries).
    pub tlb: Capacity,
    /// Walk-cache capacity (table entries).
    pub walk_cache: Capacity,
    /// Configuration-cache capacity (STEs, CDs and L1 descriptors).
    pub config_cache: Capacity,
    /// ATC capacity per endpoint.
    pub atc: Capacity,
    /// Run the architectural sanitizer (default: on in debug builds, i.e. tests).
    pub sanitizer: bool,
    /// Sanitizer stale-use rule: how many CMD_SYNCs must complete after a cached
    /// entry's descriptor was first seen changed before a use of the old value is
    /// reported (default 1, the architectural rule; 0 counts as 1). A larger value
    /// tolerates drivers on several CPUs, where unrelated syncs of other CPUs may
    /// complete between one CPU's store and its own invalidation.
    pub stale_grace_syncs: u32,
    /// Speculative configuration fetch (issue 3 "configuration may be fetched
    /// speculatively"; sanitizer only): stream-table slots the model examines
    /// at every command consumption and every translation, fetching and caching
    /// the STE (with its L1 descriptor and CD 0) of each valid StreamID found,
    /// whether or not traffic uses it. 0 turns it off. Default 8, or the value
    /// of the environment variable `IOMMU_SPECULATE` when set (e.g. 1048576 to
    /// sweep the whole stream table at every point in a test run of a driver).
    /// It runs only when [`SmmuConfig::sanitizer`] is on, so the fast path
    /// never pays for it.
    pub speculative_fetch: u32,
    /// Seed of the speculative fetch: where its sweep of the stream table
    /// starts and which extra StreamID it probes at each point (deterministic).
    pub speculation_seed: u64,
    /// IIDR value.
    pub iidr: u32,
    /// AIDR value (architecture revision; 0x02 = SMMUv3.2).
    pub aidr: u32,
}

impl Default for SmmuConfig {
    fn default() -> Self {
        Self {
            stages: Stages::Both,
            two_level_strtab: true,
            two_level_cd: true,
            sid_bits: 16,
            ssid_bits: 20,
            asid16: true,
            vmid16: true,
            ril: true,
            ats: true,
            btm: false,
            coherent: true,
            hyp: true,
            httu: Httu::AccessDirty,
            gran4k: true,
            gran16k: true,
            gran64k: true,
            oas_bits: 48,
            vax52: false,
            cmdq_log2: 8,
            evtq_log2: 7,
            msi: true,
            sev: false,
            fwb: true,
            xnx: true,
            had: true,
            attr_types_ovr: true,
            tlb: Capacity::Unbounded,
            walk_cache: Capacity::Unbounded,
            config_cache: Capacity::Unbounded,
            atc: Capacity::Unbounded,
            sanitizer: cfg!(debug_assertions),
            stale_grace_syncs: 1,
            speculative_fetch: std::env::var("IOMMU_SPECULATE")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(8),
            speculation_seed: 0x5EED_5EED_0000_0003,
            iidr: 0x0483_043B,
            aidr: 0x02,
        }
    }
}

/// Builder for [`SmmuConfig`]; every setter takes and returns the builder.
#[derive(Clone, Debug, Default)]
pub struct SmmuConfigBuilder {
    cfg: SmmuConfig,
}

macro_rules! setters {
    ($($(#[$m:meta])* $name:ident: $ty:ty),* $(,)?) => {
        $( $(#[$m])* pub fn $name(mut self, v: $ty) -> Self { self.cfg.$name = v; self } )*
    };
}

impl SmmuConfigBuilder {
    setters! {
        /// Implemented stages.
        stages: Stages,
        /// Two-level stream tables.
        two_level_strtab: bool,
        /// Two-level CD tables.
        two_level_cd: bool,
        /// StreamID bits.
        sid_bits: u32,
        /// SubstreamID bits.
        ssid_bits: u32,
        /// 16-bit ASIDs.
        asid16: bool,
        /// 16-bit VMIDs.
        vmid16: bool,
        /// Range invalidation.
        ril: bool,
        /// ATS.
        ats: bool,
        /// BTM.
        btm: bool,
        /// Coherent walks.
        coherent: bool,
        /// EL2 regimes.
        hyp: bool,
        /// Hardware AF/dirty updates.
        httu: Httu,
        /// 4 KiB granule.
        gran4k: bool,
        /// 16 KiB granule.
        gran16k: bool,
        /// 64 KiB granule.
        gran64k: bool,
        /// Output address bits.
        oas_bits: u32,
        /// 52-bit VA with 64 KiB granule.
        vax52: bool,
        /// log2 max command queue entries.
        cmdq_log2: u32,
        /// log2 max event queue entries.
        evtq_log2: u32,
        /// MSI support.
        msi: bool,
        /// SEV support.
        sev: bool,
        /// Stage-2 FWB.
        fwb: bool,
        /// Stage-2 XNX.
        xnx: bool,
        /// HAD.
        had: bool,
        /// Attribute overrides.
        attr_types_ovr: bool,
        /// TLB capacity.
        tlb: Capacity,
        /// Walk-cache capacity.
        walk_cache: Capacity,
        /// Config-cache capacity.
        config_cache: Capacity,
        /// ATC capacity per endpoint.
        atc: Capacity,
        /// Sanitizer on/off.
        sanitizer: bool,
        /// CMD_SYNCs before a stale use is reported.
        stale_grace_syncs: u32,
        /// Stream-table slots speculatively examined per point (0 = off).
        speculative_fetch: u32,
        /// Seed of the speculative fetch.
        speculation_seed: u64,
    }

    /// Set every cache (TLB, walk cache, config cache, ATC) to the same capacity.
    pub fn all_caches(mut self, c: Capacity) -> Self {
        self.cfg.tlb = c;
        self.cfg.walk_cache = c;
        self.cfg.config_cache = c;
        self.cfg.atc = c;
        self
    }

    /// The configuration, with out-of-range numbers clamped to what the registers
    /// can express.
    pub fn build(self) -> SmmuConfig {
        let mut c = self.cfg;
        c.sid_bits = c.sid_bits.min(32);
        c.ssid_bits = c.ssid_bits.min(20);
        c.cmdq_log2 = c.cmdq_log2.min(19);
        c.evtq_log2 = c.evtq_log2.min(19);
        c.oas_bits = crate::regs::oas_bits(oas_encoding(c.oas_bits));
        if !(c.gran4k || c.gran16k || c.gran64k) {
            c.gran4k = true;
        }
        c
    }
}

impl SmmuConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> SmmuConfigBuilder {
        SmmuConfigBuilder::default()
    }

    /// Stage 1 implemented.
    pub fn s1(&self) -> bool {
        matches!(self.stages, Stages::S1 | Stages::Both)
    }

    /// Stage 2 implemented.
    pub fn s2(&self) -> bool {
        matches!(self.stages, Stages::S2 | Stages::Both)
    }

    /// Value of IDR0.
    pub fn idr0(&self) -> u32 {
        let mut v = 0u64;
        v = idr0::S2P.set_in(v, self.s2() as u64);
        v = idr0::S1P.set_in(v, self.s1() as u64);
        v = idr0::TTF.set_in(v, 2);
        v = idr0::COHACC.set_in(v, self.coherent as u64);
        v = idr0::BTM.set_in(v, self.btm as u64);
        v = idr0::HTTU.set_in(
            v,
            match self.httu {
                Httu::None => 0,
                Httu::Access => 1,
                Httu::AccessDirty => 2,
            },
        );
        v = idr0::HYP.set_in(v, self.hyp as u64);
        v = idr0::ATS.set_in(v, self.ats as u64);
        v = idr0::ASID16.set_in(v, self.asid16 as u64);
        v = idr0::MSI.set_in(v, self.msi as u64);
        v = idr0::SEV.set_in(v, self.sev as u64);
        v = idr0::VMID16.set_in(v, self.vmid16 as u64);
        v = idr0::CD2L.set_in(v, self.two_level_cd as u64);
        v = idr0::TTENDIAN.set_in(v, 2);
        v = idr0::STALL_MODEL.set_in(v, 1);
        v = idr0::ST_LEVEL.set_in(v, self.two_level_strtab as u64);
        v as u32
    }

    /// Value of IDR1.
    pub fn idr1(&self) -> u32 {
        let mut v = 0u64;
        v = idr1::SIDSIZE.set_in(v, self.sid_bits as u64);
        v = idr1::SSIDSIZE.set_in(v, self.ssid_bits as u64);
        v = idr1::EVENTQS.set_in(v, self.evtq_log2 as u64);
        v = idr1::CMDQS.set_in(v, self.cmdq_log2 as u64);
        v = idr1::ATTR_TYPES_OVR.set_in(v, self.attr_types_ovr as u64);
        v as u32
    }

    /// Value of IDR3.
    pub fn idr3(&self) -> u32 {
        let mut v = 0u64;
        v = idr3::HAD.set_in(v, self.had as u64);
        v = idr3::XNX.set_in(v, self.xnx as u64);
        v = idr3::FWB.set_in(v, self.fwb as u64);
        v = idr3::RIL.set_in(v, self.ril as u64);
        v as u32
    }

    /// Value of IDR5.
    pub fn idr5(&self) -> u32 {
        let mut v = 0u64;
        v = idr5::OAS.set_in(v, oas_encoding(self.oas_bits));
        v = idr5::GRAN4K.set_in(v, self.gran4k as u64);
        v = idr5::GRAN16K.set_in(v, self.gran16k as u64);
        v = idr5::GRAN64K.set_in(v, self.gran64k as u64);
        v = idr5::VAX.set_in(v, self.vax52 as u64);
        v as u32
    }

    /// Whether the granule of `shift` (12, 14, 16) is supported.
    pub fn granule_supported(&self, shift: u32) -> bool {
        match shift {
            12 => self.gran4k,
            14 => self.gran16k,
            16 => self.gran64k,
            _ => false,
        }
    }
}
