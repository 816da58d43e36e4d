//! Command-queue entries (reference `smmuv3.md` §4): opcodes, field definitions and
//! the decoded [`Command`]. [`Command::decode`] rejects malformed or unsupported
//! commands, which the consumer turns into CERROR_ILL.

use crate::config::SmmuConfig;
use crate::field::Field;

/// Size of a command in bytes.
pub const CMD_SIZE: u64 = 16;

/// Opcodes.
pub mod op {
    /// CMD_PREFETCH_CONFIG.
    pub const PREFETCH_CONFIG: u8 = 0x01;
    /// CMD_PREFETCH_ADDR.
    pub const PREFETCH_ADDR: u8 = 0x02;
    /// CMD_CFGI_STE.
    pub const CFGI_STE: u8 = 0x03;
    /// CMD_CFGI_STE_RANGE (Range = 31: CFGI_ALL).
    pub const CFGI_STE_RANGE: u8 = 0x04;
    /// CMD_CFGI_CD.
    pub const CFGI_CD: u8 = 0x05;
    /// CMD_CFGI_CD_ALL.
    pub const CFGI_CD_ALL: u8 = 0x06;
    /// CMD_CFGI_VMS_PIDM (not implemented: CERROR_ILL).
    pub const CFGI_VMS_PIDM: u8 = 0x07;
    /// CMD_TLBI_NH_ALL.
    pub const TLBI_NH_ALL: u8 = 0x10;
    /// CMD_TLBI_NH_ASID.
    pub const TLBI_NH_ASID: u8 = 0x11;
    /// CMD_TLBI_NH_VA.
    pub const TLBI_NH_VA: u8 = 0x12;
    /// CMD_TLBI_NH_VAA.
    pub const TLBI_NH_VAA: u8 = 0x13;
    /// CMD_TLBI_EL3_ALL (secure only: CERROR_ILL here).
    pub const TLBI_EL3_ALL: u8 = 0x18;
    /// CMD_TLBI_EL3_VA (secure only: CERROR_ILL here).
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

/// Command field definitions.
pub mod fields {
    use super::Field;
    /// Opcode.
    pub const OPCODE: Field = Field::bits(0, 7, 0);
    /// Secure stream.
    pub const SSEC: Field = Field::new(0, 10, 1);
    /// SubstreamID valid.
    pub const SSV: Field = Field::new(0, 11, 1);
    /// SubstreamID.
    pub const SSID: Field = Field::bits(0, 31, 12);
    /// StreamID.
    pub const SID: Field = Field::bits(0, 63, 32);
    /// CFGI leaf.
    pub const CFGI_LEAF: Field = Field::new(1, 0, 1);
    /// CFGI_STE_RANGE range.
    pub const CFGI_RANGE: Field = Field::bits(1, 4, 0);
    /// TLBI range NUM.
    pub const TLBI_NUM: Field = Field::bits(0, 16, 12);
    /// TLBI range SCALE.
    pub const TLBI_SCALE: Field = Field::bits(0, 24, 20);
    /// TLBI VMID.
    pub const TLBI_VMID: Field = Field::bits(0, 47, 32);
    /// TLBI ASID.
    pub const TLBI_ASID: Field = Field::bits(0, 63, 48);
    /// TLBI leaf.
    pub const TLBI_LEAF: Field = Field::new(1, 0, 1);
    /// TLBI TTL.
    pub const TLBI_TTL: Field = Field::bits(1, 9, 8);
    /// TLBI TG.
    pub const TLBI_TG: Field = Field::bits(1, 11, 10);
    /// TLBI VA [63:12].
    pub const TLBI_VA: Field = Field::bits(1, 63, 12);
    /// TLBI IPA [51:12].
    pub const TLBI_IPA: Field = Field::bits(1, 51, 12);
    /// ATC_INV global.
    pub const ATC_GLOBAL: Field = Field::new(0, 9, 1);
    /// ATC_INV size (2^Size 4 KiB pages).
    pub const ATC_SIZE: Field = Field::bits(1, 5, 0);
    /// ATC_INV address [63:12].
    pub const ATC_ADDR: Field = Field::bits(1, 63, 12);
    /// PRI_RESP group index.
    pub const PRI_GRPID: Field = Field::bits(1, 8, 0);
    /// PRI_RESP response.
    pub const PRI_RESP: Field = Field::bits(1, 13, 12);
    /// RESUME response.
    pub const RESUME_RESP: Field = Field::bits(0, 13, 12);
    /// RESUME stall tag.
    pub const RESUME_STAG: Field = Field::bits(1, 15, 0);
    /// CMD_SYNC completion signal.
    pub const SYNC_CS: Field = Field::bits(0, 13, 12);
    /// CMD_SYNC MSI shareability.
    pub const SYNC_MSH: Field = Field::bits(0, 23, 22);
    /// CMD_SYNC MSI attributes.
    pub const SYNC_MSIATTR: Field = Field::bits(0, 27, 24);
    /// CMD_SYNC MSI data.
    pub const SYNC_MSIDATA: Field = Field::bits(0, 63, 32);
    /// CMD_SYNC MSI address [51:2].
    pub const SYNC_MSIADDR: Field = Field::bits(1, 51, 2);
}

/// CMD_SYNC completion signal values.
pub mod sync_cs {
    /// No signal: software polls CMDQ_CONS.
    pub const NONE: u64 = 0;
    /// MSI write of MSIData to MSIAddr.
    pub const IRQ: u64 = 1;
    /// Send event.
    pub const SEV: u64 = 2;
}

/// The address range of a TLBI by address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TlbiRange {
    /// First byte.
    pub start: u64,
    /// Bytes covered (`u64::MAX` saturates), or 0 for a single address (TG = 0).
    pub len: u64,
    /// Granule shift of a range command (TG ≠ 0), else `None`.
    pub tg_shift: Option<u32>,
    /// TTL level hint (0 = none).
    pub ttl: u32,
    /// Leaf-only: walk caches may be kept.
    pub leaf: bool,
}

