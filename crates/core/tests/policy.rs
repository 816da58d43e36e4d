//! Default-domain policy and the sysfs `type` switch (reference `software.md` §1.2,
//! §1.3, §6.6).

mod common;

use std::sync::Arc;

use common::*;
use iommu_core::*;
use iommu_types::{Errno, Iova, PhysAddr, Prot};

fn add(
    core: &IommuCore,
    mmu: IommuId,
    name: &str,
    bus: u8,
    untrusted: bool,
) -> (DeviceId, GroupId) {
    let mut d = pci(name, mmu, bus, 0, 0, None);
    d.untrusted = untrusted;
    let id = core.add_device(d).unwrap();
    (id, core.device_group(id).unwrap())
}

fn default_type(core: &IommuCore, g: GroupId) -> DomainType {
    core.group_default_domain(g).unwrap().unwrap().domain_type()
}

#[test]
fn global_policy_picks_the_default_type() {
    for (policy, want) in [
        (DefaultPolicy::Strict, DomainType::Dma),
        (DefaultPolicy::Lazy, DomainType::DmaFq),
        (DefaultPolicy::Passthrough, DomainType::Identity),
    ] {
        let (core, drv, mmu) = setup(policy);
        let (d, g) = add(&core, mmu, "nic", 1, false);
        assert_eq!(default_type(&core, g), want, "{policy:?}");
        assert_eq!(core.group_type(g).unwrap(), want.sysfs_name());
        let def = core.group_default_domain(g).unwrap().unwrap();
        assert_eq!(drv.shared.attached_to(d), Some(mock_id(&def)));
        assert_clean(&drv);
    }
}

#[test]
fn untrusted_devices_are_always_strict() {
    for policy in [
        DefaultPolicy::Lazy,
        DefaultPolicy::Passthrough,
        DefaultPolicy::Strict,
    ] {
        let (core, drv, mmu) = setup(policy);
        let (_, g) = add(&core, mmu, "thunderbolt", 1, true);
        assert_eq!(default_type(&core, g), DomainType::Dma, "{policy:?}");
        assert_clean(&drv);
    }
}

#[test]
fn an_untrusted_newcomer_rebuilds_an_idle_lazy_group_and_is_refused_by_a_busy_one() {
    let (core, drv, mmu) = setup(DefaultPolicy::Lazy);
    let port = non_acs_root_port(&core);
    let a = core.add_device(pci("a", mmu, 1, 0, 0, Some(port))).unwrap();
    let g = core.device_group(a).unwrap();
    assert_eq!(default_type(&core, g), DomainType::DmaFq);
    let mut tb = pci("tb", mmu, 1, 1, 0, Some(port));
    tb.untrusted = true;
    let t = core.add_device(tb.clone()).unwrap();
    assert_eq!(core.device_group(t).unwrap(), g);
    assert_eq!(default_type(&core, g), DomainType::Dma);
    let def = core.group_default_domain(g).unwrap().unwrap();
    assert_eq!(drv.shared.attached_to(a), Some(mock_id(&def)));
    assert_eq!(drv.shared.attached_to(t), Some(mock_id(&def)));

    // Same situation with a driver bound: the group cannot change, the device is
    // refused and released again.
    let (core, drv, mmu) = setup(DefaultPolicy::Lazy);
    let port = non_acs_root_port(&core);
    let a = core.add_device(pci("a", mmu, 1, 0, 0, Some(port))).unwrap();
    let g = core.device_group(a).unwrap();
    core.device_use_default_domain(a).unwrap();
    tb.iommu = mmu;
    assert_eq!(core.add_device(tb).unwrap_err().errno(), Errno::EBUSY);
    assert_eq!(default_type(&core, g), DomainType::DmaFq);
    assert_eq!(core.group_devices(g).unwrap(), vec![a]);
    let evs = drv.shared.events.lock().unwrap().clone();
    let probed: Vec<_> = evs
        .iter()
        .filter_map(|e| if let Ev::Probe(d) = e { Some(*d) } else { None })
        .collect();
    assert!(
        evs.contains(&Ev::Release(*probed.last().unwrap())),
        "refused device released"
    );
    assert_clean(&drv);
}

