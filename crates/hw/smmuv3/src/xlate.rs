//! Translation: STE and CD fetch, stage-1 / stage-2 / nested walks through the
//! caches, permission checks, fault reporting, ATS and DMA helpers (reference
//! `smmuv3.md` §2, §3, §5, §6; `lpae.md` §9), plus the sanitizer's observation pass.

use core::cell::RefCell;

use iommu_types::PhysAddr;

use crate::cd::{Cd, CdInfo, TtbRange};
use crate::event::{Event, EventClass, EventId};
use crate::regs::{cr0, cr2, gbpa, strtab};
use crate::sanitizer::{Report, TornKind, hw_managed_mask};
use crate::smmu::{
    AtcKey, CdEntry, GLOBAL_ASID, L1CdEntry, State, SteEntry, TlbEntry, TlbKey, WcEntry, WcKey,
    World, recinvsid,
};
use crate::ste::{self, S1Dss, S1Ste, S2Ste, Ste, SteConfig, SteInfo, StreamWorld};
use crate::walk::{self, MemAttrs, Perms, StageParams, TableAttrs, TableStep, desc};
use crate::{Access, AccessKind, Error, Fault, FaultResponse, Smmu, Translation, TranslationKind};

/// An internal fault before it is given its stream context.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Xf {
    id: EventId,
    s2: bool,
    ipa: u64,
    fetch: u64,
    class: EventClass,
}

impl Xf {
    fn cfg(id: EventId) -> Self {
        Xf {
            id,
            s2: false,
            ipa: 0,
            fetch: 0,
            class: EventClass::Cd,
        }
    }
    fn fetch(id: EventId, pa: u64) -> Self {
        Xf {
            id,
            s2: false,
            ipa: 0,
            fetch: pa,
            class: EventClass::Cd,
        }
    }
    fn walk(f: walk::WalkFault) -> Self {
        Xf {
            id: f.id,
            s2: f.stage2,
            ipa: f.ipa,
            fetch: f.fetch_addr,
            class: f.class,
        }
    }
}

/// The fields of a TLB entry a hit needs (copied out of the cache).
#[derive(Clone, Copy, Debug)]
pub(crate) struct HitEntry {
    s1_perms: Option<Perms>,
    s2_perms: Option<Perms>,
    ipa: u64,
    out: u64,
    attrs: MemAttrs,
    no_snoop_allowed: bool,
    kind: TranslationKind,
    s2_attrs: Option<MemAttrs>,
}

/// A resolved stream configuration (the fast-path cache of STE + CD results).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Resolved {
    Bypass,
    Ctx(Ctx),
}

impl HitEntry {
    #[inline]
    fn of(e: &TlbEntry) -> Self {
        HitEntry {
            s1_perms: e.s1_perms,
            s2_perms: e.s2_perms,
            ipa: e.ipa,
            out: e.out,
            attrs: e.attrs,
            no_snoop_allowed: e.no_snoop_allowed,
            kind: e.kind,
            s2_attrs: e.s2_attrs,
        }
    }
}

/// Stream context after STE/CD fetch.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ctx {
    world: World,
    vmid: u16,
    asid: u16,
    cd: Option<CdInfo>,
    s2: Option<S2Ste>,
    kind: TranslationKind,
}

/// One stage-2 unit (from the TLB or a walk).
#[derive(Clone, Copy, Debug)]
struct S2Unit {
    out: u64,
    shift: u32,
    perms: Perms,
    attrs: Option<MemAttrs>,
    desc_pa: u64,
}

type Path = RefCell<Vec<(u64, u64)>>;

fn sign_extend_55(va: u64) -> u64 {
    ((va << 8) as i64 >> 8) as u64
}

fn mask(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}

fn bypass(addr: u64, kind: TranslationKind) -> Translation {
    Translation {
        pa: PhysAddr(addr),
        size: 4096,
        perms: Perms::ALL,
        attrs: MemAttrs::NORMAL_WB,
        coherent: true,
        no_snoop_allowed: true,
        kind,
        cached: false,
    }
}

/// Select the TTB range of a stage-1 VA. Returns the range, its selector (0/1) and
/// the VA as TLB tag (top byte normalised when ignored).
fn s1_select(cd: &CdInfo, world: World, va: u64) -> Option<(TtbRange, u8, u64)> {
    let two_ranges = world != World::El2;
    let sel1 = two_ranges && (va >> 55) & 1 == 1;
    let tbi = if sel1 { cd.tbi1 } else { cd.tbi0 };
    let r = if sel1 { cd.ttb1 } else { cd.ttb0 }?;
    let top = if tbi { 55 } else { 63 };
    let nbits = top + 1 - r.va_bits;
    let chk = (va >> r.va_bits) & mask(nbits);
    let expect = if sel1 { mask(nbits) } else { 0 };
    if chk != expect {
        return None;
    }
    Some((r, sel1 as u8, if tbi { sign_extend_55(va) } else { va }))
}

impl Smmu {
    // ------------------------------------------------------------- public API

    /// Translate one access of StreamID `sid` (with SubstreamID `ssid`, if the
    /// transaction carries one) at input address `addr`. Faults are recorded in the
    /// event queue as the configuration says and returned.
    pub fn translate(
        &self,
        sid: u32,
        ssid: Option<u32>,
        addr: u64,
        access: Access,
    ) -> Result<Translation, Fault> {
        let mut st = self.lock();
        st.stats.translations += 1;
        let r = self.translate_locked(&mut st, sid, ssid, addr, access, true);
        if r.is_err() {
            st.stats.faults += 1;
        }
        r
    }

    /// A device's ATS path: look the address up in the endpoint's ATC; on a miss
    /// send a translation request (allowed only when ATS is implemented and
    /// STE.EATS ≠ 0, else F_BAD_ATS_TREQ) and fill the ATC with the result. Faults of
    /// a translation request are returned to the device, not recorded as events.
    pub fn ats_translate(
        &self,
        sid: u32,
        ssid: Option<u32>,
        addr: u64,
        access: Access,
    ) -> Result<Translation, Fault> {
        let mut st = self.lock();
        st.stats.translations += 1;
        let mut shifts = st.atc_shifts;
        let mut hit = None;
        if let Some(atc) = st.atc.get_mut(&sid) {
            while shifts != 0 {
                let s = shifts.trailing_zeros();
                shifts &= shifts - 1;
                let k = AtcKey {
                    ssid,
                    base: addr & !mask(s),
                    shift: s as u8,
                };
                if let Some(t) = atc.lookup(&k) {
                    let mut t = *t;
                    if t.perms.allows(access) {
                        t.pa = PhysAddr(t.pa.0 + (addr & mask(s)));
                        t.cached = true;
                        hit = Some(t);
                        break;
                    }
                }
            }
        }
        if let Some(t) = hit {
            st.stats.atc.hits += 1;
            return Ok(t);
        }
        st.stats.atc.misses += 1;
        let enabled = cr0::SMMUEN.get_in(st.regs.cr0 as u64) != 0;
        let eats = if enabled && self.cfg.ats {
            match self.get_ste(&mut st, sid) {
                Ok(info) => info.eats,
                Err(xf) => {
                    st.stats.faults += 1;
                    return Err(self.make_fault(&mut st, xf, sid, ssid, addr, access, None, true));
                }
            }
        } else {
            0
        };
        if eats == 0 {
            st.stats.faults += 1;
            let xf = Xf {
                id: EventId::FBadAtsTreq,
                s2: false,
                ipa: 0,
                fetch: 0,
                class: EventClass::Input,
            };
            return Err(self.make_fault(&mut st, xf, sid, ssid, addr, access, None, true));
        }
        let t = match self.translate_locked(&mut st, sid, ssid, addr, access, false) {
            Ok(t) => t,
            Err(f) => {
                st.stats.faults += 1;
                return Err(f);
            }
        };
        if self.cfg.atc.enabled() {
            let shift = t.size.trailing_zeros();
            let base = addr & !mask(shift);
            let mut entry = t;
            entry.pa = PhysAddr(t.pa.0 & !mask(shift));
            let cap = self.cfg.atc;
            st.atc
                .entry(sid)
                .or_insert_with(|| crate::cache::Cache::new(cap))
                .insert(
                    AtcKey {
                        ssid,
                        base,
                        shift: shift as u8,
                    },
                    entry,
                );
            st.atc_shifts |= 1 << shift;
        }
        Ok(t)
    }

