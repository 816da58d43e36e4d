//! Workload engine: builds a platform for a [`SimConfig`], runs device models on one
//! OS thread per simulated CPU, and collects [`RunMetrics`] (issue 7, "Workloads" and
//! "Oracles and metrics").
//!
//! Device models DMA for real through the SMMU model:
//! * **NIC**: a per-CPU RX ring of 2 KiB `FROM_DEVICE` buffers; each packet is
//!   written by the device into the oldest buffer, which is unmapped, read by the
//!   CPU and replaced by a freshly mapped one; every other step also transmits a
//!   packet from a 2 KiB `TO_DEVICE` mapping.
//! * **NVMe**: scatter-gather commands of 2–16 elements, read or written by the
//!   device element by element, then unmapped.
//! * **GPU**: large coherent or non-contiguous allocations, touched page by page.
//! * **Untrusted** (mixed workload): a NIC-like device hot-plugged after boot behind
//!   an external-facing port; the core forces its group strict and the DMA layer
//!   bounces its sub-granule buffers.
//! * **Malicious**: a NIC-like device (its own group, declared trusted: it passed as
//!   a normal NIC, so it gets the policy's default domain) that, after every
//!   unmap of one of its buffers, replays that IOVA and older ones, and probes the
//!   granules just below and above its live buffers.
//!
//! Time: every DMA API operation advances the virtual clock by [`OP_NS`]; the
//! flush-queue timers fire from that clock, so stale windows are in virtual time and
//! reproducible. Everything random comes from a seeded `SmallRng` per CPU; with one
//! CPU, or with [`SimConfig::lockstep`] (the CPUs' threads take turns, one step each,
//! in a fixed order), a run with an operation count is fully deterministic: the
//! modelled metrics are identical for a seed. Without lockstep several CPUs run truly
//! concurrently and their interleaving varies from run to run.

use crate::cost::CostTable;
use crate::error::{Error, Result};
use crate::metrics::{HwCounters, MaliciousStats, RunMetrics};
use crate::oracle::{Oracle, Verdict};
use crate::platform::{Platform, SimDma};
use crate::scenario::{DeviceDecl, Policy, SmmuDecl, SmmuFeatures};
use crate::stats::{Log2Histogram, Summary};
use crate::workload::{Limit, PolicyChoice, SimConfig, WorkloadKind};
use iommu_core::Credentials;
use iommu_dma::{DmaAttrs, DmaDirection, SgEntry};
use iommu_types::{Clock, PhysAddr, PhysMem, ThreadCpuId};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Virtual time each DMA API operation takes.
pub const OP_NS: u64 = 1_000;
/// RX buffers kept mapped per CPU.
pub const RX_RING: usize = 64;
/// Bytes of a NIC buffer.
pub const NIC_BUF: u64 = 2048;

/// Per-thread results, merged at the end.
#[derive(Default)]
struct ThreadStats {
    ops: u64,
    dma_bytes: u64,
    map: Summary,
    map_hist: Log2Histogram,
    unmap: Summary,
    unmap_hist: Log2Histogram,
    max_exposed: u64,
    errors: u64,
    /// Malicious device: replays of IOVAs it was given and that were unmapped.
    replays: u64,
    /// Of those, the ones the SMMU let through.
    replay_successes: u64,
}

/// What all threads share.
struct Shared<'a> {
    p: &'a Platform,
    oracle: Mutex<Oracle>,
    done_ops: AtomicU64,
    switch_at: Option<u64>,
    switched: AtomicBool,
    nic: usize,
    nvme: Option<usize>,
    gpu: Option<usize>,
    evil: Option<usize>,
    tb: Option<usize>,
    /// Lockstep: whose turn it is (modulo the CPU count).
    turn: AtomicU64,
    /// CPUs that have finished their share.
    finished: std::sync::atomic::AtomicU32,
}

struct Ctx<'a, 'b> {
    s: &'b Shared<'a>,
    rng: SmallRng,
    st: ThreadStats,
}

