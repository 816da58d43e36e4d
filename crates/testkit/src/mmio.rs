//! A recording [`Mmio`] wrapper: forwards every access to an inner `Mmio` and keeps
//! a log, so tests can assert the exact register sequence a driver produced
//! (e.g. "CR0 written, then CR0ACK polled").

use std::sync::Mutex;

use iommu_types::Mmio;

/// One register access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// 32-bit read: offset, value returned.
    Read32(u64, u32),
    /// 32-bit write: offset, value.
    Write32(u64, u32),
    /// 64-bit read: offset, value returned.
    Read64(u64, u64),
    /// 64-bit write: offset, value.
    Write64(u64, u64),
}

impl Access {
    /// The register offset.
    pub fn offset(&self) -> u64 {
        match *self {
            Access::Read32(o, _)
            | Access::Write32(o, _)
            | Access::Read64(o, _)
            | Access::Write64(o, _) => o,
        }
    }

    /// Whether it is a write.
    pub fn is_write(&self) -> bool {
        matches!(self, Access::Write32(..) | Access::Write64(..))
    }
}

/// Wraps an `Mmio` and records every access.
#[derive(Debug)]
pub struct RecordingMmio<M> {
    inner: M,
    log: Mutex<Vec<Access>>,
}

impl<M: Mmio> RecordingMmio<M> {
    /// Wrap `inner`.
    pub fn new(inner: M) -> Self {
        Self {
            inner,
            log: Mutex::new(Vec::new()),
        }
    }

    /// The wrapped `Mmio`.
    pub fn inner(&self) -> &M {
        &self.inner
    }

    /// A copy of the log.
    pub fn log(&self) -> Vec<Access> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Take and clear the log.
    pub fn take_log(&self) -> Vec<Access> {
        std::mem::take(&mut *self.log.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Writes only, as (offset, value) with 32-bit values widened.
    pub fn writes(&self) -> Vec<(u64, u64)> {
        self.log()
            .into_iter()
            .filter_map(|a| match a {
                Access::Write32(o, v) => Some((o, v as u64)),
                Access::Write64(o, v) => Some((o, v)),
                _ => None,
            })
            .collect()
    }

    fn push(&self, a: Access) {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).push(a);
    }
}

impl<M: Mmio> Mmio for RecordingMmio<M> {
    fn read32(&self, offset: u64) -> u32 {
        let v = self.inner.read32(offset);
        self.push(Access::Read32(offset, v));
        v
    }
    fn write32(&self, offset: u64, value: u32) {
        self.push(Access::Write32(offset, value));
        self.inner.write32(offset, value);
    }
    fn read64(&self, offset: u64) -> u64 {
        let v = self.inner.read64(offset);
        self.push(Access::Read64(offset, v));
        v
    }
    fn write64(&self, offset: u64, value: u64) {
        self.push(Access::Write64(offset, value));
        self.inner.write64(offset, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    struct Reg(AtomicU32);
    impl Mmio for Reg {
        fn read32(&self, _: u64) -> u32 {
            self.0.load(Ordering::Relaxed)
        }
        fn write32(&self, _: u64, v: u32) {
            self.0.store(v, Ordering::Relaxed)
        }
    }

    #[test]
    fn records_in_order_and_forwards() {
        let m = RecordingMmio::new(Reg(AtomicU32::new(0)));
        m.write32(0x20, 5);
        assert_eq!(m.read32(0x24), 5);
        m.write64(0x80, 0x1_0000_0002);
        assert_eq!(
            m.log(),
            vec![
                Access::Write32(0x20, 5),
                Access::Read32(0x24, 5),
                Access::Write64(0x80, 0x1_0000_0002)
            ]
        );
        assert_eq!(m.writes(), vec![(0x20, 5), (0x80, 0x1_0000_0002)]);
        assert!(m.take_log().len() == 3 && m.log().is_empty());
    }
}
