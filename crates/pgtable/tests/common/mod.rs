//! Shared helpers of the io-pgtable integration tests.
#![allow(dead_code)]

use std::sync::Mutex;

use io_pgtable::{FlushOps, IotlbGather};
use iommu_types::Iova;

/// One call a [`RecordingFlush`] saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlushCall {
    /// `tlb_flush_all`.
    All,
    /// `tlb_flush_walk(iova, size, granule)`.
    Walk(u64, u64, u64),
    /// `tlb_add_page(iova, granule)`.
    AddPage(u64, u64),
}

/// Flush ops that record every call (and behave like `NoFlush` for the gather).
#[derive(Debug, Default)]
pub struct RecordingFlush {
    /// Calls in order.
    pub calls: Mutex<Vec<FlushCall>>,
}

impl RecordingFlush {
    /// Take the calls recorded so far.
    pub fn take(&self) -> Vec<FlushCall> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }
}

impl FlushOps for RecordingFlush {
    fn tlb_flush_all(&self) {
        self.calls.lock().unwrap().push(FlushCall::All);
    }
    fn tlb_flush_walk(&self, iova: Iova, size: u64, granule: u64) {
        self.calls
            .lock()
            .unwrap()
            .push(FlushCall::Walk(iova.0, size, granule));
    }
    fn tlb_add_page(&self, gather: &mut IotlbGather, iova: Iova, granule: u64) {
        self.calls
            .lock()
            .unwrap()
            .push(FlushCall::AddPage(iova.0, granule));
        gather.add_leaf(iova, granule);
    }
}

/// Flush ops that note, at every call, how many pages the table's memory still has in
/// use: a test can then tell whether table pages were freed *before* the walk caches
/// were told (seed 001), which a plain call log cannot show.
#[derive(Debug)]
pub struct PagesAtFlush {
    /// The memory the table lives in.
    pub mem: std::sync::Arc<iommu_memory::SimMemory>,
    /// Calls in order, each with `pages_in_use` at the time of the call.
    pub calls: Mutex<Vec<(FlushCall, u64)>>,
}

impl PagesAtFlush {
    /// Watch `mem`.
    pub fn new(mem: std::sync::Arc<iommu_memory::SimMemory>) -> Self {
        Self {
            mem,
            calls: Mutex::new(Vec::new()),
        }
    }

    /// Take the calls recorded so far.
    pub fn take(&self) -> Vec<(FlushCall, u64)> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }

    fn note(&self, call: FlushCall) {
        let pages = self.mem.stats().pages_in_use;
        self.calls.lock().unwrap().push((call, pages));
    }
}

impl FlushOps for PagesAtFlush {
    fn tlb_flush_all(&self) {
        self.note(FlushCall::All);
    }
    fn tlb_flush_walk(&self, iova: Iova, size: u64, granule: u64) {
        self.note(FlushCall::Walk(iova.0, size, granule));
    }
    fn tlb_add_page(&self, gather: &mut IotlbGather, iova: Iova, granule: u64) {
        self.note(FlushCall::AddPage(iova.0, granule));
        gather.add_leaf(iova, granule);
    }
}
