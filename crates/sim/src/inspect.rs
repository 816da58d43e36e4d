//! `iommu inspect`: the final STE, CD and page tables of a stream, read raw from
//! simulated memory and decoded field by field with the hardware model's field
//! definitions (`smmuv3.md` §2–3, `lpae.md`). Read-only; nothing is cached.

use iommu_types::{PhysAddr, PhysMem};
use smmuv3_model::cd::fields as cdf;
use smmuv3_model::field::Field;
use smmuv3_model::ste::fields as stf;
use std::fmt::Write;

/// Most page-table entries printed per stream.
const MAX_ENTRIES: usize = 512;

fn read_words<const N: usize>(mem: &dyn PhysMem, pa: u64) -> Option<[u64; N]> {
    let mut w = [0u64; N];
    for (i, x) in w.iter_mut().enumerate() {
        *x = mem.read_u64(PhysAddr(pa + 8 * i as u64)).ok()?;
    }
    Some(w)
}

fn fields(out: &mut String, words: &[u64], list: &[(&str, Field)]) {
    for (name, f) in list {
        let _ = writeln!(out, "    {name:<16} {:#x}", f.get(words));
    }
}

fn config_name(c: u64) -> &'static str {
    match c {
        0b000 => "abort",
        0b100 => "bypass",
        0b101 => "stage 1",
        0b110 => "stage 2",
        0b111 => "nested",
        _ => "reserved",
    }
}