#[test]
fn driver_requirements() {
    // A driver quirk forcing identity wins over the strict policy.
    let (core, drv, mmu) = setup(DefaultPolicy::Strict);
    drv.shared
        .def_types
        .lock()
        .unwrap()
        .insert("gpu".into(), DomainType::Identity);
    let (_, g) = add(&core, mmu, "gpu", 1, false);
    assert_eq!(default_type(&core, g), DomainType::Identity);
    // An untrusted device whose driver demands identity fails to probe (EINVAL)
    // and is released.
    drv.shared
        .def_types
        .lock()
        .unwrap()
        .insert("evil".into(), DomainType::Identity);
    let mut d = pci("evil", mmu, 2, 0, 0, None);
    d.untrusted = true;
    assert_eq!(core.add_device(d).unwrap_err().errno(), Errno::EINVAL);
    let evs = drv.shared.events.lock().unwrap().clone();
    assert!(matches!(evs.last(), Some(Ev::Release(_))));
    assert_clean(&drv);
}

#[test]
fn identity_wins_a_conflict_inside_a_group() {
    let (core, drv, mmu) = setup(DefaultPolicy::Strict);
    drv.shared
        .def_types
        .lock()
        .unwrap()
        .insert("a".into(), DomainType::Dma);
    drv.shared
        .def_types
        .lock()
        .unwrap()
        .insert("b".into(), DomainType::Identity);
    let port = non_acs_root_port(&core);
    let a = core.add_device(pci("a", mmu, 1, 0, 0, Some(port))).unwrap();
    let g = core.device_group(a).unwrap();
    assert_eq!(default_type(&core, g), DomainType::Dma);
    core.add_device(pci("b", mmu, 1, 1, 0, Some(port))).unwrap();
    assert_eq!(default_type(&core, g), DomainType::Identity);
    assert_clean(&drv);
}

#[test]
fn fallbacks() {
    // Passthrough without an identity domain falls back to DMA (not required).
    let (core, drv, mmu) = setup_with(
        DefaultPolicy::Passthrough,
        MockDriver::with(false, true, true),
    );
    let (_, g) = add(&core, mmu, "a", 1, false);
    assert_eq!(default_type(&core, g), DomainType::Dma);
    // A required identity without one is an error.
    drv.shared
        .def_types
        .lock()
        .unwrap()
        .insert("b".into(), DomainType::Identity);
    assert_eq!(
        core.add_device(pci("b", mmu, 2, 0, 0, None))
            .unwrap_err()
            .errno(),
        Errno::EOPNOTSUPP
    );
    assert_clean(&drv);

    // Lazy mode needs DEFERRED_FLUSH from every device.
    let (core, drv, mmu) = setup(DefaultPolicy::Lazy);
    drv.shared
        .no_deferred_flush
        .lock()
        .unwrap()
        .insert("slow".into());
    let (_, g) = add(&core, mmu, "slow", 1, false);
    assert_eq!(default_type(&core, g), DomainType::Dma);
    assert_clean(&drv);
}

#[test]
fn pasid_capable_devices_try_a_pasid_domain_first() {
    for supported in [true, false] {
        let (core, drv, mmu) = setup_with(
            DefaultPolicy::Strict,
            MockDriver::with(true, true, supported),
        );
        let mut d = pci("pasid", mmu, 1, 0, 0, None);
        d.max_pasids = 1 << 16;
        let id = core.add_device(d).unwrap();
        let allocs: Vec<_> = drv
            .shared
            .events
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| {
                if let Ev::AllocPaging(_, f) = e {
                    Some(*f)
                } else {
                    None
                }
            })
            .collect();
        if supported {
            assert_eq!(allocs, vec![AllocFlags::PASID]);
        } else {
            assert_eq!(allocs, vec![AllocFlags::PASID, AllocFlags::NONE]);
        }
        assert_eq!(
            default_type(&core, core.device_group(id).unwrap()),
            DomainType::Dma
        );
        assert_clean(&drv);
    }
}

