//! The driver through `iommu-core`'s traits, as the core uses it.

mod common;

use std::sync::Arc;

use common::*;
use io_pgtable::IotlbGather;
use iommu_core::{
    AllocFlags, Bdf, Capability, DeviceDesc, DeviceId, DeviceInfo, DomainKind, IommuDriver,
    IommuId, NestedData,
};
use iommu_types::{Iova, Prot};
use smmuv3::SmmuDriver;
use smmuv3_model::Access;

fn pci(id: u64, dev: u8, ats: bool) -> DeviceInfo {
    let mut desc = DeviceDesc::pci("dev", IommuId(0), Bdf::new(1, dev, 0));
    desc.ats = ats;
    DeviceInfo {
        id: DeviceId(id),
        desc,
    }
}

#[test]
fn probe_alloc_attach_map_through_the_traits() {
    let r = rig();
    let drv = SmmuDriver::new(r.drv.clone(), "smmuv3.0");
    assert_eq!(drv.name(), "smmuv3.0");
    let dev = pci(1, 2, false);
    let sid = dev.desc.stream_ids[0];
    drv.probe_device(&dev).unwrap();
    // Before any attach the device aborts.
    assert!(r.hw.translate(sid, None, 0, Access::READ).is_err());
    assert!(drv.capable(&dev, Capability::CacheCoherency));
    assert!(drv.capable(&dev, Capability::NoExec));
    assert!(drv.capable(&dev, Capability::DeferredFlush));
    assert!(!drv.capable(&dev, Capability::IntrRemap));
    let d = drv.domain_alloc_paging(&dev, AllocFlags::NONE).unwrap();
    assert_eq!(d.kind(), DomainKind::Paging);
    assert!(d.pgsize_bitmap().0 & 0x1000 != 0);
    d.attach_dev(&dev).unwrap();
    let buf = r.buffer(0x1000, 0x66);
    d.map_pages(Iova(0x2000), buf, 0x1000, 1, Prot::RW)
        .1
        .unwrap();
    assert_eq!(
        r.hw.translate(sid, None, 0x2000, Access::WRITE).unwrap().pa,
        buf
    );
    // Mapping over a valid entry fails with EEXIST.
    let (n, e) = d.map_pages(Iova(0x2000), buf, 0x1000, 1, Prot::RW);
    assert_eq!(n, 0);
    assert_eq!(e.unwrap_err().errno(), iommu_types::Errno::EEXIST);
    let mut g = IotlbGather::new();
    d.unmap_pages(Iova(0x2000), 0x1000, 1, &mut g);
    d.iotlb_sync(&mut g).unwrap();
    assert!(r.hw.translate(sid, None, 0x2000, Access::READ).is_err());
    // Identity and blocked static domains.
    let id = drv.identity_domain().unwrap();
    id.attach_dev(&dev).unwrap();
    assert_eq!(
        r.hw.translate(sid, None, 0x1234_5000, Access::READ)
            .unwrap()
            .pa
            .0,
        0x1234_5000
    );
    drv.blocked_domain().unwrap().attach_dev(&dev).unwrap();
    assert!(
        r.hw.translate(sid, None, 0x1234_5000, Access::READ)
            .is_err()
    );
    drv.release_device(&dev);
    r.sanitizer_silent();
}

