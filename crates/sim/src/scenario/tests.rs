use super::*;
use proptest::prelude::*;

const GOOD: &str = "\
# a small platform
platform cpu-page=4k policy=lazy cpus=2
smmu s0 granule=16k tlb=128 features=ats,coherent
device nic sid=0x10 smmu=s0 dma-mask=32
device tb sid=0x11 smmu=s0 untrusted noncoherent
rx = map nic size=2k dir=from-device
dma-write nic rx+0x10 data=de:ad:be:ef
dma-read nic rx+0x10 len=4
expect bytes deadbeef
unmap rx
dma-read nic rx len=4      # replay after unmap
expect fault translation
buf = alloc-coherent tb size=64k
dma-read tb buf-16 len=16
expect fault
free buf
set-type nic DMA-FQ
advance 10ms
flush
expect sanitizer clean
expect exposed 0
expect counter CMD_SYNC >= 1
expect stale-window <= 10ms
expect type nic DMA-FQ
";

fn errs(src: &str) -> Vec<Diagnostic> {
    parse("t.scn", src).expect_err("should fail")
}

#[test]
fn parses_a_full_scenario() {
    let s = parse("t.scn", GOOD).unwrap_or_else(|d| panic!("{d:?}"));
    assert_eq!(s.stmts.len(), 23);
    assert_eq!(
        s.stmts[0].kind,
        StmtKind::Platform {
            cpu_page: 4096,
            policy: Policy::Lazy,
            cpus: 2
        }
    );
    let StmtKind::Smmu(smmu) = &s.stmts[1].kind else {
        panic!()
    };
    assert_eq!(smmu.granule, 16384);
    assert!(smmu.features.ats && smmu.features.coherent && smmu.features.s1 && !smmu.features.s2);
    assert_eq!(smmu.tlb, Some(128));
    assert_eq!(smmu.walk_cache, None);
    let StmtKind::Device(tb) = &s.stmts[3].kind else {
        panic!()
    };
    assert!(tb.untrusted && !tb.coherent && tb.dma_bits == 64);
    assert_eq!(
        s.stmts[4].kind,
        StmtKind::Map {
            handle: "rx".into(),
            device: "nic".into(),
            size: 2048,
            offset: 0,
            dir: Dir::FromDevice,
            around: None,
        }
    );
    assert_eq!(s.stmts[4].pos, Pos { line: 6, col: 1 });
    assert_eq!(
        s.stmts[5].kind,
        StmtKind::DmaWrite {
            device: "nic".into(),
            target: Target::Handle {
                name: "rx".into(),
                offset: 0x10
            },
            data: vec![0xde, 0xad, 0xbe, 0xef],
            no_snoop: false
        }
    );
    let StmtKind::DmaRead { target, .. } = &s.stmts[12].kind else {
        panic!()
    };
    assert_eq!(
        *target,
        Target::Handle {
            name: "buf".into(),
            offset: -16
        }
    );
    assert_eq!(
        s.stmts[20].kind,
        StmtKind::Expect(Expect::Counter("CMD_SYNC".into(), Cmp::Ge, 1))
    );
    assert_eq!(
        s.stmts[21].kind,
        StmtKind::Expect(Expect::StaleWindow(Cmp::Le, 10_000_000))
    );
}

#[test]
fn syntax_errors_point_at_line_and_column() {
    let d = errs("platform\nsmmu s0\n  rx = mapp nic size=4k\n");
    assert_eq!(d.len(), 1);
    assert_eq!((d[0].pos.line, d[0].pos.col), (3, 8));
    assert!(d[0].message.contains("unknown command `mapp`"), "{}", d[0]);
    assert_eq!(d[0].to_string(), format!("t.scn:3:8: {}", d[0].message));

    let d = errs("smmu s0 granule=8k\n");
    assert_eq!((d[0].pos.line, d[0].pos.col), (1, 17));
    assert!(d[0].message.contains("granule"));

    let d = errs("smmu s0 colour=blue\n");
    assert_eq!(d[0].pos.col, 9);
    assert!(d[0].message.contains("unknown option `colour`"));

    let d = errs("smmu s0 tlb=1 tlb=2\n");
    assert!(d[0].message.contains("given twice"));
}

#[test]
fn several_errors_are_reported_in_one_run() {
    let d = errs("bogus\nsmmu s0\nalso-bogus\n");
    assert_eq!(d.iter().map(|d| d.pos.line).collect::<Vec<_>>(), vec![1, 3]);
}

#[test]
fn assignment_rules() {
    assert!(
        errs("smmu s0\ndevice d sid=1 smmu=s0\nmap d size=4k\n")[0]
            .message
            .contains("needs a handle")
    );
    assert!(
        errs("x = advance 1ms\n")[0]
            .message
            .contains("does not produce a handle")
    );
    assert!(
        errs("1x = pages size=4k\n")[0]
            .message
            .contains("not a valid handle")
    );
    assert!(errs("x =\n")[0].message.contains("expected a command"));
}

