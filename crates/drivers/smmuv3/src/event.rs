//! Event-queue records decoded into typed fault reports (`smmuv3.md` §5).

use crate::field::Field;

/// Size of an event record in bytes.
pub const EVT_BYTES: u64 = 32;
/// Number of 64-bit words in an event record.
pub const EVT_DWORDS: usize = 4;

/// Event record fields (§5.1).
pub mod f {
    use super::Field;
    /// Event ID.
    pub const ID: Field = Field::bits(0, 7, 0);
    /// SubstreamID valid.
    pub const SSV: Field = Field::bit(0, 11);
    /// SubstreamID.
    pub const SSID: Field = Field::bits(0, 31, 12);
    /// StreamID.
    pub const SID: Field = Field::bits(0, 63, 32);
    /// Stall tag.
    pub const STAG: Field = Field::bits(1, 15, 0);
    /// Transaction stalled.
    pub const STALL: Field = Field::bit(1, 31);
    /// Privileged.
    pub const PNU: Field = Field::bit(1, 33);
    /// Instruction.
    pub const IND: Field = Field::bit(1, 34);
    /// Read (1) or write (0).
    pub const RNW: Field = Field::bit(1, 35);
    /// Fault at stage 2.
    pub const S2: Field = Field::bit(1, 39);
    /// Class: 0 CD fetch, 1 TT fetch, 2 input address.
    pub const CLASS: Field = Field::bits(1, 41, 40);
    /// Input address.
    pub const ADDR: Field = Field::new(2, 0, 64);
    /// IPA bits 51:12.
    pub const IPA: Field = Field::bits(3, 51, 12);
    /// Fetch address bits 51:3.
    pub const FETCH_ADDR: Field = Field::bits(3, 51, 3);
}

/// Every event field this driver names, for the driver/model cross-check.
pub const FIELDS: &[(&str, Field)] = &[
    ("ID", f::ID),
    ("SSV", f::SSV),
    ("SSID", f::SSID),
    ("SID", f::SID),
    ("STAG", f::STAG),
    ("STALL", f::STALL),
    ("PnU", f::PNU),
    ("InD", f::IND),
    ("RnW", f::RNW),
    ("S2", f::S2),
    ("CLASS", f::CLASS),
    ("ADDR", f::ADDR),
    ("IPA", f::IPA),
    ("FETCH_ADDR", f::FETCH_ADDR),
];

/// Event kinds (§5.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// 0x01 unsupported upstream transaction.
    Uut,
    /// 0x02 StreamID out of range.
    BadStreamId,
    /// 0x03 abort fetching an STE.
    SteFetch,
    /// 0x04 invalid or illegal STE.
    BadSte,
    /// 0x05 ATS translation request not allowed.
    BadAtsTreq,
    /// 0x06 stream disabled for non-substream traffic.
    StreamDisabled,
    /// 0x07 ATS translated transaction forbidden.
    TranslForbidden,
    /// 0x08 bad SubstreamID.
    BadSubstreamId,
    /// 0x09 abort fetching a CD.
    CdFetch,
    /// 0x0A invalid or illegal CD.
    BadCd,
    /// 0x0B external abort during a walk.
    WalkEabt,
    /// 0x10 translation fault.
    Translation,
    /// 0x11 address size fault.
    AddrSize,
    /// 0x12 access flag fault.
    Access,
    /// 0x13 permission fault.
    Permission,
    /// 0x20 TLB conflict.
    TlbConflict,
    /// 0x21 configuration cache conflict.
    CfgConflict,
    /// 0x24 page request hint.
    PageRequest,
    /// 0x25 abort fetching the VMS.
    VmsFetch,
    /// Anything else (IMPDEF or unknown).
    Other(u8),
}

impl EventKind {
    /// Decode an event ID.
    pub const fn from_id(id: u8) -> EventKind {
        match id {
            0x01 => EventKind::Uut,
            0x02 => EventKind::BadStreamId,
            0x03 => EventKind::SteFetch,
            0x04 => EventKind::BadSte,
            0x05 => EventKind::BadAtsTreq,
            0x06 => EventKind::StreamDisabled,
            0x07 => EventKind::TranslForbidden,
            0x08 => EventKind::BadSubstreamId,
            0x09 => EventKind::CdFetch,
            0x0A => EventKind::BadCd,
            0x0B => EventKind::WalkEabt,
            0x10 => EventKind::Translation,
            0x11 => EventKind::AddrSize,
            0x12 => EventKind::Access,
            0x13 => EventKind::Permission,
            0x20 => EventKind::TlbConflict,
            0x21 => EventKind::CfgConflict,
            0x24 => EventKind::PageRequest,
            0x25 => EventKind::VmsFetch,
            other => EventKind::Other(other),
        }
    }

    /// Whether this is one of the four translation-related faults that Linux can
    /// report as IOMMU page faults.
    pub const fn is_translation_fault(self) -> bool {
        matches!(
            self,
            EventKind::Translation
                | EventKind::AddrSize
                | EventKind::Access
                | EventKind::Permission
        )
    }
}

