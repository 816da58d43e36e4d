//! Counters the simulator and tests read: how the allocator and the flush queues
//! were exercised.

/// Snapshot of an [`IovaDomain`](crate::IovaDomain)'s counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IovaStats {
    /// Fast-path allocations served from a per-CPU magazine or the depot.
    pub rcache_hits: u64,
    /// Fast-path allocations of a cached order that found no fitting pfn.
    pub rcache_misses: u64,
    /// Frees kept in a magazine instead of the tree.
    pub rcache_inserts: u64,
    /// Ranges inserted by a tree walk.
    pub tree_allocs: u64,
    /// Ranges removed from the tree.
    pub tree_frees: u64,
    /// Tree allocations that failed (including the `max32_alloc_size` fast fails).
    pub tree_failures: u64,
    /// Of those, the ones refused at once because of `max32_alloc_size`.
    pub max32_fast_fails: u64,
    /// Allocations that failed for good (returned an error to the caller).
    pub alloc_failures: u64,
    /// Times every CPU's cache and the depot were flushed back to the tree after a
    /// failed allocation.
    pub rcache_flushes: u64,
    /// Full magazines moved to a depot.
    pub depot_pushes: u64,
    /// Depot magazines freed back to the tree by the shrinking work.
    pub depot_shrinks: u64,
    /// Devices that gave up the 32-bit-first attempt after it failed.
    pub dac_fallbacks: u64,
    /// Ranges currently in the tree (allocated, cached or reserved).
    pub tree_nodes: u64,
    /// Pfns currently held in magazines and depots.
    pub cached_pfns: u64,
}

/// Snapshot of a [`FlushQueue`](crate::FlushQueue)'s counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FqStats {
    /// Entries queued.
    pub queued: u64,
    /// Entries freed after a completed flush.
    pub freed: u64,
    /// Flushes done because a ring was full.
    pub flushes_full: u64,
    /// Flushes done by the timeout.
    pub flushes_timeout: u64,
    /// Flushes requested explicitly (`flush_all`, teardown).
    pub flushes_explicit: u64,
    /// Times the timer was armed.
    pub timer_arms: u64,
    /// The largest number of entries one ring held.
    pub max_occupancy: u64,
    /// Entries queued now, over all rings.
    pub occupancy: u64,
}