#[test]
fn semantic_errors() {
    let base = "smmu s0\ndevice d sid=1 smmu=s0\n";
    let cases = [
        ("device e sid=1 smmu=s0\n", "already used by `d`"),
        ("device e sid=2 smmu=s9\n", "unknown SMMU `s9`"),
        ("h = map nope size=4k\n", "unknown device `nope`"),
        ("unmap h\n", "unknown handle `h`"),
        ("h = map d size=4k\nunmap h\nunmap h\n", "already released"),
        (
            "h = alloc-coherent d size=4k\nunmap h\n",
            "is a coherent allocation",
        ),
        ("h = map d size=4k\nh = map d size=4k\n", "still in use"),
        ("expect bytes 00\n", "needs an earlier"),
        ("advance 1ms\nsmmu s1\n", "after the platform started"),
        ("platform\n", "must come before"),
        ("cpu-read 0x1000 len=4\n", "by handle"),
        (
            "d1 = domain s0\nh = map d size=4k\nattach d h\n",
            "expected a domain",
        ),
    ];
    for (tail, want) in cases {
        let d = errs(&format!("{base}{tail}"));
        assert!(
            d.iter().any(|d| d.message.contains(want)),
            "{tail:?}: {d:?}"
        );
    }
    // A handle may be reused once released, and DMA may target a released mapping.
    let ok = format!("{base}h = map d size=4k\nunmap h\ndma-read d h len=4\nh = map d size=4k\n");
    parse("t", &ok).unwrap_or_else(|d| panic!("{d:?}"));
}

#[test]
fn expectations() {
    let p = |s: &str| match parse_line_kind(s) {
        StmtKind::Expect(e) => e,
        other => panic!("{other:?}"),
    };
    assert_eq!(p("expect ok"), Expect::Ok);
    assert_eq!(p("expect fault"), Expect::Fault(None));
    assert_eq!(
        p("expect error EINVAL"),
        Expect::Error(Some("EINVAL".into()))
    );
    assert_eq!(p("expect exposed 0"), Expect::Exposed(Cmp::Eq, 0));
    assert_eq!(p("expect exposed < 4k"), Expect::Exposed(Cmp::Lt, 4096));
    assert_eq!(p("expect bytes 01 02:03"), Expect::Bytes(vec![1, 2, 3]));
    assert_eq!(p("expect stale-window 0"), Expect::StaleWindow(Cmp::Eq, 0));
    assert!(parser::parse_line("expect sanitizer dirty").is_err());
    assert!(parser::parse_line("expect counter X >=").is_err());
    assert!(parser::parse_line("expect frobnicated").is_err());
}

fn parse_line_kind(s: &str) -> StmtKind {
    parser::parse_line(s)
        .unwrap_or_else(|e| panic!("{e:?}"))
        .expect("statement")
        .1
}

#[test]
fn invalid_utf8_is_an_error_with_position() {
    let d = parse_bytes("b", b"platform\nsmmu \xff\n").expect_err("invalid");
    assert_eq!((d[0].pos.line, d[0].pos.col), (2, 6));
}

#[test]
fn ast_is_serializable() {
    let s = parse("t.scn", GOOD).expect("good");
    let j = serde_json::to_string(&s).expect("json");
    assert!(j.contains("\"DmaFq\""));
}

/// Fragments that make random lines look like scenarios, so the generator reaches deep
/// into the per-command parsers rather than failing on the first token.
const WORDS: &[&str] = &[
    "platform",
    "smmu",
    "device",
    "map",
    "map-sg",
    "unmap",
    "alloc-coherent",
    "free",
    "sync",
    "cpu-write",
    "cpu-read",
    "cpu-fill",
    "dma-read",
    "dma-write",
    "domain",
    "attach",
    "detach",
    "iommu-map",
    "iommu-unmap",
    "set-type",
    "flush",
    "advance",
    "expect",
    "ok",
    "fault",
    "bytes",
    "counter",
    "exposed",
    "stale-window",
    "=",
    "h",
    "d",
    "s0",
    "size=4k",
    "size=0",
    "sid=0x1",
    "smmu=s0",
    "len=99999999999",
    "data=zz",
    "data=00ff",
    "lens=1,2,,3",
    "h+0x10",
    "h-5",
    "0xffffffffffffffff",
    "18446744073709551616k",
    ">=",
    "10ms",
    "é",
    "#",
    "dir=to-device",
    "for=cpu",
    "granule=64k",
    "features=ats",
    "phys=h",
    "iova=0x1000",
    "type=DMA-FQ",
    "DMA-FQ",
    "untrusted",
    "x=",
    "=y",
    "h+",
    "h-",
    "-",
    "+",
    "\t",
    "iova=1g",
];

fn scenario_like() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::collection::vec(prop::sample::select(WORDS), 0..8),
        0..12,
    )
    .prop_map(|lines| {
        lines
            .iter()
            .map(|l| l.join(" "))
            .collect::<Vec<_>>()
            .join("\n")
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn never_panics_on_random_text(s in ".{0,300}") {
        let _ = parse("fuzz", &s);
    }

    #[test]
    fn never_panics_on_random_bytes(b in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse_bytes("fuzz", &b);
    }

    #[test]
    fn never_panics_on_scenario_like_text(s in scenario_like()) {
        match parse("fuzz", &s) {
            Ok(sc) => prop_assert!(sc.stmts.len() <= s.lines().count()),
            Err(d) => {
                prop_assert!(!d.is_empty() && d.len() <= MAX_DIAGNOSTICS);
                for e in d {
                    prop_assert!(e.pos.line >= 1 && (e.pos.line as usize) <= s.lines().count().max(1));
                    prop_assert!(e.pos.col >= 1);
                }
            }
        }
    }

    #[test]
    fn sizes_round_trip(n in 0u64..(1 << 40)) {
        prop_assert_eq!(lexer::parse_size(&n.to_string()), Ok(n));
        prop_assert_eq!(lexer::parse_size(&format!("{n:#x}")), Ok(n));
        prop_assert_eq!(lexer::parse_size(&format!("{n}k")), Ok(n << 10));
    }
}