#[test]
fn sysfs_type_refusals() {
    let (core, drv, mmu) = setup(DefaultPolicy::Strict);
    let (d, g) = add(&core, mmu, "a", 1, false);
    let no_rawio = Credentials {
        sys_admin: true,
        sys_rawio: false,
    };
    assert_eq!(
        core.set_group_type(g, "identity", no_rawio)
            .unwrap_err()
            .errno(),
        Errno::EACCES
    );
    assert_eq!(
        core.set_group_type(g, "identity", Credentials::default())
            .unwrap_err()
            .errno(),
        Errno::EACCES
    );
    for bad in ["", "dma", "lazy", "blocked", "unmanaged", "DMA-FQ "] {
        assert_eq!(
            core.set_group_type(g, bad, Credentials::ROOT)
                .unwrap_err()
                .errno(),
            Errno::EINVAL,
            "{bad:?}"
        );
    }
    assert_eq!(
        core.set_group_type(GroupId(99), "DMA", Credentials::ROOT)
            .unwrap_err()
            .errno(),
        Errno::ENOENT
    );

    // Bound driver: only DMA -> DMA-FQ is live; everything else is EPERM.
    core.device_use_default_domain(d).unwrap();
    for s in ["identity", "DMA", "auto"] {
        assert_eq!(
            core.set_group_type(g, s, Credentials::ROOT)
                .unwrap_err()
                .errno(),
            Errno::EPERM,
            "{s}"
        );
    }
    assert_eq!(core.group_type(g).unwrap(), "DMA");
    core.set_group_type(g, "DMA-FQ\n", Credentials::ROOT)
        .unwrap();
    assert_eq!(core.group_type(g).unwrap(), "DMA-FQ");
    // No way back while bound, not even re-requesting DMA-FQ (Linux).
    assert_eq!(
        core.set_group_type(g, "DMA", Credentials::ROOT)
            .unwrap_err()
            .errno(),
        Errno::EPERM
    );
    assert_eq!(
        core.set_group_type(g, "DMA-FQ", Credentials::ROOT)
            .unwrap_err()
            .errno(),
        Errno::EPERM
    );
    // User-owned is also "in use".
    core.device_unuse_default_domain(d).unwrap();
    let owner = DmaOwner::new();
    core.group_claim_dma_owner(g, owner).unwrap();
    assert_eq!(
        core.set_group_type(g, "identity", Credentials::ROOT)
            .unwrap_err()
            .errno(),
        Errno::EPERM
    );
    core.group_release_dma_owner(g, owner).unwrap();
    assert_clean(&drv);
}

#[test]
fn sysfs_type_rebuilds_when_unbound() {
    let (core, drv, mmu) = setup(DefaultPolicy::Strict);
    let (d, g) = add(&core, mmu, "a", 1, false);
    let old = core.group_default_domain(g).unwrap().unwrap();
    core.set_group_type(g, "identity", Credentials::ROOT)
        .unwrap();
    assert_eq!(core.group_type(g).unwrap(), "identity");
    let id = core.group_default_domain(g).unwrap().unwrap();
    assert!(!Arc::ptr_eq(&old, &id));
    assert!(
        Arc::ptr_eq(&core.group_domain(g).unwrap().unwrap(), &id),
        "group moved"
    );
    assert_eq!(drv.shared.attached_to(d), Some(mock_id(&id)));
    assert_eq!(
        id.iova_to_phys(Iova(0x1234_5000)),
        Some(PhysAddr(0x1234_5000))
    );

    core.set_group_type(g, "DMA-FQ", Credentials::ROOT).unwrap();
    assert_eq!(core.group_type(g).unwrap(), "DMA-FQ");
    core.set_group_type(g, "auto", Credentials::ROOT).unwrap();
    assert_eq!(
        core.group_type(g).unwrap(),
        "DMA",
        "auto follows the strict policy"
    );
    // The request persists for devices that join later; auto cleared it.
    assert_clean(&drv);
}

#[test]
fn sysfs_respects_untrusted_and_capabilities() {
    let (core, drv, mmu) = setup(DefaultPolicy::Strict);
    let (_, g) = add(&core, mmu, "tb", 1, true);
    assert_eq!(
        core.set_group_type(g, "identity", Credentials::ROOT)
            .unwrap_err()
            .errno(),
        Errno::EINVAL
    );
    assert_eq!(
        core.set_group_type(g, "DMA-FQ", Credentials::ROOT)
            .unwrap_err()
            .errno(),
        Errno::EINVAL
    );
    assert_eq!(core.group_type(g).unwrap(), "DMA");
    drv.shared
        .no_deferred_flush
        .lock()
        .unwrap()
        .insert("slow".into());
    let (_, g2) = add(&core, mmu, "slow", 2, false);
    assert_eq!(
        core.set_group_type(g2, "DMA-FQ", Credentials::ROOT)
            .unwrap_err()
            .errno(),
        Errno::EOPNOTSUPP
    );
    assert_eq!(core.group_type(g2).unwrap(), "DMA");
    assert_clean(&drv);
}

struct FailingCookie;
impl DmaCookie for FailingCookie {
    fn init_flush_queue(&self) -> Result<()> {
        Err(Error::NoMemory("rings"))
    }
}