impl Ctx<'_, '_> {
    fn tick(&mut self) {
        self.st.ops += 1;
        self.s.p.clock.advance(OP_NS);
        self.s.p.poll_timers();
        let n = self.s.done_ops.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(at) = self.s.switch_at {
            if n >= at && !self.s.switched.swap(true, Ordering::AcqRel) {
                let p = self.s.p;
                let _ = p
                    .core
                    .device_group(p.devices[self.s.nic].id)
                    .and_then(|g| p.core.set_group_type(g, "DMA-FQ", Credentials::ROOT));
            }
        }
    }

    fn dma(&self, dev: usize) -> Option<Arc<SimDma>> {
        self.s.p.devices[dev].dma.clone()
    }

    fn map(&mut self, dev: usize, pa: PhysAddr, len: u64, dir: DmaDirection) -> Option<u64> {
        let d = self.dma(dev)?;
        let t = Instant::now();
        let r = d.map_page(pa, len, dir, DmaAttrs::default());
        let ns = t.elapsed().as_nanos() as u64;
        self.st.map.add(ns);
        self.st.map_hist.add(ns);
        self.tick();
        match r {
            Ok(iova) => {
                let space = self.s.p.space_of(dev);
                if let Ok(mut o) = self.s.oracle.lock() {
                    o.grant(space, dev as u32, iova, len);
                }
                self.st.max_exposed = self.st.max_exposed.max(self.s.p.exposed_bytes());
                Some(iova)
            }
            Err(_) => {
                self.st.errors += 1;
                None
            }
        }
    }

    fn unmap(&mut self, dev: usize, iova: u64, len: u64, dir: DmaDirection) {
        let Some(d) = self.dma(dev) else { return };
        let t = Instant::now();
        let r = d.unmap_page(iova, len, dir, DmaAttrs::default());
        let ns = t.elapsed().as_nanos() as u64;
        self.st.unmap.add(ns);
        self.st.unmap_hist.add(ns);
        if r.is_err() {
            self.st.errors += 1;
        }
        let space = self.s.p.space_of(dev);
        let now = self.s.p.clock.now_ns();
        if let Ok(mut o) = self.s.oracle.lock() {
            o.revoke(space, iova, len, now);
        }
        self.tick();
    }

    /// A device access judged by the oracle; returns whether it succeeded.
    fn access(&mut self, dev: usize, iova: u64, len: u64, write: bool) -> bool {
        self.judged_access(dev, iova, len, write).0
    }

    /// A device access and the oracle's verdict on it (`None` if the oracle's lock
    /// was poisoned).
    fn judged_access(
        &mut self,
        dev: usize,
        iova: u64,
        len: u64,
        write: bool,
    ) -> (bool, Option<Verdict>) {
        let p = self.s.p;
        let now = p.clock.now_ns();
        let ok = if write {
            let data: Vec<u8> = (0..len).map(|i| (i as u8) ^ 0x5a).collect();
            p.dma_write(dev, iova, &data).is_ok()
        } else {
            let mut buf = vec![0u8; len as usize];
            p.dma_read(dev, iova, &mut buf).is_ok()
        };
        if ok {
            self.st.dma_bytes += len;
        }
        let space = p.space_of(dev);
        let verdict = self
            .s
            .oracle
            .lock()
            .ok()
            .map(|mut o| o.access(space, dev as u32, iova, len, ok, now));
        (ok, verdict)
    }

    fn buffer(&mut self, len: u64) -> Option<PhysAddr> {
        let page = self.s.p.cpu_page;
        self.s
            .p
            .mem
            .alloc_pages(len.next_multiple_of(page), page)
            .ok()
    }

    fn free_buffer(&mut self, pa: PhysAddr, len: u64) {
        let page = self.s.p.cpu_page;
        let _ = self.s.p.mem.free_pages(pa, len.next_multiple_of(page));
    }
}

/// A NIC queue (one per CPU).
struct NicQueue {
    dev: usize,
    rx: VecDeque<(PhysAddr, u64)>,
    evil: bool,
    history: VecDeque<u64>,
}

impl NicQueue {
    fn new(dev: usize, evil: bool) -> Self {
        Self {
            dev,
            rx: VecDeque::new(),
            evil,
            history: VecDeque::new(),
        }
    }

