//! Group formation from topology and the whole-group attach rules (reference
//! `software.md` §6.1, §6.2; seed 000).

mod common;

use common::*;
use iommu_core::*;
use iommu_types::{Errno, Iova, PhysAddr, Prot};

fn bridge(core: &IommuCore, parent: Option<BridgeId>, kind: BridgeKind, acs: Acs) -> BridgeId {
    core.add_bridge(BridgeDesc {
        bdf: Bdf::new(0, 1, 0),
        parent,
        kind,
        acs,
    })
    .unwrap()
}

#[test]
fn topology_forms_groups() {
    let (core, drv, mmu) = setup(DefaultPolicy::Strict);
    let root = bridge(&core, None, BridgeKind::RootPort, Acs::REQUIRED);
    let sw_acs = bridge(
        &core,
        Some(root),
        BridgeKind::SwitchDownstream,
        Acs::REQUIRED,
    );
    let sw_acs2 = bridge(
        &core,
        Some(root),
        BridgeKind::SwitchDownstream,
        Acs::REQUIRED,
    );
    let sw_noacs = bridge(&core, Some(root), BridgeKind::SwitchDownstream, Acs::SV);
    let pcibr = bridge(&core, Some(root), BridgeKind::PcieToPci, Acs::REQUIRED);

    // Isolated ports: one group each.
    let a = core
        .add_device(pci("a", mmu, 2, 0, 0, Some(sw_acs)))
        .unwrap();
    let b = core
        .add_device(pci("b", mmu, 3, 0, 0, Some(sw_acs2)))
        .unwrap();
    assert_ne!(core.device_group(a).unwrap(), core.device_group(b).unwrap());

    // Behind a port without full ACS: shared, and a device below a further isolating
    // port under it too (the topmost non-isolating bridge decides).
    let c = core
        .add_device(pci("c", mmu, 4, 0, 0, Some(sw_noacs)))
        .unwrap();
    let d = core
        .add_device(pci("d", mmu, 4, 1, 0, Some(sw_noacs)))
        .unwrap();
    let below = bridge(
        &core,
        Some(sw_noacs),
        BridgeKind::SwitchDownstream,
        Acs::REQUIRED,
    );
    let e = core
        .add_device(pci("e", mmu, 5, 0, 0, Some(below)))
        .unwrap();
    let gc = core.device_group(c).unwrap();
    assert_eq!(core.device_group(d).unwrap(), gc);
    assert_eq!(core.device_group(e).unwrap(), gc);
    assert_eq!(core.group_devices(gc).unwrap(), vec![c, d, e]);

    // PCIe-to-PCI bridge: everything below aliases to the bridge.
    let f = core
        .add_device(pci("f", mmu, 6, 0, 0, Some(pcibr)))
        .unwrap();
    let g = core
        .add_device(pci("g", mmu, 6, 1, 0, Some(pcibr)))
        .unwrap();
    assert_eq!(core.device_group(f).unwrap(), core.device_group(g).unwrap());
    assert_ne!(core.device_group(f).unwrap(), gc);

    // Multifunction without ACS on the root bus: shared; with ACS: separate.
    let mut m0 = pci("m0", mmu, 0, 8, 0, None);
    let mut m1 = pci("m1", mmu, 0, 8, 1, None);
    for m in [&mut m0, &mut m1] {
        if let BusAddress::Pci { multifunction, .. } = &mut m.bus {
            *multifunction = true;
        }
    }
    let mut m2 = m1.clone();
    m2.name = "m2".into();
    m2.bus = match m2.bus {
        BusAddress::Pci {
            parent,
            dma_aliases,
            ..
        } => BusAddress::Pci {
            bdf: Bdf::new(0, 8, 2),
            parent,
            multifunction: true,
            acs: true,
            dma_aliases,
        },
        other => other,
    };
    m2.stream_ids = vec![u32::from(Bdf::new(0, 8, 2).requester_id())];
    let m0 = core.add_device(m0).unwrap();
    let m1 = core.add_device(m1).unwrap();
    let m2 = core.add_device(m2).unwrap();
    assert_eq!(
        core.device_group(m0).unwrap(),
        core.device_group(m1).unwrap()
    );
    assert_ne!(
        core.device_group(m0).unwrap(),
        core.device_group(m2).unwrap()
    );

    // A DMA alias joins the aliased device's group.
    let mut h = pci("h", mmu, 0, 9, 0, None);
    if let BusAddress::Pci { dma_aliases, .. } = &mut h.bus {
        dma_aliases.push(Bdf::new(2, 0, 0));
    }
    let h = core.add_device(h).unwrap();
    assert_eq!(core.device_group(h).unwrap(), core.device_group(a).unwrap());

    // Platform devices: one group each.
    let p1 = core
        .add_device(DeviceDesc::platform("p1", mmu, 1, &[0x9000]))
        .unwrap();
    let p2 = core
        .add_device(DeviceDesc::platform("p2", mmu, 2, &[0x9001]))
        .unwrap();
    assert_ne!(
        core.device_group(p1).unwrap(),
        core.device_group(p2).unwrap()
    );

    // StreamIDs are unique per instance; bad descriptions are refused.
    let dup = DeviceDesc::platform("dup", mmu, 3, &[0x9000]);
    assert_eq!(core.add_device(dup).unwrap_err().errno(), Errno::EEXIST);
    let empty = DeviceDesc::platform("empty", mmu, 4, &[]);
    assert_eq!(core.add_device(empty).unwrap_err().errno(), Errno::EINVAL);
    let orphan = DeviceDesc::platform("orphan", IommuId(77), 5, &[1]);
    assert_eq!(core.add_device(orphan).unwrap_err().errno(), Errno::ENODEV);
    assert_clean(&drv);
}

