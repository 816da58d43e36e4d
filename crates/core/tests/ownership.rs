//! DMA ownership: kernel DMA API vs a user owner (reference `software.md` §6.3),
//! with every refusal and its errno.

mod common;

use std::sync::Arc;

use common::*;
use iommu_core::*;
use iommu_types::Errno;

fn one(core: &IommuCore, mmu: IommuId, name: &str, bus: u8) -> (DeviceId, GroupId) {
    let d = core.add_device(pci(name, mmu, bus, 0, 0, None)).unwrap();
    (d, core.device_group(d).unwrap())
}

fn two_in_group(core: &IommuCore, mmu: IommuId) -> (DeviceId, DeviceId, GroupId) {
    let port = non_acs_root_port(core);
    let a = core.add_device(pci("a", mmu, 1, 0, 0, Some(port))).unwrap();
    let b = core.add_device(pci("b", mmu, 1, 1, 0, Some(port))).unwrap();
    let g = core.device_group(a).unwrap();
    assert_eq!(core.device_group(b).unwrap(), g);
    (a, b, g)
}

#[test]
fn kernel_driver_binding_counts_and_blocks_user_claims() {
    let (core, drv, mmu) = setup(DefaultPolicy::Strict);
    let (a, b, g) = two_in_group(&core, mmu);
    let def = core.device_use_default_domain(a).unwrap();
    assert!(Arc::ptr_eq(
        &def,
        &core.group_default_domain(g).unwrap().unwrap()
    ));
    assert_eq!(core.group_owner_count(g).unwrap(), 1);
    // Binding twice to the same device is refused; the sibling may bind.
    assert_eq!(
        core.device_use_default_domain(a).unwrap_err().errno(),
        Errno::EBUSY
    );
    core.device_use_default_domain(b).unwrap();
    assert_eq!(core.group_owner_count(g).unwrap(), 2);

    // A user cannot take a group a kernel driver uses: EPERM on both paths.
    let owner = DmaOwner::new();
    assert_eq!(
        core.group_claim_dma_owner(g, owner).unwrap_err().errno(),
        Errno::EPERM
    );
    assert_eq!(
        core.device_claim_dma_owner(a, owner).unwrap_err().errno(),
        Errno::EPERM
    );

    core.device_unuse_default_domain(a).unwrap();
    core.device_unuse_default_domain(b).unwrap();
    assert_eq!(
        core.device_unuse_default_domain(b).unwrap_err().errno(),
        Errno::EINVAL
    );
    assert_eq!(core.group_owner_count(g).unwrap(), 0);
    core.group_claim_dma_owner(g, owner).unwrap();
    assert_clean(&drv);
}

#[test]
fn user_claim_blocks_the_group_and_refuses_kernel_use() {
    let (core, drv, mmu) = setup(DefaultPolicy::Strict);
    let (a, b, g) = two_in_group(&core, mmu);
    let owner = DmaOwner::new();
    core.group_claim_dma_owner(g, owner).unwrap();
    assert!(core.group_is_user_owned(g).unwrap());
    // The group now sits on the blocking domain.
    let cur = core.group_domain(g).unwrap().unwrap();
    assert_eq!(cur.domain_type(), DomainType::Blocked);
    assert_eq!(drv.shared.attached_to(a), Some(mock_id(&cur)));
    assert_eq!(drv.shared.attached_to(b), Some(mock_id(&cur)));

    // Kernel drivers cannot bind (EBUSY), a second claim is EPERM, and the kernel
    // attach API refuses a user-owned group (EBUSY).
    assert_eq!(
        core.device_use_default_domain(a).unwrap_err().errno(),
        Errno::EBUSY
    );
    assert_eq!(
        core.group_claim_dma_owner(g, owner).unwrap_err().errno(),
        Errno::EPERM
    );
    assert_eq!(
        core.group_claim_dma_owner(g, DmaOwner::new())
            .unwrap_err()
            .errno(),
        Errno::EPERM
    );
    let dom = core.domain_alloc_paging(a, AllocFlags::NONE).unwrap();
    assert_eq!(
        core.attach_group(&dom, g).unwrap_err().errno(),
        Errno::EBUSY
    );

    // The owner attaches through its own path; a stranger cannot.
    assert_eq!(
        core.replace_group_domain(g, &dom, DmaOwner::new())
            .unwrap_err()
            .errno(),
        Errno::EPERM
    );
    core.replace_group_domain(g, &dom, owner).unwrap();
    assert_eq!(drv.shared.attached_to(a), Some(mock_id(&dom)));
    // Detaching while owned goes back to blocking, not to the default domain.
    core.detach_group(&dom, g).unwrap();
    assert_eq!(
        core.group_domain(g).unwrap().unwrap().domain_type(),
        DomainType::Blocked
    );

    // Release by a stranger is refused; release by the owner returns to default
    // even with a user domain attached.
    core.replace_group_domain(g, &dom, owner).unwrap();
    assert_eq!(
        core.group_release_dma_owner(g, DmaOwner::new())
            .unwrap_err()
            .errno(),
        Errno::EPERM
    );
    core.group_release_dma_owner(g, owner).unwrap();
    let def = core.group_default_domain(g).unwrap().unwrap();
    assert!(Arc::ptr_eq(&core.group_domain(g).unwrap().unwrap(), &def));
    assert_eq!(drv.shared.attached_to(b), Some(mock_id(&def)));
    assert!(!core.group_is_user_owned(g).unwrap());
    core.device_use_default_domain(a).unwrap();
    assert_clean(&drv);
}

