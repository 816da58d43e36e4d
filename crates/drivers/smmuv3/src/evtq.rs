//! The event queue: allocation and draining into typed fault reports
//! (`smmuv3.md` §1.6, §5).

use crate::lock::Mutex;
use alloc::sync::Arc;
use alloc::vec::Vec;
use iommu_types::{Mmio, PhysAddr, PhysMem};

use crate::Result;
use crate::event::{EVT_BYTES, EventRecord, FaultReport};
use crate::queue::QueueGeom;
use crate::regs::{off, queue};

/// The event queue of one SMMU.
pub struct Evtq {
    mmio: Arc<dyn Mmio>,
    mem: Arc<dyn PhysMem>,
    base: PhysAddr,
    geom: QueueGeom,
    /// (cons, overflows seen)
    state: Mutex<(u32, u64)>,
}

impl core::fmt::Debug for Evtq {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Evtq")
            .field("base", &self.base)
            .field("geom", &self.geom)
            .finish()
    }
}

impl Evtq {
    /// Allocate a queue of `1 << log2` records and program EVTQ_BASE/PROD/CONS.
    pub fn new(mmio: Arc<dyn Mmio>, mem: Arc<dyn PhysMem>, log2: u32) -> Result<Evtq> {
        let geom = QueueGeom::new(log2);
        let bytes = geom.entries() as u64 * EVT_BYTES;
        let base = mem.alloc_pages(bytes, bytes.next_power_of_two().max(4096))?;
        let mut b = [0u64];
        queue::BASE_LOG2SIZE.set(&mut b, log2 as u64);
        queue::BASE_ADDR.set(&mut b, base.0 >> 5);
        queue::BASE_ALLOC.set(&mut b, 1);
        mmio.write64(off::EVTQ_BASE, b[0]);
        mmio.write32(off::EVTQ_PROD, 0);
        mmio.write32(off::EVTQ_CONS, 0);
        Ok(Evtq {
            mmio,
            mem,
            base,
            geom,
            state: Mutex::new((0, 0)),
        })
    }

    /// Number of overflows observed so far (records lost by the SMMU).
    pub fn overflows(&self) -> u64 {
        self.state.lock().1
    }

    /// Read every pending record, advance EVTQ_CONS, acknowledge overflow.
    pub fn drain(&self) -> Result<Vec<FaultReport>> {
        let mut st = self.state.lock();
        let mut out = Vec::new();
        let prod_reg = self.mmio.read32(off::EVTQ_PROD);
        let prod = prod_reg & self.geom.ptr_mask();
        let mut cons = st.0;
        while !self.geom.is_empty(prod, cons) {
            let at = PhysAddr(self.base.0 + self.geom.idx(cons) as u64 * EVT_BYTES);
            let mut rec = [0u64; 4];
            self.mem.read_words(at, &mut rec)?;
            out.push(EventRecord(rec).decode());
            cons = self.geom.add(cons, 1);
        }
        let ovf = prod_reg & queue::OVF;
        let ack = self.mmio.read32(off::EVTQ_CONS) & queue::OVF;
        if ovf != ack {
            st.1 += 1;
        }
        st.0 = cons;
        self.mmio.write32(off::EVTQ_CONS, cons | ovf);
        Ok(out)
    }
}