/// The mock behind a wrapper that overrides the grouping hint.
struct PerInstance(MockDriver);

// Reuse the mock through a wrapper that overrides the hint.
impl IommuDriver for PerInstance {
    fn name(&self) -> &str {
        "per-instance"
    }
    fn capable(&self, dev: &DeviceInfo, cap: Capability) -> bool {
        self.0.capable(dev, cap)
    }
    fn probe_device(&self, dev: &DeviceInfo) -> Result<()> {
        self.0.probe_device(dev)
    }
    fn release_device(&self, dev: &DeviceInfo) {
        self.0.release_device(dev)
    }
    fn device_group(&self, _dev: &DeviceInfo) -> GroupHint {
        GroupHint::PerInstance
    }
    fn domain_alloc_paging(
        &self,
        dev: &DeviceInfo,
        flags: AllocFlags,
    ) -> Result<std::sync::Arc<dyn PagingDomainOps>> {
        self.0.domain_alloc_paging(dev, flags)
    }
}

#[test]
fn driver_group_hint_per_instance() {
    let core = IommuCore::new(DefaultPolicy::Strict);
    let mmu = core.register_iommu(std::sync::Arc::new(PerInstance(MockDriver::new())));
    let a = core
        .add_device(DeviceDesc::platform("a", mmu, 1, &[1]))
        .unwrap();
    let b = core
        .add_device(DeviceDesc::platform("b", mmu, 2, &[2]))
        .unwrap();
    assert_eq!(core.device_group(a).unwrap(), core.device_group(b).unwrap());
}

/// Two devices sharing a group (behind a non-ACS port) plus one alone.
fn shared_group() -> (
    IommuCore,
    std::sync::Arc<MockDriver>,
    IommuId,
    GroupId,
    [DeviceId; 3],
) {
    let (core, drv, mmu) = setup(DefaultPolicy::Strict);
    let port = bridge(&core, None, BridgeKind::RootPort, Acs::NONE);
    let a = core.add_device(pci("a", mmu, 1, 0, 0, Some(port))).unwrap();
    let b = core.add_device(pci("b", mmu, 1, 1, 0, Some(port))).unwrap();
    let c = core.add_device(pci("c", mmu, 0, 3, 0, None)).unwrap();
    let g = core.device_group(a).unwrap();
    (core, drv, mmu, g, [a, b, c])
}

#[test]
fn default_domain_is_attached_to_every_device() {
    let (core, drv, _, g, [a, b, _]) = shared_group();
    let def = core.group_default_domain(g).unwrap().unwrap();
    assert_eq!(def.domain_type(), DomainType::Dma);
    let cur = core.group_domain(g).unwrap().unwrap();
    assert!(std::sync::Arc::ptr_eq(&def, &cur));
    assert_eq!(drv.shared.attached_to(a), Some(mock_id(&def)));
    assert_eq!(drv.shared.attached_to(b), Some(mock_id(&def)));
    assert_eq!(def.attached_devices(), vec![a, b]);
    assert_clean(&drv);
}