    /// DMA read through the SMMU: translate each page-sized piece of
    /// `[iova, iova + buf.len())` and read it from memory. Stops at the first fault
    /// (a RAZ/WI fault reads zeros and continues).
    pub fn dma_read(
        &self,
        sid: u32,
        ssid: Option<u32>,
        iova: u64,
        buf: &mut [u8],
        privileged: bool,
    ) -> Result<(), Error> {
        let access = Access {
            kind: AccessKind::Read,
            privileged,
        };
        self.for_each_dma_piece(sid, ssid, iova, buf.len(), access, |pa, r| match pa {
            Some(pa) => self.mem.read_bytes(pa, &mut buf[r]).map_err(Error::Memory),
            None => {
                buf[r].fill(0);
                Ok(())
            }
        })
    }

    /// DMA write through the SMMU (see [`Smmu::dma_read`]); a RAZ/WI fault drops the
    /// data of that piece.
    pub fn dma_write(
        &self,
        sid: u32,
        ssid: Option<u32>,
        iova: u64,
        buf: &[u8],
        privileged: bool,
    ) -> Result<(), Error> {
        let access = Access {
            kind: AccessKind::Write,
            privileged,
        };
        self.for_each_dma_piece(sid, ssid, iova, buf.len(), access, |pa, r| match pa {
            Some(pa) => self.mem.write_bytes(pa, &buf[r]).map_err(Error::Memory),
            None => Ok(()),
        })
    }

    /// Split `[iova, iova + len)` into pieces that cross neither a 4 KiB page nor the
    /// end of their translation, translating each: `piece(Some(pa), range)` for a
    /// translated piece, `piece(None, range)` for one whose fault completes RAZ/WI.
    /// Stops at the first other fault (or error of `piece`).
    fn for_each_dma_piece(
        &self,
        sid: u32,
        ssid: Option<u32>,
        iova: u64,
        len: usize,
        access: Access,
        mut piece: impl FnMut(
            Option<iommu_types::PhysAddr>,
            core::ops::Range<usize>,
        ) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let mut done = 0usize;
        while done < len {
            let a = iova.wrapping_add(done as u64);
            let page_left = 4096 - (a & 4095);
            let (pa, n) = match self.translate(sid, ssid, a, access) {
                Ok(t) => (Some(t.pa), t.remaining(a).min(page_left) as usize),
                Err(f) if f.response == FaultResponse::RazWi => (None, page_left as usize),
                Err(f) => return Err(Error::Fault(f)),
            };
            let n = n.min(len - done);
            piece(pa, done..done + n)?;
            done += n;
        }
        Ok(())
    }

    // ------------------------------------------------------------- faults

    #[allow(clippy::too_many_arguments)]
    fn make_fault(
        &self,
        st: &mut State,
        xf: Xf,
        sid: u32,
        ssid: Option<u32>,
        addr: u64,
        access: Access,
        ctx: Option<&Ctx>,
        rec: bool,
    ) -> Fault {
        let config_ev = matches!(
            xf.id,
            EventId::CBadStreamId | EventId::CBadSte | EventId::CBadSubstreamId | EventId::CBadCd
        );
        let ev = if config_ev {
            let mut e = Event::config(xf.id, sid, ssid);
            e.fetch_addr = xf.fetch;
            e
        } else {
            Event {
                id: xf.id,
                sid,
                ssid,
                pnu: access.privileged,
                ind: access.kind == AccessKind::Exec,
                rnw: access.kind != AccessKind::Write,
                s2: xf.s2,
                class: xf.class,
                addr,
                ipa: if xf.s2 { xf.ipa } else { 0 },
                fetch_addr: xf.fetch,
            }
        };
        let (recordable, response) = if xf.id.is_translation_related() {
            match (xf.s2, ctx) {
                (true, Some(c)) => (c.s2.is_some_and(|s| s.record), FaultResponse::Abort),
                (false, Some(Ctx { cd: Some(cd), .. })) => (
                    cd.record,
                    if cd.abort {
                        FaultResponse::Abort
                    } else {
                        FaultResponse::RazWi
                    },
                ),
                _ => (true, FaultResponse::Abort),
            }
        } else if xf.id == EventId::CBadStreamId {
            (recinvsid(st), FaultResponse::Abort)
        } else {
            (true, FaultResponse::Abort)
        };
        let recorded = rec && recordable && self.record_event(st, &ev);
        Fault {
            event: Some(ev),
            recorded,
            response,
        }
    }

    // ------------------------------------------------------------- config fetch

    /// Whether cached structure words `raw` at `pa` differ from memory in the bits
    /// `used` (all bits if None): software may change unused bits of a live
    /// STE/CD at any time (hitless update, §8).
    fn config_changed(&self, pa: u64, raw: &[u64], used: Option<&[u64; 8]>) -> bool {
        let mut cur = [0u64; 8];
        let n = raw.len();
        match self.mem.read_words(PhysAddr(pa), &mut cur[..n]) {
            Ok(()) => (0..n).any(|i| (cur[i] ^ raw[i]) & used.map_or(u64::MAX, |u| u[i]) != 0),
            Err(_) => true,
        }
    }

    /// A translation uses the cached structure at `pa` built from `raw`: apply the
    /// stale-use rule ([`crate::sanitizer`]) and report if due.
    #[allow(clippy::too_many_arguments)]
    fn check_stale_config(
        &self,
        st: &mut State,
        pa: u64,
        raw: &[u64],
        sid: u32,
        ssid: Option<u32>,
        used: Option<[u64; 8]>,
    ) {
        let changed = self.config_changed(pa, raw, used.as_ref());
        let sync = st.stats.syncs;
        if let Some(observed_sync) = stale_due(
            &mut st.stale_cfg_since,
            pa,
            changed,
            sync,
            self.cfg.stale_grace_syncs,
        ) {
            Self::report(
                st,
                Report::StaleConfig {
                    sid,
                    ssid,
                    pa,
                    observed_sync,
                    sync,
                },
            );
        }
    }

