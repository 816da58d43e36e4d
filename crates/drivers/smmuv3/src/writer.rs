//! Hitless ("break-free") STE/CD update (`smmuv3.md` §8).
//!
//! An entry is 8 dwords but the CPU stores 64 bits at a time while the SMMU may
//! fetch the entry at any moment. [`write_entry`] orders the stores so the SMMU only
//! ever observes the old behaviour, the new behaviour, or (for a breaking update) an
//! invalid entry, issuing an invalidation + CMD_SYNC through [`EntryIo::sync`]
//! after every step that stored something.

use crate::Result;
use crate::cd::Cd;
use crate::ste::Ste;

/// Number of dwords in an STE or CD.
pub const ENTRY_DWORDS: usize = 8;

/// A kind of entry: how to compute the bits the SMMU uses for a value.
pub trait EntryKind {
    /// Used-bit mask of `e` (§8 step 1).
    fn used(e: &[u64; ENTRY_DWORDS]) -> [u64; ENTRY_DWORDS];
}

/// Stream table entries.
#[derive(Clone, Copy, Debug)]
pub struct SteKind;

impl EntryKind for SteKind {
    fn used(e: &[u64; ENTRY_DWORDS]) -> [u64; ENTRY_DWORDS] {
        Ste(*e).used()
    }
}

/// Context descriptors.
#[derive(Clone, Copy, Debug)]
pub struct CdKind;

impl EntryKind for CdKind {
    fn used(e: &[u64; ENTRY_DWORDS]) -> [u64; ENTRY_DWORDS] {
        Cd(*e).used()
    }
}

/// Access to one live entry and the invalidation that makes a change visible.
pub trait EntryIo {
    /// The entry as currently stored.
    fn read(&mut self) -> Result<[u64; ENTRY_DWORDS]>;
    /// Store dword `i` (a single 64-bit store).
    fn write_word(&mut self, i: usize, value: u64) -> Result<()>;
    /// Invalidate the entry for every user (CFGI_STE / CFGI_CD) and CMD_SYNC.
    fn sync(&mut self) -> Result<()>;
}

/// How an update was classified (§8 step 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateKind {
    /// Only unused bits change.
    Hitless,
    /// One critical dword, flipped atomically by a single store.
    OneCritical(usize),
    /// Two or more critical dwords: V=0 in between.
    Breaking,
}

/// Bitmask of critical dwords for moving `cur` to `target`.
pub fn critical_dwords<K: EntryKind>(
    cur: &[u64; ENTRY_DWORDS],
    target: &[u64; ENTRY_DWORDS],
) -> u8 {
    let cu = K::used(cur);
    let tu = K::used(target);
    let mut crit = 0u8;
    for i in 0..ENTRY_DWORDS {
        let mix = (cur[i] & cu[i]) | (target[i] & !cu[i]);
        if mix & tu[i] != target[i] {
            crit |= 1 << i;
        }
    }
    crit
}

/// Classify the update from `cur` to `target`.
pub fn classify<K: EntryKind>(
    cur: &[u64; ENTRY_DWORDS],
    target: &[u64; ENTRY_DWORDS],
) -> UpdateKind {
    let crit = critical_dwords::<K>(cur, target);
    match crit.count_ones() {
        0 => UpdateKind::Hitless,
        1 => UpdateKind::OneCritical(crit.trailing_zeros() as usize),
        _ => UpdateKind::Breaking,
    }
}

/// Store `want[range]` where it differs from `cur`, then sync if anything changed.
fn set_words<W: EntryIo>(
    io: &mut W,
    cur: &mut [u64; ENTRY_DWORDS],
    want: &[u64; ENTRY_DWORDS],
    range: core::ops::Range<usize>,
    syncs: &mut usize,
) -> Result<()> {
    let mut changed = false;
    for i in range {
        if cur[i] != want[i] {
            io.write_word(i, want[i])?;
            cur[i] = want[i];
            changed = true;
        }
    }
    if changed {
        io.sync()?;
        *syncs += 1;
    }
    Ok(())
}

