//! The command queue: batching, CMD_SYNC completion (MSI write to a driver-owned
//! word, or polling CMDQ_CONS), bounded polling, and CERROR recovery
//! (`smmuv3.md` §1.6, §1.7, §4.3, §4.5).
//!
//! Concurrency: one spin lock serialises producers **and** the wait for their sync
//! (a submitter holds the queue from its first command to its CMD_SYNC's
//! completion). This is simple and correct; its cost is that concurrent submitters
//! cannot batch into one another's syncs as Linux's lock-free queue does, so
//! throughput from N threads is at best that of one thread.

use crate::lock::Mutex;
use alloc::sync::Arc;
use alloc::vec::Vec;
use iommu_types::{Mmio, PhysAddr, PhysMem};

use crate::cmd::{Cmd, SyncCs};
use crate::queue::QueueGeom;
use crate::regs::{gerror, off, queue};
use crate::{Error, Result};

/// Commands per submission before the queue inserts its own CMD_SYNC.
pub const CMDQ_BATCH: usize = 64;

/// CMDQ_CONS.ERR codes (§4.5).
pub mod cerror {
    /// No error.
    pub const NONE: u8 = 0;
    /// Illegal command.
    pub const ILL: u8 = 1;
    /// Abort fetching a command.
    pub const ABT: u8 = 2;
    /// ATC invalidation timeout.
    pub const ATC_INV_SYNC: u8 = 3;
}

/// How CMD_SYNC completion is detected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncMode {
    /// CS=IRQ writing an increasing sequence number to a driver-owned word.
    Msi,
    /// CS=NONE; poll CMDQ_CONS past the sync.
    PollCons,
}

/// A command error the queue recovered from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CmdqErrorReport {
    /// CMDQ_CONS.ERR.
    pub code: u8,
    /// Queue index of the offending command.
    pub index: u32,
    /// The command as it was in the queue.
    pub cmd: [u64; 2],
}

struct State {
    /// Software copy of PROD (index + wrap).
    prod: u32,
    /// Last value read from CONS.
    cons: u32,
    /// Sequence number of the last MSI sync issued.
    seq: u32,
    /// Errors recovered so far.
    errors: Vec<CmdqErrorReport>,
    /// Commands submitted (including syncs).
    submitted: u64,
    /// Syncs issued.
    syncs: u64,
}

/// The command queue of one SMMU.
pub struct Cmdq {
    mmio: Arc<dyn Mmio>,
    mem: Arc<dyn PhysMem>,
    base: PhysAddr,
    geom: QueueGeom,
    mode: SyncMode,
    sync_word: PhysAddr,
    poll_limit: u32,
    state: Mutex<State>,
}

impl core::fmt::Debug for Cmdq {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Cmdq")
            .field("base", &self.base)
            .field("geom", &self.geom)
            .finish()
    }
}

impl Cmdq {
    /// Allocate a queue of `1 << log2` entries (and the MSI word) and program
    /// CMDQ_BASE/PROD/CONS. Enabling (CR0.CMDQEN) is the caller's job.
    pub fn new(
        mmio: Arc<dyn Mmio>,
        mem: Arc<dyn PhysMem>,
        log2: u32,
        mode: SyncMode,
        poll_limit: u32,
    ) -> Result<Cmdq> {
        let geom = QueueGeom::new(log2);
        let bytes = (geom.entries() as u64 * crate::cmd::CMD_BYTES).max(32);
        let base = mem.alloc_pages(bytes, bytes.next_power_of_two().max(4096))?;
        let sync_word = mem.alloc_pages(4096, 4096)?;
        let mut b = [0u64];
        queue::BASE_LOG2SIZE.set(&mut b, log2 as u64);
        queue::BASE_ADDR.set(&mut b, base.0 >> 5);
        queue::BASE_ALLOC.set(&mut b, 1);
        mmio.write64(off::CMDQ_BASE, b[0]);
        mmio.write32(off::CMDQ_PROD, 0);
        mmio.write32(off::CMDQ_CONS, 0);
        Ok(Cmdq {
            mmio,
            mem,
            base,
            geom,
            mode,
            sync_word,
            poll_limit,
            state: Mutex::new(State {
                prod: 0,
                cons: 0,
                seq: 0,
                errors: Vec::new(),
                submitted: 0,
                syncs: 0,
            }),
        })
    }

    /// The queue geometry.
    pub fn geom(&self) -> QueueGeom {
        self.geom
    }

    /// The completion mode.
    pub fn mode(&self) -> SyncMode {
        self.mode
    }

    /// Command errors recovered so far (CERROR_ILL etc.).
    pub fn errors(&self) -> Vec<CmdqErrorReport> {
        self.state.lock().errors.clone()
    }

    /// `(commands submitted, syncs issued)` so far.
    pub fn counts(&self) -> (u64, u64) {
        let s = self.state.lock();
        (s.submitted, s.syncs)
    }

