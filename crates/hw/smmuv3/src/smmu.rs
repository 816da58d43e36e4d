//! The SMMU: register file, command and event queues, caches and statistics
//! (reference `smmuv3.md` §1, §4–6, §9).

use std::sync::{Arc, Mutex, MutexGuard};

use iommu_types::{Mmio, PhysAddr, PhysMem};

use crate::cache::{Cache, FastMap, HitMiss};
use crate::cd::CdInfo;
use crate::cmd::{CMD_SIZE, Command, TlbiRange, sync_cs};
use crate::config::SmmuConfig;
use crate::event::{EVT_SIZE, Event};
use crate::regs::{self, cerror, cr0, cr2, gbpa, gerror, queue};
use crate::sanitizer::{MAX_REPORTS, Report};
use crate::ste::SteInfo;
use crate::walk::{MemAttrs, Perms, TableAttrs};

/// Counters the simulator reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stats {
    /// TLB lookups (one per translation that consulted the TLB).
    pub tlb: HitMiss,
    /// Walk-cache lookups (one per walk).
    pub walk_cache: HitMiss,
    /// STE configuration-cache lookups.
    pub ste_cache: HitMiss,
    /// CD configuration-cache lookups.
    pub cd_cache: HitMiss,
    /// ATC lookups (all endpoints).
    pub atc: HitMiss,
    /// Commands consumed, by opcode.
    pub commands: Box<[u64; 256]>,
    /// CMD_SYNCs completed.
    pub syncs: u64,
    /// Command errors raised.
    pub command_errors: u64,
    /// MMIO reads.
    pub mmio_reads: u64,
    /// MMIO writes.
    pub mmio_writes: u64,
    /// Translations requested.
    pub translations: u64,
    /// Faults (terminated transactions).
    pub faults: u64,
    /// Events written to the event queue.
    pub events_recorded: u64,
    /// Events lost because the queue was full or disabled.
    pub events_dropped: u64,
    /// Descriptors read by table walks.
    pub walk_reads: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            tlb: HitMiss::default(),
            walk_cache: HitMiss::default(),
            ste_cache: HitMiss::default(),
            cd_cache: HitMiss::default(),
            atc: HitMiss::default(),
            commands: Box::new([0; 256]),
            syncs: 0,
            command_errors: 0,
            mmio_reads: 0,
            mmio_writes: 0,
            translations: 0,
            faults: 0,
            events_recorded: 0,
            events_dropped: 0,
            walk_reads: 0,
        }
    }
}

impl Stats {
    /// Total commands consumed.
    pub fn total_commands(&self) -> u64 {
        self.commands.iter().sum()
    }
}

#[derive(Debug, Default)]
pub(crate) struct Regs {
    pub cr0: u32,
    pub cr0ack: u32,
    pub cr1: u32,
    pub cr2: u32,
    pub gbpa: u32,
    pub irq_ctrl: u32,
    pub gerror: u32,
    pub gerrorn: u32,
    pub gerror_irq_cfg0: u64,
    pub gerror_irq_cfg1: u32,
    pub gerror_irq_cfg2: u32,
    pub strtab_base: u64,
    pub strtab_cfg: u32,
    pub cmdq_base: u64,
    pub cmdq_prod: u32,
    pub cmdq_cons: u32,
    pub evtq_base: u64,
    pub evtq_prod: u32,
    pub evtq_cons: u32,
    pub evtq_irq_cfg0: u64,
    pub evtq_irq_cfg1: u32,
    pub evtq_irq_cfg2: u32,
    pub priq_base: u64,
    pub priq_prod: u32,
    pub priq_cons: u32,
    pub priq_irq_cfg0: u64,
    pub priq_irq_cfg1: u32,
    pub priq_irq_cfg2: u32,
}

/// Translation regime tag of cached translations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum World {
    NsEl1 = 0,
    El2 = 1,
    El2E2H = 2,
    S2 = 3,
}

/// Marker ASID of global (nG = 0) TLB entries.
pub(crate) const GLOBAL_ASID: u32 = u32::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TlbKey {
    pub world: World,
    pub vmid: u16,
    pub asid: u32,
    pub base: u64,
    pub shift: u8,
}

impl core::hash::Hash for TlbKey {
    #[inline]
    fn hash<H: core::hash::Hasher>(&self, h: &mut H) {
        // Two words: fewer hashing rounds on the hit path.
        h.write_u64(self.base ^ self.shift as u64);
        h.write_u64((self.world as u64) << 56 ^ (self.vmid as u64) << 32 ^ self.asid as u64);
    }
}