/// Move the entry behind `io` to `target` hitlessly when possible (§8 step 3).
/// Returns the number of invalidate+sync steps issued.
///
/// `target` must be a legal entry that sets no bit outside its own used bits.
pub fn write_entry<K: EntryKind, W: EntryIo>(
    io: &mut W,
    target: &[u64; ENTRY_DWORDS],
) -> Result<usize> {
    let mut cur = io.read()?;
    let tu = K::used(target);
    if (0..ENTRY_DWORDS).any(|i| target[i] & !tu[i] != 0) {
        return Err(crate::Error::Invalid(
            "target entry sets bits outside its used mask",
        ));
    }
    let cu = K::used(&cur);
    let mut mix = [0u64; ENTRY_DWORDS];
    for i in 0..ENTRY_DWORDS {
        mix[i] = (cur[i] & cu[i]) | (target[i] & !cu[i]);
    }
    let mut syncs = 0;
    match classify::<K>(&cur, target) {
        UpdateKind::Hitless => set_words(io, &mut cur, target, 0..ENTRY_DWORDS, &mut syncs)?,
        UpdateKind::OneCritical(k) => {
            mix[k] = cur[k];
            set_words(io, &mut cur, &mix, 0..ENTRY_DWORDS, &mut syncs)?;
            set_words(io, &mut cur, target, k..k + 1, &mut syncs)?;
            set_words(io, &mut cur, target, 0..ENTRY_DWORDS, &mut syncs)?;
        }
        UpdateKind::Breaking => {
            // V lives in dword 0 for both STE and CD: clearing d0 makes it invalid.
            let mut brk = cur;
            brk[0] = 0;
            set_words(io, &mut cur, &brk, 0..1, &mut syncs)?;
            set_words(io, &mut cur, target, 1..ENTRY_DWORDS, &mut syncs)?;
            set_words(io, &mut cur, target, 0..1, &mut syncs)?;
        }
    }
    Ok(syncs)
}

/// A test double that checks, after every single store, that the SMMU could only
/// observe the start behaviour, the target behaviour, or an invalid entry.
#[cfg(test)]
pub(crate) mod recording {
    use super::*;
    use alloc::vec::Vec;

    /// Same behaviour: same used mask and same value in the used bits.
    pub fn same<K: EntryKind>(a: &[u64; ENTRY_DWORDS], b: &[u64; ENTRY_DWORDS]) -> bool {
        let ua = K::used(a);
        ua == K::used(b) && (0..ENTRY_DWORDS).all(|i| a[i] & ua[i] == b[i] & ua[i])
    }

    pub struct Recorder<K> {
        pub mem: [u64; ENTRY_DWORDS],
        pub start: [u64; ENTRY_DWORDS],
        pub target: [u64; ENTRY_DWORDS],
        pub syncs: usize,
        pub stores: Vec<(usize, u64)>,
        pub violations: usize,
        pub _k: core::marker::PhantomData<K>,
    }

    impl<K: EntryKind> Recorder<K> {
        pub fn new(start: [u64; ENTRY_DWORDS], target: [u64; ENTRY_DWORDS]) -> Self {
            Self {
                mem: start,
                start,
                target,
                syncs: 0,
                stores: Vec::new(),
                violations: 0,
                _k: core::marker::PhantomData,
            }
        }
    }

