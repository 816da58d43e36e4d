//! Runs every scenario in `scenarios/` on the real stack (SMMUv3 model + driver +
//! core + DMA API). A scenario listed in `KNOWN_FAILURES` documents a bug found in a
//! lower crate: it must still fail exactly where stated, so the entry is removed
//! (and the scenario passes) once the bug is fixed.

use iommu_sim::interp::run_scenario;
use iommu_sim::scenario::parse_bytes;
use std::path::PathBuf;

/// (file, line of the failing expectation, why).
const KNOWN_FAILURES: &[(&str, u32, &str)] = &[(
    "no_snoop.scn",
    19,
    "smmuv3 SmmuDomain::enforce_cache_coherency returns true although a non-CANWBS master is attached \
     (software.md §6.4: SMMUv3 enforces only if every attached master is CANWBS)",
)];

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
        let known = KNOWN_FAILURES.iter().find(|k| k.0 == name);
        match (known, o.failures.first()) {
            (None, None) => {}
            (None, Some(f)) => problems.push(format!("{name}:{}:{}: {}", f.pos.line, f.pos.col, f.message)),
            (Some(k), Some(f)) if f.pos.line == k.1 => {}
            (Some(k), other) => problems.push(format!(
                "{name}: listed as failing at line {} ({}), but got {other:?}; update KNOWN_FAILURES",
                k.1, k.2
            )),
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
}
