//! Event-queue records (reference `smmuv3.md` §5): event IDs, field definitions and
//! the decoded [`Event`], with exact conversion to and from the 32-byte record.

use crate::field::Field;

/// Size of an event record in bytes.
pub const EVT_SIZE: u64 = 32;

/// Event record field definitions.
pub mod fields {
    use super::Field;
    /// Event ID.
    pub const ID: Field = Field::bits(0, 7, 0);
    /// SubstreamID valid.
    pub const SSV: Field = Field::new(0, 11, 1);
    /// SubstreamID.
    pub const SSID: Field = Field::bits(0, 31, 12);
    /// StreamID.
    pub const SID: Field = Field::bits(0, 63, 32);
    /// Stall tag.
    pub const STAG: Field = Field::bits(1, 15, 0);
    /// Stalled.
    pub const STALL: Field = Field::new(1, 31, 1);
    /// Privileged.
    pub const PNU: Field = Field::new(1, 33, 1);
    /// Instruction.
    pub const IND: Field = Field::new(1, 34, 1);
    /// Read (1) / write (0).
    pub const RNW: Field = Field::new(1, 35, 1);
    /// NS IPA.
    pub const NSIPA: Field = Field::new(1, 38, 1);
    /// Fault at stage 2.
    pub const S2: Field = Field::new(1, 39, 1);
    /// Class (0 CD fetch, 1 table walk, 2 input address).
    pub const CLASS: Field = Field::bits(1, 41, 40);
    /// TT read.
    pub const TT_READ: Field = Field::new(1, 44, 1);
    /// Input address.
    pub const INPUT_ADDR: Field = Field::new(2, 0, 64);
    /// IPA [51:12].
    pub const IPA: Field = Field::bits(3, 51, 12);
    /// Fetch address [51:3].
    pub const FETCH_ADDR: Field = Field::bits(3, 51, 3);
}

/// Event IDs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum EventId {
    /// Unsupported upstream transaction.
    FUut = 0x01,
    /// StreamID out of range.
    CBadStreamId = 0x02,
    /// External abort fetching an STE.
    FSteFetch = 0x03,
    /// Invalid or illegal STE.
    CBadSte = 0x04,
    /// ATS translation request not allowed.
    FBadAtsTreq = 0x05,
    /// Stream disabled for traffic without (or with) a SubstreamID.
    FStreamDisabled = 0x06,
    /// ATS translated transaction forbidden.
    FTranslForbidden = 0x07,
    /// Bad SubstreamID.
    CBadSubstreamId = 0x08,
    /// External abort fetching a CD.
    FCdFetch = 0x09,
    /// Invalid or illegal CD.
    CBadCd = 0x0A,
    /// External abort during a table walk.
    FWalkEabt = 0x0B,
    /// Translation fault.
    FTranslation = 0x10,
    /// Address size fault.
    FAddrSize = 0x11,
    /// Access flag fault.
    FAccess = 0x12,
    /// Permission fault.
    FPermission = 0x13,
    /// TLB conflict.
    FTlbConflict = 0x20,
    /// Configuration cache conflict.
    FCfgConflict = 0x21,
}

impl EventId {
    /// Decode a raw event ID.
    pub fn from_raw(v: u8) -> Option<Self> {
        use EventId::*;
        Some(match v {
            0x01 => FUut,
            0x02 => CBadStreamId,
            0x03 => FSteFetch,
            0x04 => CBadSte,
            0x05 => FBadAtsTreq,
            0x06 => FStreamDisabled,
            0x07 => FTranslForbidden,
            0x08 => CBadSubstreamId,
            0x09 => FCdFetch,
            0x0A => CBadCd,
            0x0B => FWalkEabt,
            0x10 => FTranslation,
            0x11 => FAddrSize,
            0x12 => FAccess,
            0x13 => FPermission,
            0x20 => FTlbConflict,
            0x21 => FCfgConflict,
            _ => return None,
        })
    }

    /// One of the four translation-related faults (F_TRANSLATION, F_ADDR_SIZE,
    /// F_ACCESS, F_PERMISSION) whose recording and response the CD/STE control.
    pub fn is_translation_related(self) -> bool {
        matches!(
            self,
            EventId::FTranslation | EventId::FAddrSize | EventId::FAccess | EventId::FPermission
        )
    }
}