    impl<K: EntryKind> EntryIo for Recorder<K> {
        fn read(&mut self) -> Result<[u64; ENTRY_DWORDS]> {
            Ok(self.mem)
        }
        fn write_word(&mut self, i: usize, value: u64) -> Result<()> {
            self.mem[i] = value;
            self.stores.push((i, value));
            let invalid = K::used(&self.mem) == K::used(&[0; ENTRY_DWORDS]);
            if !(invalid || same::<K>(&self.mem, &self.start) || same::<K>(&self.mem, &self.target))
            {
                self.violations += 1;
            }
            Ok(())
        }
        fn sync(&mut self) -> Result<()> {
            self.syncs += 1;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::recording::*;
    use super::*;
    use crate::cd::CdCfg;
    use crate::ste::{S1Cfg, S2Cfg, SteConfig};

    fn s1(cd: u64, dss: u8, cdmax: u8) -> SteConfig {
        SteConfig::S1 {
            s1: S1Cfg {
                cd_table: cd,
                fmt: 0,
                cdmax,
                dss,
            },
            eats: 0,
        }
    }
    fn s2(vmid: u16, ttb: u64) -> S2Cfg {
        S2Cfg {
            vmid,
            vtcr: 0x2_3590 | 24,
            ttb,
        }
    }

    fn run_ste(a: &SteConfig, b: &SteConfig, ovr: bool) -> (UpdateKind, usize) {
        let start = Ste::from_config(a, ovr).0;
        let target = Ste::from_config(b, ovr).0;
        let mut r = Recorder::<SteKind>::new(start, target);
        let n = write_entry::<SteKind, _>(&mut r, &target).unwrap();
        assert_eq!(r.mem, target, "{a:?} -> {b:?} final entry");
        assert_eq!(
            r.violations, 0,
            "{a:?} -> {b:?} exposed an illegal mix: {:?}",
            r.stores
        );
        assert_eq!(n, r.syncs);
        (classify::<SteKind>(&start, &target), n)
    }

    #[test]
    fn bypass_to_abort_is_hitless_in_two_syncs() {
        assert_eq!(
            run_ste(&SteConfig::Bypass, &SteConfig::Abort, true),
            (UpdateKind::OneCritical(0), 2)
        );
        assert_eq!(
            run_ste(&SteConfig::Bypass, &SteConfig::Abort, false),
            (UpdateKind::OneCritical(0), 1)
        );
    }

    #[test]
    fn sync_counts_match_linux_kunit_expectations() {
        // Expectations of Linux's arm-smmu-v3 KUnit suite (hitless, N syncs), with
        // an SSID0 CD-table STE, ATS and SHCFG overrides as there.
        let cd = SteConfig::S1 {
            s1: S1Cfg {
                cd_table: 0x1000,
                fmt: 0,
                cdmax: 4,
                dss: 2,
            },
            eats: 1,
        };
        let s2v0 = SteConfig::S2 {
            s2: s2(0, 0x8000),
            eats: 1,
        };
        let ovr = true;
        assert_eq!(
            run_ste(&SteConfig::Bypass, &SteConfig::Abort, ovr),
            (UpdateKind::OneCritical(0), 2)
        );
        assert_eq!(
            run_ste(&SteConfig::Abort, &SteConfig::Bypass, ovr),
            (UpdateKind::OneCritical(0), 2)
        );
        assert_eq!(
            run_ste(&cd, &SteConfig::Abort, ovr),
            (UpdateKind::OneCritical(0), 2)
        );
        assert_eq!(
            run_ste(&SteConfig::Abort, &cd, ovr),
            (UpdateKind::OneCritical(0), 2)
        );
        // bypass <-> S1 is hitless (one critical dword), contrary to smmuv3.md §8.
        assert_eq!(
            run_ste(&cd, &SteConfig::Bypass, ovr),
            (UpdateKind::OneCritical(0), 3)
        );
        assert_eq!(
            run_ste(&SteConfig::Bypass, &cd, ovr),
            (UpdateKind::OneCritical(0), 3)
        );
        assert_eq!(
            run_ste(&s2v0, &SteConfig::Bypass, ovr),
            (UpdateKind::OneCritical(0), 2)
        );
        assert_eq!(
            run_ste(&SteConfig::Bypass, &s2v0, ovr),
            (UpdateKind::OneCritical(0), 2)
        );
        // S1 <-> S2 is hitless only while the VMID does not change (KUnit uses VMID 0);
        // with a real VMID (>= 1) dword 2 is critical too: breaking.
        assert_eq!(run_ste(&cd, &s2v0, ovr), (UpdateKind::OneCritical(0), 3));
        assert_eq!(run_ste(&s2v0, &cd, ovr), (UpdateKind::OneCritical(0), 3));
        let s2v5 = SteConfig::S2 {
            s2: s2(5, 0x8000),
            eats: 1,
        };
        assert_eq!(run_ste(&cd, &s2v5, ovr).0, UpdateKind::Breaking);
    }

    #[test]
    fn s1_s2_switch_is_breaking() {
        let a = s1(0x1000, 0, 0);
        let b = SteConfig::S2 {
            s2: s2(3, 0x8000),
            eats: 0,
        };
        assert_eq!(run_ste(&a, &b, false), (UpdateKind::Breaking, 3));
        assert_eq!(run_ste(&b, &a, false), (UpdateKind::Breaking, 3));
    }

    #[test]
    fn changing_only_pointers_is_hitless() {
        assert_eq!(
            run_ste(&s1(0x1000, 0, 0), &s1(0x2000, 0, 0), false).0,
            UpdateKind::OneCritical(0)
        );
        let a = SteConfig::S2 {
            s2: s2(3, 0x8000),
            eats: 0,
        };
        let b = SteConfig::S2 {
            s2: s2(3, 0x9000),
            eats: 0,
        };
        assert_eq!(run_ste(&a, &b, false), (UpdateKind::OneCritical(3), 1));
        assert_eq!(run_ste(&a, &a, false), (UpdateKind::Hitless, 0));
    }

    #[test]
    fn full_matrix_never_exposes_a_mix() {
        let cfgs = [
            SteConfig::Abort,
            SteConfig::Bypass,
            s1(0x1000, 0, 0),
            s1(0x3000, 2, 4),
            s1(0x3000, 1, 4),
            SteConfig::S2 {
                s2: s2(5, 0x8000),
                eats: 0,
            },
            SteConfig::Nested {
                s1: S1Cfg {
                    cd_table: 0x1000,
                    fmt: 0,
                    cdmax: 0,
                    dss: 0,
                },
                s2: s2(5, 0x8000),
                eats: 0,
            },
            SteConfig::Nested {
                s1: S1Cfg {
                    cd_table: 0x4000,
                    fmt: 0,
                    cdmax: 3,
                    dss: 2,
                },
                s2: s2(6, 0x9000),
                eats: 1,
            },
        ];
        for a in &cfgs {
            for b in &cfgs {
                for ovr in [false, true] {
                    run_ste(a, b, ovr);
                }
            }
        }
        // from an invalid entry every install is a single critical dword (d0).
        for b in &cfgs {
            let t = Ste::from_config(b, false).0;
            let mut r = Recorder::<SteKind>::new([0; 8], t);
            write_entry::<SteKind, _>(&mut r, &t).unwrap();
            assert_eq!(r.violations, 0);
            assert_eq!(r.stores.last().unwrap().0, 0, "d0 (V) written last");
        }
    }

    #[test]
    fn cd_updates() {
        let c = |asid, ttb| {
            Cd::s1(&CdCfg {
                asid,
                ttb0: ttb,
                t0sz: 16,
                tg0: 0,
                ir0: 1,
                or0: 1,
                sh0: 3,
                ips: 5,
                mair: 0x44ff,
                stall: false,
            })
            .0
        };
        // Changing the ASID and TTB0 touches two used dwords: breaking.
        let mut r = Recorder::<CdKind>::new(c(1, 0x1000), c(2, 0x2000));
        assert_eq!(write_entry::<CdKind, _>(&mut r, &c(2, 0x2000)).unwrap(), 3);
        assert_eq!(r.violations, 0);
        // TTB0 alone: one critical dword.
        let mut r = Recorder::<CdKind>::new(c(1, 0x1000), c(1, 0x2000));
        assert_eq!(write_entry::<CdKind, _>(&mut r, &c(1, 0x2000)).unwrap(), 1);
        // Invalid -> valid and back.
        let mut r = Recorder::<CdKind>::new([0; 8], c(1, 0x1000));
        write_entry::<CdKind, _>(&mut r, &c(1, 0x1000)).unwrap();
        assert_eq!(r.violations, 0);
        let mut r = Recorder::<CdKind>::new(c(1, 0x1000), [0; 8]);
        write_entry::<CdKind, _>(&mut r, &[0; 8]).unwrap();
        assert_eq!(r.violations, 0);
        assert_eq!(r.mem, [0; 8]);
    }

    #[test]
    fn a_naive_writer_would_be_caught() {
        // Writing S1 -> S2 in plain dword order exposes a mix: the recorder notices.
        let a = Ste::from_config(&s1(0x1000, 0, 0), false).0;
        let b = Ste::from_config(
            &SteConfig::S2 {
                s2: s2(3, 0x8000),
                eats: 0,
            },
            false,
        )
        .0;
        let mut r = Recorder::<SteKind>::new(a, b);
        for (i, w) in b.iter().enumerate() {
            r.write_word(i, *w).unwrap();
        }
        assert!(r.violations > 0);
    }

    #[test]
    fn target_with_stray_bits_is_refused() {
        let mut t = Ste::abort().0;
        t[3] = 0x1000;
        let mut r = Recorder::<SteKind>::new([0; 8], t);
        assert!(write_entry::<SteKind, _>(&mut r, &t).is_err());
        assert_eq!(r.mem, [0; 8], "nothing stored");
    }
}
