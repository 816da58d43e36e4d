//! The scenario interpreter: executes a checked [`Scenario`] on a simulated
//! [`Platform`] and evaluates its expectations (`docs/scenarios.md`, "Meaning").
//!
//! Every action records the *last outcome* (success, an API errno, a boolean
//! refusal, or the SMMU fault a device access ended with) and reads record the *last
//! data*; `expect` statements compare against those, the model's counters and
//! sanitizer, the DMA layer's exposure accounting and the [`Oracle`]'s stale windows.
//! Execution stops at the first failed expectation.

mod expect;

use crate::error::{Error, Result};
use crate::oracle::Oracle;
use crate::platform::Platform;
use crate::scenario::{
    DeviceDecl, Dir, DomainType as ScnType, Policy, Pos, Scenario, SmmuDecl, StmtKind, SyncFor,
    Target,
};
use iommu_core::{AllocFlags, Credentials, IommuDomain};
use iommu_dma::{DmaAlloc, DmaAttrs, DmaDirection, SgEntry, SgMapping};
use iommu_types::{Clock, Errno, Iova, PhysAddr, PhysMem, Prot};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;

/// A failed expectation or an action that could not be carried out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// Where.
    pub pos: Pos,
    /// Why, in words.
    pub message: String,
}

/// The result of executing one scenario.
#[derive(Clone, Debug, Serialize)]
pub struct ScenarioOutcome {
    /// File name.
    pub file: String,
    /// Statements executed.
    pub executed: usize,
    /// Expectations evaluated.
    pub expectations: usize,
    /// Failures; execution stops at the first one.
    pub failures: Vec<Failure>,
}

impl ScenarioOutcome {
    /// Whether every expectation held.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// What the last action did.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    None,
    Ok,
    Err(Errno, String),
    False,
    Fault(String),
}

impl Outcome {
    fn describe(&self) -> String {
        match self {
            Outcome::None => "no action yet".into(),
            Outcome::Ok => "it succeeded".into(),
            Outcome::Err(e, m) => format!("it failed with {e:?} ({m})"),
            Outcome::False => "it returned false".into(),
            Outcome::Fault(f) => format!("the SMMU terminated it with {f}"),
        }
    }
}

enum Handle {
    Streaming {
        dev: usize,
        dma: u64,
        len: u64,
        dir: DmaDirection,
        buf: PhysAddr,
        sg: Option<SgMapping>,
        live: bool,
    },
    Coherent {
        dev: usize,
        alloc: DmaAlloc,
        live: bool,
    },
    Domain(Arc<IommuDomain>),
    Pages {
        pa: PhysAddr,
        size: u64,
    },
}

impl From<Dir> for DmaDirection {
    fn from(d: Dir) -> Self {
        match d {
            Dir::Bidirectional => DmaDirection::Bidirectional,
            Dir::ToDevice => DmaDirection::ToDevice,
            Dir::FromDevice => DmaDirection::FromDevice,
        }
    }
}

/// The interpreter's state.
pub struct Interp {
    cpu_page: u64,
    policy: Policy,
    cpus: u32,
    smmus: Vec<SmmuDecl>,
    devices: Vec<DeviceDecl>,
    platform: Option<Platform>,
    handles: BTreeMap<String, Handle>,
    last: Outcome,
    data: Vec<u8>,
    oracle: Oracle,
}

type Step = core::result::Result<(), String>;

impl Interp {
    fn new() -> Self {
        Self {
            cpu_page: 4096,
            policy: Policy::Strict,
            cpus: 1,
            smmus: Vec::new(),
            devices: Vec::new(),
            platform: None,
            handles: BTreeMap::new(),
            last: Outcome::None,
            data: Vec::new(),
            oracle: Oracle::new(4096),
        }
    }

    fn boot(&mut self) -> Step {
        if self.platform.is_none() {
            let p = Platform::new(
                self.cpu_page,
                self.policy,
                self.cpus,
                &self.smmus,
                &self.devices,
                true,
            )
            .map_err(|e| format!("platform boot failed: {e}"))?;
            iommu_types::ThreadCpuId::set_current(0);
            self.platform = Some(p);
        }
        Ok(())
    }

    fn p(&self) -> &Platform {
        // Only called after boot().
        self.platform.as_ref().expect("booted")
    }

    fn dev(&self, name: &str) -> core::result::Result<usize, String> {
        self.p()
            .device(name)
            .ok_or_else(|| format!("unknown device `{name}`"))
    }

