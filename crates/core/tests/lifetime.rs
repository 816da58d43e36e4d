//! Domain lifetime vs device hot-unplug (seed 000: the device given at allocation
//! only selects the IOMMU instance) and enforce_cache_coherency (seed 004).

mod common;

use std::sync::Arc;

use common::*;
use iommu_core::*;
use iommu_types::{Errno, Iova, PhysAddr, Prot};

#[test]
fn hot_unplug_of_the_allocating_device_keeps_the_domain_working() {
    let (core, drv, mmu) = setup(DefaultPolicy::Strict);
    let a = core.add_device(pci("a", mmu, 1, 0, 0, None)).unwrap();
    let b = core.add_device(pci("b", mmu, 2, 0, 0, None)).unwrap();
    let (ga, gb) = (core.device_group(a).unwrap(), core.device_group(b).unwrap());
    assert_ne!(ga, gb);
    let owner = DmaOwner::new();
    core.group_claim_dma_owner(ga, owner).unwrap();
    core.group_claim_dma_owner(gb, owner).unwrap();

    // VFIO-style sharing: allocated with a, attached to both groups.
    let dom = core.domain_alloc_paging(a, AllocFlags::NONE).unwrap();
    core.replace_group_domain(ga, &dom, owner).unwrap();
    core.replace_group_domain(gb, &dom, owner).unwrap();
    dom.map(Iova(0x10_0000), PhysAddr(0x8000_0000), 0x4000, Prot::RW)
        .unwrap();

    // Close a: detach, release ownership, and the bus removes the device.
    core.group_release_dma_owner(ga, owner).unwrap();
    core.remove_device(a).unwrap();
    assert!(drv.shared.events.lock().unwrap().contains(&Ev::Release(a)));
    assert_eq!(core.device_group(a).unwrap_err().errno(), Errno::ENODEV);
    assert_eq!(
        core.group_devices(ga).unwrap_err().errno(),
        Errno::ENOENT,
        "empty group removed"
    );

    // The domain keeps serving b.
    assert_eq!(dom.attached_devices(), vec![b]);
    assert_eq!(drv.shared.attached_to(b), Some(mock_id(&dom)));
    dom.map(
        Iova(0x20_0000),
        PhysAddr(0x9000_0000),
        0x20_0000,
        Prot::READ,
    )
    .unwrap();
    assert_eq!(
        dom.iova_to_phys(Iova(0x10_1008)),
        Some(PhysAddr(0x8000_1008))
    );
    assert_eq!(
        dom.iova_to_phys(Iova(0x21_0000)),
        Some(PhysAddr(0x9001_0000))
    );
    assert_eq!(dom.unmap(Iova(0x10_0000), 0x4000).unwrap(), 0x4000);
    assert_eq!(dom.iova_to_phys(Iova(0x10_0000)), None);
    assert!(Arc::ptr_eq(&core.group_domain(gb).unwrap().unwrap(), &dom));
    // A domain can still be detached and reattached after its allocator is gone.
    core.detach_group(&dom, gb).unwrap();
    core.replace_group_domain(gb, &dom, owner).unwrap();
    // The driver never saw its released device again.
    assert_clean(&drv);
}

#[test]
fn surprise_removal_while_attached_leaves_other_groups_attached() {
    let (core, drv, mmu) = setup(DefaultPolicy::Strict);
    let a = core.add_device(pci("a", mmu, 1, 0, 0, None)).unwrap();
    let b = core.add_device(pci("b", mmu, 2, 0, 0, None)).unwrap();
    let owner = DmaOwner::new();
    let (ga, gb) = (core.device_group(a).unwrap(), core.device_group(b).unwrap());
    core.device_claim_dma_owner(a, owner).unwrap();
    core.device_claim_dma_owner(b, owner).unwrap();
    let dom = core.domain_alloc_paging(a, AllocFlags::NONE).unwrap();
    core.replace_group_domain(ga, &dom, owner).unwrap();
    core.replace_group_domain(gb, &dom, owner).unwrap();
    // a disappears without any detach or release.
    core.remove_device(a).unwrap();
    assert_eq!(dom.attached_devices(), vec![b]);
    dom.map(Iova(0x1000), PhysAddr(0x1000), 0x1000, Prot::RW)
        .unwrap();
    assert!(core.group_is_user_owned(gb).unwrap());
    assert_clean(&drv);
}

