//! An executable ARM SMMUv3 hardware model (issue 3), driven exactly as silicon:
//! through its registers ([`iommu_types::Mmio`], page 0 and page 1) and through
//! structures in simulated physical memory ([`iommu_types::PhysMem`]).
//!
//! * [`regs`], [`ste`], [`cd`], [`cmd`], [`event`]: the model's own reading of the
//!   formats (reference `smmuv3.md` §1–5), with a `pub const` [`field::Field`] per
//!   architectural field.
//! * [`walk`]: its own VMSAv8-64 walker (reference `lpae.md`), never `io-pgtable`.
//! * [`Smmu`]: registers, queues, stream-table and CD fetch, stage-1/stage-2/nested
//!   translation, TLB, walk cache, configuration cache, ATC, and the [`sanitizer`].
//!
//! **Command consumption** is synchronous: a write of CMDQ_PROD (or an enable of
//! CMDQEN, or an acknowledgement of a command error in GERRORN) consumes every
//! command between CONS and PROD before the register write returns. Invalidation
//! commands are only *queued* when consumed; they take effect at the next CMD_SYNC
//! (adversarial: a driver that forgets the sync keeps seeing stale entries).
//!
//! **Caches** keep entries until invalidated (unless configured bounded), and
//! configuration may be fetched speculatively (CMD_PREFETCH_CONFIG fills the
//! configuration cache).
//!
//! The crate uses `std` (a `Mutex` serialises register accesses, commands and
//! translations, as a single SMMU pipeline would).

pub mod cache;
pub mod cd;
pub mod cmd;
pub mod config;
pub mod event;
pub mod field;
pub mod fuzzing;
pub mod regs;
pub mod sanitizer;
mod smmu;
mod speculate;
pub mod ste;
pub mod walk;
pub(crate) mod xlate;

pub use cache::HitMiss;
pub use config::{Capacity, Httu, SmmuConfig, SmmuConfigBuilder, Stages};
pub use event::{Event, EventClass, EventId};
pub use sanitizer::{Report, TornKind};
pub use smmu::{Smmu, Stats};
pub use walk::{Cacheability, MemAttrs, Perms};

/// What an access does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AccessKind {
    /// Data read.
    Read,
    /// Data write.
    Write,
    /// Instruction fetch.
    Exec,
}

/// An incoming transaction's access attributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Access {
    /// Read, write or execute.
    pub kind: AccessKind,
    /// Privileged (PnU = 1).
    pub privileged: bool,
}

impl Access {
    /// Unprivileged data read (what most DMA is).
    pub const READ: Access = Access {
        kind: AccessKind::Read,
        privileged: false,
    };
    /// Unprivileged data write.
    pub const WRITE: Access = Access {
        kind: AccessKind::Write,
        privileged: false,
    };
    /// Unprivileged instruction fetch.
    pub const EXEC: Access = Access {
        kind: AccessKind::Exec,
        privileged: false,
    };

    /// Same access, privileged.
    pub const fn privileged(self) -> Access {
        Access {
            kind: self.kind,
            privileged: true,
        }
    }
}

/// How a stream was translated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TranslationKind {
    /// SMMUEN = 0 and GBPA bypass.
    GlobalBypass,
    /// STE Config = bypass (or S1DSS bypass without stage 2).
    Bypass,
    /// Stage 1 only.
    Stage1,
    /// Stage 2 only.
    Stage2,
    /// Stage 1 then stage 2.
    Nested,
}

/// A successful translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// Output physical address of the input address.
    pub pa: iommu_types::PhysAddr,
    /// Size of the naturally aligned translation unit containing the input address
    /// (page or block; 4 KiB for bypass): the translation is valid for the input
    /// addresses of that unit.
    pub size: u64,
    /// Permissions of the unit.
    pub perms: Perms,
    /// Memory attributes.
    pub attrs: MemAttrs,
    /// The access is IO-coherent (Normal write-back memory).
    pub coherent: bool,
    /// A PCIe no-snoop attribute from the device would be honoured (false when
    /// stage-2 FWB forces write-back, the SMMUv3 way of enforcing coherency).
    pub no_snoop_allowed: bool,
    /// Which stages applied.
    pub kind: TranslationKind,
    /// Whether the TLB (or ATC) supplied the translation.
    pub cached: bool,
}

impl Translation {
    /// Bytes from the input address to the end of its translation unit.
    pub fn remaining(&self, addr: u64) -> u64 {
        self.size - (addr & (self.size - 1))
    }
}

/// How a terminated transaction completes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultResponse {
    /// The device sees an abort.
    Abort,
    /// Reads return zero, writes are ignored (CD.A = 0).
    RazWi,
}

/// An architectural fault: the transaction was terminated. `event` is the record the
/// fault produces (None for STE Config = abort and GBPA.ABORT, which record
/// nothing); `recorded` says whether it was written to the event queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// The event (also when it was not recorded).
    pub event: Option<Event>,
    /// Written to the event queue.
    pub recorded: bool,
    /// Response to the device.
    pub response: FaultResponse,
}

impl Fault {
    /// The event ID, if the fault has an event.
    pub fn id(&self) -> Option<EventId> {
        self.event.map(|e| e.id)
    }
}

/// Errors of the model's Rust API (architectural faults are [`Fault`]s, not errors).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A DMA was terminated by an SMMU fault.
    #[error("DMA terminated by SMMU fault {:?}", .0.id())]
    Fault(Fault),
    /// Physical memory refused the access after translation.
    #[error("memory error after translation: {0}")]
    Memory(iommu_types::Error),
    /// An argument was invalid.
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
}

impl Error {
    /// The errno-style kind.
    pub fn errno(&self) -> iommu_types::Errno {
        match self {
            Error::Fault(_) => iommu_types::Errno::EFAULT,
            Error::Memory(e) => e.errno(),
            Error::InvalidArgument(_) => iommu_types::Errno::EINVAL,
        }
    }
}