    fn refill(&mut self, c: &mut Ctx<'_, '_>) {
        while self.rx.len() < RX_RING {
            let Some(pa) = c.buffer(NIC_BUF) else { return };
            match c.map(self.dev, pa, NIC_BUF, DmaDirection::FromDevice) {
                Some(iova) => self.rx.push_back((pa, iova)),
                None => {
                    c.free_buffer(pa, NIC_BUF);
                    return;
                }
            }
        }
    }

    fn step(&mut self, c: &mut Ctx<'_, '_>) {
        self.refill(c);
        // Receive into the oldest buffer, hand it to the stack, replace it.
        if let Some((pa, iova)) = self.rx.pop_front() {
            let len = c.rng.random_range(64..=1500u64);
            c.access(self.dev, iova, len, true);
            c.unmap(self.dev, iova, NIC_BUF, DmaDirection::FromDevice);
            let mut buf = vec![0u8; len as usize];
            let _ = c.s.p.mem.read_bytes(pa, &mut buf);
            c.free_buffer(pa, NIC_BUF);
            if self.evil {
                self.attack(c, iova);
            }
        }
        self.refill(c);
        // Transmit a packet every other step.
        if c.rng.random_bool(0.5) {
            if let Some(pa) = c.buffer(NIC_BUF) {
                let len = c.rng.random_range(64..=1500u64);
                let _ = c.s.p.mem.fill_bytes(pa, len, 0x66);
                if let Some(iova) = c.map(self.dev, pa, NIC_BUF, DmaDirection::ToDevice) {
                    c.access(self.dev, iova, len, false);
                    c.unmap(self.dev, iova, NIC_BUF, DmaDirection::ToDevice);
                }
                c.free_buffer(pa, NIC_BUF);
            }
        }
    }

    /// Replay the IOVA just unmapped and a few older ones; probe next to live buffers.
    fn attack(&mut self, c: &mut Ctx<'_, '_>, unmapped: u64) {
        self.history.push_back(unmapped);
        if self.history.len() > 32 {
            self.history.pop_front();
        }
        let old = self.history[c.rng.random_range(0..self.history.len())];
        // An older IOVA may have been freed and given to this device again: that
        // access is legitimate, so only what the oracle judges malicious counts.
        for (iova, write) in [(unmapped, true), (old, false)] {
            let (_, verdict) = c.judged_access(self.dev, iova, 64, write);
            c.st.replays += 1;
            if verdict.is_some_and(Verdict::is_malicious_success) {
                c.st.replay_successes += 1;
            }
        }
        let granule = c.s.p.devices[self.dev]
            .dma
            .as_ref()
            .map_or(4096, |d| d.cookie().granule().size());
        if let Some(&(_, live)) = self.rx.back() {
            let base = live & !(granule - 1);
            c.access(self.dev, base.wrapping_sub(granule), 64, false);
            c.access(self.dev, base.wrapping_add(granule), 64, false);
        }
    }

    fn drain(&mut self, c: &mut Ctx<'_, '_>) {
        while let Some((pa, iova)) = self.rx.pop_front() {
            c.unmap(self.dev, iova, NIC_BUF, DmaDirection::FromDevice);
            c.free_buffer(pa, NIC_BUF);
        }
    }
}

fn nvme_step(c: &mut Ctx<'_, '_>, dev: usize) {
    let Some(d) = c.dma(dev) else { return };
    let n = c.rng.random_range(2..=16usize);
    let mut list = Vec::with_capacity(n);
    let mut bufs = Vec::with_capacity(n);
    for _ in 0..n {
        let len = 4096 * c.rng.random_range(1..=4u64);
        let Some(pa) = c.buffer(len) else { break };
        bufs.push((pa, len));
        list.push(SgEntry { phys: pa.0, len });
    }
    let write_to_device = c.rng.random_bool(0.5);
    let dir = if write_to_device {
        DmaDirection::ToDevice
    } else {
        DmaDirection::FromDevice
    };
    let t = Instant::now();
    let r = d.map_sg(&list, dir, DmaAttrs::default());
    let ns = t.elapsed().as_nanos() as u64;
    c.st.map.add(ns);
    c.st.map_hist.add(ns);
    c.tick();
    if let Ok(m) = r {
        let space = c.s.p.space_of(dev);
        if let Ok(mut o) = c.s.oracle.lock() {
            for s in &m.segments {
                o.grant(space, dev as u32, s.addr, s.len);
            }
        }
        for s in &m.segments {
            c.access(dev, s.addr, s.len, !write_to_device);
        }
        let segs: Vec<_> = m.segments.iter().map(|s| (s.addr, s.len)).collect();
        let t = Instant::now();
        let r = d.unmap_sg(m, DmaAttrs::default());
        let ns = t.elapsed().as_nanos() as u64;
        c.st.unmap.add(ns);
        c.st.unmap_hist.add(ns);
        if r.is_err() {
            c.st.errors += 1;
        }
        let now = c.s.p.clock.now_ns();
        if let Ok(mut o) = c.s.oracle.lock() {
            for (a, l) in segs {
                o.revoke(space, a, l, now);
            }
        }
        c.tick();
    } else {
        c.st.errors += 1;
    }
    for (pa, len) in bufs {
        c.free_buffer(pa, len);
    }
}

