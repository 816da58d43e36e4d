//! The abstract syntax of a scenario (grammar: `docs/scenarios.md`).
//!
//! A scenario is a list of [`Stmt`]s, each carrying the position of its first token so
//! that the checker and the interpreter can report `file:line:column`.

use serde::Serialize;

/// A 1-based source position.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Pos {
    /// Line, starting at 1.
    pub line: u32,
    /// Column in characters, starting at 1.
    pub col: u32,
}

/// A parsed scenario file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Scenario {
    /// The file name used in diagnostics.
    pub file: String,
    /// Statements in source order.
    pub stmts: Vec<Stmt>,
}

/// One statement with its position.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Stmt {
    /// Where the statement starts (the handle name of an assignment, or the command).
    pub pos: Pos,
    /// What it does.
    pub kind: StmtKind,
}

/// DMA direction (`enum dma_data_direction`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Dir {
    /// `DMA_BIDIRECTIONAL` (0 in `dma_map_benchmark`).
    Bidirectional,
    /// `DMA_TO_DEVICE` (1): the device reads.
    ToDevice,
    /// `DMA_FROM_DEVICE` (2): the device writes.
    FromDevice,
}

/// Boot-time default-domain policy (`software.md` §1.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Policy {
    /// Translated, strict invalidation (`DMA`).
    Strict,
    /// Translated, flush queue (`DMA_FQ`).
    Lazy,
    /// Identity (`iommu.passthrough=1`).
    Passthrough,
}

/// A domain type, as written to `/sys/kernel/iommu_groups/<n>/type` or allocated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum DomainType {
    /// All DMA fails.
    Blocked,
    /// IOVA == physical address.
    Identity,
    /// Paging domain owned by the caller.
    Unmanaged,
    /// Default translated domain, strict.
    Dma,
    /// Default translated domain with a flush queue.
    DmaFq,
    /// `auto`: let the core choose again (only for `set-type`).
    Auto,
}

/// Which side a `sync` hands the buffer to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum SyncFor {
    /// `dma_sync_*_for_cpu`.
    Cpu,
    /// `dma_sync_*_for_device`.
    Device,
}

/// Comparison of an `expect` on a number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Cmp {
    /// `==` (also a bare number).
    Eq,
    /// `!=`.
    Ne,
    /// `<`.
    Lt,
    /// `<=`.
    Le,
    /// `>`.
    Gt,
    /// `>=`.
    Ge,
}

impl Cmp {
    /// Whether `lhs <op> rhs` holds.
    pub fn holds(self, lhs: u64, rhs: u64) -> bool {
        match self {
            Cmp::Eq => lhs == rhs,
            Cmp::Ne => lhs != rhs,
            Cmp::Lt => lhs < rhs,
            Cmp::Le => lhs <= rhs,
            Cmp::Gt => lhs > rhs,
            Cmp::Ge => lhs >= rhs,
        }
    }

    /// The operator as written.
    pub fn symbol(self) -> &'static str {
        match self {
            Cmp::Eq => "==",
            Cmp::Ne => "!=",
            Cmp::Lt => "<",
            Cmp::Le => "<=",
            Cmp::Gt => ">",
            Cmp::Ge => ">=",
        }
    }
}

/// SMMU features a scenario can switch on (`smmuv3.md` IDR0 fields).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
pub struct SmmuFeatures {
    /// ATS and the ATC (`IDR0.ATS`).
    pub ats: bool,
    /// Coherent table walks and queues (`IDR0.COHACC`).
    pub coherent: bool,
    /// Stage 1 (`IDR0.S1P`); on unless the list names stages.
    pub s1: bool,
    /// Stage 2 (`IDR0.S2P`).
    pub s2: bool,
    /// Stage-2 forced write-back (`IDR3.FWB`), the SMMUv3 way to override no-snoop.
    pub fwb: bool,
    /// Range invalidation (`IDR3.RIL`).
    pub ril: bool,
}

/// An SMMUv3 instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SmmuDecl {
    /// Name used by `device ... smmu=NAME`.
    pub name: String,
    /// Translation granule of the page tables it is driven with.
    pub granule: u64,
    /// TLB entries (`None`: unbounded, entries live until invalidated).
    pub tlb: Option<u32>,
    /// Walk-cache entries (`None`: unbounded).
    pub walk_cache: Option<u32>,
    /// Configuration-cache (STE/CD) entries (`None`: unbounded).
    pub cfg_cache: Option<u32>,
    /// log2 of the command-queue entries.
    pub cmdq_log2: u32,
    /// Feature switches.
    pub features: SmmuFeatures,
}