#[test]
fn a_failed_flush_queue_setup_keeps_the_domain_strict() {
    let (core, drv, mmu) = setup(DefaultPolicy::Strict);
    let (d, g) = add(&core, mmu, "a", 1, false);
    let def = core.device_use_default_domain(d).unwrap();
    assert_eq!(
        def.set_dma_cookie(Arc::new(FailingCookie)).unwrap(),
        DomainType::Dma
    );
    assert_eq!(
        def.set_dma_cookie(Arc::new(FailingCookie))
            .unwrap_err()
            .errno(),
        Errno::EBUSY
    );
    assert_eq!(
        core.set_group_type(g, "DMA-FQ", Credentials::ROOT)
            .unwrap_err()
            .errno(),
        Errno::ENOMEM
    );
    assert_eq!(def.domain_type(), DomainType::Dma);
    // Cookies only on DMA-API domains.
    let un = core.domain_alloc_paging(d, AllocFlags::NONE).unwrap();
    assert_eq!(
        un.set_dma_cookie(Arc::new(FailingCookie))
            .unwrap_err()
            .errno(),
        Errno::EINVAL
    );
    assert_clean(&drv);
}

#[test]
fn demotion_to_strict() {
    let (core, drv, mmu) = setup(DefaultPolicy::Lazy);
    let (_, g) = add(&core, mmu, "a", 1, false);
    let def = core.group_default_domain(g).unwrap().unwrap();
    assert_eq!(def.domain_type(), DomainType::DmaFq);
    def.demote_to_strict();
    assert_eq!(def.domain_type(), DomainType::Dma);
    assert_eq!(core.group_type(g).unwrap(), "DMA");
    assert_clean(&drv);
}

#[test]
fn reserved_regions_shape_the_default_domain() {
    let (core, drv, mmu) = setup(DefaultPolicy::Strict);
    let direct = ReservedRegion::new(0x7000_0800, 0x1000, Prot::RW, ResvKind::Direct).unwrap();
    let relax =
        ReservedRegion::new(0x7100_0000, 0x2000, Prot::READ, ResvKind::DirectRelaxable).unwrap();
    let resv = ReservedRegion::new(0x1_0000, 0x1000, Prot::NONE, ResvKind::Reserved).unwrap();
    drv.shared.resv.lock().unwrap().insert(
        "a".into(),
        vec![
            direct,
            relax,
            resv,
            ReservedRegion::X86_MSI,
            ReservedRegion::ARM_SW_MSI,
        ],
    );
    let (d, g) = add(&core, mmu, "a", 1, false);
    let def = core.group_default_domain(g).unwrap().unwrap();
    // Direct windows are identity-mapped (page-rounded), with their protection.
    for a in [0x7000_0000u64, 0x7000_1000, 0x7100_0000, 0x7100_1000] {
        assert_eq!(
            def.iova_to_phys(Iova(a + 8)),
            Some(PhysAddr(a + 8)),
            "{a:#x}"
        );
    }
    let ptes = mock_of(&def).ptes.lock().unwrap().clone();
    assert_eq!(ptes.len(), 4);
    assert_eq!(ptes[&0x7100_0000].prot, Prot::READ);
    // Reserved and MSI windows are not mapped.
    assert_eq!(def.iova_to_phys(Iova(0x1_0000)), None);
    assert_eq!(def.iova_to_phys(Iova(0xfee0_0000)), None);
    assert_eq!(def.iova_to_phys(Iova(0x800_0000)), None);
    let regions = core.device_resv_regions(d).unwrap();
    assert_eq!(regions.len(), 5);
    let ranges = core.group_dma_reserved_ranges(g, 0x1000).unwrap();
    assert_eq!(
        ranges,
        vec![
            (0x1_0000, 0x1_0fff),
            (0x7000_0000, 0x7000_1fff),
            (0x7100_0000, 0x7100_1fff),
            (0xfee0_0000, 0xfeef_ffff)
        ]
    );
    assert_eq!(
        core.group_dma_reserved_ranges(g, 0x3000)
            .unwrap_err()
            .errno(),
        Errno::EINVAL
    );
    let text = core.group_resv_regions_sysfs(g).unwrap();
    assert_eq!(
        text.lines().next(),
        Some("0x0000000000010000 0x0000000000010fff reserved")
    );
    assert!(text.contains("0x0000000070000800 0x00000000700017ff direct\n"));
    assert!(text.contains("0x00000000fee00000 0x00000000feefffff msi\n"));
    assert_eq!(text.lines().count(), 5);
    let listing = core.group_resv_regions(g).unwrap();
    assert!(listing.windows(2).all(|w| w[0].start <= w[1].start));
    // A rebuilt default domain gets the direct maps again.
    core.set_group_type(g, "DMA-FQ", Credentials::ROOT).unwrap();
    core.set_group_type(g, "auto", Credentials::ROOT).unwrap();
    let def2 = core.group_default_domain(g).unwrap().unwrap();
    assert!(!Arc::ptr_eq(&def, &def2));
    assert_eq!(
        def2.iova_to_phys(Iova(0x7000_0000)),
        Some(PhysAddr(0x7000_0000))
    );
    assert_clean(&drv);
}