    /// Every cached entry whose descriptor differs from memory now (see
    /// [`Smmu::sanitizer_audit`]).
    pub(crate) fn audit_stale(&self, st: &mut State) -> Vec<Report> {
        let sync = st.stats.syncs;
        let mut found = Vec::new();
        for (k, e) in st.tlb.iter() {
            for &(pa, val) in e.path.iter() {
                let cur = self.mem.read_u64(PhysAddr(pa)).unwrap_or(!val);
                if (cur ^ val) & !hw_managed_mask(val) != 0 {
                    found.push(Report::StaleTlb {
                        sid: u32::MAX,
                        ssid: None,
                        vmid: k.vmid,
                        asid: k.asid as u16,
                        addr: k.base,
                        desc_pa: pa,
                        cached: val,
                        current: cur,
                        observed_sync: st.stale_tlb_since.get(&(pa, val)).copied().unwrap_or(sync),
                        sync,
                    });
                    break;
                }
            }
        }
        let cfg_since = |pa: u64| st.stale_cfg_since.get(&pa).copied().unwrap_or(sync);
        for (&sid, e) in st.ste.iter() {
            let l1 = e.l1.filter(|&(pa, d)| self.config_changed(pa, &[d], None));
            let pa = if self.config_changed(e.pa, &e.raw, Some(&Ste(e.raw).used_mask())) {
                Some(e.pa)
            } else {
                l1.map(|x| x.0)
            };
            if let Some(pa) = pa {
                found.push(Report::StaleConfig {
                    sid,
                    ssid: None,
                    pa,
                    observed_sync: cfg_since(pa),
                    sync,
                });
            }
        }
        for (&(sid, idx), e) in st.cd.iter() {
            if self.config_changed(e.pa, &e.raw, Some(&Cd(e.raw).used_mask())) {
                found.push(Report::StaleConfig {
                    sid,
                    ssid: Some(idx),
                    pa: e.pa,
                    observed_sync: cfg_since(e.pa),
                    sync,
                });
            }
        }
        for (&(sid, _), e) in st.l1cd.iter() {
            if self.config_changed(e.pa, &[e.desc], None) {
                found.push(Report::StaleConfig {
                    sid,
                    ssid: None,
                    pa: e.pa,
                    observed_sync: cfg_since(e.pa),
                    sync,
                });
            }
        }
        found
    }

    /// At a CMD_SYNC (after its invalidations): record, for every entry still
    /// cached, a descriptor change not seen before (see [`crate::sanitizer`]).
    pub(crate) fn sweep_stale(&self, st: &mut State) {
        let sync = st.stats.syncs;
        let mem = self.mem.as_ref();
        let changed = |pa: u64, val: u64| {
            let cur = mem.read_u64(PhysAddr(pa)).unwrap_or(!val);
            (cur ^ val) & !hw_managed_mask(val) != 0
        };
        // Rebuilt from the surviving entries, so records of invalidated entries go.
        let old = core::mem::take(&mut st.stale_tlb_since);
        let tlb_paths = st.tlb.iter().map(|(_, e)| &e.path);
        let wc_paths = st.wc.iter().map(|(_, e)| &e.path);
        for path in tlb_paths.chain(wc_paths) {
            for &(pa, val) in path.iter() {
                if changed(pa, val) {
                    let first = old.get(&(pa, val)).copied().unwrap_or(sync);
                    st.stale_tlb_since.insert((pa, val), first);
                }
            }
        }
        let mut cfg: Vec<u64> = Vec::new();
        for (_, e) in st.ste.iter() {
            if self.config_changed(e.pa, &e.raw, Some(&Ste(e.raw).used_mask())) {
                cfg.push(e.pa);
            }
            if let Some((pa, d)) = e.l1 {
                if self.config_changed(pa, &[d], None) {
                    cfg.push(pa);
                }
            }
        }
        for (_, e) in st.cd.iter() {
            if self.config_changed(e.pa, &e.raw, Some(&Cd(e.raw).used_mask())) {
                cfg.push(e.pa);
            }
        }
        for (_, &(pa, d)) in st.l1std.iter() {
            if self.config_changed(pa, &[d], None) {
                cfg.push(pa);
            }
        }
        for (_, e) in st.l1cd.iter() {
            if self.config_changed(e.pa, &[e.desc], None) {
                cfg.push(e.pa);
            }
        }
        let old = core::mem::take(&mut st.stale_cfg_since);
        for pa in cfg {
            let first = old.get(&pa).copied().unwrap_or(sync);
            st.stale_cfg_since.insert(pa, first);
        }
    }

    pub(crate) fn get_ste(&self, st: &mut State, sid: u32) -> Result<SteInfo, Xf> {
        if let Some(e) = st.ste.lookup(&sid) {
            let e = e.clone();
            if self.cfg.sanitizer {
                self.check_stale_config(st, e.pa, &e.raw, sid, None, Some(Ste(e.raw).used_mask()));
                if let Some((pa, d)) = e.l1 {
                    self.check_stale_config(st, pa, &[d], sid, None, None);
                }
            }
            return Ok(e.info);
        }
        let cfgr = st.regs.strtab_cfg as u64;
        let log2size = (strtab::CFG_LOG2SIZE.get_in(cfgr) as u32).min(self.cfg.sid_bits);
        if log2size < 32 && (sid as u64) >> log2size != 0 {
            return Err(Xf::cfg(EventId::CBadStreamId));
        }
        let base = strtab::BASE_ADDR.get_in(st.regs.strtab_base) << 6;
        let fmt = strtab::CFG_FMT.get_in(cfgr);
        let mut l1 = None;
        let ste_pa = if fmt == strtab::FMT_2LVL && self.cfg.two_level_strtab {
            let split = strtab::CFG_SPLIT.get_in(cfgr) as u32;
            let split = if matches!(split, 6 | 8 | 10) {
                split
            } else {
                6
            };
            let l1idx = sid >> split;
            let l1pa = base + l1idx as u64 * 8;
            let d = match st.l1std.lookup(&l1idx) {
                Some(&mut (pa, d)) => {
                    if self.cfg.sanitizer {
                        self.check_stale_config(st, pa, &[d], sid, None, None);
                    }
                    d
                }
                None => {
                    let d = self
                        .mem
                        .read_u64(PhysAddr(l1pa))
                        .map_err(|_| Xf::fetch(EventId::FSteFetch, l1pa))?;
                    st.stale_cfg_since.remove(&l1pa);
                    let span = ste::l1::SPAN.get_in(d);
                    if (1..=12).contains(&span) {
                        st.l1std.insert(l1idx, (l1pa, d));
                    }
                    d
                }
            };
            l1 = Some((l1pa, d));
            let span = ste::l1::SPAN.get_in(d) as u32;
            if span == 0 || span > 12 {
                return Err(Xf::cfg(EventId::CBadStreamId));
            }
            let l2idx = sid & ((1u32 << split) - 1);
            if (l2idx as u64) >> (span - 1) != 0 {
                return Err(Xf::cfg(EventId::CBadStreamId));
            }
            (ste::l1::L2PTR.get_in(d) << 6) + l2idx as u64 * ste::STE_SIZE
        } else {
            base + sid as u64 * ste::STE_SIZE
        };
        let mut raw = [0u64; 8];
        self.mem
            .read_words(PhysAddr(ste_pa), &mut raw)
            .map_err(|_| Xf::fetch(EventId::FSteFetch, ste_pa))?;
        st.stale_cfg_since.remove(&ste_pa);
        if self.cfg.sanitizer {
            st.watch_ste.insert(
                ste_pa,
                crate::smmu::Watch {
                    sid,
                    ssid: None,
                    last: raw,
                },
            );
        }
        let info = Ste(raw)
            .decode(&self.cfg)
            .map_err(|_| Xf::cfg(EventId::CBadSte))?;
        st.ste.insert(
            sid,
            SteEntry {
                info,
                pa: ste_pa,
                raw,
                l1,
            },
        );
        Ok(info)
    }

