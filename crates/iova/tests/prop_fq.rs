//! Flush-queue ordering by proptest: random interleavings of map, unmap-and-queue,
//! clock advances with `poll`, and explicit flushes, checked against a model.
//! An IOVA (and its freed tables) may come back only after a flush that started
//! after it was queued has completed; entries leave each ring in order; a flush
//! releases everything queued before it; nothing is lost.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use iommu_iova::{FlushQueue, FqConfig, FqKind, FqOps, IovaDomain};
use iommu_types::{Clock, CpuId, VirtualClock};
use proptest::prelude::*;

struct Switch(AtomicUsize);
impl CpuId for Switch {
    fn current(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
    fn count(&self) -> usize {
        2
    }
}

#[derive(Default)]
struct ModelOps {
    started: AtomicU64,
    completed: Mutex<Vec<u64>>,
    queued_at: Mutex<HashMap<u32, u64>>,
    freed: Mutex<Vec<u32>>,
    violations: Mutex<Vec<String>>,
}

impl FqOps<u32> for ModelOps {
    fn flush_iotlb_all(&self) -> Result<(), iommu_types::Errno> {
        let g = self.started.fetch_add(1, Ordering::SeqCst);
        self.completed.lock().unwrap().push(g);
        Ok(())
    }
    fn free_payload(&self, id: u32) {
        let q = self.queued_at.lock().unwrap()[&id];
        if !self.completed.lock().unwrap().iter().any(|&g| g >= q) {
            self.violations.lock().unwrap().push(format!(
                "payload {id} freed with no flush started at or after {q}"
            ));
        }
        self.freed.lock().unwrap().push(id);
    }
}

#[derive(Clone, Debug)]
enum Op {
    Map { size: u64 },
    Unmap { idx: usize },
    Advance { us: u64 },
    Flush,
    Cpu(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u64..=8).prop_map(|size| Op::Map { size }),
        4 => any::<usize>().prop_map(|idx| Op::Unmap { idx }),
        2 => (0u64..15_000).prop_map(|us| Op::Advance { us }),
        1 => Just(Op::Flush),
        1 => (0usize..2).prop_map(Op::Cpu),
    ]
}

fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 <= b.1 && b.0 <= a.1
}

fn run(ops: Vec<Op>, kind: FqKind, size: usize) -> Result<(), TestCaseError> {
    let cpu = Arc::new(Switch(AtomicUsize::new(0)));
    let d = Arc::new(
        IovaDomain::builder(4096, 1)
            .cpus(cpu.clone())
            .magazine_size(4)
            .build()
            .unwrap(),
    );
    let m = Arc::new(ModelOps::default());
    let clock = Arc::new(VirtualClock::new(0));
    let cfg = FqConfig {
        kind,
        size,
        timeout_ns: 10_000_000,
    };
    let fq = FlushQueue::new(d.clone(), m.clone(), clock.clone(), cfg).unwrap();
    // Small space so freed ranges are reused quickly.
    let limit = 255;
    let mut mapped: Vec<(u64, u64)> = Vec::new();
    // id -> (range, ring)
    let mut pending: HashMap<u32, ((u64, u64), usize)> = HashMap::new();
    let mut order: Vec<Vec<u32>> = vec![Vec::new(); 2];
    let mut next_id = 0u32;
    let mut checked_freed = 0usize;
    for op in ops {
        match op {
            Op::Map { size } => {
                if let Ok(p) = d.alloc_iova_fast(size, limit, true) {
                    let r = (p, p + size.next_power_of_two() - 1);
                    for (id, (q, _)) in &pending {
                        prop_assert!(!overlaps(r, *q), "{r:?} reuses {q:?} of queued entry {id}");
                    }
                    mapped.push((p, size));
                }
            }
            Op::Unmap { idx } => {
                if !mapped.is_empty() {
                    let (p, s) = mapped.swap_remove(idx % mapped.len());
                    let id = next_id;
                    next_id += 1;
                    m.queued_at
                        .lock()
                        .unwrap()
                        .insert(id, m.started.load(Ordering::SeqCst));
                    let ring = if kind == FqKind::Single {
                        0
                    } else {
                        cpu.current()
                    };
                    pending.insert(id, ((p, p + s.next_power_of_two() - 1), ring));
                    order[ring].push(id);
                    let before = m.started.load(Ordering::SeqCst);
                    let occupancy = fq.occupancy();
                    fq.queue_iova(p, s, id).unwrap();
                    // A flush happens at queue time only when the ring was full.
                    if m.started.load(Ordering::SeqCst) != before {
                        prop_assert!(occupancy >= fq.ring_capacity());
                    }
                    prop_assert!(fq.deadline().is_some());
                }
            }
            Op::Advance { us } => {
                clock.advance(us * 1000);
                let due = fq.deadline().is_some_and(|t| t <= clock.now_ns());
                let ran = fq.poll().unwrap();
                prop_assert_eq!(ran, due);
                if ran {
                    prop_assert_eq!(
                        fq.occupancy(),
                        0,
                        "a timeout flush frees all earlier entries"
                    );
                }
            }
            Op::Flush => {
                fq.flush_all().unwrap();
                prop_assert_eq!(fq.occupancy(), 0);
            }
            Op::Cpu(c) => cpu.0.store(c, Ordering::Relaxed),
        }
        // Bookkeeping of what was released since the last step.
        let freed = m.freed.lock().unwrap().clone();
        for &id in &freed[checked_freed..] {
            prop_assert!(pending.remove(&id).is_some(), "payload {id} freed twice");
        }
        checked_freed = freed.len();
        let v = m.violations.lock().unwrap();
        prop_assert!(v.is_empty(), "{:?}", *v);
    }
    // Within each ring, entries are released in queue order.
    let freed = m.freed.lock().unwrap().clone();
    for ring in &order {
        let released: Vec<u32> = freed
            .iter()
            .copied()
            .filter(|id| ring.contains(id))
            .collect();
        prop_assert_eq!(&released[..], &ring[..released.len()]);
    }
    // Teardown releases the rest; then everything is back in the allocator.
    drop(fq);
    prop_assert_eq!(m.freed.lock().unwrap().len() as u32, next_id);
    for (p, s) in mapped {
        d.free_iova_fast(p, s).unwrap();
    }
    d.flush_rcaches();
    prop_assert_eq!(d.tree_len(), 0);
    Ok(())
}

/// 64 cases normally, 4096 with `IOMMU_LONG_TESTS=1`.
fn cases() -> u32 {
    if std::env::var_os("IOMMU_LONG_TESTS").is_some_and(|v| v == "1") {
        4096
    } else {
        64
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn per_cpu_queue_never_releases_early(ops in prop::collection::vec(op(), 1..300), size in prop_oneof![Just(2usize), Just(4), Just(16)]) {
        run(ops, FqKind::PerCpu, size)?;
    }

    #[test]
    fn single_queue_never_releases_early(ops in prop::collection::vec(op(), 1..300), size in prop_oneof![Just(2usize), Just(8), Just(64)]) {
        run(ops, FqKind::Single, size)?;
    }
}
