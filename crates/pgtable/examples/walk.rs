//! Map a few pages and blocks into an ARM LPAE stage-1 table, then walk the raw
//! descriptors in simulated physical memory and print them decoded, level by level.
//!
//! Run: `cargo run --release -p io-pgtable --example walk`

use std::sync::Arc;

use io_pgtable::lpae::Geometry;
use io_pgtable::lpae::pte::{self, Pte};
use io_pgtable::{Granule, IoPgtable, IotlbGather, LpaeConfig, LpaeTable, NoFlush, Stage};
use iommu_memory::SimMemory;
use iommu_types::{Iova, PhysAddr, PhysMem, Prot, SZ_1G, SZ_2M, SZ_4K};

fn size_name(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 40 => format!("{}T", b >> 40),
        b if b >= 1 << 30 => format!("{}G", b >> 30),
        b if b >= 1 << 20 => format!("{}M", b >> 20),
        b => format!("{}K", b >> 10),
    }
}

fn describe_leaf(p: Pte) -> String {
    let attr = match p.attr_index() {
        pte::MAIR_IDX_NC => "normal non-cacheable",
        pte::MAIR_IDX_CACHE => "normal write-back",
        pte::MAIR_IDX_DEV => "device",
        _ => "other",
    };
    let access = if p.has(pte::AP_RDONLY) {
        "read-only"
    } else {
        "read-write"
    };
    let who = if p.has(pte::AP_UNPRIV) {
        "any privilege"
    } else {
        "privileged only"
    };
    let sh = match p.sh() {
        2 => "outer-shareable",
        3 => "inner-shareable",
        _ => "non-shareable",
    };
    let mut s = format!(
        "{access}, {who}, {attr} (AttrIndx {}), {sh}",
        p.attr_index()
    );
    if p.has(pte::XN) {
        s.push_str(", no-exec");
    }
    if p.has(pte::AF) {
        s.push_str(", AF");
    }
    if p.has(pte::NG) {
        s.push_str(", nG");
    }
    s
}

/// Print the table at `pa` (entries of `level`) and everything below it.
fn dump(mem: &SimMemory, g: &Geometry, pa: u64, level: u32, base: u64, depth: usize) {
    let pad = "    ".repeat(depth);
    println!(
        "{pad}level-{level} table at {pa:#x}: {} entries, each maps {}",
        g.entries(level),
        size_name(g.block_size(level))
    );
    for i in 0..g.entries(level) {
        let raw = mem.read_u64(PhysAddr(pa + 8 * i)).expect("table memory");
        if raw == 0 {
            continue;
        }
        let p = Pte(raw);
        let iova = base + (i << g.level_shift(level));
        if p.is_table(level) {
            println!(
                "{pad}  [{i:4}] {raw:#018x}  TABLE for iova {iova:#x}.. -> next table at {:#x}",
                p.addr(g.granule)
            );
            dump(mem, g, p.addr(g.granule), level + 1, iova, depth + 1);
        } else if p.is_leaf(level) {
            let kind = if level == 3 { "PAGE " } else { "BLOCK" };
            let size = g.block_size(level);
            println!(
                "{pad}  [{i:4}] {raw:#018x}  {kind} {} iova {iova:#x}..{:#x} -> pa {:#x}",
                size_name(size),
                iova + size - 1,
                p.addr(g.granule)
            );
            println!("{pad}                              {}", describe_leaf(p));
        } else {
            println!("{pad}  [{i:4}] {raw:#018x}  invalid");
        }
    }
}

fn main() {
    let mem = SimMemory::new();
    let cfg = LpaeConfig::new(Stage::S1, Granule::G4K, 48, 48);
    let table = LpaeTable::new(cfg, &mem, Arc::new(NoFlush)).expect("valid configuration");
    let g = *table.geometry();

    println!(
        "ARM LPAE stage 1, 4K granule, {}-bit input, {}-bit output",
        g.ias, g.oas
    );
    println!(
        "page sizes: {:?}; root at level {}",
        table.pgsize_bitmap(),
        g.start_level
    );
    let hw = table.s1_config().expect("stage 1");
    let tcr = hw.tcr.ttbr0.expect("TTBR0 table");
    println!(
        "registers for the driver: TTBR0 {:#x}, T0SZ {}, TG0 {} (4K), IRGN0 {:?}, ORGN0 {:?}, SH0 {:?}, IPS {}, MAIR {:#018x}\n",
        hw.ttbr(),
        tcr.tsz,
        tcr.tg,
        tcr.irgn,
        tcr.orgn,
        tcr.sh,
        hw.tcr.ips,
        hw.mair
    );

    let maps: [(u64, u64, u64, u64, Prot); 5] = [
        (0x1000, 0x4000_1000, SZ_4K, 3, Prot::RW),
        (0x8000, 0x5000_0000, SZ_4K, 1, Prot::READ | Prot::NOEXEC),
        (0x20_0000, 0x6000_0000, SZ_2M, 2, Prot::RW | Prot::CACHE),
        (SZ_1G, 0x1_0000_0000, SZ_1G, 1, Prot::RW | Prot::CACHE),
        (0x80_0000_0000, 0x900_0000, SZ_4K, 1, Prot::RW | Prot::MMIO),
    ];
    for (iova, pa, size, count, prot) in maps {
        let (mapped, r) = table.map_pages(Iova(iova), PhysAddr(pa), size, count, prot);
        r.expect("map");
        println!(
            "map {count} x {} at iova {iova:#x} -> pa {pa:#x} ({prot:?}): {} bytes",
            size_name(size),
            mapped
        );
    }
    if let (_, Err(e)) = table.map_pages(Iova(0x2000), PhysAddr(0), SZ_4K, 1, Prot::RW) {
        println!("map over 0x2000 again is refused: {e} ({:?})\n", e.errno());
    }

    println!("Table tree (valid entries only):");
    dump(&mem, &g, table.root().0, g.start_level, 0, 0);

    println!("\nTranslations:");
    for iova in [
        0x1042u64,
        0x3fff,
        0x4000,
        0x8010,
        0x21_2345,
        SZ_1G + 0x1234_5678,
        0x80_0000_0004,
    ] {
        match table.iova_to_phys(Iova(iova)) {
            Some(pa) => println!("  iova {iova:#x} -> pa {pa:#x}"),
            None => println!("  iova {iova:#x} -> not mapped"),
        }
    }

    let mut gather = IotlbGather::new();
    let unmapped = table.unmap_pages(Iova(0x20_0000), SZ_2M, 2, &mut gather);
    println!(
        "\nunmap 2 x 2M at 0x200000: {unmapped:#x} bytes; gather covers {:#x}..={:#x}, leaf size {}",
        gather.start,
        gather.end,
        size_name(gather.pgsize)
    );
    println!("table pages in use: {}", mem.stats().pages_in_use);
}
