//! Command encodings (`smmuv3.md` §4.1–§4.4): a typed [`Cmd`] encoded to the two
//! little-endian dwords of a command-queue entry, bit-exact.

use crate::field::Field;
use crate::{Error, Result};

/// Size of a command in bytes.
pub const CMD_BYTES: u64 = 16;

/// Opcodes (§4.2).
pub mod op {
    /// CMD_PREFETCH_CONFIG.
    pub const PREFETCH_CONFIG: u8 = 0x01;
    /// CMD_PREFETCH_ADDR.
    pub const PREFETCH_ADDR: u8 = 0x02;
    /// CMD_CFGI_STE.
    pub const CFGI_STE: u8 = 0x03;
    /// CMD_CFGI_STE_RANGE (and CFGI_ALL with Range=31).
    pub const CFGI_STE_RANGE: u8 = 0x04;
    /// CMD_CFGI_CD.
    pub const CFGI_CD: u8 = 0x05;
    /// CMD_CFGI_CD_ALL.
    pub const CFGI_CD_ALL: u8 = 0x06;
    /// CMD_CFGI_VMS_PIDM.
    pub const CFGI_VMS_PIDM: u8 = 0x07;
    /// CMD_TLBI_NH_ALL.
    pub const TLBI_NH_ALL: u8 = 0x10;
    /// CMD_TLBI_NH_ASID.
    pub const TLBI_NH_ASID: u8 = 0x11;
    /// CMD_TLBI_NH_VA.
    pub const TLBI_NH_VA: u8 = 0x12;
    /// CMD_TLBI_NH_VAA.
    pub const TLBI_NH_VAA: u8 = 0x13;
    /// CMD_TLBI_EL3_ALL.
    pub const TLBI_EL3_ALL: u8 = 0x18;
    /// CMD_TLBI_EL3_VA.
    pub const TLBI_EL3_VA: u8 = 0x1A;
    /// CMD_TLBI_EL2_ALL.
    pub const TLBI_EL2_ALL: u8 = 0x20;
    /// CMD_TLBI_EL2_ASID.
    pub const TLBI_EL2_ASID: u8 = 0x21;
    /// CMD_TLBI_EL2_VA.
    pub const TLBI_EL2_VA: u8 = 0x22;
    /// CMD_TLBI_EL2_VAA.
    pub const TLBI_EL2_VAA: u8 = 0x23;
    /// CMD_TLBI_S12_VMALL.
    pub const TLBI_S12_VMALL: u8 = 0x28;
    /// CMD_TLBI_S2_IPA.
    pub const TLBI_S2_IPA: u8 = 0x2A;
    /// CMD_TLBI_NSNH_ALL.
    pub const TLBI_NSNH_ALL: u8 = 0x30;
    /// CMD_ATC_INV.
    pub const ATC_INV: u8 = 0x40;
    /// CMD_PRI_RESP.
    pub const PRI_RESP: u8 = 0x41;
    /// CMD_RESUME.
    pub const RESUME: u8 = 0x44;
    /// CMD_STALL_TERM.
    pub const STALL_TERM: u8 = 0x45;
    /// CMD_SYNC.
    pub const SYNC: u8 = 0x46;
}

