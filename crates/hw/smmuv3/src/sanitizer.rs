//! The architectural sanitizer: typed reports of driver behaviour that the
//! architecture leaves UNPREDICTABLE or that only works by luck on forgiving
//! hardware (issue 3 "Architectural sanitizer").
//!
//! Method and limits:
//! * **Stale use.** Every TLB / walk-cache / config-cache entry remembers the
//!   descriptor words (address, value) it was built from. Each time a translation
//!   uses a cached entry, and at every CMD_SYNC for every entry still cached after
//!   the sync's invalidations, those words are re-read; a difference (ignoring the
//!   bits hardware itself may update: AF, and AP\[2\]/S2AP\[1\] under DBM, and the
//!   unused bits of an STE/CD) is a *change*, and the model records how many
//!   CMD_SYNCs had completed when it first saw it. The architecture lets the SMMU
//!   keep using cached state until the invalidation that follows the stores has
//!   been completed by a CMD_SYNC, so a use of the old value in that window is
//!   legal and silent. A use after a *later* CMD_SYNC has completed (the change
//!   was there before that sync, yet the entry survived it) means the driver
//!   forgot the invalidation or the sync → [`Report::StaleTlb`] /
//!   [`Report::StaleConfig`], carrying both sync counts. The record is dropped
//!   when the descriptor is re-read by a walk / fetch or found back at its cached
//!   value. Limit: the model cannot tell which CPU's sync it is, so with several
//!   CPUs an unrelated CMD_SYNC that completes between one CPU's store and its own
//!   invalidation closes the window early (a correct multi-CPU driver can be
//!   reported if it translates through that gap). For such callers
//!   `SmmuConfig::stale_grace_syncs` raises the number of syncs required, and
//!   `Smmu::sanitizer_audit` (called at a quiescent point, after every update
//!   and its sync) reports every entry still cached with a changed descriptor,
//!   whatever the sync counts. In lazy (flush-queue) mode leaf
//!   invalidation is deferred on purpose, so stale TLB uses after unrelated syncs
//!   are reported: they are real stale translations the policy accepts, and the
//!   report's sync counts let a caller measure the window.
//! * **TLB conflict.** On inserting a TLB entry, entries of the same tag whose ranges
//!   overlap it and that give a different output are reported.
//! * **ASID conflict.** On caching a CD, other cached CDs with the same VMID and ASID
//!   but different TTB0/TTB1 are reported.
//! * **Torn update.** The model cannot see CPU stores, so it *observes*: every STE
//!   and CD it has ever fetched is watched, and at every command consumption and
//!   every translation all watched entries are re-read. A live entry (V=1) that is
//!   now illegal, or that changed in two or more dwords that the previously
//!   observed value relied on (the "used bits" of reference §8), is a torn update
//!   the SMMU could have fetched half-written. Limit: changes between two
//!   observation points are merged, so a driver that writes several steps without
//!   any command or translation in between is judged on the combined change (which
//!   is exactly what a correct driver never does: each step ends with CFGI + SYNC).
//!   CD watches of a stream are dropped when its STE or all its CDs are invalidated
//!   (the CD table may be freed afterwards).
//! * **Speculation.** With `SmmuConfig::speculative_fetch` the model also fetches
//!   (and so caches and watches) valid STEs, their L1 descriptors and CD 0 that
//!   no traffic used (see the `speculate` module), so both checks above cover
//!   streams without traffic; a stale use found by a speculative fetch is
//!   reported like one found by a translation.

/// Kind of torn update.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TornKind {
    /// The live entry became illegal (it would raise C_BAD_STE / C_BAD_CD).
    Illegal(&'static str),
    /// Two or more dwords relied upon changed between observations.
    MultiDword {
        /// Bitmask of the dwords that changed in used bits.
        dwords: u8,
    },
}

/// One sanitizer finding.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Report {
    /// A translation used a TLB or walk-cache entry whose descriptor had changed
    /// in memory before a CMD_SYNC that has since completed (the invalidation was
    /// missing or came after that sync).
    StaleTlb {
        /// StreamID.
        sid: u32,
        /// SubstreamID.
        ssid: Option<u32>,
        /// VMID tag.
        vmid: u16,
        /// ASID tag.
        asid: u16,
        /// Input address of the translation.
        addr: u64,
        /// Address of the changed descriptor.
        desc_pa: u64,
        /// Value the cached entry was built from.
        cached: u64,
        /// Value now in memory.
        current: u64,
        /// CMD_SYNCs completed when the change was first observed.
        observed_sync: u64,
        /// CMD_SYNCs completed at this use (always greater than `observed_sync`).
        sync: u64,
    },
    /// A translation (or a speculative fetch) used a cached STE / CD / L1
    /// descriptor that had changed in memory before a CMD_SYNC that has since
    /// completed (missing CFGI).
    StaleConfig {
        /// StreamID.
        sid: u32,
        /// SubstreamID (None for STE / L1 STD).
        ssid: Option<u32>,
        /// Address of the structure.
        pa: u64,
        /// CMD_SYNCs completed when the change was first observed.
        observed_sync: u64,
        /// CMD_SYNCs completed at this use (always greater than `observed_sync`).
        sync: u64,
    },
    /// Two TLB entries of the same tag overlap with different outputs.
    TlbConflict {
        /// StreamID of the translation that inserted the second entry.
        sid: u32,
        /// VMID tag.
        vmid: u16,
        /// ASID tag.
        asid: u16,
        /// Input address.
        addr: u64,
        /// Output the existing entry gives for `addr`.
        existing: u64,
        /// Output of the new entry.
        new: u64,
    },
    /// Two live CDs share an ASID within a VMID but point at different tables.
    AsidConflict {
        /// VMID.
        vmid: u16,
        /// ASID.
        asid: u16,
        /// First CD (sid, ssid index).
        a: (u32, u32),
        /// Second CD.
        b: (u32, u32),
        /// TTB0 of each.
        ttb: (u64, u64),
    },
    /// A live STE or CD observed in an illegal intermediate state.
    TornUpdate {
        /// StreamID.
        sid: u32,
        /// SubstreamID index for a CD, None for an STE.
        ssid: Option<u32>,
        /// Address of the structure.
        pa: u64,
        /// What was wrong.
        kind: TornKind,
    },
}

/// Bits hardware may change in a leaf descriptor (AF; AP\[2\] / S2AP\[1\] under DBM),
/// which the stale-use check ignores.
pub fn hw_managed_mask(d: u64) -> u64 {
    let mut m = crate::walk::desc::AF;
    if d & crate::walk::desc::DBM != 0 {
        m |= crate::walk::desc::AP2_OR_S2_WRITE;
    }
    m
}

/// Maximum reports kept (later ones are counted but dropped).
pub const MAX_REPORTS: usize = 4096;
