//! `iommu bench` and `iommu bench map` (issue 7, "The `iommu` command"; the map
//! benchmark mirrors Linux's `dma_map_benchmark`, reference `software.md` §4.7).

use crate::table::Table;
use clap::{Args, Subcommand, ValueEnum};
use iommu_sim::Error;
use iommu_sim::mapbench::MapBenchConfig;
use iommu_sim::micro::{Machine, run_all};
use std::time::Duration;

/// Options of `iommu bench`.
#[derive(Args, Debug)]
#[command(
    args_conflicts_with_subcommands = true,
    after_help = "Examples:\n  iommu bench                # micro benchmarks, ns/op\n  iommu bench --millis 50 --json\n  \
iommu bench map -t 2 -s 5 -g 4 --policy lazy\n\n\
Figures are real time on this machine (noted in the output); the criterion benches of each crate \
(`cargo bench`) are the reference measurements."
)]
pub struct BenchArgs {
    #[command(subcommand)]
    map: Option<BenchCommand>,
    /// Time budget per micro benchmark, in milliseconds.
    #[arg(long, default_value_t = 200)]
    millis: u64,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// Mirror of Linux's dma_map_benchmark: average map/unmap latency and standard
    /// deviation in microseconds (100 ns resolution).
    Map(MapArgs),
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum MapPolicy {
    /// Invalidate before each unmap returns.
    Strict,
    /// Flush queue.
    Lazy,
}

/// Options of `iommu bench map`, named like the kernel selftest's.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  iommu bench map                       # 1 thread, 20 s, like the kernel tool\n  \
iommu bench map -t 4 -s 10 -g 16 -d 2 --policy lazy\n\n\
Same options and output as tools/testing/selftests/dma/dma_map_benchmark: the kernel measures in \
100 ns units and the tool prints them /10 as microseconds. Limits: threads 1..=1024, seconds \
1..=300, dma bits 20..=64, direction 0..=2, transfer delay <= 10 ms, granule 1..=1024 pages."
)]
struct MapArgs {
    /// Threads (kthreads in the kernel tool).
    #[arg(short = 't', long, default_value_t = 1)]
    threads: u32,
    /// Duration in seconds.
    #[arg(short = 's', long, default_value_t = 20)]
    seconds: u32,
    /// NUMA node (-1 any); accepted and ignored, the simulator has no NUMA.
    #[arg(short = 'n', long, default_value_t = -1, allow_negative_numbers = true)]
    node: i32,
    /// DMA mask width in bits.
    #[arg(short = 'b', long = "bits", default_value_t = 32)]
    dma_bits: u32,
    /// Direction: 0 BIDIRECTIONAL, 1 TO_DEVICE, 2 FROM_DEVICE.
    #[arg(short = 'd', long = "dir", default_value_t = 0)]
    dir: u32,
    /// Delay between map and unmap in ns, imitating a transfer.
    #[arg(short = 'x', long = "delay", default_value_t = 0)]
    trans_ns: u32,
    /// Pages per map.
    #[arg(short = 'g', long, default_value_t = 1)]
    granule: u32,
    /// Invalidation policy of the device's domain.
    #[arg(long, value_enum, default_value = "strict")]
    policy: MapPolicy,
    /// Print JSON instead of the tool's text.
    #[arg(long)]
    json: bool,
}

/// `iommu bench`.
pub fn main(a: BenchArgs) -> Result<u8, Error> {
    if let Some(BenchCommand::Map(m)) = a.map {
        return map(m);
    }
    if a.millis == 0 || a.millis > 60_000 {
        return Err(Error::Config(format!(
            "--millis must be 1..=60000, got {}",
            a.millis
        )));
    }
    let machine = Machine::current();
    let results = run_all(Duration::from_millis(a.millis));
    if a.json {
        let v = serde_json::json!({ "machine": machine, "results": results });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(0);
    }
    println!(
        "machine: {} ({} logical CPUs, {}, {} build)\n",
        machine.cpu,
        machine.logical_cpus,
        machine.platform,
        if machine.optimized {
            "optimized"
        } else {
            "debug"
        }
    );
    let mut t = Table::new(&["benchmark", "ns/op", "iterations"]);
    for r in &results {
        t.row(vec![
            r.name.clone(),
            format!("{:.1}", r.ns_per_op),
            r.iterations.to_string(),
        ]);
    }
    print!("{}", t.render());
    Ok(0)
}

fn map(m: MapArgs) -> Result<u8, Error> {
    let cfg = MapBenchConfig {
        threads: m.threads,
        seconds: m.seconds,
        node: m.node,
        dma_bits: m.dma_bits,
        dma_dir: m.dir,
        dma_trans_ns: m.trans_ns,
        granule: m.granule,
        lazy: matches!(m.policy, MapPolicy::Lazy),
    };
    cfg.validate()?;
    // A progress bar for runs longer than a couple of seconds (hidden when stderr is
    // not a terminal or with --json).
    let bar = (!m.json && cfg.seconds > 2).then(|| {
        let b = indicatif::ProgressBar::new(u64::from(cfg.seconds));
        b.set_style(
            indicatif::ProgressStyle::with_template("dma_map_benchmark [{bar:30}] {pos}/{len} s")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let done = std::sync::atomic::AtomicBool::new(false);
    let r = std::thread::scope(|s| {
        if let Some(b) = &bar {
            let done = &done;
            s.spawn(move || {
                let start = std::time::Instant::now();
                while !done.load(std::sync::atomic::Ordering::Acquire) {
                    b.set_position(start.elapsed().as_secs());
                    std::thread::sleep(Duration::from_millis(200));
                }
                b.finish_and_clear();
            });
        }
        let r = iommu_sim::map_bench(&cfg);
        done.store(true, std::sync::atomic::Ordering::Release);
        r
    })?;
    if m.json {
        let v = serde_json::json!({ "config": cfg, "result": r, "machine": Machine::current() });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(0);
    }
    let dir = ["BIDIRECTIONAL", "TO_DEVICE", "FROM_DEVICE"][cfg.dma_dir as usize];
    println!(
        "dma mapping benchmark: threads:{} seconds:{} node:{} dir:{} granule: {}",
        cfg.threads, cfg.seconds, cfg.node, dir, cfg.granule
    );
    print!("{}", r.render());
    Ok(0)
}