/// Command fields (§4.1–§4.3).
pub mod f {
    use super::Field;
    /// Opcode.
    pub const OP: Field = Field::bits(0, 7, 0);
    /// ATC_INV global.
    pub const ATC_GLOBAL: Field = Field::bit(0, 9);
    /// Secure stream.
    pub const SSEC: Field = Field::bit(0, 10);
    /// SubstreamID valid.
    pub const SSV: Field = Field::bit(0, 11);
    /// SubstreamID.
    pub const SSID: Field = Field::bits(0, 31, 12);
    /// StreamID.
    pub const SID: Field = Field::bits(0, 63, 32);
    /// CFGI leaf.
    pub const CFGI_LEAF: Field = Field::bit(1, 0);
    /// CFGI_STE_RANGE range.
    pub const CFGI_RANGE: Field = Field::bits(1, 4, 0);
    /// TLBI range mantissa − 1.
    pub const TLBI_NUM: Field = Field::bits(0, 16, 12);
    /// TLBI range exponent.
    pub const TLBI_SCALE: Field = Field::bits(0, 24, 20);
    /// TLBI VMID.
    pub const TLBI_VMID: Field = Field::bits(0, 47, 32);
    /// TLBI ASID.
    pub const TLBI_ASID: Field = Field::bits(0, 63, 48);
    /// TLBI leaf only.
    pub const TLBI_LEAF: Field = Field::bit(1, 0);
    /// TLBI level hint.
    pub const TLBI_TTL: Field = Field::bits(1, 9, 8);
    /// TLBI range granule.
    pub const TLBI_TG: Field = Field::bits(1, 11, 10);
    /// TLBI VA bits 63:12.
    pub const TLBI_VA: Field = Field::bits(1, 63, 12);
    /// TLBI IPA bits 51:12.
    pub const TLBI_IPA: Field = Field::bits(1, 51, 12);
    /// ATC_INV size (log2 of 4K pages).
    pub const ATC_SIZE: Field = Field::bits(1, 5, 0);
    /// ATC_INV address bits 63:12.
    pub const ATC_ADDR: Field = Field::bits(1, 63, 12);
    /// PREFETCH_ADDR size.
    pub const PREFETCH_SIZE: Field = Field::bits(1, 4, 0);
    /// PREFETCH_ADDR address bits 63:12.
    pub const PREFETCH_ADDR: Field = Field::bits(1, 63, 12);
    /// PRI_RESP group index.
    pub const PRI_GRPID: Field = Field::bits(1, 8, 0);
    /// PRI_RESP response.
    pub const PRI_RESP: Field = Field::bits(1, 13, 12);
    /// RESUME response.
    pub const RESUME_RESP: Field = Field::bits(0, 13, 12);
    /// RESUME stall tag.
    pub const RESUME_STAG: Field = Field::bits(1, 15, 0);
    /// SYNC completion signal.
    pub const SYNC_CS: Field = Field::bits(0, 13, 12);
    /// SYNC MSI shareability.
    pub const SYNC_MSH: Field = Field::bits(0, 23, 22);
    /// SYNC MSI memory attributes.
    pub const SYNC_MSIATTR: Field = Field::bits(0, 27, 24);
    /// SYNC MSI data.
    pub const SYNC_MSIDATA: Field = Field::bits(0, 63, 32);
    /// SYNC MSI address bits 51:2.
    pub const SYNC_MSIADDR: Field = Field::bits(1, 51, 2);
}

/// Every command field this driver names, for the driver/model cross-check.
pub const FIELDS: &[(&str, Field)] = &[
    ("OP", f::OP),
    ("ATC.GLOBAL", f::ATC_GLOBAL),
    ("SSEC", f::SSEC),
    ("SSV", f::SSV),
    ("SSID", f::SSID),
    ("SID", f::SID),
    ("CFGI.LEAF", f::CFGI_LEAF),
    ("CFGI.RANGE", f::CFGI_RANGE),
    ("TLBI.NUM", f::TLBI_NUM),
    ("TLBI.SCALE", f::TLBI_SCALE),
    ("TLBI.VMID", f::TLBI_VMID),
    ("TLBI.ASID", f::TLBI_ASID),
    ("TLBI.LEAF", f::TLBI_LEAF),
    ("TLBI.TTL", f::TLBI_TTL),
    ("TLBI.TG", f::TLBI_TG),
    ("TLBI.VA", f::TLBI_VA),
    ("TLBI.IPA", f::TLBI_IPA),
    ("ATC.SIZE", f::ATC_SIZE),
    ("ATC.ADDR", f::ATC_ADDR),
    ("PREFETCH.SIZE", f::PREFETCH_SIZE),
    ("PREFETCH.ADDR", f::PREFETCH_ADDR),
    ("PRI.GRPID", f::PRI_GRPID),
    ("PRI.RESP", f::PRI_RESP),
    ("RESUME.RESP", f::RESUME_RESP),
    ("RESUME.STAG", f::RESUME_STAG),
    ("SYNC.CS", f::SYNC_CS),
    ("SYNC.MSH", f::SYNC_MSH),
    ("SYNC.MSIATTR", f::SYNC_MSIATTR),
    ("SYNC.MSIDATA", f::SYNC_MSIDATA),
    ("SYNC.MSIADDR", f::SYNC_MSIADDR),
];

