//! A fuzzing harness shared by the cargo-fuzz target (`fuzz/`) and an ordinary
//! proptest replay in this crate's tests: random stream-table, CD and descriptor
//! words, random command-queue contents, random register writes, translations, ATS
//! requests and DMA, all interpreted from a byte string. The model must never panic;
//! every outcome must be a defined translation, fault, event or command error.

use std::sync::Arc;

use iommu_memory::SimMemory;
use iommu_types::{Mmio, PhysAddr, PhysMem};

use crate::{Access, AccessKind, Capacity, Smmu, SmmuConfig};

/// Base of the fixed memory region the harness places its structures in.
pub const REGION: u64 = 0x1000_0000;
/// Size of the region.
pub const REGION_SIZE: u64 = 1 << 20;
const STRTAB: u64 = REGION;
const CDS: u64 = REGION + 0x2000;
const TABLES: u64 = REGION + 0x1_0000;
const TABLE_PAGES: u64 = 112;
const CMDQ: u64 = REGION + 0x9_0000;
const CMDQ_LOG2: u32 = 8;
const EVTQ: u64 = REGION + 0x9_1000;
const EVTQ_LOG2: u32 = 6;
const DATA: u64 = REGION + 0xA_0000;

struct Bytes<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    fn u64(&mut self) -> u64 {
        self.u32() as u64 | (self.u32() as u64) << 32
    }
    fn done(&self) -> bool {
        self.pos >= self.data.len()
    }
    /// A structure word, biased towards plausible values.
    fn word(&mut self) -> u64 {
        let r = self.u64();
        match self.u8() % 6 {
            0 => r,
            // A table / page descriptor pointing into the table area.
            1 => (TABLES + (r % TABLE_PAGES) * 4096) | ((r >> 56 << 2) & 0xFFC) | 3 | (1 << 10),
            // A block / page descriptor pointing at data.
            2 => (DATA + ((r >> 8) % 16) * 4096) | (r & 0xFFC) | 1 | ((r >> 63) << 1),
            // An STE dword 0: V, Config, CD pointer into the CD area, small S1CDMax.
            3 => {
                1 | ((r & 7) << 1)
                    | ((r >> 3) & 3) << 4
                    | (CDS + (r >> 8 & 63) * 64)
                    | ((r >> 20) % 5) << 59
            }
            // A CD dword 0: V, AA64, 4K/48-bit, random ASID and flags.
            4 => {
                (16 | 1 << 31 | 1 << 30 | 5 << 32 | 1 << 41 | 1 << 45 | 1 << 46)
                    ^ (r & 0xFFFF_0078_0000_4000)
            }
            _ => r & 0xFFFF,
        }
    }
    fn command(&mut self) -> [u64; 2] {
        const OPS: [u8; 20] = [
            0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x10, 0x11, 0x12, 0x13, 0x20, 0x21, 0x22, 0x23,
            0x28, 0x2A, 0x30, 0x40, 0x46, 0x46,
        ];
        let sel = self.u8();
        let op = if sel < 230 {
            OPS[sel as usize % OPS.len()]
        } else {
            self.u8()
        };
        let w0 = (self.u64() & !0xFF) | op as u64;
        let w1 = self.u64();
        // Keep CMD_SYNC MSIs mostly aimed at the data area.
        if op == 0x46 && sel & 1 == 0 {
            return [w0, DATA + (w1 & 0xFFC)];
        }
        [w0, w1]
    }
}

fn config(b: &mut Bytes<'_>) -> SmmuConfig {
    let f = b.u8();
    let cap = match (f >> 4) & 3 {
        0 => Capacity::Unbounded,
        1 => Capacity::Bounded(4),
        2 => Capacity::Disabled,
        _ => Capacity::Bounded(64),
    };
    SmmuConfig::builder()
        .ril(f & 1 != 0)
        .ats(f & 2 != 0)
        .two_level_strtab(f & 4 != 0)
        .fwb(f & 8 != 0)
        .all_caches(cap)
        .sanitizer(f & 0x40 == 0)
        .hyp(f & 0x80 == 0)
        .sid_bits(8)
        .build()
}