/// Event class (record d1 CLASS).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventClass {
    /// CD fetch.
    Cd = 0,
    /// Translation-table descriptor fetch.
    TableWalk = 1,
    /// Input address.
    Input = 2,
}

/// A decoded event record. Fields that an event type does not use are zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Event {
    /// Event ID.
    pub id: EventId,
    /// StreamID.
    pub sid: u32,
    /// SubstreamID (SSV = Some).
    pub ssid: Option<u32>,
    /// Privileged access.
    pub pnu: bool,
    /// Instruction access.
    pub ind: bool,
    /// Read (true) or write (false).
    pub rnw: bool,
    /// Fault at stage 2.
    pub s2: bool,
    /// Class.
    pub class: EventClass,
    /// Input address.
    pub addr: u64,
    /// IPA (stage-2 faults).
    pub ipa: u64,
    /// Fetch address (fetch aborts).
    pub fetch_addr: u64,
}

impl Event {
    /// A configuration event (no address information).
    pub fn config(id: EventId, sid: u32, ssid: Option<u32>) -> Self {
        Self {
            id,
            sid,
            ssid,
            pnu: false,
            ind: false,
            rnw: false,
            s2: false,
            class: EventClass::Cd,
            addr: 0,
            ipa: 0,
            fetch_addr: 0,
        }
    }

    /// Encode as the 4 dwords of a record.
    pub fn to_words(&self) -> [u64; 4] {
        use fields as f;
        let mut w = [0u64; 4];
        f::ID.set(&mut w, self.id as u64);
        if let Some(ssid) = self.ssid {
            // C_BAD_SUBSTREAMID carries the SubstreamID without an SSV bit.
            f::SSV.set(&mut w, (self.id != EventId::CBadSubstreamId) as u64);
            f::SSID.set(&mut w, ssid as u64);
        }
        f::SID.set(&mut w, self.sid as u64);
        let has_access = !matches!(
            self.id,
            EventId::CBadStreamId | EventId::CBadSte | EventId::CBadSubstreamId | EventId::CBadCd
        );
        if has_access {
            f::PNU.set(&mut w, self.pnu as u64);
            f::IND.set(&mut w, self.ind as u64);
            f::RNW.set(&mut w, self.rnw as u64);
            f::S2.set(&mut w, self.s2 as u64);
            f::CLASS.set(&mut w, self.class as u64);
            f::INPUT_ADDR.set(&mut w, self.addr);
        }
        match self.id {
            EventId::FSteFetch | EventId::FCdFetch | EventId::FWalkEabt => {
                f::FETCH_ADDR.set(&mut w, self.fetch_addr >> 3);
            }
            _ if self.s2 => f::IPA.set(&mut w, self.ipa >> 12),
            _ => {}
        }
        w
    }

    /// Decode a record (None for an unknown event ID).
    pub fn from_words(w: &[u64; 4]) -> Option<Self> {
        use fields as f;
        let id = EventId::from_raw(f::ID.get(w) as u8)?;
        let s2 = f::S2.is_set(w);
        let (ipa, fetch_addr) = match id {
            EventId::FSteFetch | EventId::FCdFetch | EventId::FWalkEabt => {
                (0, f::FETCH_ADDR.get(w) << 3)
            }
            _ if s2 => (f::IPA.get(w) << 12, 0),
            _ => (0, 0),
        };
        Some(Self {
            id,
            sid: f::SID.get(w) as u32,
            ssid: (f::SSV.is_set(w) || id == EventId::CBadSubstreamId)
                .then(|| f::SSID.get(w) as u32),
            pnu: f::PNU.is_set(w),
            ind: f::IND.is_set(w),
            rnw: f::RNW.is_set(w),
            s2,
            class: match f::CLASS.get(w) {
                0 => EventClass::Cd,
                1 => EventClass::TableWalk,
                _ => EventClass::Input,
            },
            addr: f::INPUT_ADDR.get(w),
            ipa,
            fetch_addr,
        })
    }
}