#[derive(Clone, Debug)]
pub(crate) struct TlbEntry {
    pub out: u64,
    pub level: u8,
    pub granule: u8,
    pub s1_perms: Option<Perms>,
    pub s2_perms: Option<Perms>,
    pub attrs: MemAttrs,
    pub no_snoop_allowed: bool,
    /// IPA of the unit base (nested / stage-2 entries), for stage-2 fault reports.
    pub ipa: u64,
    pub kind: crate::TranslationKind,
    /// Stage-2 attributes of a stage-2 entry (None: FWB "use stage 1").
    pub s2_attrs: Option<MemAttrs>,
    /// Descriptors (PA, value) the entry was built from (sanitizer only).
    pub path: Box<[(u64, u64)]>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct WcKey {
    pub world: World,
    pub vmid: u16,
    pub asid: u32,
    /// 0 = TTB0, 1 = TTB1, 2 = stage 2.
    pub table: u8,
    pub granule: u8,
    pub level: u8,
    pub base: u64,
}

#[derive(Clone, Debug)]
pub(crate) struct WcEntry {
    pub next_pa: u64,
    pub attrs: TableAttrs,
    /// Full input address (VA or IPA) of the span start and its log2 size.
    pub va_base: u64,
    pub span_shift: u32,
    pub path: Box<[(u64, u64)]>,
}

#[derive(Clone, Debug)]
pub(crate) struct SteEntry {
    pub info: SteInfo,
    pub pa: u64,
    pub raw: [u64; 8],
    /// L1 descriptor (pa, value) used, for stale checks.
    pub l1: Option<(u64, u64)>,
}

#[derive(Clone, Debug)]
pub(crate) struct CdEntry {
    pub info: CdInfo,
    pub pa: u64,
    pub raw: [u64; 8],
    pub vmid: u16,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct L1CdEntry {
    pub desc: u64,
    pub pa: u64,
    pub split: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct AtcKey {
    pub ssid: Option<u32>,
    pub base: u64,
    pub shift: u8,
}

#[derive(Clone, Debug)]
pub(crate) struct Watch {
    pub sid: u32,
    pub ssid: Option<u32>,
    pub last: [u64; 8],
}

pub(crate) struct State {
    pub regs: Regs,
    pub tlb: Cache<TlbKey, TlbEntry>,
    /// Bitmask of TLB entry shifts present (probe order: ascending).
    pub tlb_shifts: u64,
    pub tlb_globals: bool,
    pub wc: Cache<WcKey, WcEntry>,
    pub ste: Cache<u32, SteEntry>,
    pub l1std: Cache<u32, (u64, u64)>,
    pub cd: Cache<(u32, u32), CdEntry>,
    pub l1cd: Cache<(u32, u32), L1CdEntry>,
    pub atc: FastMap<u32, Cache<AtcKey, crate::Translation>>,
    pub atc_shifts: u64,
    pub pending: Vec<Command>,
    pub stats: Stats,
    pub reports: Vec<Report>,
    pub reports_dropped: u64,
    pub watch_ste: FastMap<u64, Watch>,
    pub watch_cd: FastMap<u64, Watch>,
    /// Sanitizer: (descriptor PA, value a TLB / walk-cache entry was built from)
    /// found changed in memory → number of CMD_SYNCs completed when first observed.
    pub stale_tlb_since: FastMap<(u64, u64), u64>,
    /// Sanitizer: PA of a cached STE / CD / L1 descriptor found changed in memory
    /// → number of CMD_SYNCs completed when first observed.
    pub stale_cfg_since: FastMap<u64, u64>,
    /// Resolved STE + CD per (sid, ssid) (fast path, only with an unbounded
    /// configuration cache and no sanitizer); cleared by every configuration
    /// invalidation and CR2 write.
    pub ctx_cache: FastMap<(u32, u32), crate::xlate::Resolved>,
    /// The last entry of `ctx_cache` used.
    pub last_ctx: Option<((u32, u32), crate::xlate::Resolved)>,
    /// A direct-mapped front of the TLB (fast path: unbounded TLB, no sanitizer),
    /// indexed by VA bits [19:12]; every slot holds a copy of a live TLB entry and
    /// the whole array is cleared whenever TLB entries are invalidated.
    pub utlb: Box<[Option<(TlbKey, crate::xlate::HitEntry)>; UTLB_SLOTS]>,
    /// Whether `utlb` is used.
    pub utlb_on: bool,
    /// Speculative fetch: next stream-table slot of the sweep.
    pub spec_cursor: u64,
    /// Speculative fetch: xorshift state of the random probe.
    pub spec_rng: u64,
}

/// Slots of the micro-TLB.
pub(crate) const UTLB_SLOTS: usize = 256;

/// The SMMUv3 model. Share it (`Arc`) between the driver (as an [`Mmio`]) and device
/// models (through [`Smmu::translate`] and the DMA helpers).
pub struct Smmu {
    pub(crate) cfg: SmmuConfig,
    pub(crate) mem: Arc<dyn PhysMem>,
    pub(crate) st: Mutex<State>,
}

impl core::fmt::Debug for Smmu {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Smmu")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

fn ptr_mask(log2: u32) -> u32 {
    ((1u64 << (log2 + 1)) - 1) as u32
}

fn set_half(reg: &mut u64, offset_in_reg: u64, value: u32) {
    if offset_in_reg == 0 {
        *reg = (*reg & !0xFFFF_FFFF) | value as u64;
    } else {
        *reg = (*reg & 0xFFFF_FFFF) | ((value as u64) << 32);
    }
}

fn get_half(reg: u64, offset_in_reg: u64) -> u32 {
    if offset_in_reg == 0 {
        reg as u32
    } else {
        (reg >> 32) as u32
    }
}

impl Smmu {
    /// A model with configuration `cfg`, walking tables in `mem`. Registers are at
    /// their reset values (everything disabled, GBPA = 0x1000: bypass with incoming
    /// shareability).
    pub fn new(cfg: SmmuConfig, mem: Arc<dyn PhysMem>) -> Self {
        let st = State {
            regs: Regs {
                gbpa: 0x1000,
                ..Default::default()
            },
            tlb: Cache::new(cfg.tlb),
            tlb_shifts: 0,
            tlb_globals: false,
            wc: Cache::new(cfg.walk_cache),
            ste: Cache::new(cfg.config_cache),
            l1std: Cache::new(cfg.config_cache),
            cd: Cache::new(cfg.config_cache),
            l1cd: Cache::new(cfg.config_cache),
            atc: FastMap::default(),
            atc_shifts: 0,
            pending: Vec::new(),
            stats: Stats::default(),
            reports: Vec::new(),
            reports_dropped: 0,
            watch_ste: FastMap::default(),
            watch_cd: FastMap::default(),
            stale_tlb_since: FastMap::default(),
            stale_cfg_since: FastMap::default(),
            ctx_cache: FastMap::default(),
            last_ctx: None,
            utlb: Box::new([None; UTLB_SLOTS]),
            utlb_on: !cfg.sanitizer && cfg.tlb == crate::Capacity::Unbounded,
            spec_cursor: cfg.speculation_seed.rotate_left(17),
            spec_rng: cfg.speculation_seed | 1,
        };
        Self {
            cfg,
            mem,
            st: Mutex::new(st),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SmmuConfig {
        &self.cfg
    }

    /// The memory the model walks.
    pub fn memory(&self) -> &Arc<dyn PhysMem> {
        &self.mem
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A snapshot of the counters (cache hit/miss counters are the caches' own).
    pub fn stats(&self) -> Stats {
        let st = self.lock();
        let mut s = st.stats.clone();
        s.tlb = st.tlb.counters;
        s.walk_cache = st.wc.counters;
        s.ste_cache = st.ste.counters;
        s.cd_cache = st.cd.counters;
        s
    }

    /// Reset every counter to zero.
    pub fn reset_stats(&self) {
        let mut st = self.lock();
        st.stats = Stats::default();
        st.tlb.counters = HitMiss::default();
        st.wc.counters = HitMiss::default();
        st.ste.counters = HitMiss::default();
        st.cd.counters = HitMiss::default();
    }

    /// Sanitizer reports so far.
    pub fn sanitizer_reports(&self) -> Vec<Report> {
        self.lock().reports.clone()
    }

    /// Take (and clear) the sanitizer reports.
    pub fn take_sanitizer_reports(&self) -> Vec<Report> {
        core::mem::take(&mut self.lock().reports)
    }

    /// Sanitizer audit at a quiescent point: the caller asserts that software has
    /// finished every update and the CMD_SYNC that follows it. Every entry still
    /// cached whose descriptor differs from memory is then a missing invalidation,
    /// reported now (and returned) whatever the sync counts: [`Report::StaleTlb`]
    /// with `sid` = `u32::MAX` and `addr` = the entry's input base (the TLB is not
    /// tagged by stream) and [`Report::StaleConfig`]. Precise where the per-use
    /// rule cannot be (several CPUs issuing syncs); no-op without the sanitizer.
    pub fn sanitizer_audit(&self) -> Vec<Report> {
        if !self.cfg.sanitizer {
            return Vec::new();
        }
        let mut st = self.lock();
        let found = self.audit_stale(&mut st);
        for r in &found {
            Self::report(&mut st, r.clone());
        }
        found
    }

    /// Number of live TLB entries (for tests and reports).
    pub fn tlb_len(&self) -> usize {
        self.lock().tlb.len()
    }

    /// Number of pending (consumed but not yet synchronised) invalidations.
    pub fn pending_invalidations(&self) -> usize {
        self.lock().pending.len()
    }

    /// Whether the command queue is stopped on an unacknowledged error.
    pub fn cmdq_error_active(&self) -> bool {
        let st = self.lock();
        (st.regs.gerror ^ st.regs.gerrorn) & gerror::CMDQ_ERR != 0
    }

    pub(crate) fn report(st: &mut State, r: Report) {
        if st.reports.iter().rev().take(32).any(|x| *x == r) {
            return;
        }
        if st.reports.len() >= MAX_REPORTS {
            st.reports_dropped += 1;
            return;
        }
        st.reports.push(r);
    }

    // ---------------------------------------------------------------- registers

    fn read_reg(&self, st: &State, off: u64) -> u32 {
        let r = &st.regs;
        let off = match off {
            regs::EVTQ_PROD | regs::EVTQ_CONS | regs::PRIQ_PROD | regs::PRIQ_CONS => {
                off - regs::PAGE1
            }
            o if o >= regs::PAGE1 => return 0,
            o => o,
        };
        let msi = self.cfg.msi;
        match off {
            regs::IDR0 => self.cfg.idr0(),
            regs::IDR1 => self.cfg.idr1(),
            regs::IDR3 => self.cfg.idr3(),
            regs::IDR5 => self.cfg.idr5(),
            regs::IIDR => self.cfg.iidr,
            regs::AIDR => self.cfg.aidr,
            regs::CR0 => r.cr0,
            regs::CR0ACK => r.cr0ack,
            regs::CR1 => r.cr1,
            regs::CR2 => r.cr2,
            regs::GBPA => r.gbpa,
            regs::IRQ_CTRL | regs::IRQ_CTRLACK => r.irq_ctrl,
            regs::GERROR => r.gerror,
            regs::GERRORN => r.gerrorn,
            0x68 | 0x6C if msi => get_half(r.gerror_irq_cfg0, off - 0x68),
            regs::GERROR_IRQ_CFG1 if msi => r.gerror_irq_cfg1,
            regs::GERROR_IRQ_CFG2 if msi => r.gerror_irq_cfg2,
            0x80 | 0x84 => get_half(r.strtab_base, off - 0x80),
            regs::STRTAB_BASE_CFG => r.strtab_cfg,
            0x90 | 0x94 => get_half(r.cmdq_base, off - 0x90),
            regs::CMDQ_PROD => r.cmdq_prod,
            regs::CMDQ_CONS => r.cmdq_cons,
            0xA0 | 0xA4 => get_half(r.evtq_base, off - 0xA0),
            0xA8 => r.evtq_prod,
            0xAC => r.evtq_cons,
            0xB0 | 0xB4 if msi => get_half(r.evtq_irq_cfg0, off - 0xB0),
            regs::EVTQ_IRQ_CFG1 if msi => r.evtq_irq_cfg1,
            regs::EVTQ_IRQ_CFG2 if msi => r.evtq_irq_cfg2,
            0xC0 | 0xC4 => get_half(r.priq_base, off - 0xC0),
            0xC8 => r.priq_prod,
            0xCC => r.priq_cons,
            0xD0 | 0xD4 if msi => get_half(r.priq_irq_cfg0, off - 0xD0),
            regs::PRIQ_IRQ_CFG1 if msi => r.priq_irq_cfg1,
            regs::PRIQ_IRQ_CFG2 if msi => r.priq_irq_cfg2,
            _ => 0,
        }
    }

    fn write_reg(&self, st: &mut State, off: u64, v: u32) {
        let off = match off {
            regs::EVTQ_PROD | regs::EVTQ_CONS | regs::PRIQ_PROD | regs::PRIQ_CONS => {
                off - regs::PAGE1
            }
            o if o >= regs::PAGE1 => return,
            o => o,
        };
        let msi = self.cfg.msi;
        let addr_mask = |v: u64| v & 0x4000_FFFF_FFFF_FFFF;
        match off {
            regs::CR0 => {
                let was_cmdq = cr0::CMDQEN.get_in(st.regs.cr0 as u64) != 0;
                st.regs.cr0 = v & cr0::VALID_MASK;
                st.regs.cr0ack = st.regs.cr0;
                if !was_cmdq && cr0::CMDQEN.get_in(v as u64) != 0 {
                    self.process_cmdq(st);
                }
            }
            regs::CR1 => st.regs.cr1 = v & 0xFFF,
            regs::CR2 => {
                st.regs.cr2 = v & 0x7;
                st.ctx_cache.clear();
            }
            regs::GBPA if gbpa::UPDATE.get_in(v as u64) != 0 => st.regs.gbpa = v & gbpa::VALUE_MASK,
            regs::IRQ_CTRL => st.regs.irq_ctrl = v & 0x7,
            regs::GERRORN => {
                let was_active = (st.regs.gerror ^ st.regs.gerrorn) & gerror::CMDQ_ERR != 0;
                st.regs.gerrorn = v & gerror::MASK;
                let active = (st.regs.gerror ^ st.regs.gerrorn) & gerror::CMDQ_ERR != 0;
                if was_active && !active {
                    st.regs.cmdq_cons = queue::CONS_ERR.set_in(st.regs.cmdq_cons as u64, 0) as u32;
                    self.process_cmdq(st);
                }
            }
            0x68 | 0x6C if msi => set_half(&mut st.regs.gerror_irq_cfg0, off - 0x68, v),
            regs::GERROR_IRQ_CFG1 if msi => st.regs.gerror_irq_cfg1 = v,
            regs::GERROR_IRQ_CFG2 if msi => st.regs.gerror_irq_cfg2 = v & 0x3F,
            0x80 | 0x84 => {
                set_half(&mut st.regs.strtab_base, off - 0x80, v);
                st.regs.strtab_base = addr_mask(st.regs.strtab_base) & !0x3F;
                st.watch_ste.clear();
            }
            regs::STRTAB_BASE_CFG => {
                st.regs.strtab_cfg = v & 0x3_07FF;
                st.watch_ste.clear();
            }
            0x90 | 0x94 => {
                set_half(&mut st.regs.cmdq_base, off - 0x90, v);
                st.regs.cmdq_base = addr_mask(st.regs.cmdq_base);
            }
            regs::CMDQ_PROD => {
                st.regs.cmdq_prod = v & 0xF_FFFF;
                self.process_cmdq(st);
            }
            regs::CMDQ_CONS if cr0::CMDQEN.get_in(st.regs.cr0 as u64) == 0 => {
                st.regs.cmdq_cons = v & 0xF_FFFF
            }
            0xA0 | 0xA4 => {
                set_half(&mut st.regs.evtq_base, off - 0xA0, v);
                st.regs.evtq_base = addr_mask(st.regs.evtq_base);
            }
            0xA8 if cr0::EVTQEN.get_in(st.regs.cr0 as u64) == 0 => {
                st.regs.evtq_prod = v & 0x800F_FFFF
            }
            0xAC => st.regs.evtq_cons = v & 0x800F_FFFF,
            0xB0 | 0xB4 if msi => set_half(&mut st.regs.evtq_irq_cfg0, off - 0xB0, v),
            regs::EVTQ_IRQ_CFG1 if msi => st.regs.evtq_irq_cfg1 = v,
            regs::EVTQ_IRQ_CFG2 if msi => st.regs.evtq_irq_cfg2 = v & 0x3F,
            0xC0 | 0xC4 => {
                set_half(&mut st.regs.priq_base, off - 0xC0, v);
                st.regs.priq_base = addr_mask(st.regs.priq_base);
            }
            0xC8 => st.regs.priq_prod = v & 0x800F_FFFF,
            0xCC => st.regs.priq_cons = v & 0x800F_FFFF,
            0xD0 | 0xD4 if msi => set_half(&mut st.regs.priq_irq_cfg0, off - 0xD0, v),
            regs::PRIQ_IRQ_CFG1 if msi => st.regs.priq_irq_cfg1 = v,
            regs::PRIQ_IRQ_CFG2 if msi => st.regs.priq_irq_cfg2 = v & 0x3F,
            _ => {}
        }
    }

    // ---------------------------------------------------------------- queues

    fn queue_geometry(base: u64, max_log2: u32, entry: u64) -> (u64, u32) {
        let log2 = (queue::BASE_LOG2SIZE.get_in(base) as u32).min(max_log2);
        let bytes = (entry << log2).max(32);
        let addr = (queue::BASE_ADDR.get_in(base) << 5) & !(bytes - 1);
        (addr, log2)
    }

    /// Write an event record to the event queue (if enabled and not full).
    /// Returns whether it was recorded.
    pub(crate) fn record_event(&self, st: &mut State, ev: &Event) -> bool {
        if cr0::EVTQEN.get_in(st.regs.cr0 as u64) == 0 {
            st.stats.events_dropped += 1;
            return false;
        }
        let (base, log2) = Self::queue_geometry(st.regs.evtq_base, self.cfg.evtq_log2, EVT_SIZE);
        let mask = ptr_mask(log2);
        let prod = st.regs.evtq_prod & mask;
        let cons = st.regs.evtq_cons & mask;
        let idx_mask = mask >> 1;
        let full = (prod & idx_mask) == (cons & idx_mask) && prod != cons;
        if full {
            // Overflow: drop the record and signal it by toggling OVFLG, unless an
            // overflow is already signalled and not yet acknowledged.
            let ovflg = st.regs.evtq_prod >> 31;
            let ovack = st.regs.evtq_cons >> 31;
            if ovflg == ovack {
                st.regs.evtq_prod ^= 1 << 31;
            }
            st.stats.events_dropped += 1;
            return false;
        }
        let at = base + (prod & idx_mask) as u64 * EVT_SIZE;
        let words = ev.to_words();
        debug_assert!(
            Event::from_words(&words).is_some(),
            "record {words:x?} must decode"
        );
        if self.mem.write_words(PhysAddr(at), &words).is_err() {
            st.regs.gerror ^= gerror::EVTQ_ABT_ERR & !(st.regs.gerror ^ st.regs.gerrorn);
            st.stats.events_dropped += 1;
            return false;
        }
        st.regs.evtq_prod = (st.regs.evtq_prod & (1 << 31)) | ((prod + 1) & mask);
        st.stats.events_recorded += 1;
        true
    }

    fn cmdq_error(st: &mut State, code: u32) {
        st.regs.cmdq_cons = queue::CONS_ERR.set_in(st.regs.cmdq_cons as u64, code as u64) as u32;
        if (st.regs.gerror ^ st.regs.gerrorn) & gerror::CMDQ_ERR == 0 {
            st.regs.gerror ^= gerror::CMDQ_ERR;
        }
        st.stats.command_errors += 1;
    }

    /// Consume commands from CONS to PROD (synchronously).
    pub(crate) fn process_cmdq(&self, st: &mut State) {
        if cr0::CMDQEN.get_in(st.regs.cr0 as u64) == 0 {
            return;
        }
        if (st.regs.gerror ^ st.regs.gerrorn) & gerror::CMDQ_ERR != 0 {
            return;
        }
        let (base, log2) = Self::queue_geometry(st.regs.cmdq_base, self.cfg.cmdq_log2, CMD_SIZE);
        let mask = ptr_mask(log2);
        let idx_mask = mask >> 1;
        loop {
            let prod = st.regs.cmdq_prod & mask;
            let cons = st.regs.cmdq_cons & mask;
            if prod == cons {
                return;
            }
            if self.cfg.sanitizer {
                self.observe(st);
                self.speculate(st);
            }
            let at = base + (cons & idx_mask) as u64 * CMD_SIZE;
            let mut w = [0u64; 2];
            if self.mem.read_words(PhysAddr(at), &mut w).is_err() {
                Self::cmdq_error(st, cerror::ABT);
                return;
            }
            st.stats.commands[(w[0] & 0xff) as usize] += 1;
            let cmd = match Command::decode(&self.cfg, &w) {
                Ok(c) => c,
                Err(_) => {
                    Self::cmdq_error(st, cerror::ILL);
                    return;
                }
            };
            self.execute(st, cmd);
            st.regs.cmdq_cons = (cons + 1) & mask;
        }
    }

    fn execute(&self, st: &mut State, cmd: Command) {
        match cmd {
            Command::PrefetchConfig { sid, ssid } => self.prefetch_config(st, sid, ssid),
            Command::PrefetchAddr | Command::PriResp => {}
            Command::Sync {
                cs,
                msi_data,
                msi_addr,
            } => {
                let pending = core::mem::take(&mut st.pending);
                let tlb_inval = pending.iter().any(|c| {
                    !matches!(
                        c,
                        Command::CfgiSte { .. }
                            | Command::CfgiSteRange { .. }
                            | Command::CfgiCd { .. }
                            | Command::CfgiCdAll { .. }
                            | Command::AtcInv { .. }
                    )
                });
                for c in pending {
                    self.apply_invalidation(st, c);
                }
                // The micro-TLB mirrors TLB entries: drop it once per sync that
                // invalidated any (its slots may hold removed entries).
                if tlb_inval && st.utlb_on {
                    st.utlb.fill(None);
                }
                if self.cfg.sanitizer {
                    // Entries still cached now survive this sync: a change to
                    // their descriptors is from here on a stale use.
                    self.sweep_stale(st);
                }
                st.stats.syncs += 1;
                if cs == sync_cs::IRQ && self.cfg.msi && msi_addr != 0 {
                    let r = if msi_addr & 3 == 0 {
                        self.mem.write_u32(PhysAddr(msi_addr), msi_data)
                    } else {
                        Err(iommu_types::Error::Misaligned {
                            pa: msi_addr,
                            align: 4,
                        })
                    };
                    if r.is_err()
                        && (st.regs.gerror ^ st.regs.gerrorn) & gerror::MSI_CMDQ_ABT_ERR == 0
                    {
                        st.regs.gerror ^= gerror::MSI_CMDQ_ABT_ERR;
                    }
                }
            }
            other => st.pending.push(other),
        }
    }

    // ---------------------------------------------------------------- invalidation

    fn apply_invalidation(&self, st: &mut State, cmd: Command) {
        if matches!(
            cmd,
            Command::CfgiSte { .. }
                | Command::CfgiSteRange { .. }
                | Command::CfgiCd { .. }
                | Command::CfgiCdAll { .. }
        ) {
            st.ctx_cache.clear();
            st.last_ctx = None;
        }
        let split = regs::strtab::CFG_SPLIT.get_in(st.regs.strtab_cfg as u64) as u32;
        let split = if matches!(split, 6 | 8 | 10) {
            split
        } else {
            6
        };
        match cmd {
            Command::CfgiSte { sid, leaf } => {
                st.ste.remove(&sid);
                st.cd.retain(|k, _| k.0 != sid);
                st.l1cd.retain(|k, _| k.0 != sid);
                st.watch_cd.retain(|_, w| w.sid != sid);
                if !leaf {
                    st.l1std.remove(&(sid >> split));
                }
            }
            Command::CfgiSteRange { sid, range } => {
                if range >= 31 {
                    st.ste.clear();
                    st.cd.clear();
                    st.l1cd.clear();
                    st.l1std.clear();
                    st.watch_cd.clear();
                } else {
                    let n = range + 1;
                    let lo = sid & !((1u32 << n) - 1);
                    let hi = lo | ((1u32 << n) - 1);
                    let inr = |s: u32| (lo..=hi).contains(&s);
                    st.ste.retain(|k, _| !inr(*k));
                    st.cd.retain(|k, _| !inr(k.0));
                    st.l1cd.retain(|k, _| !inr(k.0));
                    st.watch_cd.retain(|_, w| !inr(w.sid));
                    let (l1lo, l1hi) = (lo >> split, hi >> split);
                    st.l1std.retain(|k, _| !(l1lo..=l1hi).contains(k));
                }
            }
            Command::CfgiCd { sid, ssid, leaf } => {
                st.cd.remove(&(sid, ssid));
                if !leaf {
                    st.l1cd
                        .retain(|k, e| !(k.0 == sid && k.1 == ssid >> e.split));
                }
            }
            Command::CfgiCdAll { sid } => {
                st.cd.retain(|k, _| k.0 != sid);
                st.l1cd.retain(|k, _| k.0 != sid);
                st.watch_cd.retain(|_, w| w.sid != sid);
            }
            Command::TlbiNhAll { vmid } => {
                Self::inval_tlb(
                    st,
                    |w, v, _| w == World::NsEl1 && v == vmid,
                    None,
                    None,
                    false,
                );
            }
            Command::TlbiNhAsid { vmid, asid } => {
                let a = asid as u32;
                Self::inval_tlb(
                    st,
                    |w, v, x| w == World::NsEl1 && v == vmid && x == a,
                    None,
                    None,
                    false,
                );
            }
            Command::TlbiNhVa { vmid, asid, range } => {
                let a = asid.map(|a| a as u32);
                Self::inval_tlb(
                    st,
                    |w, v, x| {
                        w == World::NsEl1
                            && v == vmid
                            && a.is_none_or(|a| x == a || x == GLOBAL_ASID)
                    },
                    Some(range),
                    Some(false),
                    true,
                );
            }
            Command::TlbiEl2All => {
                Self::inval_tlb(
                    st,
                    |w, _, _| matches!(w, World::El2 | World::El2E2H),
                    None,
                    None,
                    false,
                );
            }
            Command::TlbiEl2Asid { asid } => {
                let a = asid as u32;
                Self::inval_tlb(
                    st,
                    |w, _, x| w == World::El2E2H && x == a,
                    None,
                    None,
                    false,
                );
            }
            Command::TlbiEl2Va { asid, range } => {
                let a = asid.map(|a| a as u32);
                Self::inval_tlb(
                    st,
                    |w, _, x| {
                        w == World::El2
                            || (w == World::El2E2H && a.is_none_or(|a| x == a || x == GLOBAL_ASID))
                    },
                    Some(range),
                    Some(false),
                    true,
                );
            }
            Command::TlbiS12Vmall { vmid } => {
                Self::inval_tlb(
                    st,
                    |w, v, _| matches!(w, World::NsEl1 | World::S2) && v == vmid,
                    None,
                    None,
                    false,
                );
            }
            Command::TlbiS2Ipa { vmid, range } => {
                Self::inval_tlb(
                    st,
                    |w, v, _| w == World::S2 && v == vmid,
                    Some(range),
                    Some(true),
                    true,
                );
            }
            Command::TlbiNsnhAll => {
                Self::inval_tlb(
                    st,
                    |w, _, _| matches!(w, World::NsEl1 | World::S2),
                    None,
                    None,
                    false,
                );
            }
            Command::AtcInv {
                sid,
                ssid,
                start,
                log2_len,
            } => {
                if let Some(atc) = st.atc.get_mut(&sid) {
                    let len = if log2_len >= 64 {
                        u64::MAX
                    } else {
                        1u64 << log2_len
                    };
                    let r = TlbiRange {
                        start,
                        len,
                        tg_shift: None,
                        ttl: 0,
                        leaf: false,
                    };
                    atc.retain(|k, _| {
                        !((ssid.is_none() || k.ssid == ssid) && r.overlaps(k.base, 1u64 << k.shift))
                    });
                }
            }
            _ => {}
        }
    }

    /// Remove TLB and walk-cache entries matching `tag`, optionally only those
    /// overlapping `range` (with the TTL filter). `stage2_walk`: for a range
    /// invalidation, whether it targets stage-2 walk-cache entries (IPA) or stage-1
    /// ones (VA); `by_addr` tells that the TLBI is by address (leaf semantics apply).
    fn inval_tlb(
        st: &mut State,
        tag: impl Fn(World, u16, u32) -> bool,
        range: Option<TlbiRange>,
        stage2_walk: Option<bool>,
        by_addr: bool,
    ) {
        let norm = |a: u64| ((a << 8) as i64 >> 8) as u64;
        let range = range.map(|mut r| {
            if stage2_walk != Some(true) {
                r.start = norm(r.start);
            }
            r
        });
        st.tlb.retain(|k, e| {
            if !tag(k.world, k.vmid, k.asid) {
                return true;
            }
            let Some(r) = range else { return false };
            if let (Some(tg), true) = (r.tg_shift, r.ttl != 0) {
                if e.granule as u32 == tg && e.level as u32 != r.ttl {
                    return true;
                }
            }
            !r.overlaps(k.base, 1u64 << k.shift)
        });
        let leaf_only = by_addr && range.is_some_and(|r| r.leaf);
        if leaf_only {
            return;
        }
        st.wc.retain(|k, e| {
            if !tag(k.world, k.vmid, k.asid) {
                return true;
            }
            match (range, stage2_walk) {
                (Some(r), Some(s2)) => {
                    if (k.table == 2) != s2 {
                        return true;
                    }
                    !r.overlaps(e.va_base, 1u64 << e.span_shift)
                }
                _ => false,
            }
        });
    }
}

impl Mmio for Smmu {
    fn read32(&self, offset: u64) -> u32 {
        let mut st = self.lock();
        st.stats.mmio_reads += 1;
        if offset & 3 != 0 || offset >= regs::MMIO_SIZE {
            return 0;
        }
        self.read_reg(&st, offset)
    }

    fn write32(&self, offset: u64, value: u32) {
        let mut st = self.lock();
        st.stats.mmio_writes += 1;
        if offset & 3 != 0 || offset >= regs::MMIO_SIZE {
            return;
        }
        self.write_reg(&mut st, offset, value);
    }

    fn read64(&self, offset: u64) -> u64 {
        let mut st = self.lock();
        st.stats.mmio_reads += 1;
        if offset & 7 != 0 || offset >= regs::MMIO_SIZE {
            return 0;
        }
        let lo = self.read_reg(&st, offset) as u64;
        let hi = self.read_reg(&st, offset + 4) as u64;
        lo | (hi << 32)
    }

    fn write64(&self, offset: u64, value: u64) {
        let mut st = self.lock();
        st.stats.mmio_writes += 1;
        if offset & 7 != 0 || offset >= regs::MMIO_SIZE {
            return;
        }
        // Single-copy atomic: both halves under one lock. Write the high half first
        // so that a side-effecting low register (none in practice) sees the full value.
        match offset {
            0x68 | 0x80 | 0x90 | 0xA0 | 0xB0 | 0xC0 | 0xD0 => {
                self.write_reg(&mut st, offset + 4, (value >> 32) as u32);
                self.write_reg(&mut st, offset, value as u32);
            }
            _ => {
                self.write_reg(&mut st, offset, value as u32);
                self.write_reg(&mut st, offset + 4, (value >> 32) as u32);
            }
        }
    }
}

/// True if CR2.RECINVSID is set.
pub(crate) fn recinvsid(st: &State) -> bool {
    cr2::RECINVSID.get_in(st.regs.cr2 as u64) != 0
}