impl TlbiRange {
    /// Whether the range intersects `[base, base + size)`.
    pub fn overlaps(&self, base: u64, size: u64) -> bool {
        let end = base.saturating_add(size - 1);
        if self.len == 0 {
            return (base..=end).contains(&self.start);
        }
        let last = self.start.saturating_add(self.len - 1);
        self.start <= end && base <= last
    }
}

/// A decoded command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Command {
    /// Prefetch the configuration of a stream (and substream).
    PrefetchConfig {
        /// StreamID.
        sid: u32,
        /// SubstreamID if SSV.
        ssid: Option<u32>,
    },
    /// Prefetch translations (accepted, no effect).
    PrefetchAddr,
    /// Invalidate one STE (and, when not leaf, its L1 descriptor).
    CfgiSte {
        /// StreamID.
        sid: u32,
        /// Leaf only.
        leaf: bool,
    },
    /// Invalidate the STEs of 2^(range+1) aligned StreamIDs (range 31: all).
    CfgiSteRange {
        /// StreamID (low range+1 bits ignored).
        sid: u32,
        /// Range field.
        range: u32,
    },
    /// Invalidate one CD (and, when not leaf, the L1 CD descriptor).
    CfgiCd {
        /// StreamID.
        sid: u32,
        /// SubstreamID.
        ssid: u32,
        /// Leaf only.
        leaf: bool,
    },
    /// Invalidate all CDs of a stream.
    CfgiCdAll {
        /// StreamID.
        sid: u32,
    },
    /// TLBI_NH_ALL.
    TlbiNhAll {
        /// VMID.
        vmid: u16,
    },
    /// TLBI_NH_ASID.
    TlbiNhAsid {
        /// VMID.
        vmid: u16,
        /// ASID.
        asid: u16,
    },
    /// TLBI_NH_VA (asid Some) or TLBI_NH_VAA (asid None).
    TlbiNhVa {
        /// VMID.
        vmid: u16,
        /// ASID, or all ASIDs.
        asid: Option<u16>,
        /// Range.
        range: TlbiRange,
    },
    /// TLBI_EL2_ALL.
    TlbiEl2All,
    /// TLBI_EL2_ASID.
    TlbiEl2Asid {
        /// ASID.
        asid: u16,
    },
    /// TLBI_EL2_VA (asid Some) or TLBI_EL2_VAA (asid None).
    TlbiEl2Va {
        /// ASID, or all.
        asid: Option<u16>,
        /// Range.
        range: TlbiRange,
    },
    /// TLBI_S12_VMALL.
    TlbiS12Vmall {
        /// VMID.
        vmid: u16,
    },
    /// TLBI_S2_IPA.
    TlbiS2Ipa {
        /// VMID.
        vmid: u16,
        /// IPA range.
        range: TlbiRange,
    },
    /// TLBI_NSNH_ALL.
    TlbiNsnhAll,
    /// ATC_INV.
    AtcInv {
        /// StreamID.
        sid: u32,
        /// SubstreamID if SSV.
        ssid: Option<u32>,
        /// First byte.
        start: u64,
        /// log2 of the bytes covered.
        log2_len: u32,
    },
    /// PRI_RESP (accepted, no PRI queue modelled).
    PriResp,
    /// CMD_SYNC.
    Sync {
        /// Completion signal.
        cs: u64,
        /// MSI data.
        msi_data: u32,
        /// MSI address.
        msi_addr: u64,
    },
}