#[test]
fn removing_a_bound_device_drops_its_owner_count() {
    let (core, drv, mmu) = setup(DefaultPolicy::Strict);
    let port = non_acs_root_port(&core);
    let a = core.add_device(pci("a", mmu, 1, 0, 0, Some(port))).unwrap();
    let b = core.add_device(pci("b", mmu, 1, 1, 0, Some(port))).unwrap();
    let g = core.device_group(a).unwrap();
    core.device_use_default_domain(a).unwrap();
    core.remove_device(a).unwrap();
    assert_eq!(core.group_owner_count(g).unwrap(), 0);
    assert_eq!(core.group_devices(g).unwrap(), vec![b]);
    // Now the group can be claimed.
    core.group_claim_dma_owner(g, DmaOwner::new()).unwrap();
    assert_clean(&drv);
}

fn coherent_setup() -> (IommuCore, Arc<MockDriver>, [DeviceId; 3], [GroupId; 3]) {
    let (core, drv, mmu) = setup(DefaultPolicy::Strict);
    let mut ids = [DeviceId(0); 3];
    let mut gs = [GroupId(0); 3];
    for (i, (name, canwbs)) in [("wbs1", true), ("wbs2", true), ("nosnoop", false)]
        .into_iter()
        .enumerate()
    {
        let mut d = pci(name, mmu, i as u8 + 1, 0, 0, None);
        d.canwbs = canwbs;
        ids[i] = core.add_device(d).unwrap();
        gs[i] = core.device_group(ids[i]).unwrap();
    }
    (core, drv, ids, gs)
}

#[test]
fn enforced_coherency_is_permanent_and_refuses_later_incapable_devices() {
    let (core, drv, [w1, w2, ns], [g1, g2, g3]) = coherent_setup();
    let dom = core.domain_alloc_paging(w1, AllocFlags::NONE).unwrap();
    core.attach_group(&dom, g1).unwrap();
    assert!(dom.enforce_cache_coherency());
    assert!(dom.is_coherency_enforced());
    assert!(dom.enforce_cache_coherency(), "idempotent");

    // A device that can comply may still join...
    core.attach_group(&dom, g2).unwrap();
    // ...one that cannot is refused with EINVAL and stays where it was.
    let before = core.group_domain(g3).unwrap().unwrap();
    assert_eq!(
        core.attach_group(&dom, g3).unwrap_err().errno(),
        Errno::EINVAL
    );
    assert!(Arc::ptr_eq(
        &core.group_domain(g3).unwrap().unwrap(),
        &before
    ));
    assert_eq!(drv.shared.attached_to(ns), Some(mock_id(&before)));
    assert_eq!(dom.attached_devices(), vec![w1, w2]);

    // Still binding after every device left.
    core.detach_group(&dom, g1).unwrap();
    core.detach_group(&dom, g2).unwrap();
    assert_eq!(
        core.attach_group(&dom, g3).unwrap_err().errno(),
        Errno::EINVAL
    );
    assert!(dom.is_coherency_enforced());
    assert_clean(&drv);
}

#[test]
fn the_core_refuses_even_if_a_driver_forgot_to() {
    // The core's own check: a domain whose driver object would accept anything.
    let (core, drv, [w1, _, _], [g1, _, g3]) = coherent_setup();
    let dom = core.domain_alloc_paging(w1, AllocFlags::NONE).unwrap();
    core.attach_group(&dom, g1).unwrap();
    assert!(dom.enforce_cache_coherency());
    mock_of(&dom)
        .enforce
        .store(false, std::sync::atomic::Ordering::Release);
    let n = drv.shared.events.lock().unwrap().len();
    assert_eq!(
        core.attach_group(&dom, g3).unwrap_err().errno(),
        Errno::EINVAL
    );
    assert_eq!(
        drv.shared.events.lock().unwrap().len(),
        n,
        "driver attach never called"
    );
    assert_clean(&drv);
}

