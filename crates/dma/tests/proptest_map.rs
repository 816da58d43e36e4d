//! Property test of map_page/unmap_page/translate against a reference model: a
//! plain list of live buffers. After every step, each live mapping must let the
//! device read exactly its buffer at its DMA address; an untrusted device must see
//! only zeros around it; unmapped addresses must fault; and at the end nothing is
//! left mapped, allocated or bounced.

mod common;

use common::*;
use iommu_dma::{DmaAttrs, DmaDirection};
use proptest::prelude::*;

const K: u64 = 1024;

#[derive(Clone, Debug)]
enum Op {
    Map { off: u64, len: u64, bidir: bool },
    Unmap { pick: usize },
}

fn op(g: u64) -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..2 * g, 1..3 * g, any::<bool>()).prop_map(|(off, len, bidir)| Op::Map { off, len, bidir }),
        2 => any::<usize>().prop_map(|pick| Op::Unmap { pick }),
    ]
}

fn case() -> impl Strategy<Value = (u64, u64, bool, Vec<Op>)> {
    prop::sample::select(vec![
        (4 * K, 4 * K),
        (16 * K, 4 * K),
        (64 * K, 4 * K),
        (64 * K, 16 * K),
    ])
    .prop_flat_map(|(g, page)| {
        (
            Just(g),
            Just(page),
            any::<bool>(),
            prop::collection::vec(op(g), 1..16),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn map_unmap_matches_reference((g, page, trusted_dev, ops) in case()) {
        let rig = Rig::new(g, page);
        let dev = rig.device(if trusted_dev { trusted(page) } else { untrusted(page) });
        // Reference: live (dma, pa, len, dir, seed).
        let mut live: Vec<(u64, u64, u64, DmaDirection, u8)> = Vec::new();
        let mut dead: Vec<u64> = Vec::new();
        for (n, o) in ops.iter().enumerate() {
            match *o {
                Op::Map { off, len, bidir } => {
                    let seed = n as u8;
                    let pa = rig.buffer(off, len);
                    iommu_types::PhysMem::write_bytes(&*rig.mem, pa, &pattern(len as usize, seed)).unwrap();
                    let dir = if bidir { DmaDirection::Bidirectional } else { DmaDirection::ToDevice };
                    let dma = dev.map_page(pa, len, dir, DmaAttrs::default()).unwrap();
                    prop_assert_eq!(dma % g, pa.0 % g);
                    live.push((dma, pa.0, len, dir, seed));
                }
                Op::Unmap { pick } => {
                    if live.is_empty() { continue; }
                    let (dma, _, len, dir, _) = live.swap_remove(pick % live.len());
                    dev.unmap_page(dma, len, dir, DmaAttrs::default()).unwrap();
                    dead.push(dma);
                }
            }
            for &(dma, _, len, _, seed) in &live {
                let mut b = vec![0; len as usize];
                rig.domain.dma_read(&*rig.mem, dma, &mut b).unwrap();
                prop_assert_eq!(&b, &pattern(len as usize, seed));
                if !trusted_dev {
                    let lo = dma - dma % g;
                    let hi = (dma + len).next_multiple_of(g);
                    let mut w = vec![0; (hi - lo) as usize];
                    rig.domain.dma_read(&*rig.mem, lo, &mut w).unwrap();
                    let a = (dma - lo) as usize;
                    prop_assert!(w[..a].iter().chain(&w[a + len as usize..]).all(|&x| x == 0));
                }
            }
            for &d in &dead {
                if !live.iter().any(|&(l, _, len, _, _)| d >= l - l % g && d < (l + len).next_multiple_of(g)) {
                    prop_assert!(rig.domain.translate(d, false).is_err(), "unmapped {:#x} still translates", d);
                }
            }
            if !trusted_dev {
                prop_assert_eq!(dev.exposed_bytes(), 0);
            }
        }
        for (dma, _, len, dir, _) in live.drain(..) {
            dev.unmap_page(dma, len, dir, DmaAttrs::default()).unwrap();
        }
        prop_assert_eq!(rig.domain.mapped_granules(), 0);
        prop_assert_eq!(rig.iova.live(), 0);
        prop_assert_eq!(rig.pool.stats().used_slots, 0);
        prop_assert_eq!(dev.exposed_bytes(), 0);
    }
}
