//! Per-device IOMMU capabilities (Linux `enum iommu_cap`, `device_iommu_capable`;
//! reference `software.md` §6.4, §6.5, seed 004).

/// A capability a driver reports per device through [`crate::IommuDriver::capable`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Capability {
    /// `Prot::CACHE` gives DMA coherent with the CPU caches for this device.
    CacheCoherency,
    /// `Prot::NOEXEC` is honoured.
    NoExec,
    /// DMA was blocked before the OS took over.
    PreBootProtection,
    /// `enforce_cache_coherency()` can succeed for a domain holding this device
    /// (No-Snoop is blocked or the device is canwbs).
    EnforceCacheCoherency,
    /// Lazy invalidation through a flush queue (DMA-FQ) is acceptable.
    DeferredFlush,
    /// Hardware dirty tracking is available.
    DirtyTracking,
    /// Interrupt remapping / MSI isolation is present: a device cannot forge MSIs
    /// for other devices (Linux's isolated-MSI test, formerly `IOMMU_CAP_INTR_REMAP`).
    IntrRemap,
}

impl Capability {
    /// Every capability, in Linux's enum order (with `IntrRemap` last).
    pub const ALL: [Capability; 7] = [
        Capability::CacheCoherency,
        Capability::NoExec,
        Capability::PreBootProtection,
        Capability::EnforceCacheCoherency,
        Capability::DeferredFlush,
        Capability::DirtyTracking,
        Capability::IntrRemap,
    ];

    /// The name Linux gives the capability.
    pub const fn name(self) -> &'static str {
        match self {
            Capability::CacheCoherency => "CACHE_COHERENCY",
            Capability::NoExec => "NOEXEC",
            Capability::PreBootProtection => "PRE_BOOT_PROTECTION",
            Capability::EnforceCacheCoherency => "ENFORCE_CACHE_COHERENCY",
            Capability::DeferredFlush => "DEFERRED_FLUSH",
            Capability::DirtyTracking => "DIRTY_TRACKING",
            Capability::IntrRemap => "INTR_REMAP",
        }
    }
}