/// Describe the STE of `sid`, its CD 0 and the stage-1 page table.
pub fn describe_stream(mem: &dyn PhysMem, drv: &smmuv3::Smmu, sid: u32) -> String {
    let mut out = String::new();
    let Ok(addr) = drv.ste_addr(sid) else {
        let _ = writeln!(out, "  no STE for StreamID {sid:#x}");
        return out;
    };
    let Some(ste) = read_words::<8>(mem, addr.0) else {
        let _ = writeln!(out, "  STE at {:#x} is not readable", addr.0);
        return out;
    };
    let config = stf::CONFIG.get(&ste);
    let _ = writeln!(
        out,
        "  STE @ {:#x}: V={} Config={:#05b} ({})",
        addr.0,
        stf::V.get(&ste),
        config,
        config_name(config)
    );
    let _ = writeln!(
        out,
        "    raw {}",
        ste.iter()
            .map(|w| format!("{w:016x}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    fields(
        &mut out,
        &ste,
        &[
            ("S1Fmt", stf::S1FMT),
            ("S1ContextPtr", stf::S1_CONTEXT_PTR),
            ("S1CDMax", stf::S1CDMAX),
            ("S1DSS", stf::S1DSS),
            ("EATS", stf::EATS),
            ("STRW", stf::STRW),
            ("SHCFG", stf::SHCFG),
            ("S2FWB", stf::S2FWB),
            ("S2VMID", stf::S2VMID),
            ("S2T0SZ", stf::S2T0SZ),
            ("S2TG", stf::S2TG),
            ("S2TTB", stf::S2TTB),
        ],
    );
    if stf::V.get(&ste) == 0 || config & 0b101 != 0b101 {
        return out;
    }
    let ptr = stf::S1_CONTEXT_PTR.get(&ste) << 6;
    let cd_addr = if stf::S1FMT.get(&ste) == 0 {
        ptr
    } else {
        match read_words::<1>(mem, ptr) {
            Some(l1) => smmuv3_model::cd::l1::L2PTR.get(&l1) << 12,
            None => {
                let _ = writeln!(out, "  CD L1 descriptor at {ptr:#x} is not readable");
                return out;
            }
        }
    };
    let Some(cd) = read_words::<8>(mem, cd_addr) else {
        let _ = writeln!(out, "  CD at {cd_addr:#x} is not readable");
        return out;
    };
    let _ = writeln!(
        out,
        "  CD[0] @ {cd_addr:#x}: V={} ASID={:#x}",
        cdf::V.get(&cd),
        cdf::ASID.get(&cd)
    );
    let _ = writeln!(
        out,
        "    raw {}",
        cd.iter()
            .map(|w| format!("{w:016x}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    fields(
        &mut out,
        &cd,
        &[
            ("T0SZ", cdf::T0SZ),
            ("TG0", cdf::TG0),
            ("IR0/OR0/SH0", Field::bits(0, 13, 8)),
            ("EPD0", cdf::EPD0),
            ("EPD1", cdf::EPD1),
            ("IPS", cdf::IPS),
            ("AA64", cdf::AA64),
            ("HA/HD", Field::bits(0, 43, 42)),
            ("R/A/S", Field::bits(0, 46, 44)),
            ("ASET", cdf::ASET),
            ("TTB0", cdf::TTB0),
            ("MAIR", cdf::MAIR),
        ],
    );
    if cdf::V.get(&cd) == 0 || cdf::EPD0.get(&cd) != 0 {
        return out;
    }
    let shift = match cdf::TG0.get(&cd) {
        0b00 => 12,
        0b10 => 14,
        0b01 => 16,
        _ => {
            let _ = writeln!(out, "  reserved TG0");
            return out;
        }
    };
    let ias = 64 - cdf::T0SZ.get(&cd).min(64) as u32;
    let _ = writeln!(
        out,
        "  stage-1 table ({} KiB granule, {ias}-bit input):",
        (1u64 << shift) >> 10
    );
    let mut budget = MAX_ENTRIES;
    describe_table(
        &mut out,
        mem,
        cdf::TTB0.get(&cd) << 4,
        shift,
        ias,
        &mut budget,
    );
    if budget == 0 {
        let _ = writeln!(out, "    ... (more entries not shown)");
    }
    out
}

/// Print the valid entries of an LPAE table tree.
pub fn describe_table(
    out: &mut String,
    mem: &dyn PhysMem,
    root: u64,
    shift: u32,
    ias: u32,
    budget: &mut usize,
) {
    let stride = shift - 3;
    if ias <= shift {
        return;
    }
    let levels = (ias - shift).div_ceil(stride);
    let start = 4u32.saturating_sub(levels);
    let top_bits = ias - shift - (levels - 1) * stride;
    walk(out, mem, root, start, 1u64 << top_bits, 0, shift, budget);
}

#[allow(clippy::too_many_arguments)]
fn walk(
    out: &mut String,
    mem: &dyn PhysMem,
    table: u64,
    level: u32,
    entries: u64,
    base: u64,
    shift: u32,
    budget: &mut usize,
) {
    let stride = shift - 3;
    let oa_mask = ((1u64 << 48) - 1) & !((1u64 << shift) - 1);
    let level_shift = shift + (3 - level) * stride;
    for i in 0..entries {
        if *budget == 0 {
            return;
        }
        let Ok(d) = mem.read_u64(PhysAddr(table + 8 * i)) else {
            let _ = writeln!(out, "    L{level} table at {table:#x} is not readable");
            return;
        };
        if d & 1 == 0 {
            continue;
        }
        *budget -= 1;
        let iova = base | (i << level_shift);
        let indent = "  ".repeat(level as usize + 2);
        if level < 3 && d & 2 != 0 {
            let _ = writeln!(out, "{indent}L{level}[{i:#x}] table -> {:#x}", d & oa_mask);
            walk(
                out,
                mem,
                d & oa_mask,
                level + 1,
                1 << stride,
                iova,
                shift,
                budget,
            );
        } else if level == 3 && d & 2 == 0 {
            let _ = writeln!(out, "{indent}L3[{i:#x}] reserved descriptor {d:#x}");
        } else {
            let kind = if level == 3 { "page" } else { "block" };
            let _ = writeln!(
                out,
                "{indent}L{level}[{i:#x}] {kind} iova {iova:#x} -> pa {:#x} size {:#x} AttrIndx={} AP={:#04b} SH={:#04b} AF={} DBM={} PXN={} UXN={}",
                d & oa_mask & !((1u64 << level_shift) - 1),
                1u64 << level_shift,
                (d >> 2) & 7,
                (d >> 6) & 3,
                (d >> 8) & 3,
                (d >> 10) & 1,
                (d >> 51) & 1,
                (d >> 53) & 1,
                (d >> 54) & 1
            );
        }
    }
}

/// Bytes of stage-1 page-table memory reachable from the CD 0 of `sid` (0 when the
/// stream does not translate at stage 1).
pub fn stream_table_bytes(mem: &dyn PhysMem, drv: &smmuv3::Smmu, sid: u32) -> u64 {
    let Some(ste) = drv
        .ste_addr(sid)
        .ok()
        .and_then(|a| read_words::<8>(mem, a.0))
    else {
        return 0;
    };
    if stf::V.get(&ste) == 0 || stf::CONFIG.get(&ste) & 0b101 != 0b101 {
        return 0;
    }
    let ptr = stf::S1_CONTEXT_PTR.get(&ste) << 6;
    let cd_addr = if stf::S1FMT.get(&ste) == 0 {
        ptr
    } else {
        match read_words::<1>(mem, ptr) {
            Some(l1) => smmuv3_model::cd::l1::L2PTR.get(&l1) << 12,
            None => return 0,
        }
    };
    let Some(cd) = read_words::<8>(mem, cd_addr) else {
        return 0;
    };
    if cdf::V.get(&cd) == 0 || cdf::EPD0.get(&cd) != 0 {
        return 0;
    }
    let shift = match cdf::TG0.get(&cd) {
        0b00 => 12,
        0b10 => 14,
        0b01 => 16,
        _ => return 0,
    };
    let ias = 64 - cdf::T0SZ.get(&cd).min(64) as u32;
    if ias <= shift {
        return 0;
    }
    let stride = shift - 3;
    let levels = (ias - shift).div_ceil(stride);
    let top_bits = ias - shift - (levels - 1) * stride;
    let mut bytes = (8u64 << top_bits).max(64);
    count_tables(
        mem,
        cdf::TTB0.get(&cd) << 4,
        4 - levels,
        1u64 << top_bits,
        shift,
        &mut bytes,
    );
    bytes
}

fn count_tables(
    mem: &dyn PhysMem,
    table: u64,
    level: u32,
    entries: u64,
    shift: u32,
    bytes: &mut u64,
) {
    if level >= 3 {
        return;
    }
    let oa_mask = ((1u64 << 48) - 1) & !((1u64 << shift) - 1);
    for i in 0..entries {
        let Ok(d) = mem.read_u64(PhysAddr(table + 8 * i)) else {
            return;
        };
        if d & 3 == 3 {
            *bytes += 1u64 << shift;
            count_tables(mem, d & oa_mask, level + 1, 1 << (shift - 3), shift, bytes);
        }
    }
}