#[test]
fn attach_applies_to_the_whole_group_and_detach_returns_to_default() {
    let (core, drv, _, g, [a, b, c]) = shared_group();
    let dom = core.domain_alloc_paging(c, AllocFlags::NONE).unwrap();
    assert_eq!(dom.domain_type(), DomainType::Unmanaged);
    core.attach_group(&dom, g).unwrap();
    assert_eq!(drv.shared.attached_to(a), Some(mock_id(&dom)));
    assert_eq!(drv.shared.attached_to(b), Some(mock_id(&dom)));
    assert_eq!(dom.attached_devices(), vec![a, b]);

    // Only one external domain: even the same one again is EBUSY (§6.2).
    assert_eq!(
        core.attach_group(&dom, g).unwrap_err().errno(),
        Errno::EBUSY
    );
    let other = core.domain_alloc_paging(a, AllocFlags::NONE).unwrap();
    assert_eq!(
        core.attach_group(&other, g).unwrap_err().errno(),
        Errno::EBUSY
    );
    // attach_device needs a device alone in its group.
    assert_eq!(
        core.attach_device(&other, a).unwrap_err().errno(),
        Errno::EINVAL
    );
    // Detaching a domain that is not attached is refused.
    assert_eq!(
        core.detach_group(&other, g).unwrap_err().errno(),
        Errno::EINVAL
    );

    core.detach_group(&dom, g).unwrap();
    let def = core.group_default_domain(g).unwrap().unwrap();
    assert_eq!(drv.shared.attached_to(a), Some(mock_id(&def)));
    assert_eq!(drv.shared.attached_to(b), Some(mock_id(&def)));
    assert!(dom.attached_devices().is_empty());

    // A device alone in its group can use the device-level calls.
    core.attach_device(&other, c).unwrap();
    assert_eq!(drv.shared.attached_to(c), Some(mock_id(&other)));
    core.detach_device(&other, c).unwrap();
    assert_clean(&drv);
}

#[test]
fn partial_attach_failure_reverts_the_group() {
    let (core, drv, _, g, [a, b, c]) = shared_group();
    let def = core.group_default_domain(g).unwrap().unwrap();
    let dom = core.domain_alloc_paging(c, AllocFlags::NONE).unwrap();
    drv.shared.fail_attach.lock().unwrap().insert("b".into());
    let before = drv.shared.events.lock().unwrap().len();
    let err = core.attach_group(&dom, g).unwrap_err();
    assert_eq!(err.errno(), Errno::EINVAL);
    // a was switched, then put back on the default domain; b never moved.
    let evs = drv.shared.events.lock().unwrap()[before..].to_vec();
    assert_eq!(
        evs,
        vec![Ev::Attach(a, mock_id(&dom)), Ev::Attach(a, mock_id(&def))]
    );
    assert_eq!(drv.shared.attached_to(a), Some(mock_id(&def)));
    assert_eq!(drv.shared.attached_to(b), Some(mock_id(&def)));
    assert!(std::sync::Arc::ptr_eq(
        &core.group_domain(g).unwrap().unwrap(),
        &def
    ));
    assert!(dom.attached_devices().is_empty());
    assert_eq!(def.attached_devices(), vec![a, b]);
    // The failure was soft: once fixed, the same attach works.
    drv.shared.fail_attach.lock().unwrap().clear();
    core.attach_group(&dom, g).unwrap();
    assert_clean(&drv);
}

#[test]
fn attach_to_another_instance_is_refused() {
    let (core, drv, _, g, _) = shared_group();
    let drv2 = std::sync::Arc::new(MockDriver::new());
    let mmu2 = core.register_iommu(drv2.clone());
    let x = core
        .add_device(DeviceDesc::platform("x", mmu2, 1, &[1]))
        .unwrap();
    let foreign = core.domain_alloc_paging(x, AllocFlags::NONE).unwrap();
    assert_eq!(
        core.attach_group(&foreign, g).unwrap_err().errno(),
        Errno::EINVAL
    );
    assert_clean(&drv);
    assert_clean(&drv2);
}