/// Why a command is illegal (CERROR_ILL).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IllegalCommand(pub &'static str);

fn tlbi_range(cfg: &SmmuConfig, w: &[u64; 2], ipa: bool) -> Result<TlbiRange, IllegalCommand> {
    use fields as f;
    let tg = f::TLBI_TG.get(w);
    let num = f::TLBI_NUM.get(w);
    let scale = f::TLBI_SCALE.get(w);
    let ttl = f::TLBI_TTL.get(w) as u32;
    let leaf = f::TLBI_LEAF.is_set(w);
    let start = if ipa {
        f::TLBI_IPA.get(w) << 12
    } else {
        f::TLBI_VA.get(w) << 12
    };
    if tg == 0 {
        return Ok(TlbiRange {
            start,
            len: 0,
            tg_shift: None,
            ttl: 0,
            leaf,
        });
    }
    if !cfg.ril {
        return Err(IllegalCommand("range invalidation without IDR3.RIL"));
    }
    if num == 0 && scale == 0 && ttl == 0 {
        return Err(IllegalCommand(
            "reserved range encoding NUM=0 SCALE=0 TTL=0",
        ));
    }
    let tg_shift = 10 + 2 * tg as u32;
    // TTL = 1 with the 16 KiB granule is reserved without DS: treat as no hint.
    let ttl = if tg_shift == 14 && ttl == 1 { 0 } else { ttl };
    let pages = (num + 1) as u128;
    let bytes = pages << (scale as u32 + tg_shift);
    let len = u64::try_from(bytes).unwrap_or(u64::MAX);
    Ok(TlbiRange {
        start: start & !((1u64 << tg_shift) - 1),
        len,
        tg_shift: Some(tg_shift),
        ttl,
        leaf,
    })
}