fn gpu_step(c: &mut Ctx<'_, '_>, dev: usize) {
    let Some(d) = c.dma(dev) else { return };
    let size = (256 << 10) * c.rng.random_range(1..=8u64);
    let t = Instant::now();
    let r = if c.rng.random_bool(0.5) {
        d.alloc_coherent(size)
    } else {
        d.alloc_noncontiguous(size)
    };
    let ns = t.elapsed().as_nanos() as u64;
    c.st.map.add(ns);
    c.st.map_hist.add(ns);
    c.tick();
    let Ok(a) = r else {
        c.st.errors += 1;
        return;
    };
    let space = c.s.p.space_of(dev);
    if let Ok(mut o) = c.s.oracle.lock() {
        o.grant(space, dev as u32, a.dma, a.size);
    }
    let mut off = 0;
    while off < a.size {
        c.access(dev, a.dma + off, 256, true);
        off += 64 << 10;
    }
    let (dma, len) = (a.dma, a.size);
    let t = Instant::now();
    if d.free(a).is_err() {
        c.st.errors += 1;
    }
    let ns = t.elapsed().as_nanos() as u64;
    c.st.unmap.add(ns);
    c.st.unmap_hist.add(ns);
    let now = c.s.p.clock.now_ns();
    if let Ok(mut o) = c.s.oracle.lock() {
        o.revoke(space, dma, len, now);
    }
    c.tick();
}

fn platform_for(cfg: &SimConfig) -> Result<Platform> {
    let smmu = SmmuDecl {
        tlb: Some(cfg.tlb),
        features: SmmuFeatures::ALL,
        ..SmmuDecl::bounded("smmu0", cfg.granule)
    };
    let dev = |name: &str, sid: u32, untrusted: bool| DeviceDecl {
        untrusted,
        ..DeviceDecl::new(name, sid, "smmu0")
    };
    let mut devices = vec![dev("nic", 0x10, false)];
    match cfg.workload {
        WorkloadKind::Nvme => devices.push(dev("nvme", 0x20, false)),
        WorkloadKind::Gpu => devices.push(dev("gpu", 0x30, false)),
        WorkloadKind::Mixed => {
            devices.push(dev("nvme", 0x20, false));
            devices.push(dev("gpu", 0x30, false));
        }
        WorkloadKind::Attack => devices.push(dev("evil", 0x40, false)),
        WorkloadKind::Nic => {}
    }
    let policy = match cfg.policy {
        PolicyChoice::Lazy => Policy::Lazy,
        PolicyChoice::Strict | PolicyChoice::Switch => Policy::Strict,
    };
    // The malicious device is trusted (it passed as a normal NIC), so it gets the
    // policy's default like every trusted device: the case lazy mode must bound.
    let mut p = Platform::new(
        cfg.cpu_page,
        policy,
        cfg.cpus,
        &[smmu],
        &devices,
        cfg!(debug_assertions),
    )?;
    if cfg.workload == WorkloadKind::Mixed {
        // A Thunderbolt-style device plugged in after boot: untrusted, so strict and
        // bounced whatever the policy.
        p.add_device(&dev("tb", 0x50, true))?;
    }
    for s in &p.smmus {
        s.hw.reset_stats();
    }
    Ok(p)
}