/// A decoded fault report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultReport {
    /// What happened.
    pub kind: EventKind,
    /// StreamID.
    pub sid: u32,
    /// SubstreamID if the record carries one (not for C_BAD_SUBSTREAMID).
    pub ssid: Option<u32>,
    /// Input address (IOVA).
    pub addr: u64,
    /// IPA (stage-2 faults).
    pub ipa: u64,
    /// The access was a read.
    pub read: bool,
    /// Privileged access.
    pub privileged: bool,
    /// Instruction fetch.
    pub instruction: bool,
    /// Fault at stage 2.
    pub stage2: bool,
    /// Record class (0 CD fetch, 1 TT fetch, 2 input address).
    pub class: u8,
    /// The transaction is stalled awaiting CMD_RESUME with this tag.
    pub stall_tag: Option<u16>,
    /// The raw event ID.
    pub code: u8,
}

impl FaultReport {
    /// The core's view of this fault (`iommu_core::FaultReport`), for instance `iommu`.
    pub fn to_core(&self, iommu: iommu_core::IommuId) -> iommu_core::FaultReport {
        use iommu_core::FaultKind as K;
        let kind = match self.kind {
            EventKind::Translation => K::Translation,
            EventKind::Permission => K::Permission,
            EventKind::Access => K::AccessFlag,
            EventKind::AddrSize => K::AddressSize,
            EventKind::BadStreamId | EventKind::StreamDisabled | EventKind::BadSubstreamId => {
                K::BadStream
            }
            EventKind::BadSte | EventKind::BadCd => K::BadConfig,
            EventKind::SteFetch
            | EventKind::CdFetch
            | EventKind::WalkEabt
            | EventKind::VmsFetch => K::External,
            _ => K::Other,
        };
        iommu_core::FaultReport {
            iommu,
            stream_id: self.sid,
            pasid: self.ssid,
            iova: self.addr,
            kind,
            access: iommu_core::FaultAccess {
                write: !self.read,
                exec: self.instruction,
                privileged: self.privileged,
            },
            code: self.code,
            device: None,
        }
    }
}

/// A raw event record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventRecord(pub [u64; EVT_DWORDS]);

impl EventRecord {
    /// Decode into a fault report.
    pub fn decode(&self) -> FaultReport {
        let w = &self.0;
        let kind = EventKind::from_id(f::ID.get(w) as u8);
        let ssid = (f::SSV.get(w) == 1 && kind != EventKind::BadSubstreamId)
            .then(|| f::SSID.get(w) as u32);
        FaultReport {
            kind,
            sid: f::SID.get(w) as u32,
            ssid,
            addr: f::ADDR.get(w),
            ipa: f::IPA.get(w) << 12,
            read: f::RNW.get(w) == 1,
            privileged: f::PNU.get(w) == 1,
            instruction: f::IND.get(w) == 1,
            stage2: f::S2.get(w) == 1,
            class: f::CLASS.get(w) as u8,
            stall_tag: (f::STALL.get(w) == 1).then(|| f::STAG.get(w) as u16),
            code: f::ID.get(w) as u8,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_translation_fault() {
        // F_TRANSLATION (0x10), SSV, SSID=3, SID=0x21; read, S2, class 2; addr; IPA 0x8000_0000.
        let rec = EventRecord([
            0x10 | (1 << 11) | (3 << 12) | (0x21u64 << 32),
            (1 << 35) | (1 << 39) | (2u64 << 40),
            0xdead_b000,
            0x8000_0000,
        ]);
        let r = rec.decode();
        assert_eq!(r.kind, EventKind::Translation);
        assert!(r.kind.is_translation_fault());
        assert_eq!(
            (r.sid, r.ssid, r.addr, r.ipa),
            (0x21, Some(3), 0xdead_b000, 0x8000_0000)
        );
        assert!(r.read && r.stage2 && !r.privileged && !r.instruction);
        assert_eq!(r.class, 2);
        assert_eq!(r.stall_tag, None);
        let st = EventRecord([0x13, (1 << 31) | 0x55, 0, 0]).decode();
        assert_eq!(st.kind, EventKind::Permission);
        assert_eq!(st.stall_tag, Some(0x55));
        assert!(!st.read);
        assert_eq!(
            EventRecord([0x04, 0, 0, 0]).decode().kind,
            EventKind::BadSte
        );
        assert_eq!(
            EventRecord([0xE3, 0, 0, 0]).decode().kind,
            EventKind::Other(0xE3)
        );
        assert_eq!(EventRecord([0x08 | (1 << 11), 0, 0, 0]).decode().ssid, None);
        let c = r.to_core(iommu_core::IommuId(2));
        assert_eq!(c.kind, iommu_core::FaultKind::Translation);
        assert_eq!(
            (c.stream_id, c.pasid, c.iova, c.code),
            (0x21, Some(3), 0xdead_b000, 0x10)
        );
        assert!(!c.access.write);
    }
}