    fn api<T>(&mut self, r: core::result::Result<T, (Errno, String)>) -> Option<T> {
        match r {
            Ok(v) => {
                self.last = Outcome::Ok;
                Some(v)
            }
            Err((e, m)) => {
                self.last = Outcome::Err(e, m);
                None
            }
        }
    }

    fn dma_api(
        &self,
        dev: usize,
    ) -> core::result::Result<Arc<crate::platform::SimDma>, (Errno, String)> {
        let d = &self.p().devices[dev];
        if !d.bound {
            return Err((
                Errno::ENODEV,
                format!("no driver bound to `{}`", d.decl.name),
            ));
        }
        d.dma.clone().ok_or((
            Errno::ENODEV,
            format!("`{}` is not on a DMA-API domain", d.decl.name),
        ))
    }

    /// Whether `dev` is bound and on an identity default domain (dma-direct: DMA
    /// addresses are physical addresses and nothing is mapped).
    fn is_direct(&self, dev: usize) -> bool {
        let p = self.p();
        let d = &p.devices[dev];
        d.bound
            && d.dma.is_none()
            && p.core
                .device_domain(d.id)
                .ok()
                .flatten()
                .is_some_and(|dom| dom.domain_type() == iommu_core::DomainType::Identity)
    }

    /// A CPU buffer whose first byte sits `offset` bytes into a 64 KiB-aligned region
    /// of whole 64 KiB blocks, so that its position inside any IOMMU granule is what the
    /// scenario wrote and the rest of its granules is real (zeroed) kernel memory.
    fn alloc_cpu_buffer(&self, offset: u64, size: u64) -> core::result::Result<PhysAddr, String> {
        let total = cpu_alloc_len(offset, size).ok_or("buffer too large")?;
        let base = self
            .p()
            .mem
            .alloc_pages(total, CPU_ALIGN)
            .map_err(|e| format!("out of simulated memory: {e}"))?;
        Ok(PhysAddr(base.0 + offset))
    }

    /// CPU address of a target.
    fn cpu_target(&self, t: &Target, len: u64) -> core::result::Result<PhysAddr, String> {
        let Target::Handle { name, offset } = t else {
            return Err("the CPU accesses buffers by handle".into());
        };
        let (base, size) = match self.handles.get(name) {
            Some(Handle::Streaming { buf, len, .. }) => (*buf, *len),
            Some(Handle::Coherent { alloc, .. }) => {
                let off =
                    u64::try_from(*offset).map_err(|_| "negative offset into an allocation")?;
                if off.saturating_add(len) > alloc.size {
                    return Err(format!(
                        "{len} bytes at +{off} overflow the {}-byte allocation",
                        alloc.size
                    ));
                }
                return alloc
                    .cpu_addr(off)
                    .ok_or_else(|| "offset outside the allocation".into());
            }
            Some(Handle::Pages { pa, size }) => (*pa, *size),
            _ => return Err(format!("`{name}` has no CPU buffer")),
        };
        let off = u64::try_from(*offset).map_err(|_| "negative offset into a buffer")?;
        if off.saturating_add(len) > size {
            return Err(format!(
                "{len} bytes at +{off} overflow the {size}-byte buffer `{name}`"
            ));
        }
        Ok(PhysAddr(base.0 + off))
    }

    /// DMA address of a target.
    fn dma_target(&self, t: &Target) -> core::result::Result<u64, String> {
        match t {
            Target::Iova(a) => Ok(*a),
            Target::Handle { name, offset } => {
                let base = match self.handles.get(name) {
                    Some(Handle::Streaming { dma, .. }) => *dma,
                    Some(Handle::Coherent { alloc, .. }) => alloc.dma,
                    _ => return Err(format!("`{name}` has no DMA address")),
                };
                Ok(base.wrapping_add_signed(*offset))
            }
        }
    }

    fn device_access(&mut self, dev: usize, iova: u64, read_len: Option<u64>, data: &[u8]) {
        let p = self.platform.as_ref().expect("booted");
        let now = p.clock.now_ns();
        let space = p.space_of(dev);
        let (r, len) = match read_len {
            Some(n) => {
                let mut buf = vec![0u8; n as usize];
                let r = p.dma_read(dev, iova, &mut buf);
                if r.is_ok() {
                    self.data = buf;
                }
                (r, n)
            }
            None => (p.dma_write(dev, iova, data), data.len() as u64),
        };
        self.oracle
            .access(space, dev as u32, iova, len, r.is_ok(), now);
        self.last = match r {
            Ok(()) => Outcome::Ok,
            Err(smmuv3_model::Error::Fault(f)) => Outcome::Fault(
                f.id()
                    .map_or_else(|| "abort (no event)".to_string(), |id| format!("{id:?}")),
            ),
            Err(e) => Outcome::Err(e.errno(), e.to_string()),
        };
    }

