//! Speculative configuration fetch (issue 3 "configuration may be fetched
//! speculatively"; reference `smmuv3.md` §6: anything the SMMU may cache it may
//! cache at any time, whether or not traffic asked for it).
//!
//! Runs only with the sanitizer on (`SmmuConfig::speculative_fetch` slots per
//! point, 0 = off), at every command consumption and every translation, right
//! after the torn-update observation (so an entry that was torn since the last
//! point is judged on its old watched value before a re-fetch replaces it).
//! At each point the model examines `speculative_fetch` consecutive stream-table
//! slots of a sweep that starts at a seeded position and wraps around the table,
//! plus one slot chosen by a seeded xorshift generator. For each slot whose STE
//! is valid (V=1) and not already cached it fetches and caches the STE exactly
//! as traffic would (through the cached or freshly read L1 descriptor of a
//! two-level table, which is cached too), watches it for torn updates, and then
//! fetches CD 0 of a stage-1 STE (with its L1 CD descriptor). A two-level sweep
//! skips the rest of an L1 span that is invalid or beyond the descriptor's SPAN.
//!
//! Consequences a driver must live with (as on silicon): an STE / L1 descriptor
//! no traffic ever used can still be cached, so a non-hitless rewrite of it is
//! reported as a torn update, and a change to it without CFGI (CFGI_STE Leaf=0
//! for an L1 descriptor) is used stale after the next CMD_SYNC. Limit: the sweep
//! covers `speculative_fetch` slots per point, so a large sparse table is
//! covered only after 2^LOG2SIZE / `speculative_fetch` points.

use iommu_types::PhysAddr;

use crate::Smmu;
use crate::regs::{cr0, strtab};
use crate::smmu::State;
use crate::ste::{self, SteConfig};

impl Smmu {
    /// One speculation point (see the module doc).
    pub(crate) fn speculate(&self, st: &mut State) {
        let n = self.cfg.speculative_fetch;
        if n == 0 || cr0::SMMUEN.get_in(st.regs.cr0 as u64) == 0 {
            return;
        }
        let cfgr = st.regs.strtab_cfg as u64;
        let log2size = (strtab::CFG_LOG2SIZE.get_in(cfgr) as u32).min(self.cfg.sid_bits);
        let slots = 1u64 << log2size;
        let mut covered = 0u64;
        for _ in 0..n {
            if covered >= slots {
                break; // the whole table was swept at this point
            }
            let sid = st.spec_cursor & (slots - 1);
            let next = self.speculate_sid(st, sid as u32).max(1);
            st.spec_cursor = sid + next;
            covered += next;
        }
        let mut x = st.spec_rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        st.spec_rng = x;
        let _ = self.speculate_sid(st, (x & (slots - 1)) as u32);
    }

    /// Examine one stream-table slot; returns how many slots the sweep may skip
    /// (the rest of an unusable L1 span, else 1).
    fn speculate_sid(&self, st: &mut State, sid: u32) -> u64 {
        let cfgr = st.regs.strtab_cfg as u64;
        let base = strtab::BASE_ADDR.get_in(st.regs.strtab_base) << 6;
        let ste_pa =
            if strtab::CFG_FMT.get_in(cfgr) == strtab::FMT_2LVL && self.cfg.two_level_strtab {
                let split = strtab::CFG_SPLIT.get_in(cfgr) as u32;
                let split = if matches!(split, 6 | 8 | 10) {
                    split
                } else {
                    6
                };
                let l1idx = sid >> split;
                let l2idx = sid & ((1u32 << split) - 1);
                let rest = ((1u64 << split) - l2idx as u64).max(1);
                // The descriptor hardware would use: the cached one if any, else
                // a fresh fetch, cached when valid (even if the STE is cached).
                let d = match st.l1std.peek(&l1idx) {
                    Some(&(_, d)) => d,
                    None => {
                        let l1pa = base + l1idx as u64 * 8;
                        let Ok(d) = self.mem.read_u64(PhysAddr(l1pa)) else {
                            return rest;
                        };
                        if (1..=12).contains(&ste::l1::SPAN.get_in(d)) {
                            st.stale_cfg_since.remove(&l1pa);
                            let saved = st.l1std.counters;
                            st.l1std.insert(l1idx, (l1pa, d));
                            st.l1std.counters = saved;
                        }
                        d
                    }
                };
                let span = ste::l1::SPAN.get_in(d) as u32;
                if span == 0 || span > 12 || (l2idx as u64) >> (span - 1) != 0 {
                    return rest;
                }
                (ste::l1::L2PTR.get_in(d) << 6) + l2idx as u64 * ste::STE_SIZE
            } else {
                base + sid as u64 * ste::STE_SIZE
            };
        if st.ste.peek(&sid).is_some() {
            return 1;
        }
        match self.mem.read_u64(PhysAddr(ste_pa)) {
            Ok(d0) if ste::fields::V.get_in(d0) != 0 => {}
            _ => return 1,
        }
        // Fetch and cache exactly as traffic would (errors are not recorded:
        // a speculative fetch raises no event). The lookup counters describe
        // traffic, so they are left as they were.
        let saved = (
            st.tlb.counters,
            st.wc.counters,
            st.ste.counters,
            st.cd.counters,
            st.l1std.counters,
            st.l1cd.counters,
            st.stats.walk_reads,
        );
        if let Ok(info) = self.get_ste(st, sid) {
            if let SteConfig::Translate { s1: Some(s1), s2 } = info.config {
                if st.cd.peek(&(sid, 0)).is_none() {
                    let _ = self.get_cd(st, sid, &s1, 0, s2.as_ref(), info.vmid);
                }
            }
        }
        (
            st.tlb.counters,
            st.wc.counters,
            st.ste.counters,
            st.cd.counters,
            st.l1std.counters,
            st.l1cd.counters,
            st.stats.walk_reads,
        ) = saved;
        1
    }
}