#[test]
fn setting_the_current_domain_again_is_a_no_op() {
    let (core, drv, _, g, [_, _, c]) = shared_group();
    let owner = DmaOwner::new();
    core.group_claim_dma_owner(g, owner).unwrap();
    let dom = core.domain_alloc_paging(c, AllocFlags::NONE).unwrap();
    core.replace_group_domain(g, &dom, owner).unwrap();
    let n = drv.shared.events.lock().unwrap().len();
    core.replace_group_domain(g, &dom, owner).unwrap();
    assert_eq!(
        drv.shared.events.lock().unwrap().len(),
        n,
        "no driver call for a no-op"
    );
    // Claiming and releasing are no-ops on the domain side when already there.
    core.group_release_dma_owner(g, owner).unwrap();
    let def = core.group_default_domain(g).unwrap().unwrap();
    assert!(std::sync::Arc::ptr_eq(
        &core.group_domain(g).unwrap().unwrap(),
        &def
    ));
    assert_clean(&drv);
}

#[test]
fn map_through_the_group_domain() {
    let (core, drv, _, g, [_, _, c]) = shared_group();
    let dom = core.domain_alloc_paging(c, AllocFlags::NONE).unwrap();
    core.attach_group(&dom, g).unwrap();
    dom.map(Iova(0x20_0000), PhysAddr(0x4020_0000), 0x40_0000, Prot::RW)
        .unwrap();
    assert_eq!(
        dom.iova_to_phys(Iova(0x20_1234)),
        Some(PhysAddr(0x4020_1234))
    );
    assert_clean(&drv);
}

#[test]
fn faults_are_routed_to_observers_with_the_device() {
    let (core, drv, mmu, _, [a, _, _]) = shared_group();
    let log = std::sync::Arc::new(FaultLog::new(16));
    core.fault_router().add_observer(log.clone());
    let sid = core.device_info(a).unwrap().desc.stream_ids[0];
    let r = core.fault_router().report(FaultReport {
        iommu: mmu,
        stream_id: sid,
        pasid: None,
        iova: 0xdead_0000,
        kind: FaultKind::Translation,
        access: FaultAccess {
            write: true,
            ..Default::default()
        },
        code: 0x10,
        device: None,
    });
    assert_eq!(r.device, Some(a));
    let got = log.drain();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].device, Some(a));
    assert_eq!(got[0].iova, 0xdead_0000);
    core.remove_device(a).unwrap();
    assert_eq!(core.fault_router().stream_owner(mmu, sid), None);
    assert_clean(&drv);
}

#[test]
fn a_dma_api_domain_serves_only_its_own_group() {
    let (core, drv, _, g, [a, b, c]) = shared_group();
    let gc = core.device_group(c).unwrap();
    let def_g = core.group_default_domain(g).unwrap().unwrap();
    let def_c = core.group_default_domain(gc).unwrap().unwrap();
    // Attaching the group's own default domain while it is current is a no-op.
    let n = drv.shared.events.lock().unwrap().len();
    core.attach_group(&def_g, g).unwrap();
    assert_eq!(drv.shared.events.lock().unwrap().len(), n, "no driver call");
    // Another group's DMA-API default domain is refused on both attach paths.
    assert_eq!(
        core.attach_group(&def_c, g).unwrap_err().errno(),
        Errno::EINVAL
    );
    let owner = DmaOwner::new();
    core.group_claim_dma_owner(g, owner).unwrap();
    assert_eq!(
        core.replace_group_domain(g, &def_c, owner)
            .unwrap_err()
            .errno(),
        Errno::EINVAL
    );
    assert_eq!(
        drv.shared.events.lock().unwrap().len(),
        n + 2,
        "only the two moves to blocking"
    );
    assert_eq!(def_c.attached_devices(), vec![c]);
    assert!(def_g.attached_devices().is_empty());
    // The owner may still put its group on its own default domain.
    core.replace_group_domain(g, &def_g, owner).unwrap();
    assert_eq!(def_g.attached_devices(), vec![a, b]);
    core.group_release_dma_owner(g, owner).unwrap();
    assert_clean(&drv);
}