#[test]
fn malformed_driver_regions_refuse_the_device() {
    let (core, drv, mmu) = setup(DefaultPolicy::Strict);
    let bad = ReservedRegion {
        start: u64::MAX - 0xfff,
        length: 0x2000,
        prot: Prot::RW,
        kind: ResvKind::Reserved,
    };
    drv.shared
        .resv
        .lock()
        .unwrap()
        .insert("bad".into(), vec![bad]);
    assert_eq!(
        core.add_device(pci("bad", mmu, 1, 0, 0, None))
            .unwrap_err()
            .errno(),
        Errno::EINVAL
    );
    assert!(matches!(
        drv.shared.events.lock().unwrap().last(),
        Some(Ev::Release(_))
    ));
    // A whole-space reserved region is fine and lists without overflow.
    let all = ReservedRegion::new(0, u64::MAX, Prot::NONE, ResvKind::Reserved).unwrap();
    let all2 = ReservedRegion::new(1, u64::MAX, Prot::NONE, ResvKind::Reserved).unwrap();
    drv.shared
        .resv
        .lock()
        .unwrap()
        .insert("all".into(), vec![all, all2]);
    let d = core.add_device(pci("all", mmu, 2, 0, 0, None)).unwrap();
    let listing = core
        .group_resv_regions(core.device_group(d).unwrap())
        .unwrap();
    // (start, length) cannot express all 2^64 bytes: the last byte is listed
    // separately rather than lost.
    let spans: Vec<(u64, u64)> = listing.iter().map(|r| (r.start, r.length)).collect();
    assert_eq!(spans, vec![(0, u64::MAX), (u64::MAX, 1)]);
    let g = core.device_group(d).unwrap();
    assert_eq!(
        core.group_resv_regions_sysfs(g).unwrap(),
        "0x0000000000000000 0xfffffffffffffffe reserved\n\
         0xffffffffffffffff 0xffffffffffffffff reserved\n"
    );
    assert_eq!(
        core.group_dma_reserved_ranges(g, 0x1000).unwrap(),
        vec![(0, u64::MAX)]
    );
    assert_clean(&drv);
}

#[test]
fn direct_regions_are_mapped_in_runs_with_large_pages_and_joiners_skip_what_is_mapped() {
    let (core, drv, mmu) = setup(DefaultPolicy::Strict);
    let port = non_acs_root_port(&core);
    // 4 MiB + 4 KiB at a 2 MiB boundary: two 2 MiB blocks and one 4 KiB page.
    let big = ReservedRegion::new(0x4000_0000, 0x40_1000, Prot::RW, ResvKind::Direct).unwrap();
    // Overlaps the last 4 KiB of `big` and adds one page after it.
    let tail = ReservedRegion::new(0x4040_0000, 0x2000, Prot::READ, ResvKind::Direct).unwrap();
    drv.shared
        .resv
        .lock()
        .unwrap()
        .insert("a".into(), vec![big]);
    drv.shared
        .resv
        .lock()
        .unwrap()
        .insert("b".into(), vec![tail]);
    let a = core.add_device(pci("a", mmu, 1, 0, 0, Some(port))).unwrap();
    let g = core.device_group(a).unwrap();
    let def = core.group_default_domain(g).unwrap().unwrap();
    let sizes = |d: &IommuDomain| -> Vec<(u64, u64, Prot)> {
        mock_of(d)
            .ptes
            .lock()
            .unwrap()
            .iter()
            .map(|(k, p)| (*k, p.size, p.prot))
            .collect()
    };
    assert_eq!(
        sizes(&def),
        vec![
            (0x4000_0000, 0x20_0000, Prot::RW),
            (0x4020_0000, 0x20_0000, Prot::RW),
            (0x4040_0000, 0x1000, Prot::RW),
        ]
    );
    // A device joining the group gets its own region; the page already mapped
    // keeps its mapping and protection.
    let b = core.add_device(pci("b", mmu, 1, 1, 0, Some(port))).unwrap();
    assert_eq!(core.device_group(b).unwrap(), g);
    assert_eq!(
        sizes(&def)[2..],
        [
            (0x4040_0000, 0x1000, Prot::RW),
            (0x4040_1000, 0x1000, Prot::READ)
        ]
    );
    for a in [0x4000_0000u64, 0x403f_f000, 0x4040_0000, 0x4040_1ff8] {
        assert_eq!(def.iova_to_phys(Iova(a)), Some(PhysAddr(a)), "{a:#x}");
    }
    assert_clean(&drv);
}