/// The address and range part of a TLBI by address (§4.4).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TlbiRange {
    /// Address (VA or IPA), 4 KiB aligned (low 12 bits are not encoded).
    pub addr: u64,
    /// Only leaf entries changed (walk caches may be kept).
    pub leaf: bool,
    /// Range granule: 0 single address, 1 4K, 2 16K, 3 64K.
    pub tg: u8,
    /// Level hint, 0 = none.
    pub ttl: u8,
    /// Mantissa − 1 (range covers (NUM+1)·2^SCALE granules).
    pub num: u8,
    /// Exponent.
    pub scale: u8,
}

/// CMD_SYNC completion signal (CS).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncCs {
    /// Software polls CMDQ_CONS.
    None = 0,
    /// MSI write of MSIData to MSIAddr.
    Irq = 1,
    /// Send an event (WFE wake-up).
    Sev = 2,
}

/// PRI_RESP response code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PriResp {
    /// ResponseFailure (Linux DENY).
    Deny = 0,
    /// InvalidRequest (Linux FAIL).
    Fail = 1,
    /// Success.
    Success = 2,
}

/// CMD_RESUME action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResumeResp {
    /// Terminate with RAZ/WI completion.
    Term = 0,
    /// Retry the transaction.
    Retry = 1,
    /// Terminate with an abort.
    Abort = 2,
}

/// A command, every opcode of §4.2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmd {
    /// Prefetch the configuration of a stream (substream).
    PrefetchConfig {
        /// StreamID.
        sid: u32,
        /// SubstreamID, if any.
        ssid: Option<u32>,
    },
    /// Prefetch a translation.
    PrefetchAddr {
        /// StreamID.
        sid: u32,
        /// SubstreamID, if any.
        ssid: Option<u32>,
        /// Address (4 KiB aligned).
        addr: u64,
        /// Size field.
        size: u8,
    },
    /// Invalidate one cached STE (leaf) or also its L1 descriptor.
    CfgiSte {
        /// StreamID.
        sid: u32,
        /// Only the STE.
        leaf: bool,
    },
    /// Invalidate 2^(range+1) aligned StreamIDs.
    CfgiSteRange {
        /// StreamID.
        sid: u32,
        /// Range (0..=30; 31 is CFGI_ALL).
        range: u8,
    },
    /// Invalidate every cached configuration (CFGI_STE_RANGE with Range=31).
    CfgiAll,
    /// Invalidate one cached CD.
    CfgiCd {
        /// StreamID.
        sid: u32,
        /// SubstreamID.
        ssid: u32,
        /// Only the CD (not the L1 CD descriptor).
        leaf: bool,
    },
    /// Invalidate every cached CD of a stream.
    CfgiCdAll {
        /// StreamID.
        sid: u32,
    },
    /// CFGI_VMS_PIDM (opcode only; this driver never issues it).
    CfgiVmsPidm,
    /// All stage-1 entries of a VMID.
    TlbiNhAll {
        /// VMID.
        vmid: u16,
    },
    /// All entries of an ASID in a VMID.
    TlbiNhAsid {
        /// VMID.
        vmid: u16,
        /// ASID.
        asid: u16,
    },
    /// Stage-1 entries by VA for one ASID.
    TlbiNhVa {
        /// VMID.
        vmid: u16,
        /// ASID.
        asid: u16,
        /// Address/range.
        range: TlbiRange,
    },
    /// Stage-1 entries by VA for all ASIDs.
    TlbiNhVaa {
        /// VMID.
        vmid: u16,
        /// Address/range.
        range: TlbiRange,
    },
    /// All EL3 entries.
    TlbiEl3All,
    /// EL3 entries by VA.
    TlbiEl3Va {
        /// Address/range.
        range: TlbiRange,
    },
    /// All EL2 entries.
    TlbiEl2All,
    /// EL2 entries of an ASID.
    TlbiEl2Asid {
        /// ASID.
        asid: u16,
    },
    /// EL2 entries by VA for one ASID.
    TlbiEl2Va {
        /// ASID.
        asid: u16,
        /// Address/range.
        range: TlbiRange,
    },
    /// EL2 entries by VA for all ASIDs.
    TlbiEl2Vaa {
        /// Address/range.
        range: TlbiRange,
    },
    /// All stage-1 and stage-2 entries of a VMID.
    TlbiS12Vmall {
        /// VMID.
        vmid: u16,
    },
    /// Stage-2 entries by IPA.
    TlbiS2Ipa {
        /// VMID.
        vmid: u16,
        /// IPA/range.
        range: TlbiRange,
    },
    /// Everything non-secure, non-hyp.
    TlbiNsnhAll,
    /// Invalidate a device's ATC: 2^size 4 KiB pages at addr.
    AtcInv {
        /// StreamID.
        sid: u32,
        /// SubstreamID (PASID), if any.
        ssid: Option<u32>,
        /// Global invalidate (ignored without SSID).
        global: bool,
        /// Address (aligned to the span).
        addr: u64,
        /// log2 of the number of 4 KiB pages.
        size: u8,
    },
    /// Respond to a PRI page request group.
    PriResp {
        /// StreamID.
        sid: u32,
        /// SubstreamID, if any.
        ssid: Option<u32>,
        /// Page request group index.
        grpid: u16,
        /// Response.
        resp: PriResp,
    },
    /// Resume or terminate a stalled transaction.
    Resume {
        /// StreamID.
        sid: u32,
        /// Stall tag.
        stag: u16,
        /// Action.
        resp: ResumeResp,
    },
    /// Terminate all stalled transactions of a stream.
    StallTerm {
        /// StreamID.
        sid: u32,
    },
    /// Wait for completion of everything before it.
    Sync {
        /// Completion signal.
        cs: SyncCs,
        /// MSI address (4-byte aligned), 0 for none.
        msi_addr: u64,
        /// MSI data.
        msi_data: u32,
    },
}

