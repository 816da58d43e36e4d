//! Hostile scenario inputs: values at the edges of their ranges (sizes and
//! addresses near `u64::MAX`, huge buffers and fills, mappings larger than their
//! pages) must give a parse error at their column, an API error or a fault at their
//! line, never a panic, a hang or an exhausted host.

use iommu_sim::interp::run_scenario;
use iommu_sim::scenario::{Diagnostic, parse_bytes};

const HEADER: &str = "platform cpu-page=4k policy=strict\nsmmu s0 granule=4k\n\
device d sid=1 smmu=s0\n";

/// Line number of the first line of a body (after [`HEADER`]).
const BODY: u32 = 4;

fn parse(body: &str) -> Result<iommu_sim::scenario::Scenario, Vec<Diagnostic>> {
    parse_bytes("hostile.scn", format!("{HEADER}{body}").as_bytes())
}

/// Run `body` after [`HEADER`]: the first failure's line and message, if any.
fn run(body: &str) -> Option<(u32, String)> {
    let s = parse(body).unwrap_or_else(|d| panic!("{body}: does not parse: {d:?}"));
    let o = run_scenario(&s).expect("runs");
    o.failures.first().map(|f| (f.pos.line, f.message.clone()))
}

fn passes(body: &str) {
    if let Some((line, m)) = run(body) {
        panic!("line {line}: {m}\n{body}");
    }
}

/// `body` must be rejected by the parser on `line`, at the column where `at` starts in
/// that line, with a message containing `words`.
fn rejected(body: &str, line: u32, at: &str, words: &str) {
    let text = body
        .lines()
        .nth((line - BODY) as usize)
        .expect("line in body");
    let col = text.find(at).expect("`at` in the line") + 1;
    let d = parse(body).expect_err(body);
    assert_eq!((d[0].pos.line, d[0].pos.col as usize), (line, col), "{d:?}");
    assert!(d[0].message.contains(words), "{d:?}");
}

#[test]
fn dma_at_the_top_of_the_address_space_faults() {
    passes("dma-read d 0xfffffffffffffffc len=8\nexpect fault\n");
    passes("dma-write d 0xffffffffffffffff data=0102\nexpect fault\n");
    passes("a = map d size=4k\ndma-read d a-0xffffffffffff len=8\nexpect fault\n");
}

#[test]
fn buffers_beyond_the_scenario_limit_are_parse_errors() {
    // Each of these used to reach the simulator: a 64 GiB non-contiguous allocation
    // was killed by the host's OOM killer, a 64 GiB fill would have run for minutes.
    rejected(
        "e = alloc-noncontiguous d size=64g\n",
        BODY,
        "64g",
        "at most",
    );
    rejected(
        "e = alloc-coherent d size=0xffffffffffff0000\n",
        BODY,
        "0xf",
        "at most",
    );
    rejected(
        "a = map d size=0xffffffffffff0000\n",
        BODY,
        "0xf",
        "at most",
    );
    rejected(
        "a = map d size=4k offset=0xffffffffffffff00\n",
        BODY,
        "map",
        "offset",
    );
    rejected("a = map d size=64m offset=1\n", BODY, "map", "offset");
    rejected("p = pages size=64g\n", BODY, "64g", "at most");
    rejected(
        "p = pages size=4k\ncpu-fill p len=64g\n",
        BODY + 1,
        "64g",
        "at most",
    );
    rejected(
        "a = map-sg d lens=0x8000000000000000,0x8000000000000000\n",
        BODY,
        "0x8",
        "at most",
    );
    rejected("a = map-sg d lens=32m,32m,4k\n", BODY, "32m", "at most");
    rejected(
        "a = map d size=4k\ndma-read d a len=2m\n",
        BODY + 1,
        "2m",
        "at most",
    );
    rejected("a = map d size=4k around=256\n", BODY, "256", "at most 255");
    // The limit itself is accepted and runs in well under a second.
    passes("a = map-sg d lens=32m,32m\nexpect ok\nunmap a\nexpect ok\n");
    passes("p = pages size=64m\ncpu-fill p byte=1 len=64m\nexpect ok\n");
}

#[test]
fn iommu_map_cannot_reach_beyond_its_pages() {
    let (line, m) =
        run("x = domain s0\np = pages size=4k\niommu-map x iova=0x1000 phys=p size=1g\n")
            .expect("mapping 1 GiB of a 4 KiB page must fail");
    assert_eq!(line, BODY + 2);
    assert!(m.contains("has only 0x1000"), "{m}");
    passes("x = domain s0\np = pages size=8k\niommu-map x iova=0x1000 phys=p size=8k\nexpect ok\n");
}

#[test]
fn iommu_map_and_unmap_near_u64_max_are_api_errors() {
    passes(
        "x = domain s0\np = pages size=8k\niommu-map x iova=0xfffffffffffff000 phys=p size=8k\n\
         expect error\n",
    );
    passes("x = domain s0\niommu-unmap x iova=0xfffffffffffff000 size=0x2000\nexpect error\n");
    passes("x = domain s0\niommu-unmap x iova=0 size=0xfffffffffffff000\nexpect error ERANGE\n");
}

#[test]
fn time_saturates_instead_of_overflowing() {
    passes(
        "a = map d size=4k\nadvance 18446744073709551615ns\nadvance 18446744073709551615ns\n\
         unmap a\nexpect ok\nflush\nexpect ok\n",
    );
}

#[test]
fn a_stream_id_beyond_the_stream_table_fails_the_boot_at_its_line() {
    let (line, m) = run("device h sid=0xffffffff smmu=s0\nexpect ok\n").expect("must fail");
    assert_eq!(line, BODY + 1, "boot happens at the first action");
    assert!(m.contains("StreamID"), "{m}");
    // Hot-plugged after boot: reported at the declaration itself.
    let (line, m) = run("flush\ndevice h sid=0xffffffff smmu=s0\n").expect("must fail");
    assert_eq!(line, BODY + 1);
    assert!(m.contains("hot-plug"), "{m}");
}