    pub(crate) fn get_cd(
        &self,
        st: &mut State,
        sid: u32,
        s1: &S1Ste,
        idx: u32,
        s2: Option<&S2Ste>,
        vmid: u16,
    ) -> Result<CdInfo, Xf> {
        if let Some(e) = st.cd.lookup(&(sid, idx)) {
            let e = e.clone();
            if self.cfg.sanitizer {
                self.check_stale_config(
                    st,
                    e.pa,
                    &e.raw,
                    sid,
                    Some(idx),
                    Some(Cd(e.raw).used_mask()),
                );
            }
            return Ok(e.info);
        }
        let path = RefCell::new(Vec::new());
        let cd_class = |mut x: Xf| {
            if x.s2 {
                x.class = EventClass::Cd;
            }
            x
        };
        let ipa = match s1.fmt {
            ste::CdTableFormat::Linear => s1.context_ptr + idx as u64 * crate::cd::CD_SIZE,
            ste::CdTableFormat::TwoLevel { split } => {
                let l1idx = idx >> split;
                let d = match st.l1cd.lookup(&(sid, l1idx)) {
                    Some(e) => {
                        let e = *e;
                        if self.cfg.sanitizer {
                            self.check_stale_config(st, e.pa, &[e.desc], sid, Some(idx), None);
                        }
                        e.desc
                    }
                    None => {
                        let l1ipa = s1.context_ptr + l1idx as u64 * 8;
                        let l1pa = match s2 {
                            Some(s2) => self
                                .s2_fetch_pa(st, s2, vmid, l1ipa, &path)
                                .map_err(cd_class)?,
                            None => l1ipa,
                        };
                        let d = self
                            .mem
                            .read_u64(PhysAddr(l1pa))
                            .map_err(|_| Xf::fetch(EventId::FCdFetch, l1pa))?;
                        st.stale_cfg_since.remove(&l1pa);
                        st.l1cd.insert(
                            (sid, l1idx),
                            L1CdEntry {
                                desc: d,
                                pa: l1pa,
                                split,
                            },
                        );
                        d
                    }
                };
                if !crate::cd::l1::V.is_set(&[d]) {
                    return Err(Xf::cfg(EventId::CBadSubstreamId));
                }
                (crate::cd::l1::L2PTR.get_in(d) << 12)
                    + (idx as u64 & mask(split)) * crate::cd::CD_SIZE
            }
        };
        let pa = match s2 {
            Some(s2) => self
                .s2_fetch_pa(st, s2, vmid, ipa, &path)
                .map_err(cd_class)?,
            None => ipa,
        };
        let mut raw = [0u64; 8];
        self.mem
            .read_words(PhysAddr(pa), &mut raw)
            .map_err(|_| Xf::fetch(EventId::FCdFetch, pa))?;
        st.stale_cfg_since.remove(&pa);
        if self.cfg.sanitizer {
            st.watch_cd.insert(
                pa,
                crate::smmu::Watch {
                    sid,
                    ssid: Some(idx),
                    last: raw,
                },
            );
        }
        let info = Cd(raw)
            .decode(&self.cfg)
            .map_err(|_| Xf::cfg(EventId::CBadCd))?;
        if self.cfg.sanitizer {
            let ttb = |c: &CdInfo| (c.ttb0.map(|r| r.ttb), c.ttb1.map(|r| r.ttb));
            let mine = ttb(&info);
            let mut found = Vec::new();
            for (k, e) in st.cd.iter() {
                if *k != (sid, idx)
                    && e.vmid == vmid
                    && e.info.asid == info.asid
                    && ttb(&e.info) != mine
                {
                    found.push(Report::AsidConflict {
                        vmid,
                        asid: info.asid,
                        a: *k,
                        b: (sid, idx),
                        ttb: (
                            e.info.ttb0.map_or(0, |r| r.ttb),
                            info.ttb0.map_or(0, |r| r.ttb),
                        ),
                    });
                }
            }
            for r in found {
                Self::report(st, r);
            }
        }
        st.cd.insert(
            (sid, idx),
            CdEntry {
                info,
                pa,
                raw,
                vmid,
            },
        );
        Ok(info)
    }

    pub(crate) fn prefetch_config(&self, st: &mut State, sid: u32, ssid: Option<u32>) {
        let Ok(info) = self.get_ste(st, sid) else {
            return;
        };
        if let SteConfig::Translate { s1: Some(s1), s2 } = info.config {
            let idx = ssid.unwrap_or(0);
            if s1.cd_max == 0 && idx != 0 || s1.cd_max != 0 && idx >> s1.cd_max != 0 {
                return;
            }
            let _ = self.get_cd(st, sid, &s1, idx, s2.as_ref(), info.vmid);
        }
    }

    // ------------------------------------------------------------- translation

    pub(crate) fn translate_locked(
        &self,
        st: &mut State,
        sid: u32,
        ssid: Option<u32>,
        addr: u64,
        access: Access,
        rec: bool,
    ) -> Result<Translation, Fault> {
        if cr0::SMMUEN.get_in(st.regs.cr0 as u64) == 0 {
            if gbpa::ABORT.get_in(st.regs.gbpa as u64) != 0 {
                return Err(Fault {
                    event: None,
                    recorded: false,
                    response: FaultResponse::Abort,
                });
            }
            return Ok(bypass(addr, TranslationKind::GlobalBypass));
        }
        let fast = !self.cfg.sanitizer && self.cfg.config_cache == crate::Capacity::Unbounded;
        if self.cfg.sanitizer {
            self.observe(st);
            self.speculate(st);
        }
        let ckey = (sid, ssid.unwrap_or(u32::MAX));
        if fast && st.utlb_on {
            if let Some(t) = Self::micro_hit(st, ckey, addr, access) {
                return Ok(t);
            }
        }
        if fast {
            let r = match st.last_ctx {
                Some((k, r)) if k == ckey => Some(r),
                _ => {
                    let r = st.ctx_cache.get(&ckey).copied();
                    if let Some(r) = r {
                        st.last_ctx = Some((ckey, r));
                    }
                    r
                }
            };
            if let Some(r) = r {
                st.ste.counters.hits += 1;
                return match r {
                    Resolved::Bypass => Ok(bypass(addr, TranslationKind::Bypass)),
                    Resolved::Ctx(ctx) => {
                        if ctx.cd.is_some() {
                            st.cd.counters.hits += 1;
                        }
                        self.run_ctx(st, &ctx, sid, ssid, addr, access, rec)
                    }
                };
            }
        }
        let info = match self.get_ste(st, sid) {
            Ok(i) => i,
            Err(xf) => return Err(self.make_fault(st, xf, sid, ssid, addr, access, None, rec)),
        };
        let bad = |s: &Self, st: &mut State, id| {
            let xf = Xf {
                id,
                s2: false,
                ipa: 0,
                fetch: 0,
                class: EventClass::Input,
            };
            Err(s.make_fault(st, xf, sid, ssid, addr, access, None, rec))
        };
        let (s1, s2) = match info.config {
            SteConfig::Abort => {
                return Err(Fault {
                    event: None,
                    recorded: false,
                    response: FaultResponse::Abort,
                });
            }
            SteConfig::Bypass => {
                if ssid.is_some() {
                    return bad(self, st, EventId::CBadSubstreamId);
                }
                return Ok(bypass(addr, TranslationKind::Bypass));
            }
            SteConfig::Translate { s1, s2 } => (s1, s2),
        };
        let mut cd = None;
        let mut world = World::NsEl1;
        match s1 {
            Some(s1) => {
                let idx = match ssid {
                    Some(s) => {
                        if s1.cd_max == 0 || s >> s1.cd_max != 0 {
                            return bad(self, st, EventId::CBadSubstreamId);
                        }
                        if s == 0 && s1.dss == S1Dss::Substream0 {
                            return bad(self, st, EventId::FStreamDisabled);
                        }
                        Some(s)
                    }
                    None if s1.cd_max == 0 => Some(0),
                    None => match s1.dss {
                        S1Dss::Terminate => return bad(self, st, EventId::FStreamDisabled),
                        S1Dss::Bypass => None,
                        S1Dss::Substream0 => Some(0),
                    },
                };
                if let Some(idx) = idx {
                    match self.get_cd(st, sid, &s1, idx, s2.as_ref(), info.vmid) {
                        Ok(c) => cd = Some(c),
                        Err(xf) => {
                            let ctx = Ctx {
                                world,
                                vmid: info.vmid,
                                asid: 0,
                                cd: None,
                                s2,
                                kind: TranslationKind::Stage1,
                            };
                            return Err(self.make_fault(
                                st,
                                xf,
                                sid,
                                ssid,
                                addr,
                                access,
                                Some(&ctx),
                                rec,
                            ));
                        }
                    }
                    world = match s1.world {
                        StreamWorld::NsEl1 => World::NsEl1,
                        _ if cr2::E2H.get_in(st.regs.cr2 as u64) != 0 => World::El2E2H,
                        _ => World::El2,
                    };
                }
            }
            None => {
                if ssid.is_some() {
                    return bad(self, st, EventId::CBadSubstreamId);
                }
            }
        }
        let kind = match (cd.is_some(), s2.is_some()) {
            (false, false) => {
                if fast {
                    st.ctx_cache.insert(ckey, Resolved::Bypass);
                }
                return Ok(bypass(addr, TranslationKind::Bypass));
            }
            (true, false) => TranslationKind::Stage1,
            (false, true) => TranslationKind::Stage2,
            (true, true) => TranslationKind::Nested,
        };
        let ctx = Ctx {
            world: if cd.is_some() { world } else { World::S2 },
            vmid: if matches!(world, World::El2 | World::El2E2H) && cd.is_some() {
                0
            } else {
                info.vmid
            },
            asid: match (cd, world) {
                (Some(_), World::El2) => 0,
                (Some(c), _) => c.asid,
                _ => 0,
            },
            cd,
            s2,
            kind,
        };
        if fast {
            st.ctx_cache.insert(ckey, Resolved::Ctx(ctx));
        }
        self.run_ctx(st, &ctx, sid, ssid, addr, access, rec)
    }