#[test]
fn device_claims_count_per_owner() {
    let (core, drv, mmu) = setup(DefaultPolicy::Strict);
    let (a, b, g) = two_in_group(&core, mmu);
    let owner = DmaOwner::new();
    core.device_claim_dma_owner(a, owner).unwrap();
    core.device_claim_dma_owner(b, owner).unwrap();
    assert_eq!(core.group_owner_count(g).unwrap(), 2);
    // Another owner cannot join the claim.
    assert_eq!(
        core.device_claim_dma_owner(b, DmaOwner::new())
            .unwrap_err()
            .errno(),
        Errno::EPERM
    );
    assert_eq!(
        core.device_release_dma_owner(a, DmaOwner::new())
            .unwrap_err()
            .errno(),
        Errno::EPERM
    );
    core.device_release_dma_owner(a, owner).unwrap();
    assert_eq!(
        core.device_release_dma_owner(a, owner).unwrap_err().errno(),
        Errno::EINVAL
    );
    // Still owned by the remaining claim.
    assert!(core.group_is_user_owned(g).unwrap());
    assert_eq!(
        core.group_domain(g).unwrap().unwrap().domain_type(),
        DomainType::Blocked
    );
    core.device_release_dma_owner(b, owner).unwrap();
    assert!(!core.group_is_user_owned(g).unwrap());
    // A group-wide release also clears the device-level claims.
    core.device_claim_dma_owner(a, owner).unwrap();
    core.group_release_dma_owner(g, owner).unwrap();
    assert_eq!(
        core.device_release_dma_owner(a, owner).unwrap_err().errno(),
        Errno::EPERM
    );
    core.device_claim_dma_owner(a, owner).unwrap();
    core.device_release_dma_owner(a, owner).unwrap();
    assert_eq!(
        core.device_release_dma_owner(a, owner).unwrap_err().errno(),
        Errno::EPERM
    );
    assert_eq!(core.group_owner_count(g).unwrap(), 0);
    assert_eq!(
        core.group_domain(g).unwrap().unwrap().domain_type(),
        DomainType::Dma
    );
    assert_clean(&drv);
}

#[test]
fn claims_while_a_foreign_domain_is_attached_are_busy() {
    let (core, drv, mmu) = setup(DefaultPolicy::Strict);
    let (a, g) = one(&core, mmu, "a", 1);
    // A kernel user (owner_cnt 0, e.g. a driver managing its own domain) attached
    // a domain: user ownership is refused with EBUSY.
    let dom = core.domain_alloc_paging(a, AllocFlags::NONE).unwrap();
    core.attach_group(&dom, g).unwrap();
    assert_eq!(
        core.group_claim_dma_owner(g, DmaOwner::new())
            .unwrap_err()
            .errno(),
        Errno::EBUSY
    );
    assert_eq!(
        core.device_claim_dma_owner(a, DmaOwner::new())
            .unwrap_err()
            .errno(),
        Errno::EBUSY
    );
    // Binding the DMA API is allowed for the first user (Linux checks only when
    // owner_cnt > 0)...
    core.device_use_default_domain(a).unwrap();
    assert_clean(&drv);
}