#[test]
fn nesting_parent_and_nested_domain() {
    let r = rig();
    let drv = SmmuDriver::new(r.drv.clone(), "smmuv3.0");
    let dev = pci(1, 3, false);
    let sid = dev.desc.stream_ids[0];
    drv.probe_device(&dev).unwrap();
    let parent = drv
        .domain_alloc_paging(&dev, AllocFlags::NEST_PARENT)
        .unwrap();
    // vSTE: V=1, Config=S1 bypass (stage 2 only) -> the parent translates.
    let mut data = [0u8; 16];
    data[..8].copy_from_slice(&(1u64 | (4 << 1)).to_le_bytes());
    let n = drv
        .domain_alloc_nested(
            &dev,
            &*parent,
            NestedData {
                data_type: 2,
                data: &data,
            },
        )
        .unwrap();
    assert_eq!(n.kind(), DomainKind::Nested);
    let buf = r.buffer(0x1000, 0x12);
    parent
        .map_pages(Iova(0x4000), buf, 0x1000, 1, Prot::RW)
        .1
        .unwrap();
    n.attach_dev(&dev).unwrap();
    assert_eq!(
        r.hw.translate(sid, None, 0x4000, Access::READ).unwrap().pa,
        buf
    );
    // Wrong data type or short data is refused.
    assert!(
        drv.domain_alloc_nested(
            &dev,
            &*parent,
            NestedData {
                data_type: 1,
                data: &data
            }
        )
        .is_err()
    );
    assert!(
        drv.domain_alloc_nested(
            &dev,
            &*parent,
            NestedData {
                data_type: 2,
                data: &data[..8]
            }
        )
        .is_err()
    );
    // A non-parent cannot host nested domains.
    let plain = drv.domain_alloc_paging(&dev, AllocFlags::NONE).unwrap();
    assert!(
        drv.domain_alloc_nested(
            &dev,
            &*plain,
            NestedData {
                data_type: 2,
                data: &data
            }
        )
        .is_err()
    );
    drv.release_device(&dev);
    r.sanitizer_silent();
}

#[test]
fn enforce_cache_coherency_refuses_non_compliant_devices() {
    let r = rig();
    let drv = SmmuDriver::new(r.drv.clone(), "smmuv3.0");
    let mut good = pci(1, 4, false);
    good.desc.canwbs = true;
    let bad = pci(2, 5, false);
    drv.probe_device(&good).unwrap();
    drv.probe_device(&bad).unwrap();
    assert!(drv.capable(&good, Capability::EnforceCacheCoherency));
    assert!(!drv.capable(&bad, Capability::EnforceCacheCoherency));
    let d = drv.domain_alloc_paging(&good, AllocFlags::NONE).unwrap();
    assert!(d.enforce_cache_coherency());
    d.attach_dev(&good).unwrap();
    let e = d.attach_dev(&bad).unwrap_err();
    assert!(matches!(e, iommu_core::Error::Incompatible(_)), "{e:?}");
    // The refused device stays where it was (abort).
    assert!(
        r.hw.translate(bad.desc.stream_ids[0], None, 0, Access::READ)
            .is_err()
    );
    let _ = Arc::clone(&d);
}

/// Seed 004: enforcement is refused while a master that can emit non-snooped DMA is
/// attached (it could escape the promise), and allowed once it has left.
#[test]
fn enforce_cache_coherency_is_refused_while_a_non_canwbs_master_is_attached() {
    let r = rig();
    let drv = SmmuDriver::new(r.drv.clone(), "smmuv3.0");
    let mut good = pci(1, 4, false);
    good.desc.canwbs = true;
    let bad = pci(2, 5, false);
    drv.probe_device(&good).unwrap();
    drv.probe_device(&bad).unwrap();
    let d = drv.domain_alloc_paging(&good, AllocFlags::NONE).unwrap();
    d.attach_dev(&good).unwrap();
    d.attach_dev(&bad).unwrap();
    assert!(
        !d.enforce_cache_coherency(),
        "a non-CANWBS master is attached"
    );
    // Move the bad master to another domain: now every master is CANWBS.
    let other = drv.domain_alloc_paging(&bad, AllocFlags::NONE).unwrap();
    other.attach_dev(&bad).unwrap();
    assert!(d.enforce_cache_coherency());
    // And the promise binds later attaches.
    assert!(matches!(
        d.attach_dev(&bad).unwrap_err(),
        iommu_core::Error::Incompatible(_)
    ));
}