    fn grant(&mut self, dev: usize, segs: &[(u64, u64)]) {
        let space = self.p().space_of(dev);
        for &(a, l) in segs {
            self.oracle.grant(space, dev as u32, a, l);
        }
    }

    fn revoke(&mut self, dev: usize, segs: &[(u64, u64)]) {
        let p = self.p();
        let (space, now) = (p.space_of(dev), p.clock.now_ns());
        for &(a, l) in segs {
            self.oracle.revoke(space, a, l, now);
        }
    }

    fn domain(&self, name: &str) -> core::result::Result<Arc<IommuDomain>, String> {
        match self.handles.get(name) {
            Some(Handle::Domain(d)) => Ok(d.clone()),
            _ => Err(format!("`{name}` is not a live domain")),
        }
    }

    fn exec(&mut self, kind: &StmtKind) -> Step {
        match kind {
            StmtKind::Platform {
                cpu_page,
                policy,
                cpus,
            } => {
                self.cpu_page = *cpu_page;
                self.policy = *policy;
                self.cpus = *cpus;
                return Ok(());
            }
            StmtKind::Smmu(s) => {
                self.smmus.push(s.clone());
                return Ok(());
            }
            StmtKind::Device(d) => {
                if let Some(p) = self.platform.as_mut() {
                    let r = p.add_device(d);
                    return r
                        .map(|_| ())
                        .map_err(|e| format!("hot-plug of `{}` failed: {e}", d.name));
                }
                self.devices.push(d.clone());
                return Ok(());
            }
            _ => self.boot()?,
        }
        match kind {
            StmtKind::Map {
                handle,
                device,
                size,
                offset,
                dir,
                around,
            } => {
                let dev = self.dev(device)?;
                let buf = self.alloc_cpu_buffer(*offset, *size)?;
                if let Some(byte) = *around {
                    // Other kernel data around the buffer; the buffer itself is zero.
                    let mem = &self.p().mem;
                    let base = PhysAddr(buf.0 - offset);
                    let total = cpu_alloc_len(*offset, *size).ok_or("buffer too large")?;
                    mem.fill_bytes(base, total, byte)
                        .and_then(|()| mem.fill_bytes(buf, *size, 0))
                        .map_err(|e| format!("filling around the buffer: {e}"))?;
                }
                let dir = DmaDirection::from(*dir);
                let r = if self.is_direct(dev) {
                    // Identity domain: dma-direct, the DMA address is the physical one.
                    Ok(buf.0)
                } else {
                    self.dma_api(dev).and_then(|d| {
                        d.map_page(buf, *size, dir, DmaAttrs::default())
                            .map_err(|e| (e.errno(), e.to_string()))
                    })
                };
                if let Some(dma) = self.api(r) {
                    self.grant(dev, &[(dma, *size)]);
                    self.handles.insert(
                        handle.clone(),
                        Handle::Streaming {
                            dev,
                            dma,
                            len: *size,
                            dir,
                            buf,
                            sg: None,
                            live: true,
                        },
                    );
                }
            }
            StmtKind::MapSg {
                handle,
                device,
                lens,
                dir,
            } => {
                let dev = self.dev(device)?;
                let total = lens
                    .iter()
                    .try_fold(0u64, |a, &l| a.checked_add(l))
                    .ok_or("scatterlist too large")?;
                let buf = self.alloc_cpu_buffer(0, total)?;
                let mut at = buf.0;
                let list: Vec<SgEntry> = lens
                    .iter()
                    .map(|&l| {
                        let e = SgEntry { phys: at, len: l };
                        at += l;
                        e
                    })
                    .collect();
                let dir = DmaDirection::from(*dir);
                let r = self.dma_api(dev).and_then(|d| {
                    d.map_sg(&list, dir, DmaAttrs::default())
                        .map_err(|e| (e.errno(), e.to_string()))
                });
                if let Some(m) = self.api(r) {
                    let segs: Vec<_> = m.segments.iter().map(|s| (s.addr, s.len)).collect();
                    self.grant(dev, &segs);
                    let dma = m.segments.first().map_or(0, |s| s.addr);
                    self.handles.insert(
                        handle.clone(),
                        Handle::Streaming {
                            dev,
                            dma,
                            len: total,
                            dir,
                            buf,
                            sg: Some(m),
                            live: true,
                        },
                    );
                }
            }
            StmtKind::Unmap { handle } => {
                let Some(Handle::Streaming {
                    dev,
                    dma,
                    len,
                    dir,
                    sg,
                    live,
                    ..
                }) = self.handles.get_mut(handle)
                else {
                    return Err(format!("`{handle}` is not a streaming mapping"));
                };
                *live = false;
                let (dev, dma, len, dir, sg) = (*dev, *dma, *len, *dir, sg.clone());
                let segs: Vec<(u64, u64)> = sg.as_ref().map_or_else(
                    || vec![(dma, len)],
                    |m| m.segments.iter().map(|s| (s.addr, s.len)).collect(),
                );
                let r = if sg.is_none() && self.is_direct(dev) {
                    Ok(())
                } else {
                    self.dma_api(dev).and_then(|d| {
                        match sg {
                            Some(m) => d.unmap_sg(m, DmaAttrs::default()),
                            None => d.unmap_page(dma, len, dir, DmaAttrs::default()),
                        }
                        .map_err(|e| (e.errno(), e.to_string()))
                    })
                };
                if self.api(r).is_some() {
                    self.revoke(dev, &segs);
                    self.p().poll_timers();
                }
            }
            StmtKind::Alloc {
                handle,
                device,
                size,
                noncontiguous,
            } => {
                let dev = self.dev(device)?;
                let r = self.dma_api(dev).and_then(|d| {
                    if *noncontiguous {
                        d.alloc_noncontiguous(*size)
                    } else {
                        d.alloc_coherent(*size)
                    }
                    .map_err(|e| (e.errno(), e.to_string()))
                });
                if let Some(a) = self.api(r) {
                    self.grant(dev, &[(a.dma, a.size)]);
                    self.handles.insert(
                        handle.clone(),
                        Handle::Coherent {
                            dev,
                            alloc: a,
                            live: true,
                        },
                    );
                }
            }
            StmtKind::Free { handle } => match self.handles.get_mut(handle) {
                Some(Handle::Coherent { dev, alloc, live }) => {
                    *live = false;
                    let (dev, alloc) = (*dev, alloc.clone());
                    let r = self.dma_api(dev).and_then(|d| {
                        d.free(alloc.clone())
                            .map_err(|e| (e.errno(), e.to_string()))
                    });
                    if self.api(r).is_some() {
                        self.revoke(dev, &[(alloc.dma, alloc.size)]);
                        self.p().poll_timers();
                    }
                }
                Some(Handle::Pages { pa, size }) => {
                    let (pa, size) = (*pa, *size);
                    let r = self
                        .p()
                        .mem
                        .free_pages(pa, cpu_alloc_len(0, size).unwrap_or(size));
                    self.api(r.map_err(|e| (e.errno(), e.to_string())));
                    self.handles.remove(handle);
                }
                _ => return Err(format!("`{handle}` is not an allocation")),
            },
            StmtKind::Sync { handle, to } => {
                let Some(Handle::Streaming {
                    dev,
                    dma,
                    len,
                    dir,
                    sg,
                    ..
                }) = self.handles.get(handle)
                else {
                    return Err(format!("`{handle}` is not a streaming mapping"));
                };
                let (dev, dma, len, dir, sg) = (*dev, *dma, *len, *dir, sg.clone());
                let r = self.dma_api(dev).and_then(|d| {
                    match (to, sg) {
                        (SyncFor::Cpu, Some(m)) => d.sync_sg_for_cpu(&m),
                        (SyncFor::Device, Some(m)) => d.sync_sg_for_device(&m),
                        (SyncFor::Cpu, None) => d.sync_single_for_cpu(dma, len, dir),
                        (SyncFor::Device, None) => d.sync_single_for_device(dma, len, dir),
                    }
                    .map_err(|e| (e.errno(), e.to_string()))
                });
                self.api(r);
            }
            StmtKind::CpuWrite { target, data } => {
                let pa = self.cpu_target(target, data.len() as u64)?;
                let r = self.p().mem.write_bytes(pa, data);
                self.api(r.map_err(|e| (e.errno(), e.to_string())));
            }
            StmtKind::CpuFill { target, byte, len } => {
                let pa = self.cpu_target(target, *len)?;
                let r = self.p().mem.fill_bytes(pa, *len, *byte);
                self.api(r.map_err(|e| (e.errno(), e.to_string())));
            }
            StmtKind::CpuRead { target, len } => {
                let pa = self.cpu_target(target, *len)?;
                let mut buf = vec![0u8; *len as usize];
                let r = self.p().mem.read_bytes(pa, &mut buf);
                if self
                    .api(r.map_err(|e| (e.errno(), e.to_string())))
                    .is_some()
                {
                    self.data = buf;
                }
            }
            StmtKind::DmaRead {
                device,
                target,
                len,
                ..
            } => {
                let dev = self.dev(device)?;
                let iova = self.dma_target(target)?;
                self.device_access(dev, iova, Some(*len), &[]);
            }
            StmtKind::DmaWrite {
                device,
                target,
                data,
                ..
            } => {
                let dev = self.dev(device)?;
                let iova = self.dma_target(target)?;
                self.device_access(dev, iova, None, data);
            }
            StmtKind::Domain {
                handle,
                smmu,
                ty,
                enforce_coherency,
            } => {
                let p = self.p();
                let Some(si) = p.smmus.iter().position(|s| &s.name == smmu) else {
                    return Err(format!("unknown SMMU `{smmu}`"));
                };
                let Some(dev) = p.devices.iter().find(|d| d.smmu == si).map(|d| d.id) else {
                    return Err(format!(
                        "SMMU `{smmu}` has no device to allocate a domain through"
                    ));
                };
                let r = match ty {
                    ScnType::Identity => p.core.domain_alloc_identity(dev),
                    ScnType::Unmanaged => p.core.domain_alloc_paging(dev, AllocFlags::NONE),
                    other => {
                        return Err(format!(
                            "allocating a {other:?} domain is not supported; use unmanaged or identity"
                        ));
                    }
                };
                if let Some(d) = self.api(r.map_err(|e| (e.errno(), e.to_string()))) {
                    if *enforce_coherency && !d.enforce_cache_coherency() {
                        self.last = Outcome::False;
                    }
                    self.handles.insert(handle.clone(), Handle::Domain(d));
                }
            }
            StmtKind::Attach { device, domain } => {
                let dev = self.dev(device)?;
                let d = self.domain(domain)?;
                let p = self.p();
                let r = p.core.attach_device(&d, p.devices[dev].id);
                self.api(r.map_err(|e| (e.errno(), e.to_string())));
            }
            StmtKind::Detach { device } => {
                let dev = self.dev(device)?;
                let p = self.p();
                let id = p.devices[dev].id;
                let r = match p.core.device_domain(id) {
                    Ok(Some(d)) => p.core.detach_device(&d, id),
                    Ok(None) => Ok(()),
                    Err(e) => Err(e),
                };
                self.api(r.map_err(|e| (e.errno(), e.to_string())));
            }
            StmtKind::FreeDomain { domain } => {
                self.handles.remove(domain);
                self.last = Outcome::Ok;
            }
            StmtKind::Pages { handle, size } => {
                let pa = self.alloc_cpu_buffer(0, *size)?;
                self.last = Outcome::Ok;
                self.handles
                    .insert(handle.clone(), Handle::Pages { pa, size: *size });
            }
            StmtKind::IommuMap {
                domain,
                iova,
                phys,
                size,
                prot,
            } => {
                let d = self.domain(domain)?;
                let Some(&Handle::Pages { pa, size: have }) = self.handles.get(phys) else {
                    return Err(format!("`{phys}` is not physical pages"));
                };
                if *size > have {
                    return Err(format!(
                        "mapping {size:#x} bytes of `{phys}`, which has only {have:#x}"
                    ));
                }
                let r = d.map(Iova(*iova), pa, *size, Prot::from_bits_truncate(*prot));
                self.api(r.map_err(|e| (e.errno(), e.to_string())));
            }
            StmtKind::IommuUnmap { domain, iova, size } => {
                let d = self.domain(domain)?;
                let r = d.unmap(Iova(*iova), *size);
                self.api(r.map_err(|e| (e.errno(), e.to_string())));
            }
            StmtKind::EnforceCoherency { domain } => {
                let d = self.domain(domain)?;
                self.last = if d.enforce_cache_coherency() {
                    Outcome::Ok
                } else {
                    Outcome::False
                };
            }
            StmtKind::SetType { device, ty } => {
                let dev = self.dev(device)?;
                let s = match ty {
                    ScnType::Identity => "identity",
                    ScnType::Dma => "DMA",
                    ScnType::DmaFq => "DMA-FQ",
                    _ => "auto",
                };
                let p = self.p();
                let r = p
                    .core
                    .device_group(p.devices[dev].id)
                    .and_then(|g| p.core.set_group_type(g, s, Credentials::ROOT));
                if self
                    .api(r.map_err(|e| (e.errno(), e.to_string())))
                    .is_some()
                {
                    let p = self.platform.as_mut().expect("booted");
                    for i in 0..p.devices.len() {
                        if p.devices[i].bound {
                            let _ = p.refresh_dma(i);
                        }
                    }
                }
            }
            StmtKind::Bind { device, bound } => {
                let dev = self.dev(device)?;
                let p = self.platform.as_mut().expect("booted");
                let r = if *bound { p.bind(dev) } else { p.unbind(dev) };
                self.api(r);
            }
            StmtKind::Flush { device } => {
                let dom = match device {
                    Some(d) => {
                        let i = self.dev(d)?;
                        Some(self.p().devices[i].dma_domain)
                    }
                    None => None,
                };
                self.p().flush_all(dom);
                self.last = Outcome::Ok;
            }
            StmtKind::Advance { ns } => {
                let p = self.p();
                p.poll_timers();
                p.clock.advance(*ns);
                p.poll_timers();
            }
            StmtKind::Expect(e) => return self.expect(e),
            StmtKind::Platform { .. } | StmtKind::Smmu(_) | StmtKind::Device(_) => {}
        }
        Ok(())
    }

