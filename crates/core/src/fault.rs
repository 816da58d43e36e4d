//! Fault reports from drivers, routed to observers the simulator and tests read
//! (Linux `report_iommu_fault` / `iommu_report_device_fault`; the SMMUv3 event
//! codes are in `smmuv3.md` and `software.md` §8.3).

use crate::device::{DeviceId, IommuId};

/// Why a translation faulted, as a driver decoded it from the hardware record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// No valid translation (SMMUv3 F_TRANSLATION).
    Translation,
    /// The translation forbids this access (F_PERMISSION).
    Permission,
    /// The access flag was clear (F_ACCESS).
    AccessFlag,
    /// The address is outside the configured address size (F_ADDR_SIZE).
    AddressSize,
    /// The stream is disabled or unknown (F_STREAM_DISABLED, C_BAD_STREAMID).
    BadStream,
    /// Malformed configuration structures (C_BAD_STE, C_BAD_CD, ...).
    BadConfig,
    /// An external abort on a table walk or the access.
    External,
    /// Anything else, by raw event code.
    Other,
}

/// The access that faulted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FaultAccess {
    /// A read (false) or a write (true).
    pub write: bool,
    /// An instruction fetch.
    pub exec: bool,
    /// A privileged access.
    pub privileged: bool,
}

/// One fault as a driver reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FaultReport {
    /// The IOMMU instance that raised it.
    pub iommu: IommuId,
    /// The StreamID of the faulting transaction.
    pub stream_id: u32,
    /// The SubstreamID / PASID, if the transaction carried one.
    pub pasid: Option<u32>,
    /// The faulting input address.
    pub iova: u64,
    /// The decoded reason.
    pub kind: FaultKind,
    /// The access.
    pub access: FaultAccess,
    /// The raw hardware event code (SMMUv3 event ID).
    pub code: u8,
    /// The device owning the StreamID, filled in by the core's router (drivers leave
    /// it `None`).
    pub device: Option<DeviceId>,
}

/// Something that wants to see faults (the simulator's oracle, a test, a VMM's
/// fault queue).
pub trait FaultObserver: Send + Sync {
    /// Called once per routed fault, in report order per driver thread.
    fn on_fault(&self, fault: &FaultReport);
}

#[cfg(feature = "std")]
pub use router::{FaultLog, FaultRouter};

#[cfg(feature = "std")]
mod router {
    use super::{FaultObserver, FaultReport};
    use crate::device::{DeviceId, IommuId};
    use alloc::collections::BTreeMap;
    use alloc::sync::Arc;
    use alloc::vec::Vec;
    use std::sync::{Mutex, RwLock};

    /// Routes driver fault reports to observers, resolving StreamIDs to devices.
    ///
    /// A driver gets the router from [`crate::IommuCore::fault_router`] and calls
    /// [`FaultRouter::report`] from its event-queue handler.
    #[derive(Default)]
    pub struct FaultRouter {
        streams: RwLock<BTreeMap<(IommuId, u32), DeviceId>>,
        observers: RwLock<Vec<Arc<dyn FaultObserver>>>,
    }

    impl core::fmt::Debug for FaultRouter {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            f.debug_struct("FaultRouter").finish_non_exhaustive()
        }
    }

    impl FaultRouter {
        /// A router with no observers.
        pub fn new() -> Self {
            Self::default()
        }

        /// Add an observer; every later report reaches it.
        pub fn add_observer(&self, obs: Arc<dyn FaultObserver>) {
            self.observers
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .push(obs);
        }

        /// Report a fault: resolve the device from the StreamID and deliver it to
        /// every observer. Returns the routed report.
        pub fn report(&self, mut fault: FaultReport) -> FaultReport {
            fault.device = self
                .streams
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(&(fault.iommu, fault.stream_id))
                .copied();
            let obs = self
                .observers
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            for o in &obs {
                o.on_fault(&fault);
            }
            fault
        }

        pub(crate) fn add_streams(&self, iommu: IommuId, sids: &[u32], dev: DeviceId) {
            let mut m = self.streams.write().unwrap_or_else(|e| e.into_inner());
            for &s in sids {
                m.insert((iommu, s), dev);
            }
        }

        pub(crate) fn remove_streams(&self, iommu: IommuId, sids: &[u32]) {
            let mut m = self.streams.write().unwrap_or_else(|e| e.into_inner());
            for s in sids {
                m.remove(&(iommu, *s));
            }
        }

        /// The device registered for a StreamID of an instance.
        pub fn stream_owner(&self, iommu: IommuId, sid: u32) -> Option<DeviceId> {
            self.streams
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(&(iommu, sid))
                .copied()
        }
    }

    /// An observer that keeps every fault it sees (bounded), for tests and reports.
    #[derive(Debug)]
    pub struct FaultLog {
        cap: usize,
        inner: Mutex<(Vec<FaultReport>, u64)>,
    }

    impl FaultLog {
        /// A log keeping at most `cap` reports; later ones are counted as lost.
        pub fn new(cap: usize) -> Self {
            Self {
                cap,
                inner: Mutex::new((Vec::new(), 0)),
            }
        }

        /// Remove and return the kept reports.
        pub fn drain(&self) -> Vec<FaultReport> {
            core::mem::take(&mut self.inner.lock().unwrap_or_else(|e| e.into_inner()).0)
        }

        /// How many reports did not fit.
        pub fn lost(&self) -> u64 {
            self.inner.lock().unwrap_or_else(|e| e.into_inner()).1
        }
    }

    impl FaultObserver for FaultLog {
        fn on_fault(&self, fault: &FaultReport) {
            let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            if g.0.len() < self.cap {
                g.0.push(*fault);
            } else {
                g.1 += 1;
            }
        }
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use alloc::sync::Arc;

    fn fault(sid: u32) -> FaultReport {
        FaultReport {
            iommu: IommuId(0),
            stream_id: sid,
            pasid: None,
            iova: 0x1000,
            kind: FaultKind::Translation,
            access: FaultAccess::default(),
            code: 0x10,
            device: None,
        }
    }

    #[test]
    fn router_resolves_streams_and_bounds_the_log() {
        let r = FaultRouter::new();
        let log = Arc::new(FaultLog::new(2));
        r.add_observer(log.clone());
        r.add_streams(IommuId(0), &[5, 6], DeviceId(9));
        assert_eq!(r.report(fault(6)).device, Some(DeviceId(9)));
        assert_eq!(r.report(fault(7)).device, None);
        r.report(fault(5));
        let got = log.drain();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].device, Some(DeviceId(9)));
        assert_eq!(log.lost(), 1);
        r.remove_streams(IommuId(0), &[5, 6]);
        assert_eq!(r.stream_owner(IommuId(0), 5), None);
    }
}
