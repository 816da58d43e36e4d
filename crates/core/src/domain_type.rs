//! Domain types, the global default-domain policy and the sysfs `type` strings
//! (reference `software.md` §1.1, §1.2, §1.3).

use crate::error::{Error, Result};

/// What a domain does with DMA, as the core labels it (Linux `IOMMU_DOMAIN_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DomainType {
    /// All DMA is refused.
    Blocked,
    /// IOVA == physical address.
    Identity,
    /// A paging domain managed by its user (VFIO, iommufd, a kernel driver).
    Unmanaged,
    /// The default translated domain, owned by the DMA API, strict invalidation.
    Dma,
    /// The default translated domain, owned by the DMA API, lazy invalidation
    /// through a flush queue.
    DmaFq,
    /// A stage-1 domain nested on a stage-2 parent (iommufd HWPT_NESTED).
    Nested,
}

/// Type bit: the domain translates through page tables (`__IOMMU_DOMAIN_PAGING`).
pub const DOMAIN_BIT_PAGING: u32 = 1 << 0;
/// Type bit: owned by the DMA API (`__IOMMU_DOMAIN_DMA_API`).
pub const DOMAIN_BIT_DMA_API: u32 = 1 << 1;
/// Type bit: identity / passthrough (`__IOMMU_DOMAIN_PT`).
pub const DOMAIN_BIT_PT: u32 = 1 << 2;
/// Type bit: lazy flush queue (`__IOMMU_DOMAIN_DMA_FQ`).
pub const DOMAIN_BIT_DMA_FQ: u32 = 1 << 3;
/// Type bit: nested (`__IOMMU_DOMAIN_NESTED`).
pub const DOMAIN_BIT_NESTED: u32 = 1 << 6;

impl DomainType {
    /// Linux's numeric value (a combination of the `DOMAIN_BIT_*` bits).
    pub const fn bits(self) -> u32 {
        match self {
            DomainType::Blocked => 0,
            DomainType::Identity => DOMAIN_BIT_PT,
            DomainType::Unmanaged => DOMAIN_BIT_PAGING,
            DomainType::Dma => DOMAIN_BIT_PAGING | DOMAIN_BIT_DMA_API,
            DomainType::DmaFq => DOMAIN_BIT_PAGING | DOMAIN_BIT_DMA_API | DOMAIN_BIT_DMA_FQ,
            DomainType::Nested => DOMAIN_BIT_NESTED,
        }
    }

    /// Decode a Linux numeric value.
    pub const fn from_bits(bits: u32) -> Option<Self> {
        Some(match bits {
            0 => DomainType::Blocked,
            4 => DomainType::Identity,
            1 => DomainType::Unmanaged,
            3 => DomainType::Dma,
            11 => DomainType::DmaFq,
            64 => DomainType::Nested,
            _ => return None,
        })
    }

    /// Whether the domain maps through page tables (map/unmap are allowed).
    pub const fn is_paging(self) -> bool {
        self.bits() & DOMAIN_BIT_PAGING != 0
    }

    /// Whether the domain belongs to the DMA API (DMA or DMA-FQ).
    pub const fn is_dma_api(self) -> bool {
        self.bits() & DOMAIN_BIT_DMA_API != 0
    }

    /// The string read from `/sys/kernel/iommu_groups/<n>/type`.
    pub const fn sysfs_name(self) -> &'static str {
        match self {
            DomainType::Blocked => "blocked",
            DomainType::Identity => "identity",
            DomainType::Unmanaged => "unmanaged",
            DomainType::Dma => "DMA",
            DomainType::DmaFq => "DMA-FQ",
            DomainType::Nested => "unknown",
        }
    }

    #[cfg_attr(not(feature = "std"), allow(dead_code))]
    pub(crate) const fn to_u8(self) -> u8 {
        self.bits() as u8
    }

    #[cfg_attr(not(feature = "std"), allow(dead_code))]
    pub(crate) const fn from_u8(v: u8) -> Self {
        match Self::from_bits(v as u32) {
            Some(t) => t,
            None => DomainType::Blocked,
        }
    }
}

/// A request written to the sysfs `type` file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TypeRequest {
    /// `identity`.
    Identity,
    /// `DMA`.
    Dma,
    /// `DMA-FQ`.
    DmaFq,
    /// `auto`: whatever the global policy and the devices require.
    Auto,
}

