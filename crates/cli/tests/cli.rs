//! Runs the built `iommu` binary: every subcommand, bad arguments and bad scenario
//! files must give clear messages and the documented exit status.

use std::path::PathBuf;
use std::process::{Command, Output};

fn iommu(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_iommu"))
        .args(args)
        .output()
        .expect("run iommu")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn tmp(name: &str, content: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("iommu-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let p = dir.join(name);
    std::fs::write(&p, content).expect("write");
    p
}

fn scenarios_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scenarios")
}

#[test]
fn help_lists_subcommands_with_examples() {
    let o = iommu(&["--help"]);
    assert!(o.status.success());
    let (out, _) = text(&o);
    for w in [
        "simulate",
        "run",
        "inspect",
        "bench",
        "Examples:",
        "Exit status",
    ] {
        assert!(out.contains(w), "missing {w} in\n{out}");
    }
    for sub in [
        &["simulate", "--help"][..],
        &["run", "--help"],
        &["inspect", "--help"],
        &["bench", "--help"],
        &["bench", "map", "--help"],
    ] {
        let o = iommu(sub);
        assert!(o.status.success(), "{sub:?}");
        assert!(text(&o).0.contains("Example"), "{sub:?}");
    }
}

#[test]
fn bad_arguments_are_usage_errors() {
    for args in [
        &["frobnicate"][..],
        &["simulate", "--workload", "toaster"],
        &["simulate", "--granule", "8k"],
        &["simulate", "--ops", "5", "--seconds", "1"],
        &["run"],
        &["bench", "map", "-t", "x"],
    ] {
        let o = iommu(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {:?}", text(&o));
        assert!(!text(&o).1.is_empty(), "{args:?} printed no error");
    }
}

#[test]
fn out_of_range_values_are_explained() {
    let o = iommu(&["simulate", "--workload", "nic", "--cpus", "0"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("cpus must be 1..=64"), "{:?}", text(&o));
    let o = iommu(&["bench", "map", "-t", "0", "-s", "1"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).1.contains("invalid thread number 0"),
        "{:?}",
        text(&o)
    );
    let o = iommu(&["bench", "map", "-s", "1", "-d", "3"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("invalid dma direction"));
    let o = iommu(&["bench", "--millis", "0"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn bad_scenario_files_give_file_line_column() {
    let p = tmp(
        "bad.scn",
        b"smmu s0\ndevice nic sid=1 smmu=s0\n  rx = mapp nic size=4k\nunmap nothere\n",
    );
    let o = iommu(&["run", p.to_str().expect("utf8")]);
    assert_eq!(o.status.code(), Some(2));
    let (_, err) = text(&o);
    assert!(err.contains("bad.scn:3:8: unknown command `mapp`"), "{err}");

    let p2 = tmp("bad2.scn", b"smmu s0\nunmap nothere\n");
    let o = iommu(&["run", p2.to_str().expect("utf8")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o)
            .1
            .contains("bad2.scn:2:1: unknown handle `nothere`"),
        "{:?}",
        text(&o)
    );

    let p3 = tmp("bin.scn", b"\xff\xfe\x00");
    let o = iommu(&["run", p3.to_str().expect("utf8")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("not valid UTF-8"));

    let o = iommu(&["run", "/nonexistent/x.scn"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("/nonexistent/x.scn"));

    let o = iommu(&["inspect", p.to_str().expect("utf8")]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn micro_benchmarks_note_the_machine() {
    let o = iommu(&["bench", "--millis", "2"]);
    assert!(o.status.success(), "{:?}", text(&o));
    let (out, _) = text(&o);
    assert!(
        out.contains("machine:") && out.contains("ns/op") && out.contains("io-pgtable"),
        "{out}"
    );
    let o = iommu(&["bench", "--millis", "2", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert!(v["results"].as_array().is_some_and(|r| !r.is_empty()));
    assert!(
        v["machine"]["logical_cpus"]
            .as_u64()
            .is_some_and(|n| n >= 1)
    );
}

#[test]
fn shipped_scenarios_parse() {
    let dir = scenarios_dir();
    let mut n = 0;
    for e in std::fs::read_dir(&dir).expect("scenarios/") {
        let p = e.expect("entry").path();
        if p.extension().is_some_and(|x| x == "scn") {
            let bytes = std::fs::read(&p).expect("read");
            if let Err(d) = iommu_sim_parse(&p, &bytes) {
                panic!("{}: {d}", p.display());
            }
            n += 1;
        }
    }
    assert!(n >= 5, "expected at least 5 scenarios, found {n}");
}

fn iommu_sim_parse(p: &std::path::Path, bytes: &[u8]) -> Result<(), String> {
    iommu_sim::scenario::parse_bytes(&p.display().to_string(), bytes)
        .map(|_| ())
        .map_err(|d| {
            d.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        })
}

#[test]
fn run_passes_good_scenarios_and_reports_failed_expectations() {
    let good = scenarios_dir().join("strict_replay.scn");
    let o = iommu(&["run", good.to_str().expect("utf8")]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert!(text(&o).0.contains("PASS"));

    let p = tmp("fails.scn", b"smmu s0\ndevice nic sid=1 smmu=s0\nrx = map nic size=2k\nunmap rx\ndma-read nic rx len=4\nexpect ok\n");
    let o = iommu(&[
        "run",
        good.to_str().expect("utf8"),
        p.to_str().expect("utf8"),
    ]);
    assert_eq!(o.status.code(), Some(1), "{:?}", text(&o));
    let (out, _) = text(&o);
    assert!(
        out.contains("fails.scn:6:1: expected the last action to succeed"),
        "{out}"
    );

    let o = iommu(&["run", "--json", good.to_str().expect("utf8")]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["failures"].as_array().map(Vec::len), Some(0));
}

#[test]
fn inspect_decodes_ste_cd_and_tables() {
    let s = scenarios_dir().join("asid_lifecycle.scn");
    let o = iommu(&["inspect", s.to_str().expect("utf8")]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let (out, _) = text(&o);
    for w in [
        "STE @",
        "Config=0b101 (stage 1)",
        "CD[0] @",
        "ASID=",
        "TTB0",
        "L3[",
        "page iova 0x10000",
    ] {
        assert!(out.contains(w), "missing {w} in\n{out}");
    }
}

#[test]
fn simulate_json_attack_strict_has_no_malicious_success() {
    let o = iommu(&[
        "simulate",
        "--workload",
        "attack",
        "--policy",
        "strict",
        "--ops",
        "400",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["workload"], "attack");
    assert!(v["malicious"]["attempts"].as_u64().is_some_and(|n| n > 0));
    assert_eq!(v["malicious"]["successes"], 0);
    assert!(
        v["hw"]["commands"]["CMD_SYNC"]
            .as_u64()
            .is_some_and(|n| n > 0)
    );
}

#[test]
fn simulate_comparison_table_and_html_report() {
    let html = std::env::temp_dir().join(format!("iommu-cli-report-{}.html", std::process::id()));
    let o = iommu(&[
        "simulate",
        "--ops",
        "200",
        "--html",
        html.to_str().expect("utf8"),
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let (out, _) = text(&o);
    for w in [
        "Strict vs lazy",
        "nic",
        "attack",
        "strict",
        "lazy",
        "How to read this",
        "stale window max",
    ] {
        assert!(out.contains(w), "missing {w} in\n{out}");
    }
    let h = std::fs::read_to_string(&html).expect("report written");
    assert!(
        h.contains("<svg")
            && h.contains("Cache hit rates")
            && h.contains("Stale-translation window")
    );
    assert!(!h.contains("<script") && !h.contains("src="));
    let _ = std::fs::remove_file(html);
}

#[test]
fn unwritable_html_report_fails_before_running() {
    let o = iommu(&[
        "simulate",
        "--workload",
        "nic",
        "--ops",
        "100",
        "--html",
        "/nonexistent-dir/report.html",
    ]);
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
    let (out, err) = text(&o);
    assert!(err.contains("/nonexistent-dir/report.html"), "{err}");
    assert!(!out.contains("ops/s"), "ran before failing:\n{out}");
}

#[test]
fn bench_map_mirrors_the_kernel_tool() {
    let o = iommu(&["bench", "map", "-s", "1", "-t", "1", "-g", "2", "-d", "1"]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let (out, _) = text(&o);
    assert!(
        out.contains("dma mapping benchmark: threads:1 seconds:1 node:-1 dir:TO_DEVICE granule: 2"),
        "{out}"
    );
    assert!(
        out.contains("average map latency(us):") && out.contains("average unmap latency(us):"),
        "{out}"
    );
}

#[test]
fn cost_table_file_is_validated() {
    let good = tmp(
        "cost.json",
        br#"{"cmd_sync_ns": 0, "command_ns": 0, "mmio_read_ns": 0, "mmio_write_ns": 0}"#,
    );
    let o = iommu(&[
        "simulate",
        "--workload",
        "nic",
        "--ops",
        "100",
        "--json",
        "--cost-table",
        good.to_str().expect("utf8"),
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let ops = v["ops"].as_u64().expect("ops");
    // Only walks, config fetches, TLB hits and events are priced now.
    assert!(
        v["modelled_hw_ns"]
            .as_u64()
            .is_some_and(|ns| ns < ops * 1000),
        "{v}"
    );

    let bad = tmp("badcost.json", br#"{"cmd_sink_ns": 5}"#);
    let o = iommu(&[
        "simulate",
        "--workload",
        "nic",
        "--ops",
        "100",
        "--cost-table",
        bad.to_str().expect("utf8"),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("cost table"), "{:?}", text(&o));
}