    /// Describe the final hardware state of every SMMU.
    fn inspect(&self) -> String {
        let mut out = String::new();
        let Some(p) = &self.platform else {
            return "the platform never booted (the scenario has only declarations)\n".into();
        };
        for s in &p.smmus {
            let _ = writeln!(out, "== SMMU {} ==", s.name);
            for d in p.devices.iter().filter(|d| p.smmus[d.smmu].name == s.name) {
                let _ = writeln!(
                    out,
                    "-- device {} (StreamID {:#x}) --",
                    d.decl.name, d.decl.sid
                );
                out.push_str(&crate::inspect::describe_stream(
                    &*p.mem, &s.drv, d.decl.sid,
                ));
            }
        }
        out
    }
}

/// Alignment and size unit of CPU buffers made by scenarios (the largest granule).
const CPU_ALIGN: u64 = 0x10000;

fn cpu_alloc_len(offset: u64, size: u64) -> Option<u64> {
    offset
        .checked_add(size)?
        .checked_next_multiple_of(CPU_ALIGN)
}

fn run(s: &Scenario) -> (Interp, ScenarioOutcome) {
    let mut it = Interp::new();
    let granule = s
        .stmts
        .iter()
        .find_map(|st| match &st.kind {
            StmtKind::Smmu(d) => Some(d.granule),
            _ => None,
        })
        .unwrap_or(4096);
    it.oracle = Oracle::new(granule);
    let mut out = ScenarioOutcome {
        file: s.file.clone(),
        executed: 0,
        expectations: 0,
        failures: Vec::new(),
    };
    for st in &s.stmts {
        if matches!(st.kind, StmtKind::Expect(_)) {
            out.expectations += 1;
        }
        out.executed += 1;
        if let Err(message) = it.exec(&st.kind) {
            out.failures.push(Failure {
                pos: st.pos,
                message,
            });
            break;
        }
    }
    (it, out)
}

/// Execute a scenario on a fresh platform.
pub fn run_scenario(s: &Scenario) -> Result<ScenarioOutcome> {
    Ok(run(s).1)
}

/// Execute a scenario and describe the final STEs, CDs and page tables field by field.
pub fn inspect_scenario(s: &Scenario) -> Result<String> {
    let (it, outcome) = run(s);
    let mut text = it.inspect();
    for f in &outcome.failures {
        let _ = writeln!(
            text,
            "note: {}:{}:{}: {}",
            s.file, f.pos.line, f.pos.col, f.message
        );
    }
    if text.is_empty() {
        return Err(Error::Platform("nothing to inspect".into()));
    }
    Ok(text)
}