impl TypeRequest {
    /// Parse a sysfs string; a single trailing newline (as `echo` writes) is accepted.
    /// Anything else gives EINVAL.
    pub fn parse(s: &str) -> Result<Self> {
        let s = s.strip_suffix('\n').unwrap_or(s);
        match s {
            "identity" => Ok(TypeRequest::Identity),
            "DMA" => Ok(TypeRequest::Dma),
            "DMA-FQ" => Ok(TypeRequest::DmaFq),
            "auto" => Ok(TypeRequest::Auto),
            _ => Err(Error::Invalid("unknown group type string")),
        }
    }

    /// The domain type requested, `None` for `auto`.
    pub const fn domain_type(self) -> Option<DomainType> {
        match self {
            TypeRequest::Identity => Some(DomainType::Identity),
            TypeRequest::Dma => Some(DomainType::Dma),
            TypeRequest::DmaFq => Some(DomainType::DmaFq),
            TypeRequest::Auto => None,
        }
    }
}

/// The global default-domain policy (`iommu.passthrough`, `iommu.strict`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DefaultPolicy {
    /// Translated, invalidation on every unmap (DMA).
    #[default]
    Strict,
    /// Translated, invalidation deferred to a flush queue (DMA-FQ).
    Lazy,
    /// Identity (passthrough).
    Passthrough,
}

impl DefaultPolicy {
    /// The domain type this policy gives a group nothing else constrains.
    pub const fn domain_type(self) -> DomainType {
        match self {
            DefaultPolicy::Strict => DomainType::Dma,
            DefaultPolicy::Lazy => DomainType::DmaFq,
            DefaultPolicy::Passthrough => DomainType::Identity,
        }
    }
}

/// The privileges of a writer of the sysfs `type` file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Credentials {
    /// `CAP_SYS_ADMIN`.
    pub sys_admin: bool,
    /// `CAP_SYS_RAWIO`.
    pub sys_rawio: bool,
}

impl Credentials {
    /// Both capabilities (root).
    pub const ROOT: Credentials = Credentials {
        sys_admin: true,
        sys_rawio: true,
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use iommu_types::Errno;

    #[test]
    fn values_match_linux() {
        assert_eq!(DomainType::Blocked.bits(), 0);
        assert_eq!(DomainType::Identity.bits(), 4);
        assert_eq!(DomainType::Unmanaged.bits(), 1);
        assert_eq!(DomainType::Dma.bits(), 3);
        assert_eq!(DomainType::DmaFq.bits(), 11);
        assert_eq!(DomainType::Nested.bits(), 64);
        for t in [
            DomainType::Blocked,
            DomainType::Identity,
            DomainType::Unmanaged,
            DomainType::Dma,
            DomainType::DmaFq,
            DomainType::Nested,
        ] {
            assert_eq!(DomainType::from_bits(t.bits()), Some(t));
            assert_eq!(DomainType::from_u8(t.to_u8()), t);
        }
        assert_eq!(DomainType::from_bits(2), None);
        assert!(DomainType::DmaFq.is_paging() && DomainType::DmaFq.is_dma_api());
        assert!(!DomainType::Identity.is_paging());
        assert!(DomainType::Unmanaged.is_paging() && !DomainType::Unmanaged.is_dma_api());
    }

    #[test]
    fn sysfs_strings() {
        assert_eq!(TypeRequest::parse("DMA-FQ\n"), Ok(TypeRequest::DmaFq));
        assert_eq!(TypeRequest::parse("identity"), Ok(TypeRequest::Identity));
        assert_eq!(TypeRequest::parse("auto"), Ok(TypeRequest::Auto));
        for bad in ["dma", "DMA-FQ\n\n", "", "lazy", "unmanaged", " DMA"] {
            assert_eq!(
                TypeRequest::parse(bad).unwrap_err().errno(),
                Errno::EINVAL,
                "{bad:?}"
            );
        }
        assert_eq!(DomainType::DmaFq.sysfs_name(), "DMA-FQ");
        assert_eq!(DefaultPolicy::Lazy.domain_type(), DomainType::DmaFq);
        assert_eq!(DefaultPolicy::default(), DefaultPolicy::Strict);
    }
}