const SSID_MAX: u32 = (1 << 20) - 1;
/// MSH value used for MSI writes (inner shareable).
pub const SYNC_MSH_ISH: u64 = 3;
/// MSIAttr value used for MSI writes (normal write-back).
pub const SYNC_MSIATTR_OIWB: u64 = 0xF;

fn put_ssid(w: &mut [u64; 2], ssid: Option<u32>) -> Result<()> {
    if let Some(s) = ssid {
        if s > SSID_MAX {
            return Err(Error::BadCommand("SSID wider than 20 bits"));
        }
        f::SSV.set(w, 1);
        f::SSID.set(w, s as u64);
    }
    Ok(())
}

fn put_range(w: &mut [u64; 2], r: &TlbiRange, ipa: bool) -> Result<()> {
    if r.tg > 3 || r.ttl > 3 || r.num > 31 || r.scale > 31 {
        return Err(Error::BadCommand("TLBI range field out of range"));
    }
    if r.tg == 0 && (r.num != 0 || r.scale != 0 || r.ttl != 0) {
        return Err(Error::BadCommand("NUM/SCALE/TTL need TG != 0"));
    }
    if r.tg != 0 && r.num == 0 && r.scale == 0 && r.ttl == 0 {
        return Err(Error::BadCommand("TG!=0 with NUM=SCALE=TTL=0 is reserved"));
    }
    if ipa && r.addr >> 52 != 0 {
        return Err(Error::BadCommand("IPA wider than 52 bits"));
    }
    f::TLBI_NUM.set(w, r.num as u64);
    f::TLBI_SCALE.set(w, r.scale as u64);
    f::TLBI_LEAF.set(w, r.leaf as u64);
    f::TLBI_TTL.set(w, r.ttl as u64);
    f::TLBI_TG.set(w, r.tg as u64);
    if ipa {
        f::TLBI_IPA.set(w, r.addr >> 12);
    } else {
        f::TLBI_VA.set(w, r.addr >> 12);
    }
    Ok(())
}