/// Run a workload; `progress(done, total)` is called from worker threads.
pub fn simulate(cfg: &SimConfig, progress: &(dyn Fn(u64, u64) + Sync)) -> Result<RunMetrics> {
    cfg.validate()?;
    let p = platform_for(cfg)?;
    let find = |n: &str| p.device(n);
    let nic = find("nic").ok_or_else(|| Error::Platform("no NIC".into()))?;
    let per_cpu_ops = match cfg.limit {
        Limit::Ops(n) => Some(n),
        Limit::Seconds(_) => None,
    };
    let total_ops = per_cpu_ops.map(|n| n.saturating_mul(u64::from(cfg.cpus)));
    let shared = Shared {
        p: &p,
        oracle: Mutex::new(Oracle::new(cfg.granule)),
        done_ops: AtomicU64::new(0),
        switch_at: (cfg.policy == PolicyChoice::Switch)
            .then(|| total_ops.unwrap_or(u64::MAX / 2) / 2),
        switched: AtomicBool::new(false),
        nic,
        nvme: find("nvme"),
        gpu: find("gpu"),
        evil: find("evil"),
        tb: find("tb"),
        turn: AtomicU64::new(0),
        finished: std::sync::atomic::AtomicU32::new(0),
    };
    let deadline = match cfg.limit {
        Limit::Seconds(s) => Some(Instant::now() + Duration::from_secs_f64(s)),
        Limit::Ops(_) => None,
    };
    let start = Instant::now();
    let results: Vec<ThreadStats> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..cfg.cpus as usize)
            .map(|cpu| {
                let shared = &shared;
                scope.spawn(move || {
                    ThreadCpuId::set_current(cpu);
                    let mut c = Ctx {
                        s: shared,
                        rng: SmallRng::seed_from_u64(
                            cfg.seed ^ (cpu as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
                        ),
                        st: ThreadStats::default(),
                    };
                    let mut q = NicQueue::new(shared.nic, false);
                    let mut evil = (cpu == 0)
                        .then(|| shared.evil.map(|d| NicQueue::new(d, true)))
                        .flatten();
                    let mut tb = (cpu == 0)
                        .then(|| shared.tb.map(|d| NicQueue::new(d, false)))
                        .flatten();
                    let mut step = 0u64;
                    let mut finished = false;
                    loop {
                        if cfg.lockstep {
                            // Wait for this CPU's turn; finished CPUs keep passing
                            // theirs until every CPU is done.
                            let n = u64::from(cfg.cpus);
                            while shared.turn.load(Ordering::Acquire) % n != cpu as u64 {
                                if shared.finished.load(Ordering::Acquire) == cfg.cpus {
                                    break;
                                }
                                std::thread::yield_now();
                            }
                            if shared.finished.load(Ordering::Acquire) == cfg.cpus {
                                break;
                            }
                            if finished {
                                shared.turn.fetch_add(1, Ordering::AcqRel);
                                continue;
                            }
                        }
                        let done = match (per_cpu_ops, deadline) {
                            (Some(n), _) => c.st.ops >= n,
                            (None, Some(d)) => Instant::now() >= d,
                            (None, None) => true,
                        };
                        if done {
                            q.drain(&mut c);
                            for e in evil.iter_mut().chain(tb.iter_mut()) {
                                e.drain(&mut c);
                            }
                            finished = true;
                            shared.finished.fetch_add(1, Ordering::AcqRel);
                            if cfg.lockstep {
                                shared.turn.fetch_add(1, Ordering::AcqRel);
                                continue;
                            }
                            break;
                        }
                        match (cfg.workload, step % 3) {
                            (WorkloadKind::Nvme, _) => {
                                nvme_step(&mut c, shared.nvme.unwrap_or(shared.nic))
                            }
                            (WorkloadKind::Gpu, _) => {
                                gpu_step(&mut c, shared.gpu.unwrap_or(shared.nic))
                            }
                            (WorkloadKind::Mixed, 1) => {
                                nvme_step(&mut c, shared.nvme.unwrap_or(shared.nic))
                            }
                            (WorkloadKind::Mixed, 2) if step % 30 == 2 => {
                                gpu_step(&mut c, shared.gpu.unwrap_or(shared.nic))
                            }
                            _ => q.step(&mut c),
                        }
                        if let Some(e) = evil.as_mut() {
                            e.step(&mut c);
                        }
                        if let Some(t) = tb.as_mut().filter(|_| step % 3 == 0) {
                            t.step(&mut c);
                        }
                        step += 1;
                        if cpu == 0 && step % 64 == 0 {
                            match (total_ops, deadline) {
                                (Some(t), _) => {
                                    progress(shared.done_ops.load(Ordering::Relaxed).min(t), t)
                                }
                                (None, Some(_)) => {
                                    let s = match cfg.limit {
                                        Limit::Seconds(s) => s,
                                        Limit::Ops(_) => 1.0,
                                    };
                                    progress(
                                        start.elapsed().as_millis() as u64,
                                        (s * 1000.0) as u64,
                                    )
                                }
                                _ => {}
                            }
                        }
                        if cfg.lockstep {
                            shared.turn.fetch_add(1, Ordering::AcqRel);
                        }
                    }
                    c.st
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let real_ns = start.elapsed().as_nanos() as u64;
    p.flush_all(None);
    collect(cfg, &p, &shared, results, real_ns, &cfg.cost)
}

fn collect(
    cfg: &SimConfig,
    p: &Platform,
    shared: &Shared<'_>,
    results: Vec<ThreadStats>,
    real_ns: u64,
    cost: &CostTable,
) -> Result<RunMetrics> {
    let mut m = RunMetrics {
        workload: cfg.workload.name().into(),
        policy: cfg.policy.name().into(),
        granule: cfg.granule,
        cpu_page: cfg.cpu_page,
        cpus: cfg.cpus,
        seed: cfg.seed,
        real_ns,
        ..Default::default()
    };
    let mut errors = 0;
    for r in &results {
        m.ops += r.ops;
        m.dma_bytes += r.dma_bytes;
        m.map_latency_ns.merge(&r.map);
        m.map_latency_hist.merge(&r.map_hist);
        m.unmap_latency_ns.merge(&r.unmap);
        m.unmap_latency_hist.merge(&r.unmap_hist);
        m.exposed_bytes = m.exposed_bytes.max(r.max_exposed);
        errors += r.errors;
        m.malicious.replays += r.replays;
        m.malicious.replay_successes += r.replay_successes;
    }
    m.ops_per_sec = if real_ns == 0 {
        0.0
    } else {
        m.ops as f64 * 1e9 / real_ns as f64
    };
    let hw: HwCounters = p.counters();
    m.modelled_hw_ns = cost.price(&hw);
    m.hw = hw;
    if let Ok(o) = shared.oracle.lock() {
        m.stale = o.stale().clone();
        m.malicious = MaliciousStats {
            replays: m.malicious.replays,
            replay_successes: m.malicious.replay_successes,
            ..o.malicious()
        };
        m.iova
            .insert("wrongly_blocked_accesses".into(), o.wrongly_blocked());
    }
    m.dma_api_errors = errors;
    let mut fq_flushes = 0;
    let mut iova = BTreeMap::new();
    for (_, c) in p.cookies() {
        fq_flushes += c.flush_queue().flushes();
        let s = c.iova().stats();
        for (k, v) in [
            ("rcache_hits", s.rcache_hits),
            ("rcache_misses", s.rcache_misses),
            ("rcache_inserts", s.rcache_inserts),
            ("tree_allocs", s.tree_allocs),
            ("tree_frees", s.tree_frees),
            ("tree_failures", s.tree_failures),
            ("alloc_failures", s.alloc_failures),
            ("depot_pushes", s.depot_pushes),
            ("cached_pfns", s.cached_pfns),
        ] {
            *iova.entry(k.to_string()).or_insert(0u64) += v;
        }
    }
    m.iova.extend(iova);
    m.iova.insert("fq_flushes".into(), fq_flushes);
    m.sanitizer_reports = p.sanitizer_reports().len() as u64;
    m.pgtable_bytes = p
        .devices
        .iter()
        .map(|d| crate::inspect::stream_table_bytes(&*p.mem, &p.smmus[d.smmu].drv, d.decl.sid))
        .sum();
    Ok(m)
}