fn put(mem: &dyn PhysMem, pa: u64, v: u64) {
    mem.write_u64(PhysAddr(pa), v).expect("in region");
}

/// A sane starting point that random words then corrupt: stage-1 tables (4K,
/// 48-bit) at table pages 0–3 mapping VA [0, 128 KiB) to data pages and a 2 MiB
/// block, stage-2 tables (4K, start level 1, 40-bit IPA) at pages 8–11 mapping the
/// region one to one, CDs, and STEs 0–7 of every kind.
fn baseline(mem: &dyn PhysMem) {
    use crate::{cd, ste};
    let page = |i: u64| TABLES + i * 4096;
    let rw = 1 << 10 | 1 << 11 | 3 << 8 | 1 << 2 | 1 << 6;
    put(mem, page(0), page(1) | 3);
    put(mem, page(1), page(2) | 3);
    put(mem, page(2), page(3) | 3);
    put(mem, page(2) + 8, REGION | rw | 1);
    for i in 0..32 {
        put(mem, page(3) + i * 8, (DATA + (i % 16) * 4096) | rw | 3);
    }
    let s2rw = 1 << 10 | 3 << 8 | 0xF << 2 | 3 << 6;
    put(mem, page(8), page(10) | 3);
    put(mem, page(10) + 8 * (REGION >> 21), page(11) | 3);
    for i in 0..256 {
        put(mem, page(11) + i * 8, (REGION + i * 4096) | s2rw | 3);
    }
    let mut c = [0u64; 8];
    for (f, v) in [
        (cd::fields::T0SZ, 16),
        (cd::fields::IR0, 1),
        (cd::fields::OR0, 1),
        (cd::fields::SH0, 3),
        (cd::fields::EPD1, 1),
        (cd::fields::V, 1),
        (cd::fields::IPS, 5),
        (cd::fields::AA64, 1),
        (cd::fields::R, 1),
        (cd::fields::A, 1),
        (cd::fields::HA, 1),
        (cd::fields::TTB0, page(0) >> 4),
        (cd::fields::MAIR, 0xF404_FF44),
    ] {
        f.set(&mut c, v);
    }
    for i in 0..4u64 {
        cd::fields::ASID.set(&mut c, i + 1);
        mem.write_words(PhysAddr(CDS + i * 64), &c)
            .expect("in region");
    }
    let s1 = |cd_max: u64, eats: u64| {
        let mut w = [0u64; 8];
        ste::fields::V.set(&mut w, 1);
        ste::fields::CONFIG.set(&mut w, ste::config::S1_TRANS);
        ste::fields::S1_CONTEXT_PTR.set(&mut w, CDS >> 6);
        ste::fields::S1CDMAX.set(&mut w, cd_max);
        ste::fields::S1DSS.set(&mut w, 2);
        ste::fields::EATS.set(&mut w, eats);
        w
    };
    let with_s2 = |mut w: [u64; 8]| {
        let c = ste::fields::CONFIG.get(&w) | 2;
        ste::fields::CONFIG.set(&mut w, c);
        for (f, v) in [
            (ste::fields::S2VMID, 1),
            (ste::fields::S2T0SZ, 24),
            (ste::fields::S2SL0, 1),
            (ste::fields::S2PS, 5),
            (ste::fields::S2AA64, 1),
            (ste::fields::S2R, 1),
            (ste::fields::S2TTB, page(8) >> 4),
        ] {
            f.set(&mut w, v);
        }
        w
    };
    let mut s2only = with_s2([0; 8]);
    ste::fields::V.set(&mut s2only, 1);
    ste::fields::CONFIG.set(&mut s2only, ste::config::S2_TRANS);
    let mut bypass = [0u64; 8];
    bypass[0] = 1 | ste::config::BYPASS << 1;
    let stes = [
        s1(0, 0),
        s2only,
        with_s2(s1(0, 0)),
        bypass,
        [1, 0, 0, 0, 0, 0, 0, 0],
        s1(2, 0),
        s1(0, 1),
        s2only,
    ];
    for (i, w) in stes.iter().enumerate() {
        mem.write_words(PhysAddr(STRTAB + i as u64 * 64), w)
            .expect("in region");
    }
}