impl Cmd {
    /// The opcode of this command.
    pub const fn opcode(&self) -> u8 {
        match self {
            Cmd::PrefetchConfig { .. } => op::PREFETCH_CONFIG,
            Cmd::PrefetchAddr { .. } => op::PREFETCH_ADDR,
            Cmd::CfgiSte { .. } => op::CFGI_STE,
            Cmd::CfgiSteRange { .. } | Cmd::CfgiAll => op::CFGI_STE_RANGE,
            Cmd::CfgiCd { .. } => op::CFGI_CD,
            Cmd::CfgiCdAll { .. } => op::CFGI_CD_ALL,
            Cmd::CfgiVmsPidm => op::CFGI_VMS_PIDM,
            Cmd::TlbiNhAll { .. } => op::TLBI_NH_ALL,
            Cmd::TlbiNhAsid { .. } => op::TLBI_NH_ASID,
            Cmd::TlbiNhVa { .. } => op::TLBI_NH_VA,
            Cmd::TlbiNhVaa { .. } => op::TLBI_NH_VAA,
            Cmd::TlbiEl3All => op::TLBI_EL3_ALL,
            Cmd::TlbiEl3Va { .. } => op::TLBI_EL3_VA,
            Cmd::TlbiEl2All => op::TLBI_EL2_ALL,
            Cmd::TlbiEl2Asid { .. } => op::TLBI_EL2_ASID,
            Cmd::TlbiEl2Va { .. } => op::TLBI_EL2_VA,
            Cmd::TlbiEl2Vaa { .. } => op::TLBI_EL2_VAA,
            Cmd::TlbiS12Vmall { .. } => op::TLBI_S12_VMALL,
            Cmd::TlbiS2Ipa { .. } => op::TLBI_S2_IPA,
            Cmd::TlbiNsnhAll => op::TLBI_NSNH_ALL,
            Cmd::AtcInv { .. } => op::ATC_INV,
            Cmd::PriResp { .. } => op::PRI_RESP,
            Cmd::Resume { .. } => op::RESUME,
            Cmd::StallTerm { .. } => op::STALL_TERM,
            Cmd::Sync { .. } => op::SYNC,
        }
    }

