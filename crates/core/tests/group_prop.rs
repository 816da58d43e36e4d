//! Group formation against an independent oracle: two single-function PCI devices
//! share a group exactly when some common ancestor bridge fails to isolate (no full
//! ACS, or a PCIe-to-PCI bridge).

mod common;

use common::*;
use iommu_core::*;
use proptest::prelude::*;

#[derive(Clone, Debug)]
struct Br {
    parent: Option<usize>,
    pcie_to_pci: bool,
    acs: bool,
}

fn topo() -> impl Strategy<Value = (Vec<Br>, Vec<Option<usize>>)> {
    (1usize..7).prop_flat_map(|nb| {
        let bridges = (0..nb)
            .map(|i| {
                (
                    proptest::option::of(0..i.max(1)),
                    any::<bool>(),
                    prop::bool::weighted(0.6),
                )
                    .prop_map(move |(p, legacy, acs)| Br {
                        parent: if i == 0 { None } else { p },
                        pcie_to_pci: legacy && acs,
                        acs,
                    })
            })
            .collect::<Vec<_>>();
        (
            bridges,
            proptest::collection::vec(proptest::option::of(0..nb), 1..10),
        )
    })
}

fn ancestors(br: &[Br], mut b: Option<usize>) -> Vec<usize> {
    let mut v = Vec::new();
    while let Some(i) = b {
        v.push(i);
        b = br[i].parent;
    }
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn groups_match_the_isolation_oracle((bridges, devices) in topo()) {
        let (core, drv, mmu) = setup(DefaultPolicy::Strict);
        let mut ids = Vec::new();
        for b in &bridges {
            let kind = if b.pcie_to_pci { BridgeKind::PcieToPci } else { BridgeKind::SwitchDownstream };
            let acs = if b.acs { Acs::REQUIRED } else { Acs(Acs::SV.0 | Acs::RR.0) };
            let parent = b.parent.map(|p| ids[p]);
            ids.push(core.add_bridge(BridgeDesc { bdf: Bdf::new(0, 0, 0), parent, kind, acs }).unwrap());
        }
        let mut devs = Vec::new();
        for (i, parent) in devices.iter().enumerate() {
            let d = core.add_device(pci(&format!("d{i}"), mmu, i as u8 + 1, 0, 0, parent.map(|p| ids[p]))).unwrap();
            devs.push((d, *parent));
        }
        let isolates = |i: usize| bridges[i].acs && !bridges[i].pcie_to_pci;
        for (a, pa) in &devs {
            for (b, pb) in &devs {
                if a == b {
                    continue;
                }
                let anc_b = ancestors(&bridges, *pb);
                let share = ancestors(&bridges, *pa).iter().any(|x| anc_b.contains(x) && !isolates(*x));
                let same = core.device_group(*a).unwrap() == core.device_group(*b).unwrap();
                prop_assert_eq!(same, share, "{:?} {:?} in {:?}", pa, pb, bridges);
            }
        }
        // Every group is attached to its default domain as a whole.
        for g in core.groups() {
            let def = core.group_default_domain(g).unwrap().unwrap();
            let mut members = core.group_devices(g).unwrap();
            members.sort();
            prop_assert_eq!(def.attached_devices(), members);
        }
        prop_assert!(drv.shared.violations.lock().unwrap().is_empty());
    }
}
