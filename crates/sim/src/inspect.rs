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

/// STE.Config with stage 1 translating (`0b1x1`: stage 1 or nested).
const CONFIG_S1: u64 = 0b101;

/// Whether a valid STE translates at stage 1.
fn s1_translates(ste: &[u64; 8]) -> bool {
    stf::V.get(ste) != 0 && stf::CONFIG.get(ste) & CONFIG_S1 == CONFIG_S1
}

/// Address of CD 0 of an STE (through the L1 CD table when S1Fmt is not linear);
/// `Err` with the unreadable L1 descriptor's address.
fn cd0_addr(mem: &dyn PhysMem, ste: &[u64; 8]) -> Result<u64, u64> {
    // S1ContextPtr holds bits [55:6] of the address, an L1CD.L2Ptr bits [55:12].
    let ptr = stf::S1_CONTEXT_PTR.get(ste) << 6;
    if stf::S1FMT.get(ste) == 0 {
        return Ok(ptr);
    }
    read_words::<1>(mem, ptr)
        .map(|l1| smmuv3_model::cd::l1::L2PTR.get(&l1) << 12)
        .ok_or(ptr)
}

/// The stage-1 translation of a valid CD with TTB0 walks enabled: granule shift,
/// input-address bits and the table root.
fn cd_walk(cd: &[u64; 8]) -> Option<(u32, u32, u64)> {
    if cdf::V.get(cd) == 0 || cdf::EPD0.get(cd) != 0 {
        return None;
    }
    let shift = match cdf::TG0.get(cd) {
        0b00 => 12,
        0b10 => 14,
        0b01 => 16,
        _ => return None,
    };
    let ias = 64 - cdf::T0SZ.get(cd).min(64) as u32;
    // TTB0 holds bits [55:4] of the table address.
    Some((shift, ias, cdf::TTB0.get(cd) << 4))
}

/// Geometry of an LPAE table tree: the start level and the entries of the top table,
/// or `None` when the input size needs no table or more than four levels.
pub fn table_geometry(shift: u32, ias: u32) -> Option<(u32, u64)> {
    if ias <= shift || !matches!(shift, 12 | 14 | 16) {
        return None;
    }
    let stride = shift - 3;
    let levels = (ias - shift).div_ceil(stride);
    if levels > 4 {
        return None;
    }
    let top_bits = ias - shift - (levels - 1) * stride;
    Some((4 - levels, 1u64 << top_bits))
}

/// The raw words of a descriptor, as one line.
fn raw_line(out: &mut String, words: &[u64]) {
    let words: Vec<String> = words.iter().map(|w| format!("{w:016x}")).collect();
    let _ = writeln!(out, "    raw {}", words.join(" "));
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
    raw_line(&mut out, &ste);
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
    if !s1_translates(&ste) {
        return out;
    }
    let cd_addr = match cd0_addr(mem, &ste) {
        Ok(a) => a,
        Err(ptr) => {
            let _ = writeln!(out, "  CD L1 descriptor at {ptr:#x} is not readable");
            return out;
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
    raw_line(&mut out, &cd);
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
    let Some((shift, ias, root)) = cd_walk(&cd) else {
        let _ = writeln!(out, "  reserved TG0");
        return out;
    };
    let _ = writeln!(
        out,
        "  stage-1 table ({} KiB granule, {ias}-bit input):",
        (1u64 << shift) >> 10
    );
    let mut budget = MAX_ENTRIES;
    describe_table(&mut out, mem, root, shift, ias, &mut budget);
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
    let Some((start, entries)) = table_geometry(shift, ias) else {
        let _ = writeln!(
            out,
            "    no LPAE table walks a {ias}-bit input at this granule"
        );
        return;
    };
    walk(out, mem, root, start, entries, 0, shift, budget);
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
    if !s1_translates(&ste) {
        return 0;
    }
    let Some(cd) = cd0_addr(mem, &ste)
        .ok()
        .and_then(|a| read_words::<8>(mem, a))
    else {
        return 0;
    };
    // A CD with more than four levels of input (T0SZ too small) is walked by no
    // hardware; it used to underflow `4 - levels` here.
    let Some((shift, ias, root)) = cd_walk(&cd) else {
        return 0;
    };
    let Some((start, entries)) = table_geometry(shift, ias) else {
        return 0;
    };
    let mut bytes = (8 * entries).max(64);
    count_tables(mem, root, start, entries, shift, &mut bytes);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_geometry_follows_the_lpae_level_rules() {
        // 4K granule: 48-bit input walks 4 levels from L0 (512 entries), 39-bit 3 from
        // L1; 16K at 47 bits starts at L1 with 2048 entries; 64K at 52 bits at L1 with
        // 1024 (lpae.md, levels per granule and input size).
        assert_eq!(table_geometry(12, 48), Some((0, 512)));
        assert_eq!(table_geometry(12, 39), Some((1, 512)));
        assert_eq!(table_geometry(12, 32), Some((1, 4)));
        assert_eq!(table_geometry(14, 47), Some((1, 2048)));
        assert_eq!(table_geometry(14, 48), Some((0, 2)));
        assert_eq!(table_geometry(16, 52), Some((1, 1024)));
        assert_eq!(table_geometry(16, 48), Some((1, 64)));
    }

    #[test]
    fn impossible_geometries_are_none_not_an_underflow() {
        // T0SZ = 0 (64-bit input) needs six 4K levels: no hardware walks that.
        assert_eq!(table_geometry(12, 64), None);
        assert_eq!(table_geometry(12, 12), None);
        assert_eq!(table_geometry(13, 40), None);
        assert_eq!(table_geometry(16, 0), None);
    }
}