/// A device placed behind an SMMU.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeviceDecl {
    /// Name used by every device statement.
    pub name: String,
    /// PCI-like StreamID.
    pub sid: u32,
    /// SMMU it sits behind.
    pub smmu: String,
    /// DMA mask width in bits.
    pub dma_bits: u32,
    /// External-facing (Thunderbolt-like): forces strict DMA and bouncing.
    pub untrusted: bool,
    /// Cache-coherent DMA.
    pub coherent: bool,
    /// PCIe ATS capable.
    pub ats: bool,
    /// Issues no-snoop transactions.
    pub no_snoop: bool,
    /// Firmware says its no-snoop can be overridden (IORT CANWBS), so it may join a
    /// domain that enforces cache coherency.
    pub canwbs: bool,
}

impl SmmuFeatures {
    /// Every feature: what an `smmu` line without `features=` declares.
    pub const ALL: SmmuFeatures = SmmuFeatures {
        ats: true,
        coherent: true,
        s1: true,
        s2: true,
        fwb: true,
        ril: true,
    };
}

impl SmmuDecl {
    /// The SMMU the workloads and benchmarks run on: every feature but ATS, a
    /// 2048-entry TLB, a 256-entry walk cache, a 64-entry configuration cache and a
    /// 256-entry command queue (bounded caches, as on real parts).
    pub fn bounded(name: &str, granule: u64) -> Self {
        SmmuDecl {
            name: name.into(),
            granule,
            tlb: Some(2048),
            walk_cache: Some(256),
            cfg_cache: Some(64),
            cmdq_log2: 8,
            features: SmmuFeatures {
                ats: false,
                ..SmmuFeatures::ALL
            },
        }
    }
}

impl DeviceDecl {
    /// A device with the defaults of a `device` line: trusted, coherent, no ATS, no
    /// no-snoop, not CANWBS, 64-bit DMA mask.
    pub fn new(name: &str, sid: u32, smmu: &str) -> Self {
        DeviceDecl {
            name: name.into(),
            sid,
            smmu: smmu.into(),
            dma_bits: 64,
            untrusted: false,
            coherent: true,
            ats: false,
            no_snoop: false,
            canwbs: false,
        }
    }
}

/// Where a device or the CPU accesses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Target {
    /// A handle's DMA address (or its buffer, for the CPU) plus a signed offset.
    Handle {
        /// The handle.
        name: String,
        /// Byte offset (may be negative to probe below the buffer).
        offset: i64,
    },
    /// A raw IOVA.
    Iova(u64),
}

/// An `expect` clause.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Expect {
    /// The last operation succeeded.
    Ok,
    /// The last device access faulted; optionally of this kind (event name).
    Fault(Option<String>),
    /// The last API call failed; optionally with this errno name.
    Error(Option<String>),
    /// The data of the last read.
    Bytes(Vec<u8>),
    /// The architectural sanitizer reported nothing.
    SanitizerClean,
    /// Bytes a device could reach that belong to nobody it was given.
    Exposed(Cmp, u64),
    /// A named counter (command opcodes, events, cache statistics).
    Counter(String, Cmp, u64),
    /// The longest stale-translation window so far, in ns.
    StaleWindow(Cmp, u64),
    /// The current type of a device's group.
    Type(String, DomainType),
}