    /// The shortest path: the last resolved stream context and a micro-TLB hit,
    /// without copying the context. Anything unusual falls back to the full path.
    #[inline]
    fn micro_hit(
        st: &mut State,
        ckey: (u32, u32),
        addr: u64,
        access: Access,
    ) -> Option<Translation> {
        let (world, vmid, asid, key_va) = match &st.last_ctx {
            Some((k, Resolved::Ctx(ctx))) if *k == ckey => {
                let cd = ctx.cd.as_ref()?;
                let (_, _, key_va) = s1_select(cd, ctx.world, addr)?;
                (ctx.world, ctx.vmid, ctx.asid as u32, key_va)
            }
            _ => return None,
        };
        let slot = ((key_va >> 12) as usize) & (crate::smmu::UTLB_SLOTS - 1);
        let (k, e) = st.utlb[slot]?;
        if !(k.world == world
            && k.vmid == vmid
            && (k.asid == asid || k.asid == GLOBAL_ASID)
            && key_va & !mask(k.shift as u32) == k.base)
        {
            return None;
        }
        let s1p = e.s1_perms.unwrap_or(Perms::ALL);
        let s2p = e.s2_perms.unwrap_or(Perms::ALL);
        if !s1p.allows(access) || !s2p.allows(access) {
            return None;
        }
        if access.kind == AccessKind::Write && (s1p.dirty_clean || s2p.dirty_clean) {
            return None;
        }
        st.ste.counters.hits += 1;
        st.cd.counters.hits += 1;
        st.tlb.counters.hits += 1;
        Some(Translation {
            pa: PhysAddr(e.out | (key_va & mask(k.shift as u32))),
            size: 1u64 << k.shift,
            perms: s1p.and(s2p),
            attrs: e.attrs,
            coherent: e.attrs.coherent(),
            no_snoop_allowed: e.no_snoop_allowed,
            kind: e.kind,
            cached: true,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn run_ctx(
        &self,
        st: &mut State,
        ctx: &Ctx,
        sid: u32,
        ssid: Option<u32>,
        addr: u64,
        access: Access,
        rec: bool,
    ) -> Result<Translation, Fault> {
        let mut attempt = 0;
        loop {
            match self.translate_ctx(st, ctx, sid, ssid, addr, access) {
                Ok(Some(t)) => return Ok(t),
                Ok(None) if attempt < 8 => attempt += 1,
                Ok(None) => {
                    let xf = Xf {
                        id: EventId::FPermission,
                        s2: false,
                        ipa: 0,
                        fetch: 0,
                        class: EventClass::Input,
                    };
                    return Err(self.make_fault(st, xf, sid, ssid, addr, access, Some(ctx), rec));
                }
                Err(xf) => {
                    return Err(self.make_fault(st, xf, sid, ssid, addr, access, Some(ctx), rec));
                }
            }
        }
    }

    fn check_path(
        &self,
        st: &mut State,
        path: &[(u64, u64)],
        sid: u32,
        ssid: Option<u32>,
        (vmid, asid): (u16, u16),
        addr: u64,
    ) {
        let sync = st.stats.syncs;
        for &(pa, val) in path {
            let cur = self.mem.read_u64(PhysAddr(pa)).unwrap_or(!val);
            let changed = (cur ^ val) & !hw_managed_mask(val) != 0;
            if let Some(observed_sync) = stale_due(
                &mut st.stale_tlb_since,
                (pa, val),
                changed,
                sync,
                self.cfg.stale_grace_syncs,
            ) {
                Self::report(
                    st,
                    Report::StaleTlb {
                        sid,
                        ssid,
                        vmid,
                        asid,
                        addr,
                        desc_pa: pa,
                        cached: val,
                        current: cur,
                        observed_sync,
                        sync,
                    },
                );
                return;
            }
        }
    }

    /// Find the TLB entry covering `va` (any page size present, ASID-tagged or
    /// global). Touches but does not count.
    fn tlb_probe(
        st: &mut State,
        world: World,
        vmid: u16,
        asid: u32,
        va: u64,
    ) -> Option<(TlbKey, HitEntry)> {
        let slot = ((va >> 12) as usize) & (crate::smmu::UTLB_SLOTS - 1);
        if st.utlb_on {
            if let Some((k, e)) = st.utlb[slot] {
                if k.world == world
                    && k.vmid == vmid
                    && (k.asid == asid || k.asid == GLOBAL_ASID)
                    && va & !mask(k.shift as u32) == k.base
                {
                    return Some((k, e));
                }
            }
        }
        let r = Self::tlb_probe_map(st, world, vmid, asid, va);
        if st.utlb_on {
            if let Some(hit) = r {
                st.utlb[slot] = Some(hit);
            }
        }
        r
    }

    fn tlb_probe_map(
        st: &mut State,
        world: World,
        vmid: u16,
        asid: u32,
        va: u64,
    ) -> Option<(TlbKey, HitEntry)> {
        let mut shifts = st.tlb_shifts;
        let globals = st.tlb_globals && asid != GLOBAL_ASID;
        while shifts != 0 {
            let s = shifts.trailing_zeros();
            shifts &= shifts - 1;
            let mut k = TlbKey {
                world,
                vmid,
                asid,
                base: va & !mask(s),
                shift: s as u8,
            };
            if let Some(e) = st.tlb.get_quiet(&k) {
                return Some((k, HitEntry::of(e)));
            }
            if globals {
                k.asid = GLOBAL_ASID;
                if let Some(e) = st.tlb.get_quiet(&k) {
                    return Some((k, HitEntry::of(e)));
                }
            }
        }
        None
    }

    fn tlb_insert(&self, st: &mut State, key: TlbKey, e: TlbEntry, sid: u32) {
        if !st.tlb.enabled() {
            return;
        }
        if self.cfg.sanitizer {
            let size = 1u64 << key.shift;
            let mut found = Vec::new();
            for (k, x) in st.tlb.iter() {
                if k.world != key.world || k.vmid != key.vmid || *k == key {
                    continue;
                }
                if !(k.asid == key.asid || k.asid == GLOBAL_ASID || key.asid == GLOBAL_ASID) {
                    continue;
                }
                let ks = 1u64 << k.shift;
                let overlap = k.base <= key.base.wrapping_add(size - 1)
                    && key.base <= k.base.wrapping_add(ks - 1);
                if !overlap {
                    continue;
                }
                let probe = key.base.max(k.base);
                let existing = x.out.wrapping_add(probe - k.base);
                let new = e.out.wrapping_add(probe - key.base);
                if existing != new {
                    found.push(Report::TlbConflict {
                        sid,
                        vmid: key.vmid,
                        asid: key.asid as u16,
                        addr: probe,
                        existing,
                        new,
                    });
                }
            }
            for r in found {
                Self::report(st, r);
            }
        }
        st.tlb_shifts |= 1 << key.shift;
        if key.asid == GLOBAL_ASID {
            st.tlb_globals = true;
        }
        st.tlb.insert(key, e);
    }

    /// Look up the walk cache for the deepest cached table covering `input`.
    #[allow(clippy::type_complexity)]
    fn wc_probe(
        st: &mut State,
        tag: (World, u16, u32, u8),
        p: &StageParams,
        input: u64,
    ) -> Option<(u32, u64, TableAttrs, Box<[(u64, u64)]>)> {
        if !st.wc.enabled() {
            return None;
        }
        for level in (p.start_level..3).rev() {
            let span = walk::level_shift(p.granule_shift, level);
            let key = WcKey {
                world: tag.0,
                vmid: tag.1,
                asid: tag.2,
                table: tag.3,
                granule: p.granule_shift as u8,
                level: level as u8,
                base: input & !mask(span),
            };
            if let Some(e) = st.wc.peek(&key) {
                let r = (level + 1, e.next_pa, e.attrs, e.path.clone());
                st.wc.counters.hits += 1;
                return Some(r);
            }
        }
        st.wc.counters.misses += 1;
        None
    }

    fn wc_fill(
        &self,
        st: &mut State,
        tag: (World, u16, u32, u8),
        p: &StageParams,
        steps: &[Option<(TableStep, usize)>],
        path: &[(u64, u64)],
        upper: u64,
    ) {
        if !st.wc.enabled() {
            return;
        }
        for (s, n) in steps.iter().flatten() {
            let key = WcKey {
                world: tag.0,
                vmid: tag.1,
                asid: tag.2,
                table: tag.3,
                granule: p.granule_shift as u8,
                level: s.level as u8,
                base: s.base,
            };
            let prefix: Box<[(u64, u64)]> = if self.cfg.sanitizer {
                path[..*n].into()
            } else {
                Box::new([])
            };
            st.wc.insert(
                key,
                WcEntry {
                    next_pa: s.next_pa,
                    attrs: s.attrs,
                    va_base: upper | s.base,
                    span_shift: s.span_shift,
                    path: prefix,
                },
            );
        }
    }

    /// Walk one stage with the walk cache. `tag`: walk-cache tag; `upper`: bits of
    /// the full input address above the walked range (TTB1).
    #[allow(clippy::too_many_arguments)]
    fn walk_stage(
        &self,
        st: &mut State,
        p: &StageParams,
        tag: (World, u16, u32, u8),
        input: u64,
        upper: u64,
        s2_tables: Option<(&S2Ste, u16)>,
        path: &Path,
        sid: u32,
        addr: u64,
    ) -> Result<walk::Leaf, Xf> {
        let san = self.cfg.sanitizer;
        let resume = Self::wc_probe(st, tag, p, input);
        let mut resume_at = None;
        if let Some((level, pa, attrs, prefix)) = resume {
            if san {
                self.check_path(st, &prefix, sid, None, (tag.1, tag.2 as u16), addr);
                path.borrow_mut().extend_from_slice(&prefix);
            }
            resume_at = Some((level, pa, attrs));
        }
        let fresh_from = if san { path.borrow().len() } else { 0 };
        let collect = st.wc.enabled();
        let mut steps: [Option<(TableStep, usize)>; 4] = [None; 4];
        let mut nsteps = 0usize;
        let mut reads = 0u64;
        let res = {
            let mut xlate = |ipa: u64| -> Result<u64, walk::WalkFault> {
                match s2_tables {
                    None => Ok(ipa),
                    Some((s2, vmid)) => {
                        self.s2_fetch_pa(st, s2, vmid, ipa, path)
                            .map_err(|x| walk::WalkFault {
                                id: x.id,
                                stage2: true,
                                ipa: x.ipa,
                                fetch_addr: x.fetch,
                                class: if x.s2 { EventClass::TableWalk } else { x.class },
                                level: 0,
                            })
                    }
                }
            };
            let mut on_table = |s: TableStep| {
                if collect {
                    if let Some(slot) = steps.get_mut(nsteps) {
                        *slot = Some((s, if san { path.borrow().len() } else { 0 }));
                        nsteps += 1;
                    }
                }
            };
            let mut on_desc = |pa: u64, d: u64| {
                reads += 1;
                if san {
                    let mut pv = path.borrow_mut();
                    // A hardware AF update re-reports the same descriptor: replace.
                    if let Some(last) = pv.last_mut().filter(|l| l.0 == pa) {
                        last.1 = d;
                    } else {
                        pv.push((pa, d));
                    }
                }
            };
            p.walk(
                self.mem.as_ref(),
                input,
                resume_at,
                &mut xlate,
                &mut on_table,
                &mut on_desc,
            )
        };
        st.stats.walk_reads += reads;
        let leaf = res.map_err(Xf::walk)?;
        if san && !st.stale_tlb_since.is_empty() {
            // Descriptors this walk read (and that still hold the value read) start
            // new cache entries: forget any stale record of that value.
            for &(pa, val) in &path.borrow()[fresh_from..] {
                if self.mem.read_u64(PhysAddr(pa)) == Ok(val) {
                    st.stale_tlb_since.remove(&(pa, val));
                }
            }
        }
        if st.wc.enabled() && nsteps > 0 {
            let pv = path.borrow();
            self.wc_fill(st, tag, p, &steps[..nsteps], &pv, upper);
        }
        Ok(leaf)
    }

    /// Stage-2 translation of `ipa` through the TLB (stage-2 entries) and walk cache.
    fn s2_unit(
        &self,
        st: &mut State,
        s2: &S2Ste,
        vmid: u16,
        ipa: u64,
        path: &Path,
    ) -> Result<S2Unit, Xf> {
        let tlb_on = st.tlb.enabled();
        if tlb_on {
            if let Some((k, e)) = Self::tlb_probe(st, World::S2, vmid, 0, ipa) {
                st.tlb.counters.hits += 1;
                if self.cfg.sanitizer {
                    if let Some(x) = st.tlb.peek(&k) {
                        path.borrow_mut().extend_from_slice(&x.path);
                    }
                }
                return Ok(S2Unit {
                    out: e.out,
                    shift: k.shift as u32,
                    perms: e.s2_perms.unwrap_or(Perms::ALL),
                    attrs: e.s2_attrs,
                    desc_pa: 0,
                });
            }
            st.tlb.counters.misses += 1;
        }
        let p = StageParams {
            granule_shift: s2.granule_shift,
            start_level: s2.start_level,
            ia_bits: s2.ia_bits,
            oas_bits: s2.oas_bits,
            root: s2.ttb,
            stage2: true,
            had: true,
            ha: s2.ha,
            affd: s2.affd,
        };
        let local: Path = RefCell::new(Vec::new());
        let leaf = self.walk_stage(
            st,
            &p,
            (World::S2, vmid, 0, 2),
            ipa,
            0,
            None,
            &local,
            0,
            ipa,
        )?;
        let perms = Perms::stage2(leaf.desc, self.cfg.xnx, s2.hd);
        let attrs = MemAttrs::stage2(leaf.desc, s2.fwb);
        let local = local.into_inner();
        if self.cfg.sanitizer {
            path.borrow_mut().extend_from_slice(&local);
        }
        if tlb_on && !perms.dirty_clean {
            let key = TlbKey {
                world: World::S2,
                vmid,
                asid: 0,
                base: ipa & !mask(leaf.shift),
                shift: leaf.shift as u8,
            };
            let e = TlbEntry {
                out: leaf.out_base,
                level: leaf.level as u8,
                granule: s2.granule_shift as u8,
                s1_perms: None,
                s2_perms: Some(perms),
                attrs: attrs.unwrap_or(MemAttrs::NORMAL_WB),
                no_snoop_allowed: !s2.fwb,
                ipa: key.base,
                kind: TranslationKind::Stage2,
                s2_attrs: attrs,
                path: if self.cfg.sanitizer {
                    local.into()
                } else {
                    Box::new([])
                },
            };
            self.tlb_insert(st, key, e, 0);
        }
        Ok(S2Unit {
            out: leaf.out_base,
            shift: leaf.shift,
            perms,
            attrs,
            desc_pa: leaf.desc_pa,
        })
    }

    /// Stage-2 translation of a table / CD address (a read by the SMMU itself).
    fn s2_fetch_pa(
        &self,
        st: &mut State,
        s2: &S2Ste,
        vmid: u16,
        ipa: u64,
        path: &Path,
    ) -> Result<u64, Xf> {
        let u = self.s2_unit(st, s2, vmid, ipa, path).map_err(|mut x| {
            x.s2 = true;
            x.ipa = ipa;
            x.class = EventClass::TableWalk;
            x
        })?;
        let device = u.attrs.is_some_and(|a| a.device);
        if !u.perms.pr || (s2.ptw && device) {
            return Err(Xf {
                id: EventId::FPermission,
                s2: true,
                ipa,
                fetch: 0,
                class: EventClass::TableWalk,
            });
        }
        Ok(u.out | (ipa & mask(u.shift)))
    }

    fn perm_fault(s2: bool, ipa: u64) -> Xf {
        Xf {
            id: EventId::FPermission,
            s2,
            ipa,
            fetch: 0,
            class: EventClass::Input,
        }
    }

    /// Translate with a resolved context. `Ok(None)` asks the caller to retry (a
    /// hardware dirty update raced with software).
    fn translate_ctx(
        &self,
        st: &mut State,
        ctx: &Ctx,
        sid: u32,
        ssid: Option<u32>,
        addr: u64,
        access: Access,
    ) -> Result<Option<Translation>, Xf> {
        let san = self.cfg.sanitizer;
        let is_write = access.kind == AccessKind::Write;
        // Stage 2 only: the stage-2 TLB entries are the translation.
        let Some(cd) = ctx.cd else {
            let s2 = ctx.s2.expect("stage 2 present when there is no CD");
            if s2.ia_bits < 64 && addr >> s2.ia_bits != 0 {
                return Err(Xf {
                    id: EventId::FTranslation,
                    s2: true,
                    ipa: addr,
                    fetch: 0,
                    class: EventClass::Input,
                });
            }
            let path: Path = RefCell::new(Vec::new());
            let before = st.tlb.counters.hits;
            let u = self.s2_unit(st, &s2, ctx.vmid, addr, &path)?;
            let cached = st.tlb.counters.hits != before;
            if cached && san {
                self.check_path(st, &path.borrow(), sid, ssid, (ctx.vmid, ctx.asid), addr);
            }
            if !u.perms.allows(access) {
                return Err(Self::perm_fault(true, addr));
            }
            if is_write && u.perms.dirty_clean {
                self.dirty_update(st, u.desc_pa, true);
                return Ok(None);
            }
            let attrs = u.attrs.unwrap_or(MemAttrs::NORMAL_WB);
            return Ok(Some(Translation {
                pa: PhysAddr(u.out | (addr & mask(u.shift))),
                size: 1u64 << u.shift,
                perms: u.perms,
                attrs,
                coherent: attrs.coherent(),
                no_snoop_allowed: !s2.fwb,
                kind: TranslationKind::Stage2,
                cached,
            }));
        };
        let Some((range, sel, key_va)) = s1_select(&cd, ctx.world, addr) else {
            return Err(Xf {
                id: EventId::FTranslation,
                s2: false,
                ipa: 0,
                fetch: 0,
                class: EventClass::Input,
            });
        };
        let asid_tag = ctx.asid as u32;
        // TLB.
        if st.tlb.enabled() {
            if let Some((k, e)) = Self::tlb_probe(st, ctx.world, ctx.vmid, asid_tag, key_va) {
                st.tlb.counters.hits += 1;
                if san {
                    if let Some(path) = st.tlb.peek(&k).map(|e| e.path.clone()) {
                        self.check_path(st, &path, sid, ssid, (ctx.vmid, ctx.asid), addr);
                    }
                }
                {
                    let s1p = e.s1_perms.unwrap_or(Perms::ALL);
                    let s2p = e.s2_perms.unwrap_or(Perms::ALL);
                    if !s1p.allows(access) {
                        return Err(Self::perm_fault(false, 0));
                    }
                    if !s2p.allows(access) {
                        return Err(Self::perm_fault(
                            true,
                            e.ipa | (key_va & mask(k.shift as u32)),
                        ));
                    }
                    if !(is_write && (s1p.dirty_clean || s2p.dirty_clean)) {
                        return Ok(Some(Translation {
                            pa: PhysAddr(e.out | (key_va & mask(k.shift as u32))),
                            size: 1u64 << k.shift,
                            perms: s1p.and(s2p),
                            attrs: e.attrs,
                            coherent: e.attrs.coherent(),
                            no_snoop_allowed: e.no_snoop_allowed,
                            kind: e.kind,
                            cached: true,
                        }));
                    }
                }
            } else {
                st.tlb.counters.misses += 1;
            }
        }
        // Stage-1 walk (tables through stage 2 when nested).
        let p = StageParams {
            granule_shift: range.granule_shift,
            start_level: range.start_level,
            ia_bits: range.va_bits,
            oas_bits: cd.oas_bits,
            root: range.ttb,
            stage2: false,
            had: range.had,
            ha: cd.ha,
            affd: cd.affd,
        };
        let input = addr & mask(range.va_bits);
        let upper = key_va & !mask(range.va_bits);
        let path: Path = RefCell::new(Vec::new());
        let tag = (ctx.world, ctx.vmid, asid_tag, sel);
        let s2_tables = ctx.s2.as_ref().map(|s| (s, ctx.vmid));
        let leaf = if s2_tables.is_none() && !san && !st.wc.enabled() {
            // Nothing to collect (no walk cache, no sanitizer path, no stage-2
            // table translation): walk directly.
            let mut reads = 0u64;
            let r = p.walk(
                self.mem.as_ref(),
                input,
                None,
                &mut Ok,
                &mut |_| {},
                &mut |_, _| reads += 1,
            );
            st.stats.walk_reads += reads;
            r.map_err(Xf::walk)?
        } else {
            self.walk_stage(st, &p, tag, input, upper, s2_tables, &path, sid, addr)?
        };
        let single = ctx.world == World::El2;
        let s1p = Perms::stage1(leaf.desc, leaf.table, cd.wxn, cd.uwxn, cd.hd, single);
        if !s1p.allows(access) {
            return Err(Self::perm_fault(false, 0));
        }
        if is_write && s1p.dirty_clean {
            self.dirty_update(st, leaf.desc_pa, false);
            return Ok(None);
        }
        let s1attrs = MemAttrs::stage1(leaf.desc, cd.mair);
        let global = leaf.desc & desc::NG == 0 && ctx.world != World::El2;
        let out1 = leaf.out_base | (input & mask(leaf.shift));
        let (pa, shift, s2p, attrs, ipa_base, nosnoop) = match ctx.s2 {
            None => (out1, leaf.shift, None, s1attrs, 0, true),
            Some(s2) => {
                if s2.ia_bits < 64 && out1 >> s2.ia_bits != 0 {
                    return Err(Xf {
                        id: EventId::FTranslation,
                        s2: true,
                        ipa: out1,
                        fetch: 0,
                        class: EventClass::Input,
                    });
                }
                let u = self
                    .s2_unit(st, &s2, ctx.vmid, out1, &path)
                    .map_err(|mut x| {
                        x.s2 = true;
                        x.ipa = out1;
                        x.class = EventClass::Input;
                        x
                    })?;
                if !u.perms.allows(access) {
                    return Err(Self::perm_fault(true, out1));
                }
                if is_write && u.perms.dirty_clean {
                    self.dirty_update(st, u.desc_pa, true);
                    return Ok(None);
                }
                let shift = leaf.shift.min(u.shift);
                let attrs = match u.attrs {
                    Some(a) => MemAttrs::combine(s1attrs, a),
                    None => s1attrs,
                };
                (
                    u.out | (out1 & mask(u.shift)),
                    shift,
                    Some(u.perms),
                    attrs,
                    out1 & !mask(shift),
                    !s2.fwb,
                )
            }
        };
        let t = Translation {
            pa: PhysAddr(pa),
            size: 1u64 << shift,
            perms: s2p.map_or(s1p, |p| s1p.and(p)),
            attrs,
            coherent: attrs.coherent(),
            no_snoop_allowed: nosnoop,
            kind: ctx.kind,
            cached: false,
        };
        if st.tlb.enabled() && !s1p.dirty_clean && !s2p.is_some_and(|p| p.dirty_clean) {
            let key = TlbKey {
                world: ctx.world,
                vmid: ctx.vmid,
                asid: if global { GLOBAL_ASID } else { asid_tag },
                base: key_va & !mask(shift),
                shift: shift as u8,
            };
            let e = TlbEntry {
                out: pa & !mask(shift),
                level: leaf.level as u8,
                granule: range.granule_shift as u8,
                s1_perms: Some(s1p),
                s2_perms: s2p,
                attrs,
                no_snoop_allowed: nosnoop,
                ipa: ipa_base,
                kind: ctx.kind,
                s2_attrs: None,
                path: if san {
                    path.into_inner().into()
                } else {
                    Box::new([])
                },
            };
            self.tlb_insert(st, key, e, sid);
        }
        Ok(Some(t))
    }

    /// Hardware dirty-state update of a writable-clean leaf.
    fn dirty_update(&self, _st: &mut State, desc_pa: u64, stage2: bool) {
        let pa = PhysAddr(desc_pa);
        if let Ok(d) = self.mem.read_u64(pa) {
            let new = if stage2 {
                d | desc::AP2_OR_S2_WRITE
            } else {
                d & !desc::AP2_OR_S2_WRITE
            };
            let _ = self.mem.compare_exchange_u64(pa, d, new);
        }
    }

    // ------------------------------------------------------------- sanitizer

    /// Re-read every watched STE and CD and report torn updates (see
    /// [`crate::sanitizer`]).
    pub(crate) fn observe(&self, st: &mut State) {
        let mut found = Vec::new();
        for (pa, w) in st.watch_ste.iter_mut() {
            let mut cur = [0u64; 8];
            if self.mem.read_words(PhysAddr(*pa), &mut cur).is_err() || cur == w.last {
                continue;
            }
            let (old, new) = (Ste(w.last), Ste(cur));
            if new.valid() {
                if let Err(e) = new.decode(&self.cfg) {
                    found.push(Report::TornUpdate {
                        sid: w.sid,
                        ssid: None,
                        pa: *pa,
                        kind: TornKind::Illegal(e.0),
                    });
                } else if old.valid() {
                    let dw = changed_dwords(&old.0, &cur, &old.used_mask());
                    if dw.count_ones() >= 2 {
                        found.push(Report::TornUpdate {
                            sid: w.sid,
                            ssid: None,
                            pa: *pa,
                            kind: TornKind::MultiDword { dwords: dw },
                        });
                    }
                }
            }
            w.last = cur;
        }
        for (pa, w) in st.watch_cd.iter_mut() {
            let mut cur = [0u64; 8];
            if self.mem.read_words(PhysAddr(*pa), &mut cur).is_err() || cur == w.last {
                continue;
            }
            let (old, new) = (Cd(w.last), Cd(cur));
            if new.valid() {
                if let Err(e) = new.decode(&self.cfg) {
                    found.push(Report::TornUpdate {
                        sid: w.sid,
                        ssid: w.ssid,
                        pa: *pa,
                        kind: TornKind::Illegal(e.0),
                    });
                } else if old.valid() {
                    let dw = changed_dwords(&old.0, &cur, &old.used_mask());
                    if dw.count_ones() >= 2 {
                        found.push(Report::TornUpdate {
                            sid: w.sid,
                            ssid: w.ssid,
                            pa: *pa,
                            kind: TornKind::MultiDword { dwords: dw },
                        });
                    }
                }
            }
            w.last = cur;
        }
        for r in found {
            Self::report(st, r);
        }
    }
}

/// The stale-use rule for one cached item `key` found `changed` with `sync`
/// CMD_SYNCs completed: remember the first observation, and return it once
/// `grace` (at least one) later syncs have completed (report due). An unchanged item forgets its record.
fn stale_due<K: core::hash::Hash + Eq>(
    map: &mut crate::cache::FastMap<K, u64>,
    key: K,
    changed: bool,
    sync: u64,
    grace: u32,
) -> Option<u64> {
    if !changed {
        if !map.is_empty() {
            map.remove(&key);
        }
        return None;
    }
    let first = *map.entry(key).or_insert(sync);
    (sync >= first + grace.max(1) as u64).then_some(first)
}

fn changed_dwords(old: &[u64; 8], new: &[u64; 8], used: &[u64; 8]) -> u8 {
    let mut m = 0u8;
    for i in 0..8 {
        if (old[i] ^ new[i]) & used[i] != 0 {
            m |= 1 << i;
        }
    }
    m
}
