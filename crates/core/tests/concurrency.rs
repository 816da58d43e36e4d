//! Attach, detach, ownership and hotplug from several threads at once while a
//! shared domain keeps mapping: no deadlock, and every group ends on a domain it
//! is allowed to be on.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use iommu_core::*;
use iommu_types::{Iova, PhysAddr, Prot};

#[test]
fn concurrent_group_operations_stay_consistent() {
    let (core, drv, mmu) = setup(DefaultPolicy::Strict);
    let core = Arc::new(core);
    let devs: Vec<DeviceId> = (0..4u8)
        .map(|i| {
            core.add_device(pci(&format!("d{i}"), mmu, i + 1, 0, 0, None))
                .unwrap()
        })
        .collect();
    let shared = core.domain_alloc_paging(devs[0], AllocFlags::NONE).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let mut hs = Vec::new();
    for (t, &d) in devs.iter().enumerate() {
        let (core, shared) = (core.clone(), shared.clone());
        hs.push(std::thread::spawn(move || {
            let g = core.device_group(d).unwrap();
            let owner = DmaOwner::new();
            for i in 0..200 {
                match (i + t) % 4 {
                    0 => {
                        core.attach_group(&shared, g).unwrap();
                        core.detach_group(&shared, g).unwrap();
                    }
                    1 => {
                        core.group_claim_dma_owner(g, owner).unwrap();
                        core.replace_group_domain(g, &shared, owner).unwrap();
                        core.group_release_dma_owner(g, owner).unwrap();
                    }
                    2 => {
                        core.device_use_default_domain(d).unwrap();
                        core.device_unuse_default_domain(d).unwrap();
                    }
                    _ => {
                        let _ = core.group_type(g).unwrap();
                    }
                }
            }
        }));
    }
    {
        let (shared, stop) = (shared.clone(), stop.clone());
        hs.push(std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Acquire) {
                let iova = 0x100_0000 + (i % 32) * 0x1000;
                shared
                    .map(Iova(iova), PhysAddr(iova), 0x1000, Prot::RW)
                    .unwrap();
                assert_eq!(shared.unmap(Iova(iova), 0x1000).unwrap(), 0x1000);
                i += 1;
            }
        }));
    }
    let mapper = hs.pop().unwrap();
    for h in hs {
        h.join().unwrap();
    }
    stop.store(true, Ordering::Release);
    mapper.join().unwrap();
    for &d in &devs {
        let g = core.device_group(d).unwrap();
        let def = core.group_default_domain(g).unwrap().unwrap();
        assert!(Arc::ptr_eq(&core.group_domain(g).unwrap().unwrap(), &def));
        assert_eq!(drv.shared.attached_to(d), Some(mock_id(&def)));
        assert_eq!(core.group_owner_count(g).unwrap(), 0);
    }
    assert!(shared.attached_devices().is_empty());
    assert_clean(&drv);
}