/// What a statement does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum StmtKind {
    /// `platform`: global settings.
    Platform {
        /// CPU page size.
        cpu_page: u64,
        /// Default-domain policy.
        policy: Policy,
        /// Simulated CPUs.
        cpus: u32,
    },
    /// `smmu NAME ...`.
    Smmu(SmmuDecl),
    /// `device NAME ...` (after the first action: a hot-plug).
    Device(DeviceDecl),
    /// `H = map DEV size=.. [offset=..] [dir=..]`.
    Map {
        /// Handle.
        handle: String,
        /// Device.
        device: String,
        /// Bytes.
        size: u64,
        /// Offset of the buffer within its first CPU page.
        offset: u64,
        /// Direction.
        dir: Dir,
        /// `around=BYTE`: the rest of the buffer's 64 KiB region (other kernel data
        /// sharing its pages and granules) is filled with this byte instead of zeros.
        around: Option<u8>,
    },
    /// `H = map-sg DEV lens=.. [dir=..]`.
    MapSg {
        /// Handle.
        handle: String,
        /// Device.
        device: String,
        /// Element lengths.
        lens: Vec<u64>,
        /// Direction.
        dir: Dir,
    },
    /// `unmap H`.
    Unmap {
        /// Handle.
        handle: String,
    },
    /// `H = alloc-coherent DEV size=..` or `alloc-noncontiguous`.
    Alloc {
        /// Handle.
        handle: String,
        /// Device.
        device: String,
        /// Bytes.
        size: u64,
        /// `alloc-noncontiguous` rather than `alloc-coherent`.
        noncontiguous: bool,
    },
    /// `free H`.
    Free {
        /// Handle.
        handle: String,
    },
    /// `sync H for=cpu|device`.
    Sync {
        /// Handle.
        handle: String,
        /// Direction of ownership transfer.
        to: SyncFor,
    },
    /// `cpu-write TARGET data=HEX`.
    CpuWrite {
        /// Where (a handle).
        target: Target,
        /// Bytes.
        data: Vec<u8>,
    },
    /// `cpu-fill TARGET byte=N len=N`.
    CpuFill {
        /// Where.
        target: Target,
        /// Fill byte.
        byte: u8,
        /// Length.
        len: u64,
    },
    /// `cpu-read TARGET len=N`.
    CpuRead {
        /// Where.
        target: Target,
        /// Length.
        len: u64,
    },
    /// `dma-read DEV TARGET len=N [no-snoop]`.
    DmaRead {
        /// Device.
        device: String,
        /// Where.
        target: Target,
        /// Length.
        len: u64,
        /// Issue as no-snoop.
        no_snoop: bool,
    },
    /// `dma-write DEV TARGET data=HEX [no-snoop]`.
    DmaWrite {
        /// Device.
        device: String,
        /// Where.
        target: Target,
        /// Bytes.
        data: Vec<u8>,
        /// Issue as no-snoop.
        no_snoop: bool,
    },
    /// `D = domain SMMU [type=..] [enforce-coherency]`.
    Domain {
        /// Handle of the domain.
        handle: String,
        /// SMMU.
        smmu: String,
        /// Type.
        ty: DomainType,
        /// Ask for no-snoop enforcement at allocation.
        enforce_coherency: bool,
    },
    /// `attach DEV D`.
    Attach {
        /// Device.
        device: String,
        /// Domain handle.
        domain: String,
    },
    /// `detach DEV` (back to the default domain).
    Detach {
        /// Device.
        device: String,
    },
    /// `free-domain D`.
    FreeDomain {
        /// Domain handle.
        domain: String,
    },
    /// `H = pages size=..`: physical memory for `iommu-map`.
    Pages {
        /// Handle.
        handle: String,
        /// Bytes.
        size: u64,
    },
    /// `iommu-map D iova=.. phys=H size=.. prot=..`.
    IommuMap {
        /// Domain handle.
        domain: String,
        /// IOVA.
        iova: u64,
        /// Physical pages handle.
        phys: String,
        /// Bytes.
        size: u64,
        /// Permissions (read, write, cache, noexec, mmio, priv).
        prot: u32,
    },
    /// `iommu-unmap D iova=.. size=..`.
    IommuUnmap {
        /// Domain handle.
        domain: String,
        /// IOVA.
        iova: u64,
        /// Bytes.
        size: u64,
    },
    /// `enforce-coherency D`.
    EnforceCoherency {
        /// Domain handle.
        domain: String,
    },
    /// `set-type DEV TYPE`: write the group's sysfs type.
    SetType {
        /// Device naming the group.
        device: String,
        /// New type.
        ty: DomainType,
    },
    /// `unbind DEV` / `bind DEV`: the device's kernel driver.
    Bind {
        /// Device.
        device: String,
        /// `bind` (true) or `unbind` (false).
        bound: bool,
    },
    /// `flush [DEV]`: flush the flush queues (all, or the device's domain).
    Flush {
        /// Device, or all.
        device: Option<String>,
    },
    /// `advance DURATION`.
    Advance {
        /// Nanoseconds.
        ns: u64,
    },
    /// `expect ...`.
    Expect(Expect),
}

impl StmtKind {
    /// The handle this statement defines, if any.
    pub fn defines(&self) -> Option<&str> {
        match self {
            StmtKind::Map { handle, .. }
            | StmtKind::MapSg { handle, .. }
            | StmtKind::Alloc { handle, .. }
            | StmtKind::Domain { handle, .. }
            | StmtKind::Pages { handle, .. } => Some(handle),
            _ => None,
        }
    }
}
