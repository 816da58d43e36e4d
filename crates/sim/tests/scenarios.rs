//! Runs every scenario in `scenarios/` on the real stack (SMMUv3 model + driver +
//! core + DMA API); every expectation of every scenario must hold.

use iommu_sim::interp::run_scenario;
use iommu_sim::scenario::parse_bytes;
use std::path::PathBuf;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scenarios")
}

#[test]
fn every_shipped_scenario_passes() {
    let mut files: Vec<_> = std::fs::read_dir(dir())
        .expect("scenarios/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "scn"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 7,
        "expected a scenario per seed topic, found {}",
        files.len()
    );
    let mut problems = Vec::new();
    for p in &files {
        let name = p
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let bytes = std::fs::read(p).expect("read");
        let s = match parse_bytes(&name, &bytes) {
            Ok(s) => s,
            Err(d) => {
                problems.push(format!("{name}: does not parse: {d:?}"));
                continue;
            }
        };
        let o = run_scenario(&s).expect("scenario runs");
        if let Some(f) = o.failures.first() {
            problems.push(format!(
                "{name}:{}:{}: {}",
                f.pos.line, f.pos.col, f.message
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn a_wrong_expectation_fails_with_its_position() {
    let src = "smmu s0\ndevice nic sid=1 smmu=s0\nrx = map nic size=2k\nunmap rx\ndma-read nic rx len=4\nexpect ok\n";
    let s = parse_bytes("w.scn", src.as_bytes()).expect("parses");
    let o = run_scenario(&s).expect("runs");
    assert!(!o.passed());
    assert_eq!((o.failures[0].pos.line, o.failures[0].pos.col), (6, 1));
    assert!(
        o.failures[0].message.contains("FTranslation"),
        "{}",
        o.failures[0].message
    );
}

#[test]
fn same_scenario_same_counters() {
    let src = std::fs::read(dir().join("live_switch.scn")).expect("read");
    let s = parse_bytes("live_switch.scn", &src).expect("parses");
    let a = run_scenario(&s).expect("runs");
    let b = run_scenario(&s).expect("runs");
    assert_eq!(a.failures, b.failures);
    assert_eq!(a.executed, b.executed);
    // The final hardware state (STEs, CDs, page tables, decoded from simulated memory
    // at their physical addresses) is identical too.
    let x = iommu_sim::interp::inspect_scenario(&s).expect("inspects");
    let y = iommu_sim::interp::inspect_scenario(&s).expect("inspects");
    assert!(x.contains("StreamID"), "{x}");
    assert_eq!(x, y);
}

mod robustness {
    use super::*;
    use proptest::prelude::*;

    const HEADER: &str = "platform cpu-page=4k policy=lazy\nsmmu s0 granule=4k tlb=8\n\
device d sid=1 smmu=s0 dma-mask=32\ndevice u sid=2 smmu=s0 untrusted\n";

    /// Statements that are valid alone; random sequences of them exercise the
    /// interpreter's error paths (double unmap is rejected by the checker, the rest
    /// must run without panicking whatever the order).
    const STMTS: &[&str] = &[
        "a = map d size=2k dir=to-device",
        "b = map u size=3k offset=0x900 dir=bidir",
        "c = map-sg d lens=4k,1k,18446744073709551615",
        "c = map-sg d lens=1k,3k",
        "e = alloc-coherent d size=8k",
        "e = alloc-noncontiguous u size=64k",
        "unmap a",
        "unmap b",
        "unmap c",
        "free e",
        "sync a for=cpu",
        "sync b for=device",
        "dma-read d a-4096 len=64",
        "dma-write u b+0x7ff data=00ff",
        "dma-read d 0xffffffffffff len=8",
        "dma-write d e+0x2000 data=11",
        "cpu-write a data=aa",
        "cpu-read b+0xbff len=1",
        "cpu-fill e byte=7 len=16",
        "set-type d DMA-FQ",
        "set-type d identity",
        "set-type u DMA",
        "unbind d",
        "bind d",
        "flush",
        "flush u",
        "advance 5ms",
        "advance 18446744073709551615ns",
        "x = domain s0",
        "attach d x",
        "detach d",
        "p = pages size=4k",
        "iommu-map x iova=0x1000 phys=p size=4k prot=read",
        "iommu-unmap x iova=0x1000 size=4k",
        "enforce-coherency x",
        "free-domain x",
        "device h sid=9 smmu=s0 untrusted",
        "q = map u size=5k offset=0xfff around=0xa5 dir=from-device",
        "unmap q",
        "dma-read u q-0x1000 len=0x2000",
        "dma-read d 0xfffffffffffffffc len=8",
        "iommu-map x iova=0xfffffffffffff000 phys=p size=4k prot=rw",
        "iommu-map x iova=0x2000 phys=p size=64k",
        "expect counter CMD_SYNC >= 0",
        "expect exposed >= 0",
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn random_statement_sequences_never_panic(idx in prop::collection::vec(0..STMTS.len(), 1..24)) {
            // Keep only statements the checker accepts after the ones kept so far, so
            // every case executes a long valid scenario.
            let mut src = String::from(HEADER);
            let mut kept = 0;
            for i in idx {
                let candidate = format!("{src}{}\n", STMTS[i]);
                if parse_bytes("random.scn", candidate.as_bytes()).is_ok() {
                    src = candidate;
                    kept += 1;
                }
            }
            prop_assume!(kept > 0);
            let s = parse_bytes("random.scn", src.as_bytes()).expect("checked above");
            let o = run_scenario(&s).expect("runs");
            for f in &o.failures {
                prop_assert!(f.pos.line >= 5);
            }
        }
    }
}