    fn slot(&self, p: u32) -> PhysAddr {
        PhysAddr(self.base.0 + self.geom.idx(p) as u64 * crate::cmd::CMD_BYTES)
    }

    fn read_cons(&self, st: &mut State) -> u32 {
        let c = self.mmio.read32(off::CMDQ_CONS);
        st.cons = c & self.geom.ptr_mask();
        c
    }

    /// Recover from an active command-queue error, if any (Linux
    /// `arm_smmu_cmdq_skip_err`): report it, replace an illegal command with a
    /// CMD_SYNC, and acknowledge GERRORN so consumption resumes.
    fn handle_error(&self, st: &mut State) -> Result<bool> {
        let g = self.mmio.read32(off::GERROR);
        let gn = self.mmio.read32(off::GERRORN);
        if (g ^ gn) & gerror::CMDQ_ERR == 0 {
            return Ok(false);
        }
        let cons = self.mmio.read32(off::CMDQ_CONS);
        let code = queue::CONS_ERR.get_word(cons as u64) as u8;
        let at = self.slot(cons & self.geom.ptr_mask());
        let mut bad = [0u64; 2];
        self.mem.read_words(at, &mut bad)?;
        st.errors.push(CmdqErrorReport {
            code,
            index: self.geom.idx(cons),
            cmd: bad,
        });
        if code == cerror::ILL {
            let sync = Cmd::Sync {
                cs: SyncCs::None,
                msi_addr: 0,
                msi_data: 0,
            }
            .encode()?;
            self.mem.write_words(at, &sync)?;
        }
        // Acknowledge only CMDQ_ERR: toggle our copy of that bit.
        self.mmio.write32(off::GERRORN, gn ^ gerror::CMDQ_ERR);
        Ok(true)
    }

    fn wait_space(&self, st: &mut State, n: u32) -> Result<()> {
        for _ in 0..self.poll_limit {
            self.read_cons(st);
            if self.geom.space(st.prod, st.cons) >= n {
                return Ok(());
            }
            self.handle_error(st)?;
            core::hint::spin_loop();
        }
        Err(Error::Timeout("command queue space"))
    }

    fn write_cmd(&self, st: &mut State, w: &[u64; 2]) -> Result<()> {
        self.mem.write_words(self.slot(st.prod), w)?;
        st.prod = self.geom.add(st.prod, 1);
        st.submitted += 1;
        Ok(())
    }

    /// Submit raw command words (possibly illegal: tests use it) followed by a
    /// CMD_SYNC, and wait for the sync to complete.
    pub fn submit_raw(&self, cmds: &[[u64; 2]]) -> Result<()> {
        let mut st = self.state.lock();
        let cap = (self.geom.entries() as usize)
            .saturating_sub(1)
            .clamp(1, CMDQ_BATCH);
        let chunks: Vec<&[[u64; 2]]> = if cmds.is_empty() {
            alloc::vec![&cmds[..0]]
        } else {
            cmds.chunks(cap).collect()
        };
        for chunk in chunks {
            self.wait_space(&mut st, chunk.len() as u32 + 1)?;
            for w in chunk {
                self.write_cmd(&mut st, w)?;
            }
            self.sync_locked(&mut st)?;
        }
        Ok(())
    }

    /// Submit commands in batches of at most [`CMDQ_BATCH`], each batch ending with
    /// a CMD_SYNC, and wait for completion.
    pub fn submit(&self, cmds: &[Cmd]) -> Result<()> {
        let mut words = Vec::with_capacity(cmds.len());
        for c in cmds {
            words.push(c.encode()?);
        }
        self.submit_raw(&words)
    }

    fn sync_locked(&self, st: &mut State) -> Result<()> {
        self.wait_space(st, 1)?;
        let sync = match self.mode {
            SyncMode::Msi => {
                st.seq = st.seq.wrapping_add(1);
                Cmd::Sync {
                    cs: SyncCs::Irq,
                    msi_addr: self.sync_word.0,
                    msi_data: st.seq,
                }
            }
            SyncMode::PollCons => Cmd::Sync {
                cs: SyncCs::None,
                msi_addr: 0,
                msi_data: 0,
            },
        };
        let at = st.prod;
        self.write_cmd(st, &sync.encode()?)?;
        st.syncs += 1;
        self.mmio.write32(off::CMDQ_PROD, st.prod);
        for _ in 0..self.poll_limit {
            let done = match self.mode {
                SyncMode::Msi => self.mem.read_u32(self.sync_word)? == st.seq,
                SyncMode::PollCons => {
                    self.read_cons(st);
                    self.geom.passed(at, st.cons)
                }
            };
            if done {
                return Ok(());
            }
            self.handle_error(st)?;
            core::hint::spin_loop();
        }
        Err(Error::Timeout("CMD_SYNC completion"))
    }
}