impl Command {
    /// Decode and validate a raw command against the features of `cfg`.
    pub fn decode(cfg: &SmmuConfig, w: &[u64; 2]) -> Result<Command, IllegalCommand> {
        use fields as f;
        let opcode = f::OPCODE.get(w) as u8;
        let sid = f::SID.get(w) as u32;
        let ssv = f::SSV.is_set(w);
        let ssid = f::SSID.get(w) as u32;
        let vmid = f::TLBI_VMID.get(w) as u16;
        let vmid = if cfg.vmid16 { vmid } else { vmid & 0xff };
        let asid = f::TLBI_ASID.get(w) as u16;
        let asid = if cfg.asid16 { asid } else { asid & 0xff };
        let need = |ok: bool, why| if ok { Ok(()) } else { Err(IllegalCommand(why)) };
        if f::SSEC.is_set(w)
            && matches!(
                opcode,
                op::PREFETCH_CONFIG
                    | op::CFGI_STE
                    | op::CFGI_STE_RANGE
                    | op::CFGI_CD
                    | op::CFGI_CD_ALL
            )
        {
            return Err(IllegalCommand("SSec=1 from the non-secure queue"));
        }
        Ok(match opcode {
            op::PREFETCH_CONFIG => Command::PrefetchConfig {
                sid,
                ssid: ssv.then_some(ssid),
            },
            op::PREFETCH_ADDR => Command::PrefetchAddr,
            op::CFGI_STE => Command::CfgiSte {
                sid,
                leaf: f::CFGI_LEAF.is_set(w),
            },
            op::CFGI_STE_RANGE => Command::CfgiSteRange {
                sid,
                range: f::CFGI_RANGE.get(w) as u32,
            },
            op::CFGI_CD => Command::CfgiCd {
                sid,
                ssid,
                leaf: f::CFGI_LEAF.is_set(w),
            },
            op::CFGI_CD_ALL => Command::CfgiCdAll { sid },
            op::TLBI_NH_ALL | op::TLBI_NH_ASID | op::TLBI_NH_VA | op::TLBI_NH_VAA => {
                need(cfg.s1(), "stage-1 TLBI without stage 1")?;
                match opcode {
                    op::TLBI_NH_ALL => Command::TlbiNhAll { vmid },
                    op::TLBI_NH_ASID => Command::TlbiNhAsid { vmid, asid },
                    op::TLBI_NH_VA => Command::TlbiNhVa {
                        vmid,
                        asid: Some(asid),
                        range: tlbi_range(cfg, w, false)?,
                    },
                    _ => Command::TlbiNhVa {
                        vmid,
                        asid: None,
                        range: tlbi_range(cfg, w, false)?,
                    },
                }
            }
            op::TLBI_EL2_ALL | op::TLBI_EL2_ASID | op::TLBI_EL2_VA | op::TLBI_EL2_VAA => {
                need(cfg.hyp && cfg.s1(), "EL2 TLBI without IDR0.Hyp")?;
                match opcode {
                    op::TLBI_EL2_ALL => Command::TlbiEl2All,
                    op::TLBI_EL2_ASID => Command::TlbiEl2Asid { asid },
                    op::TLBI_EL2_VA => Command::TlbiEl2Va {
                        asid: Some(asid),
                        range: tlbi_range(cfg, w, false)?,
                    },
                    _ => Command::TlbiEl2Va {
                        asid: None,
                        range: tlbi_range(cfg, w, false)?,
                    },
                }
            }
            op::TLBI_S12_VMALL => {
                need(cfg.s2(), "S12_VMALL without stage 2")?;
                Command::TlbiS12Vmall { vmid }
            }
            op::TLBI_S2_IPA => {
                need(cfg.s2(), "S2_IPA without stage 2")?;
                Command::TlbiS2Ipa {
                    vmid,
                    range: tlbi_range(cfg, w, true)?,
                }
            }
            op::TLBI_NSNH_ALL => Command::TlbiNsnhAll,
            op::ATC_INV => {
                need(cfg.ats, "ATC_INV without ATS")?;
                let size = f::ATC_SIZE.get(w) as u32;
                let log2_len = (size + 12).min(64);
                let addr = f::ATC_ADDR.get(w) << 12;
                let start = if log2_len >= 64 {
                    0
                } else {
                    addr & !((1u64 << log2_len) - 1)
                };
                Command::AtcInv {
                    sid,
                    ssid: ssv.then_some(ssid),
                    start,
                    log2_len,
                }
            }
            op::PRI_RESP => return Err(IllegalCommand("PRI_RESP without PRI")),
            op::RESUME | op::STALL_TERM => {
                return Err(IllegalCommand(
                    "stall commands with a terminate-only stall model",
                ));
            }
            op::SYNC => {
                let cs = f::SYNC_CS.get(w);
                need(cs != 3, "reserved CMD_SYNC.CS")?;
                Command::Sync {
                    cs,
                    msi_data: f::SYNC_MSIDATA.get(w) as u32,
                    msi_addr: f::SYNC_MSIADDR.get(w) << 2,
                }
            }
            _ => return Err(IllegalCommand("unknown or unsupported opcode")),
        })
    }
}
