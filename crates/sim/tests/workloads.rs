//! Workloads on the real stack: determinism, the attack workload's guarantees, and
//! every workload/policy combination running clean.

use iommu_sim::engine::OP_NS;
use iommu_sim::mapbench::MapBenchConfig;
use iommu_sim::metrics::RunMetrics;
use iommu_sim::platform::FQ_TIMEOUT_NS;
use iommu_sim::workload::{Limit, PolicyChoice, SimConfig, WorkloadKind};

fn run(workload: WorkloadKind, policy: PolicyChoice, ops: u64, seed: u64) -> RunMetrics {
    let cfg = SimConfig {
        workload,
        policy,
        limit: Limit::Ops(ops),
        seed,
        ..SimConfig::default()
    };
    iommu_sim::simulate(&cfg, &|_, _| {}).expect("simulate")
}

#[test]
fn same_seed_same_modelled_metrics() {
    let a = run(WorkloadKind::Attack, PolicyChoice::Lazy, 1500, 7);
    let b = run(WorkloadKind::Attack, PolicyChoice::Lazy, 1500, 7);
    assert_eq!(a.deterministic_view(), b.deterministic_view());
    assert!(a.hw.translations > 0 && a.dma_bytes > 0);
    let c = run(WorkloadKind::Attack, PolicyChoice::Lazy, 1500, 8);
    assert_ne!(
        a.dma_bytes, c.dma_bytes,
        "a different seed should change the packets"
    );
}

#[test]
fn strict_mode_stops_every_malicious_access() {
    let m = run(WorkloadKind::Attack, PolicyChoice::Strict, 3000, 1);
    assert!(m.malicious.attempts > 100, "{:?}", m.malicious);
    // The device model really replayed unmapped IOVAs (not only probes)...
    assert!(m.malicious.replays > 100, "{:?}", m.malicious);
    assert!(m.malicious.attempts >= m.malicious.replays);
    // ...and none of them got through.
    assert_eq!(m.malicious.replay_successes, 0, "{:?}", m.malicious);
    assert_eq!(m.malicious.successes, 0, "{:?}", m.malicious);
    assert_eq!(m.stale.windows_ns.count, 0);
    assert!(m.hw.cmd_syncs > 0);
    assert_eq!(m.wrongly_blocked, 0);
    // Tests are debug builds: the models' sanitizer ran and found nothing.
    assert_eq!(m.sanitizer_reports, 0);
}

#[test]
fn lazy_mode_has_a_bounded_stale_window() {
    let m = run(WorkloadKind::Attack, PolicyChoice::Lazy, 3000, 1);
    // Lazy trades protection for speed: replays right after unmap get through...
    assert!(m.malicious.successes > 0, "{:?}", m.malicious);
    assert!(m.malicious.replay_successes > 0, "{:?}", m.malicious);
    assert!(m.malicious.successes >= m.malicious.replay_successes);
    assert!(m.stale.windows_ns.count > 0);
    // ...but only until the flush queue is flushed (timer or full ring).
    assert!(
        m.stale.windows_ns.max <= FQ_TIMEOUT_NS + OP_NS,
        "window {} ns",
        m.stale.windows_ns.max
    );
    assert_eq!(
        m.malicious.misdirected, 0,
        "an IOVA was reused before its flush"
    );
    assert_eq!(m.wrongly_blocked, 0);
    let strict = run(WorkloadKind::Attack, PolicyChoice::Strict, 3000, 1);
    assert!(
        m.hw.cmd_syncs < strict.hw.cmd_syncs / 4,
        "lazy {} vs strict {}",
        m.hw.cmd_syncs,
        strict.hw.cmd_syncs
    );
}