#[test]
fn enforcement_fails_with_an_incapable_device_attached() {
    let (core, drv, [_, _, ns], [g1, _, g3]) = coherent_setup();
    let dom = core.domain_alloc_paging(ns, AllocFlags::NONE).unwrap();
    core.attach_group(&dom, g3).unwrap();
    assert!(!dom.enforce_cache_coherency());
    assert!(!dom.is_coherency_enforced());
    // Not enforced: anything may attach.
    core.attach_group(&dom, g1).unwrap();
    assert_clean(&drv);
}

#[test]
fn nested_domains_are_typed_stubs() {
    let (core, drv, mmu) = setup(DefaultPolicy::Strict);
    let a = core.add_device(pci("a", mmu, 1, 0, 0, None)).unwrap();
    let parent = core
        .domain_alloc_paging(a, AllocFlags::NEST_PARENT)
        .unwrap();
    let data = NestedData {
        data_type: 2,
        data: &[0u8; 16],
    };
    // The mock driver has no nesting: EOPNOTSUPP from the trait's default.
    assert_eq!(
        core.domain_alloc_nested(a, &parent, data)
            .unwrap_err()
            .errno(),
        Errno::EOPNOTSUPP
    );
    // A non-paging parent or one on another instance is EINVAL.
    let ident = core.domain_alloc_identity(a).unwrap();
    assert_eq!(
        core.domain_alloc_nested(a, &ident, data)
            .unwrap_err()
            .errno(),
        Errno::EINVAL
    );
    let drv2 = Arc::new(MockDriver::new());
    let mmu2 = core.register_iommu(drv2);
    let x = core
        .add_device(DeviceDesc::platform("x", mmu2, 1, &[1]))
        .unwrap();
    assert_eq!(
        core.domain_alloc_nested(x, &parent, data)
            .unwrap_err()
            .errno(),
        Errno::EINVAL
    );
    assert_eq!(core.device_hw_info(a).unwrap(), None);
    assert_eq!(
        core.device_default_domain(a)
            .unwrap()
            .unwrap()
            .domain_type(),
        DomainType::Dma
    );
    assert_clean(&drv);
}

#[test]
fn removal_completes_even_if_the_group_cannot_return_to_its_default_domain() {
    let (core, drv, mmu) = setup(DefaultPolicy::Strict);
    let port = non_acs_root_port(&core);
    let a = core.add_device(pci("a", mmu, 1, 0, 0, Some(port))).unwrap();
    let b = core.add_device(pci("b", mmu, 1, 1, 0, Some(port))).unwrap();
    let g = core.device_group(a).unwrap();
    assert_eq!(core.group_devices(g).unwrap(), vec![a, b]);
    let owner = DmaOwner::new();
    core.device_claim_dma_owner(a, owner).unwrap();
    let user = core.domain_alloc_paging(a, AllocFlags::NONE).unwrap();
    core.replace_group_domain(g, &user, owner).unwrap();
    // Going back to the default domain will fail for b.
    drv.shared.fail_attach.lock().unwrap().insert("b".into());
    let sid_a = core.device_info(a).unwrap().desc.stream_ids[0];

    // a leaves with the last claim; whatever happens to the group, a is gone.
    let r = core.remove_device(a);
    assert_eq!(
        r.unwrap_err().errno(),
        Errno::EINVAL,
        "the failure is reported"
    );
    assert_eq!(core.device_group(a).unwrap_err().errno(), Errno::ENODEV);
    assert_eq!(core.fault_router().stream_owner(mmu, sid_a), None);
    assert_eq!(core.group_devices(g).unwrap(), vec![b]);
    assert!(!user.attached_devices().contains(&a));
    // The group stays owned (on the user's domain) so no kernel driver can bind to
    // a group that is not on its default domain, and the owner can still release.
    assert!(core.group_is_user_owned(g).unwrap());
    assert_eq!(
        core.device_use_default_domain(b).unwrap_err().errno(),
        Errno::EBUSY
    );
    drv.shared.fail_attach.lock().unwrap().clear();
    core.group_release_dma_owner(g, owner).unwrap();
    assert!(!core.group_is_user_owned(g).unwrap());
    core.device_use_default_domain(b).unwrap();
    // The same function can come back.
    let a2 = core.add_device(pci("a", mmu, 1, 0, 0, Some(port))).unwrap();
    assert_eq!(core.device_group(a2).unwrap(), g);
    assert_clean(&drv);
}