    /// Encode into the two dwords of a queue entry; fails when a value does not fit
    /// its field or the combination is reserved (never emits an illegal command).
    pub fn encode(&self) -> Result<[u64; 2]> {
        let mut w = [0u64; 2];
        f::OP.set(&mut w, self.opcode() as u64);
        match *self {
            Cmd::PrefetchConfig { sid, ssid } => {
                f::SID.set(&mut w, sid as u64);
                put_ssid(&mut w, ssid)?;
            }
            Cmd::PrefetchAddr {
                sid,
                ssid,
                addr,
                size,
            } => {
                if size > 31 {
                    return Err(Error::BadCommand("prefetch size"));
                }
                f::SID.set(&mut w, sid as u64);
                put_ssid(&mut w, ssid)?;
                f::PREFETCH_SIZE.set(&mut w, size as u64);
                f::PREFETCH_ADDR.set(&mut w, addr >> 12);
            }
            Cmd::CfgiSte { sid, leaf } => {
                f::SID.set(&mut w, sid as u64);
                f::CFGI_LEAF.set(&mut w, leaf as u64);
            }
            Cmd::CfgiSteRange { sid, range } => {
                if range > 31 {
                    return Err(Error::BadCommand("CFGI range"));
                }
                f::SID.set(&mut w, sid as u64);
                f::CFGI_RANGE.set(&mut w, range as u64);
            }
            Cmd::CfgiAll => f::CFGI_RANGE.set(&mut w, 31),
            Cmd::CfgiCd { sid, ssid, leaf } => {
                if ssid > SSID_MAX {
                    return Err(Error::BadCommand("SSID wider than 20 bits"));
                }
                f::SID.set(&mut w, sid as u64);
                f::SSID.set(&mut w, ssid as u64);
                f::CFGI_LEAF.set(&mut w, leaf as u64);
            }
            Cmd::CfgiCdAll { sid } => f::SID.set(&mut w, sid as u64),
            Cmd::CfgiVmsPidm | Cmd::TlbiEl3All | Cmd::TlbiEl2All | Cmd::TlbiNsnhAll => {}
            Cmd::TlbiNhAll { vmid } | Cmd::TlbiS12Vmall { vmid } => {
                f::TLBI_VMID.set(&mut w, vmid as u64)
            }
            Cmd::TlbiNhAsid { vmid, asid } => {
                f::TLBI_VMID.set(&mut w, vmid as u64);
                f::TLBI_ASID.set(&mut w, asid as u64);
            }
            Cmd::TlbiNhVa { vmid, asid, range } => {
                f::TLBI_VMID.set(&mut w, vmid as u64);
                f::TLBI_ASID.set(&mut w, asid as u64);
                put_range(&mut w, &range, false)?;
            }
            Cmd::TlbiNhVaa { vmid, range } => {
                f::TLBI_VMID.set(&mut w, vmid as u64);
                put_range(&mut w, &range, false)?;
            }
            Cmd::TlbiEl3Va { range } | Cmd::TlbiEl2Vaa { range } => {
                put_range(&mut w, &range, false)?
            }
            Cmd::TlbiEl2Asid { asid } => f::TLBI_ASID.set(&mut w, asid as u64),
            Cmd::TlbiEl2Va { asid, range } => {
                f::TLBI_ASID.set(&mut w, asid as u64);
                put_range(&mut w, &range, false)?;
            }
            Cmd::TlbiS2Ipa { vmid, range } => {
                f::TLBI_VMID.set(&mut w, vmid as u64);
                put_range(&mut w, &range, true)?;
            }
            Cmd::AtcInv {
                sid,
                ssid,
                global,
                addr,
                size,
            } => {
                if size > 52 {
                    return Err(Error::BadCommand("ATC_INV size above 52"));
                }
                if size < 52 && addr & ((1u64 << (12 + size as u32)) - 1) != 0 {
                    return Err(Error::BadCommand("ATC_INV address not aligned to its span"));
                }
                f::SID.set(&mut w, sid as u64);
                put_ssid(&mut w, ssid)?;
                f::ATC_GLOBAL.set(&mut w, global as u64);
                f::ATC_SIZE.set(&mut w, size as u64);
                f::ATC_ADDR.set(&mut w, addr >> 12);
            }
            Cmd::PriResp {
                sid,
                ssid,
                grpid,
                resp,
            } => {
                if grpid > 0x1ff {
                    return Err(Error::BadCommand("PRG index wider than 9 bits"));
                }
                f::SID.set(&mut w, sid as u64);
                put_ssid(&mut w, ssid)?;
                f::PRI_GRPID.set(&mut w, grpid as u64);
                f::PRI_RESP.set(&mut w, resp as u64);
            }
            Cmd::Resume { sid, stag, resp } => {
                f::SID.set(&mut w, sid as u64);
                f::RESUME_RESP.set(&mut w, resp as u64);
                f::RESUME_STAG.set(&mut w, stag as u64);
            }
            Cmd::StallTerm { sid } => f::SID.set(&mut w, sid as u64),
            Cmd::Sync {
                cs,
                msi_addr,
                msi_data,
            } => {
                if msi_addr & 3 != 0 || msi_addr >> 52 != 0 {
                    return Err(Error::BadCommand(
                        "MSI address not 4-byte aligned or too wide",
                    ));
                }
                f::SYNC_CS.set(&mut w, cs as u64);
                if cs == SyncCs::Irq {
                    f::SYNC_MSH.set(&mut w, SYNC_MSH_ISH);
                    f::SYNC_MSIATTR.set(&mut w, SYNC_MSIATTR_OIWB);
                }
                f::SYNC_MSIDATA.set(&mut w, msi_data as u64);
                f::SYNC_MSIADDR.set(&mut w, msi_addr >> 2);
            }
        }
        Ok(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(c: Cmd) -> [u64; 2] {
        c.encode().unwrap()
    }

    #[test]
    fn golden_config_invalidations() {
        // CFGI_STE sid=0x42 leaf: d0 = 0x03 | 0x42<<32 ; d1 = 1.
        assert_eq!(
            enc(Cmd::CfgiSte {
                sid: 0x42,
                leaf: true
            }),
            [0x42_0000_0003, 1]
        );
        // CFGI_ALL = opcode 0x04 with Range=31 in d1[4:0].
        assert_eq!(enc(Cmd::CfgiAll), [0x04, 31]);
        assert_eq!(
            enc(Cmd::CfgiSteRange {
                sid: 0x100,
                range: 7
            }),
            [0x100_0000_0004, 7]
        );
        // CFGI_CD sid=1 ssid=5 leaf: d0 = 0x05 | 5<<12 | 1<<32.
        assert_eq!(
            enc(Cmd::CfgiCd {
                sid: 1,
                ssid: 5,
                leaf: true
            }),
            [0x1_0000_5005, 1]
        );
        assert_eq!(enc(Cmd::CfgiCdAll { sid: 3 }), [0x3_0000_0006, 0]);
        assert_eq!(enc(Cmd::CfgiVmsPidm), [0x07, 0]);
        // PREFETCH_CONFIG with SSID 2: SSV bit 11 + SSID<<12.
        assert_eq!(
            enc(Cmd::PrefetchConfig {
                sid: 9,
                ssid: Some(2)
            }),
            [0x9_0000_0000 | (2 << 12) | (1 << 11) | 0x01, 0]
        );
        assert_eq!(
            enc(Cmd::PrefetchAddr {
                sid: 9,
                ssid: None,
                addr: 0x5000,
                size: 3
            }),
            [0x9_0000_0002, 0x5000 | 3]
        );
    }

    #[test]
    fn golden_tlb_invalidations() {
        assert_eq!(enc(Cmd::TlbiNhAll { vmid: 3 }), [0x3_0000_0010, 0]);
        // NH_ASID: VMID d0[47:32], ASID d0[63:48].
        assert_eq!(
            enc(Cmd::TlbiNhAsid {
                vmid: 0,
                asid: 0xabcd
            }),
            [0xabcd_0000_0000_0011, 0]
        );
        // NH_VA range: NUM=3 at 12, SCALE=2 at 20, TG=1 at d1[11:10], TTL=3 at d1[9:8], leaf d1[0].
        let r = TlbiRange {
            addr: 0x1234_5000,
            leaf: true,
            tg: 1,
            ttl: 3,
            num: 3,
            scale: 2,
        };
        assert_eq!(
            enc(Cmd::TlbiNhVa {
                vmid: 0,
                asid: 5,
                range: r
            }),
            [
                (5u64 << 48) | (2 << 20) | (3 << 12) | 0x12,
                0x1234_5000 | (1 << 10) | (3 << 8) | 1
            ]
        );
        let single = TlbiRange {
            addr: 0xffff_ffff_f000,
            ..Default::default()
        };
        assert_eq!(
            enc(Cmd::TlbiNhVaa {
                vmid: 1,
                range: single
            }),
            [0x1_0000_0013, 0xffff_ffff_f000]
        );
        assert_eq!(enc(Cmd::TlbiEl3All), [0x18, 0]);
        assert_eq!(
            enc(Cmd::TlbiEl3Va { range: single }),
            [0x1a, 0xffff_ffff_f000]
        );
        assert_eq!(enc(Cmd::TlbiEl2All), [0x20, 0]);
        assert_eq!(enc(Cmd::TlbiEl2Asid { asid: 2 }), [0x2_0000_0000_0021, 0]);
        assert_eq!(
            enc(Cmd::TlbiEl2Va {
                asid: 2,
                range: single
            }),
            [0x2_0000_0000_0022, 0xffff_ffff_f000]
        );
        assert_eq!(
            enc(Cmd::TlbiEl2Vaa { range: single }),
            [0x23, 0xffff_ffff_f000]
        );
        assert_eq!(
            enc(Cmd::TlbiS12Vmall { vmid: 0xffff }),
            [0xffff_0000_0028, 0]
        );
        // S2_IPA keeps only IPA[51:12].
        let ipa = TlbiRange {
            addr: 0x000f_ffff_ffff_f000,
            ..Default::default()
        };
        assert_eq!(
            enc(Cmd::TlbiS2Ipa {
                vmid: 1,
                range: ipa
            }),
            [0x1_0000_002a, 0x000f_ffff_ffff_f000]
        );
        assert!(
            Cmd::TlbiS2Ipa {
                vmid: 1,
                range: TlbiRange {
                    addr: 1 << 52,
                    ..ipa
                }
            }
            .encode()
            .is_err()
        );
        assert_eq!(enc(Cmd::TlbiNsnhAll), [0x30, 0]);
    }

    #[test]
    fn reserved_range_combination_is_refused() {
        let bad = TlbiRange {
            addr: 0,
            leaf: false,
            tg: 1,
            ttl: 0,
            num: 0,
            scale: 0,
        };
        assert!(
            Cmd::TlbiNhVa {
                vmid: 0,
                asid: 1,
                range: bad
            }
            .encode()
            .is_err()
        );
        let bad2 = TlbiRange {
            tg: 0,
            num: 1,
            ..bad
        };
        assert!(
            Cmd::TlbiNhVa {
                vmid: 0,
                asid: 1,
                range: bad2
            }
            .encode()
            .is_err()
        );
        let ok = TlbiRange { ttl: 3, ..bad };
        assert!(
            Cmd::TlbiNhVa {
                vmid: 0,
                asid: 1,
                range: ok
            }
            .encode()
            .is_ok()
        );
    }

    #[test]
    fn golden_ats_pri_stall_sync() {
        // ATC_INV sid=7 ssid=1 size=4 (64 KiB) addr=0x10000: SSV | SSID<<12 | SID<<32.
        assert_eq!(
            enc(Cmd::AtcInv {
                sid: 7,
                ssid: Some(1),
                global: false,
                addr: 0x10000,
                size: 4
            }),
            [0x7_0000_0000 | (1 << 12) | (1 << 11) | 0x40, 0x10000 | 4]
        );
        assert!(
            Cmd::AtcInv {
                sid: 7,
                ssid: None,
                global: false,
                addr: 0x1000,
                size: 4
            }
            .encode()
            .is_err()
        );
        assert_eq!(
            enc(Cmd::AtcInv {
                sid: 7,
                ssid: None,
                global: false,
                addr: 0,
                size: 52
            }),
            [0x7_0000_0040, 52]
        );
        assert_eq!(
            enc(Cmd::PriResp {
                sid: 1,
                ssid: None,
                grpid: 0x1ff,
                resp: PriResp::Success
            }),
            [0x1_0000_0041, 0x1ff | (2 << 12)]
        );
        assert_eq!(
            enc(Cmd::Resume {
                sid: 1,
                stag: 0xbeef,
                resp: ResumeResp::Retry
            }),
            [0x1_0000_0044 | (1 << 12), 0xbeef]
        );
        assert_eq!(enc(Cmd::StallTerm { sid: 4 }), [0x4_0000_0045, 0]);
        // SYNC CS=IRQ: CS=1<<12, MSH=3<<22, MSIATTR=0xF<<24, data<<32; d1 = addr (bits 51:2).
        assert_eq!(
            enc(Cmd::Sync {
                cs: SyncCs::Irq,
                msi_addr: 0x8000_0010,
                msi_data: 0
            }),
            [0x46 | (1 << 12) | (3 << 22) | (0xF << 24), 0x8000_0010]
        );
        assert_eq!(
            enc(Cmd::Sync {
                cs: SyncCs::None,
                msi_addr: 0,
                msi_data: 0
            }),
            [0x46, 0]
        );
        assert!(
            Cmd::Sync {
                cs: SyncCs::Irq,
                msi_addr: 2,
                msi_data: 0
            }
            .encode()
            .is_err()
        );
    }
}