#[test]
fn every_workload_runs_clean() {
    for w in [
        WorkloadKind::Nic,
        WorkloadKind::Nvme,
        WorkloadKind::Gpu,
        WorkloadKind::Mixed,
    ] {
        for p in [
            PolicyChoice::Strict,
            PolicyChoice::Lazy,
            PolicyChoice::Switch,
        ] {
            let m = run(w, p, 300, 3);
            assert!(m.ops >= 300, "{w:?} {p:?}: {} ops", m.ops);
            assert!(m.dma_bytes > 0, "{w:?} {p:?}");
            assert_eq!(m.dma_api_errors, 0, "{w:?} {p:?}");
            assert_eq!(m.wrongly_blocked, 0, "{w:?} {p:?}");
            assert_eq!(m.malicious.attempts, 0, "{w:?} {p:?}");
            assert!(m.pgtable_bytes > 0, "{w:?} {p:?}");
        }
    }
}

#[test]
fn several_cpus_on_os_threads() {
    let cfg = SimConfig {
        workload: WorkloadKind::Mixed,
        policy: PolicyChoice::Lazy,
        cpus: 2,
        limit: Limit::Ops(300),
        ..SimConfig::default()
    };
    let m = iommu_sim::simulate(&cfg, &|_, _| {}).expect("simulate");
    assert!(m.ops >= 600);
    assert_eq!(m.dma_api_errors, 0);
}

#[test]
fn granule_larger_than_cpu_page() {
    let cfg = SimConfig {
        workload: WorkloadKind::Nic,
        granule: 16384,
        cpu_page: 4096,
        limit: Limit::Ops(300),
        ..SimConfig::default()
    };
    let m = iommu_sim::simulate(&cfg, &|_, _| {}).expect("simulate");
    assert!(
        m.exposed_bytes > 0,
        "2 KiB buffers in 16 KiB granules expose the rest"
    );
}

#[test]
fn map_benchmark_reports_kernel_units() {
    let cfg = MapBenchConfig {
        seconds: 1,
        granule: 4,
        ..MapBenchConfig::default()
    };
    let r = iommu_sim::map_bench(&cfg).expect("bench");
    assert!(r.loops > 100, "{r:?}");
    assert!(r.render().starts_with("average map latency(us):"));
    let bad = MapBenchConfig {
        dma_bits: 20,
        granule: 1024,
        seconds: 1,
        ..MapBenchConfig::default()
    };
    assert!(
        iommu_sim::map_bench(&bad).is_err(),
        "4 MiB cannot fit under a 20-bit mask"
    );
}

#[test]
fn live_switch_halfway_changes_the_invalidation_cost() {
    let strict = run(WorkloadKind::Nic, PolicyChoice::Strict, 2000, 5);
    let switch = run(WorkloadKind::Nic, PolicyChoice::Switch, 2000, 5);
    let lazy = run(WorkloadKind::Nic, PolicyChoice::Lazy, 2000, 5);
    // Strict for the first half, lazy for the second: in between, and clearly so.
    assert!(
        switch.hw.cmd_syncs < strict.hw.cmd_syncs * 3 / 4,
        "{} vs {}",
        switch.hw.cmd_syncs,
        strict.hw.cmd_syncs
    );
    assert!(
        switch.hw.cmd_syncs > lazy.hw.cmd_syncs * 4,
        "{} vs {}",
        switch.hw.cmd_syncs,
        lazy.hw.cmd_syncs
    );
    assert_eq!(switch.dma_api_errors, 0);
    assert_eq!(switch.wrongly_blocked, 0);
}

#[test]
fn lockstep_makes_several_cpus_reproducible() {
    let cfg = SimConfig {
        workload: WorkloadKind::Attack,
        policy: PolicyChoice::Lazy,
        cpus: 2,
        lockstep: true,
        limit: Limit::Ops(400),
        seed: 11,
        ..SimConfig::default()
    };
    let a = iommu_sim::simulate(&cfg, &|_, _| {}).expect("simulate");
    let b = iommu_sim::simulate(&cfg, &|_, _| {}).expect("simulate");
    assert!(a.ops >= 800);
    assert_eq!(a.deterministic_view(), b.deterministic_view());
}