/// Run one fuzz input. Panics only if the model violates its own contract.
pub fn run(data: &[u8]) {
    let mut b = Bytes { data, pos: 0 };
    let cfg = config(&mut b);
    let mem = Arc::new(SimMemory::new());
    mem.place(PhysAddr(REGION), REGION_SIZE)
        .expect("fixed fuzz region");
    let smmu = Smmu::new(cfg, mem.clone());
    baseline(&*mem);
    // Random structure contents.
    let nwords = (b.u8() % 32) as usize;
    for _ in 0..nwords {
        let at = REGION + (b.u32() as u64 % (REGION_SIZE / 8)) * 8;
        let w = b.word();
        mem.write_u64(PhysAddr(at), w).expect("in region");
    }
    // Sometimes replace the first dwords of one of the baseline STEs.
    let k = b.u8();
    if k % 4 == 0 {
        let sid = (k >> 2) as u64 % 8;
        for i in 0..(k >> 5) as u64 % 4 {
            let w = b.word();
            mem.write_u64(PhysAddr(STRTAB + sid * 64 + i * 8), w)
                .expect("in region");
        }
    }
    // Registers.
    let two_level = b.u8() & 7 == 0;
    smmu.write64(0x80, STRTAB);
    smmu.write32(
        0x88,
        if two_level {
            8 | (6 << 6) | (1 << 16)
        } else {
            6
        },
    );
    smmu.write64(0x90, CMDQ | CMDQ_LOG2 as u64);
    smmu.write64(0xA0, EVTQ | EVTQ_LOG2 as u64);
    smmu.write32(0x2C, 2);
    smmu.write32(0x20, 0xD);
    let mut prod = 0u32;
    let mut ops = 0;
    while !b.done() && ops < 96 {
        ops += 1;
        match b.u8() % 13 {
            0..=4 => {
                let sid = match b.u8() {
                    x if x < 200 => x as u32 % 8,
                    x => x as u32 % 72,
                };
                let s = b.u8();
                let ssid = (s & 3 == 0).then_some((s >> 2) as u32 % 6);
                let addr = match b.u8() % 8 {
                    0 => b.u64(),
                    1 => (b.u8() as u64) << 12 | (b.u8() as u64) << 21 | (b.u8() as u64) << 30,
                    2 | 3 => REGION + ((b.u8() as u64) << 12) + b.u8() as u64,
                    _ => (b.u8() as u64 % 40) << 12 | b.u8() as u64,
                };
                let k = b.u8();
                let kind = [AccessKind::Read, AccessKind::Write, AccessKind::Exec][k as usize % 3];
                let access = Access {
                    kind,
                    privileged: k & 4 != 0,
                };
                if let Ok(t) = smmu.translate(sid, ssid, addr, access) {
                    assert!(
                        t.size.is_power_of_two() && t.size >= 4096,
                        "translation unit size"
                    );
                    assert_eq!(t.pa.0 & 0xFFF, addr & 0xFFF, "page offset preserved");
                }
            }
            5 => {
                let at = REGION + (b.u32() as u64 % (REGION_SIZE / 8)) * 8;
                let w = b.word();
                mem.write_u64(PhysAddr(at), w).expect("in region");
            }
            6 | 7 => {
                let n = 1 + b.u8() % 6;
                for _ in 0..n {
                    let c = b.command();
                    let idx = prod & ((1 << CMDQ_LOG2) - 1);
                    mem.write_words(PhysAddr(CMDQ + idx as u64 * 16), &c)
                        .expect("in region");
                    prod = (prod + 1) & ((2 << CMDQ_LOG2) - 1);
                }
                smmu.write32(0x98, prod);
            }
            8 => {
                // Acknowledge errors, possibly after replacing the bad command by a sync.
                let cons = smmu.read32(0x9C);
                if b.u8() & 1 == 0 {
                    let idx = cons & ((1 << CMDQ_LOG2) - 1);
                    mem.write_words(PhysAddr(CMDQ + idx as u64 * 16), &[0x46, 0])
                        .expect("in region");
                }
                let g = smmu.read32(0x60);
                smmu.write32(0x64, g);
            }
            9 => {
                let off = match b.u8() % 4 {
                    0 => b.u32() as u64,
                    1 => 0x10000 + (b.u8() as u64) * 4,
                    _ => (b.u8() as u64) * 4,
                };
                // Keep the command queue pointers consistent with our copy.
                if off == 0x98 || off == 0x9C {
                    continue;
                }
                let v = b.u32();
                if b.u8() & 1 == 0 {
                    smmu.write32(off, v);
                } else {
                    smmu.write64(off & !7, v as u64 | (b.u32() as u64) << 32);
                }
            }
            10 => {
                let off = b.u32() as u64 % 0x20100;
                let _ = smmu.read32(off);
                let _ = smmu.read64(off);
            }
            11 => {
                let sid = b.u8() as u32 % 72;
                let addr = b.u32() as u64;
                let _ = smmu.ats_translate(sid, None, addr, Access::READ);
            }
            _ => {
                let sid = b.u8() as u32 % 72;
                let addr = b.u32() as u64;
                let mut buf = [0u8; 96];
                if b.u8() & 1 == 0 {
                    let _ = smmu.dma_read(sid, None, addr, &mut buf, false);
                } else {
                    let _ = smmu.dma_write(sid, None, addr, &buf, false);
                }
            }
        }
        // Consume the event queue (the model checks each record it writes decodes).
        let eprod = smmu.read32(0x100A8);
        let evt_cons = eprod & ((2u32 << EVTQ_LOG2) - 1);
        smmu.write32(0x100AC, evt_cons | (eprod & (1 << 31)));
    }
    let _ = smmu.stats();
    let _ = smmu.sanitizer_reports();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (Arc<SimMemory>, Smmu) {
        let mem = Arc::new(SimMemory::new());
        mem.place(PhysAddr(REGION), REGION_SIZE).unwrap();
        baseline(&*mem);
        let smmu = Smmu::new(SmmuConfig::builder().sanitizer(true).build(), mem.clone());
        smmu.write64(0x80, STRTAB);
        smmu.write32(0x88, 6);
        smmu.write32(0x20, 1);
        (mem, smmu)
    }

    #[test]
    fn baseline_streams_translate() {
        let (_mem, smmu) = setup();
        let t = |sid, a| smmu.translate(sid, None, a, Access::READ);
        assert_eq!(t(0, 0x1008).unwrap().pa.0, DATA + 0x1008);
        assert_eq!(t(0, 0x20_0010).unwrap().pa.0, REGION + 0x10);
        assert_eq!(t(1, REGION + 0x2010).unwrap().pa.0, REGION + 0x2010);
        assert_eq!(t(2, 0x3008).unwrap().pa.0, DATA + 0x3008);
        assert_eq!(t(3, 0x5).unwrap().pa.0, 0x5);
        assert!(t(4, 0).is_err());
        assert_eq!(
            smmu.translate(5, Some(3), 0x1008, Access::READ)
                .unwrap()
                .pa
                .0,
            DATA + 0x1008
        );
        assert!(
            smmu.sanitizer_reports().is_empty(),
            "{:?}",
            smmu.sanitizer_reports()
        );
    }
}