#[test]
fn binding_a_second_driver_off_the_default_domain_is_busy() {
    let (core, drv, mmu) = setup(DefaultPolicy::Strict);
    let (a, b, g) = two_in_group(&core, mmu);
    core.device_use_default_domain(a).unwrap();
    let dom = core.domain_alloc_paging(a, AllocFlags::NONE).unwrap();
    core.attach_group(&dom, g).unwrap();
    assert_eq!(
        core.device_use_default_domain(b).unwrap_err().errno(),
        Errno::EBUSY
    );
    core.detach_group(&dom, g).unwrap();
    core.device_use_default_domain(b).unwrap();
    assert_clean(&drv);
}

#[test]
fn require_direct_devices_refuse_blocking() {
    let (core, drv, mmu) = setup(DefaultPolicy::Strict);
    drv.shared.resv.lock().unwrap().insert(
        "rmrr".into(),
        vec![
            ReservedRegion::new(0x7000_0000, 0x3000, iommu_types::Prot::RW, ResvKind::Direct)
                .unwrap(),
        ],
    );
    let (d, g) = one(&core, mmu, "rmrr", 2);
    // The direct window is identity-mapped in the default domain.
    let def = core.group_default_domain(g).unwrap().unwrap();
    assert_eq!(
        def.iova_to_phys(iommu_types::Iova(0x7000_2abc)),
        Some(iommu_types::PhysAddr(0x7000_2abc))
    );
    // A user claim would move it to blocking: EINVAL, and nothing changes.
    assert_eq!(
        core.group_claim_dma_owner(g, DmaOwner::new())
            .unwrap_err()
            .errno(),
        Errno::EINVAL
    );
    assert!(!core.group_is_user_owned(g).unwrap());
    assert!(Arc::ptr_eq(&core.group_domain(g).unwrap().unwrap(), &def));
    assert_eq!(drv.shared.attached_to(d), Some(mock_id(&def)));
    // Attaching a driver's blocked domain is refused the same way.
    assert_clean(&drv);
}

#[test]
fn blocking_without_a_driver_blocked_domain_uses_an_empty_paging_domain() {
    let (core, drv, mmu) = setup_with(DefaultPolicy::Strict, MockDriver::with(true, false, true));
    let (a, g) = one(&core, mmu, "a", 1);
    core.group_claim_dma_owner(g, DmaOwner::new()).unwrap();
    let cur = core.group_domain(g).unwrap().unwrap();
    assert_eq!(cur.kind(), DomainKind::Paging);
    assert_eq!(cur.domain_type(), DomainType::Blocked);
    // Nobody can map into the blocking domain through the core.
    let e = cur.map(
        iommu_types::Iova(0),
        iommu_types::PhysAddr(0),
        0x1000,
        iommu_types::Prot::RW,
    );
    assert_eq!(e.unwrap_err().errno(), Errno::EINVAL);
    assert_eq!(cur.iova_to_phys(iommu_types::Iova(0)), None);
    assert!(Arc::ptr_eq(&core.device_domain(a).unwrap().unwrap(), &cur));
    assert!(mock_of(&cur).ptes.lock().unwrap().is_empty());
    assert_eq!(drv.shared.attached_to(a), Some(mock_id(&cur)));
    assert_clean(&drv);
}

#[test]
fn isolated_msi_is_the_and_over_the_group() {
    let (core, drv, mmu) = setup(DefaultPolicy::Strict);
    drv.shared
        .no_msi_isolation
        .lock()
        .unwrap()
        .insert("b".into());
    let (a, _, g) = two_in_group(&core, mmu);
    let (_, g2) = one(&core, mmu, "c", 5);
    assert!(!core.group_has_isolated_msi(g).unwrap());
    assert!(core.group_has_isolated_msi(g2).unwrap());
    assert!(core.device_capable(a, Capability::IntrRemap));
    assert!(!core.device_capable(DeviceId(999), Capability::IntrRemap));
    assert_clean(&drv);
}
