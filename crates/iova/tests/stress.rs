//! Real-thread stress (complements the loom models with scale): several threads
//! on their own simulated CPUs allocate and free through the magazines and the
//! depot while another flushes the caches and shrinks the depots; a shared
//! ownership table catches any pfn handed out twice. A second test runs the
//! flush queue the same way and checks that no range is reused before a flush that
//! started after it was queued has completed. Bounded to well under a second.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};

use iommu_iova::{FlushQueue, FqConfig, FqKind, FqOps, IovaDomain};
use iommu_types::{ThreadCpuId, VirtualClock};

const THREADS: usize = 3;
const ROUNDS: usize = 3000;
const LIMIT: u64 = 4095;

/// One owner word per pfn: 0 = free, else the owning thread + 1.
struct Owners(Vec<AtomicUsize>);

impl Owners {
    fn new() -> Self {
        Self((0..=LIMIT).map(|_| AtomicUsize::new(0)).collect())
    }
    fn take(&self, pfn: u64, size: u64, who: usize) {
        for p in pfn..pfn + size {
            let prev = self.0[p as usize].swap(who + 1, Ordering::SeqCst);
            assert_eq!(
                prev,
                0,
                "pfn {p} handed to thread {who} while owned by {}",
                prev.wrapping_sub(1)
            );
        }
    }
    fn give(&self, pfn: u64, size: u64) {
        for p in pfn..pfn + size {
            self.0[p as usize].store(0, Ordering::SeqCst);
        }
    }
}

fn rng(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

#[test]
fn magazines_under_real_threads() {
    let d = Arc::new(
        IovaDomain::builder(4096, 1)
            .cpus(Arc::new(ThreadCpuId::new(THREADS)))
            .magazine_size(8)
            .build()
            .unwrap(),
    );
    let owners = Arc::new(Owners::new());
    let done = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(THREADS + 1));
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (d, owners, start) = (d.clone(), owners.clone(), start.clone());
            std::thread::spawn(move || {
                ThreadCpuId::set_current(t);
                let mut seed = 0x9e37_79b9 + t as u64;
                let mut live: Vec<(u64, u64)> = Vec::new();
                start.wait();
                for _ in 0..ROUNDS {
                    if live.len() < 24 && rng(&mut seed) % 3 != 0 {
                        let size = 1 + rng(&mut seed) % 16;
                        if let Ok(p) = d.alloc_iova_fast(size, LIMIT, true) {
                            let real = size.next_power_of_two();
                            owners.take(p, real, t);
                            live.push((p, size));
                        }
                    } else if !live.is_empty() {
                        let i = (rng(&mut seed) as usize) % live.len();
                        let (p, size) = live.swap_remove(i);
                        owners.give(p, size.next_power_of_two());
                        d.free_iova_fast(p, size).unwrap();
                    }
                }
                for (p, size) in live {
                    owners.give(p, size.next_power_of_two());
                    d.free_iova_fast(p, size).unwrap();
                }
            })
        })
        .collect();
    let janitor = {
        let (d, done, start) = (d.clone(), done.clone(), start.clone());
        std::thread::spawn(move || {
            start.wait();
            while !done.load(Ordering::SeqCst) {
                d.flush_rcaches();
                d.shrink_depots();
                std::thread::yield_now();
            }
        })
    };
    for w in workers {
        w.join().unwrap();
    }
    done.store(true, Ordering::SeqCst);
    janitor.join().unwrap();
    d.flush_rcaches();
    assert_eq!(d.tree_len(), 0, "everything freed returns");
}

/// Flush generations, and the IOTLB's view: which pfns may still be cached.
struct Iotlb {
    started: AtomicU64,
    completed: Mutex<Vec<u64>>,
}

impl FqOps<u64> for Iotlb {
    fn flush_iotlb_all(&self) -> Result<(), iommu_types::Errno> {
        let g = self.started.fetch_add(1, Ordering::SeqCst);
        std::thread::yield_now();
        self.completed.lock().unwrap().push(g);
        Ok(())
    }
    fn free_payload(&self, queued_at: u64) {
        // The payload carries the flush count sampled right after the unmap.
        let ok = self
            .completed
            .lock()
            .unwrap()
            .iter()
            .any(|&g| g >= queued_at);
        assert!(
            ok,
            "entry queued at generation {queued_at} released without a later flush"
        );
    }
}

#[test]
fn flush_queue_under_real_threads() {
    for kind in [FqKind::PerCpu, FqKind::Single] {
        let d = Arc::new(
            IovaDomain::builder(4096, 1)
                .cpus(Arc::new(ThreadCpuId::new(THREADS)))
                .magazine_size(4)
                .build()
                .unwrap(),
        );
        let iotlb = Arc::new(Iotlb {
            started: AtomicU64::new(0),
            completed: Mutex::new(Vec::new()),
        });
        let clock = Arc::new(VirtualClock::new(0));
        let cfg = FqConfig {
            kind,
            size: 16,
            timeout_ns: 1000,
        };
        let fq = Arc::new(FlushQueue::new(d.clone(), iotlb.clone(), clock.clone(), cfg).unwrap());
        // Per pfn: the flush generation at its last unmap, or u64::MAX when mapped
        // or never used.
        let unmapped_at: Arc<Vec<AtomicU64>> =
            Arc::new((0..=LIMIT).map(|_| AtomicU64::new(u64::MAX)).collect());
        let done = Arc::new(AtomicBool::new(false));
        let start = Arc::new(Barrier::new(THREADS + 1));
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (d, fq, iotlb, unmapped_at, start) = (
                    d.clone(),
                    fq.clone(),
                    iotlb.clone(),
                    unmapped_at.clone(),
                    start.clone(),
                );
                std::thread::spawn(move || {
                    ThreadCpuId::set_current(t);
                    let mut seed = 0x1234_5678 + t as u64;
                    let mut live: Vec<u64> = Vec::new();
                    start.wait();
                    for _ in 0..ROUNDS {
                        if live.len() < 16 && rng(&mut seed) % 2 == 0 {
                            if let Ok(p) = d.alloc_iova_fast(1, LIMIT, true) {
                                let at = unmapped_at[p as usize].swap(u64::MAX, Ordering::SeqCst);
                                if at != u64::MAX {
                                    let ok =
                                        iotlb.completed.lock().unwrap().iter().any(|&g| g >= at);
                                    assert!(
                                        ok,
                                        "pfn {p} reused before a flush started after its unmap"
                                    );
                                }
                                live.push(p);
                            }
                        } else if let Some(p) = live.pop() {
                            let at = iotlb.started.load(Ordering::SeqCst);
                            unmapped_at[p as usize].store(at, Ordering::SeqCst);
                            fq.queue_iova(p, 1, at).unwrap();
                        }
                    }
                    for p in live {
                        d.free_iova_fast(p, 1).unwrap();
                    }
                })
            })
            .collect();
        let timer = {
            let (fq, clock, done, start) = (fq.clone(), clock.clone(), done.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                while !done.load(Ordering::SeqCst) {
                    clock.advance(500);
                    fq.poll().unwrap();
                    std::thread::yield_now();
                }
            })
        };
        for w in workers {
            w.join().unwrap();
        }
        done.store(true, Ordering::SeqCst);
        timer.join().unwrap();
        let s = fq.stats();
        assert!(
            s.queued > 0 && s.flushes_full + s.flushes_timeout > 0,
            "{s:?}"
        );
        drop(fq);
        d.flush_rcaches();
        assert_eq!(d.tree_len(), 0);
    }
}
