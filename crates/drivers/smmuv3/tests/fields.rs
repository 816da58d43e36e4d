//! Two readings of one spec (ARCHITECTURE.md): every field named by both this
//! driver and `smmuv3-model` must have the same dword, lowest bit and width.

use smmuv3::field::Field;
use smmuv3_model::field::Field as MField;

fn same(name: &str, d: Field, m: MField, bad: &mut Vec<String>) {
    if (d.word, d.lsb, d.width) != (m.word, m.shift, m.width) {
        bad.push(format!("{name}: driver {d:?} model {m:?}"));
    }
}

macro_rules! cmp {
    ($bad:ident; $($d:path => $m:path),* $(,)?) => {
        $( same(stringify!($d), $d, $m, &mut $bad); )*
    };
}

#[test]
fn driver_and_model_agree_on_every_shared_field() {
    use smmuv3::{cd, cmd, event, regs, ste};
    use smmuv3_model as m;
    let mut bad = Vec::new();
    cmp!(bad;
        ste::f::V => m::ste::fields::V,
        ste::f::CONFIG => m::ste::fields::CONFIG,
        ste::f::S1FMT => m::ste::fields::S1FMT,
        ste::f::S1CTXPTR => m::ste::fields::S1_CONTEXT_PTR,
        ste::f::S1CDMAX => m::ste::fields::S1CDMAX,
        ste::f::S1DSS => m::ste::fields::S1DSS,
        ste::f::S1CIR => m::ste::fields::S1CIR,
        ste::f::S1COR => m::ste::fields::S1COR,
        ste::f::S1CSH => m::ste::fields::S1CSH,
        ste::f::DRE => m::ste::fields::DRE,
        ste::f::MEV => m::ste::fields::MEV,
        ste::f::S2FWB => m::ste::fields::S2FWB,
        ste::f::S1STALLD => m::ste::fields::S1STALLD,
        ste::f::EATS => m::ste::fields::EATS,
        ste::f::STRW => m::ste::fields::STRW,
        ste::f::SHCFG => m::ste::fields::SHCFG,
        ste::f::S2VMID => m::ste::fields::S2VMID,
        ste::f::VTCR => m::ste::fields::VTCR,
        ste::f::S2T0SZ => m::ste::fields::S2T0SZ,
        ste::f::S2SL0 => m::ste::fields::S2SL0,
        ste::f::S2IR0 => m::ste::fields::S2IR0,
        ste::f::S2OR0 => m::ste::fields::S2OR0,
        ste::f::S2SH0 => m::ste::fields::S2SH0,
        ste::f::S2TG => m::ste::fields::S2TG,
        ste::f::S2PS => m::ste::fields::S2PS,
        ste::f::S2AA64 => m::ste::fields::S2AA64,
        ste::f::S2ENDI => m::ste::fields::S2ENDI,
        ste::f::S2AFFD => m::ste::fields::S2AFFD,
        ste::f::S2PTW => m::ste::fields::S2PTW,
        ste::f::S2HD => m::ste::fields::S2HD,
        ste::f::S2HA => m::ste::fields::S2HA,
        ste::f::S2S => m::ste::fields::S2S,
        ste::f::S2R => m::ste::fields::S2R,
        ste::f::S2TTB => m::ste::fields::S2TTB,
        cd::l1_ste::SPAN => m::ste::l1::SPAN,
        cd::l1_ste::L2PTR => m::ste::l1::L2PTR,
        cd::f::T0SZ => m::cd::fields::T0SZ,
        cd::f::TG0 => m::cd::fields::TG0,
        cd::f::IR0 => m::cd::fields::IR0,
        cd::f::OR0 => m::cd::fields::OR0,
        cd::f::SH0 => m::cd::fields::SH0,
        cd::f::EPD0 => m::cd::fields::EPD0,
        cd::f::ENDI => m::cd::fields::ENDI,
        cd::f::T1SZ => m::cd::fields::T1SZ,
        cd::f::TG1 => m::cd::fields::TG1,
        cd::f::EPD1 => m::cd::fields::EPD1,
        cd::f::V => m::cd::fields::V,
        cd::f::IPS => m::cd::fields::IPS,
        cd::f::AFFD => m::cd::fields::AFFD,
        cd::f::WXN => m::cd::fields::WXN,
        cd::f::TBI0 => m::cd::fields::TBI0,
        cd::f::AA64 => m::cd::fields::AA64,
        cd::f::HD => m::cd::fields::HD,
        cd::f::HA => m::cd::fields::HA,
        cd::f::S => m::cd::fields::S,
        cd::f::R => m::cd::fields::R,
        cd::f::A => m::cd::fields::A,
        cd::f::ASET => m::cd::fields::ASET,
        cd::f::ASID => m::cd::fields::ASID,
        cd::f::HAD0 => m::cd::fields::HAD0,
        cd::f::TTB0 => m::cd::fields::TTB0,
        cd::f::TTB1 => m::cd::fields::TTB1,
        cd::f::MAIR => m::cd::fields::MAIR,
        cd::f::AMAIR => m::cd::fields::AMAIR,
        cd::l1_cd::V => m::cd::l1::V,
        cd::l1_cd::L2PTR => m::cd::l1::L2PTR,
        cmd::f::OP => m::cmd::fields::OPCODE,
        cmd::f::SSEC => m::cmd::fields::SSEC,
        cmd::f::SSV => m::cmd::fields::SSV,
        cmd::f::SSID => m::cmd::fields::SSID,
        cmd::f::SID => m::cmd::fields::SID,
        cmd::f::CFGI_LEAF => m::cmd::fields::CFGI_LEAF,
        cmd::f::CFGI_RANGE => m::cmd::fields::CFGI_RANGE,
        cmd::f::TLBI_NUM => m::cmd::fields::TLBI_NUM,
        cmd::f::TLBI_SCALE => m::cmd::fields::TLBI_SCALE,
        cmd::f::TLBI_VMID => m::cmd::fields::TLBI_VMID,
        cmd::f::TLBI_ASID => m::cmd::fields::TLBI_ASID,
        cmd::f::TLBI_LEAF => m::cmd::fields::TLBI_LEAF,
        cmd::f::TLBI_TTL => m::cmd::fields::TLBI_TTL,
        cmd::f::TLBI_TG => m::cmd::fields::TLBI_TG,
        cmd::f::TLBI_VA => m::cmd::fields::TLBI_VA,
        cmd::f::TLBI_IPA => m::cmd::fields::TLBI_IPA,
        cmd::f::ATC_GLOBAL => m::cmd::fields::ATC_GLOBAL,
        cmd::f::ATC_SIZE => m::cmd::fields::ATC_SIZE,
        cmd::f::ATC_ADDR => m::cmd::fields::ATC_ADDR,
        cmd::f::PRI_GRPID => m::cmd::fields::PRI_GRPID,
        cmd::f::PRI_RESP => m::cmd::fields::PRI_RESP,
        cmd::f::RESUME_RESP => m::cmd::fields::RESUME_RESP,
        cmd::f::RESUME_STAG => m::cmd::fields::RESUME_STAG,
        cmd::f::SYNC_CS => m::cmd::fields::SYNC_CS,
        cmd::f::SYNC_MSH => m::cmd::fields::SYNC_MSH,
        cmd::f::SYNC_MSIATTR => m::cmd::fields::SYNC_MSIATTR,
        cmd::f::SYNC_MSIDATA => m::cmd::fields::SYNC_MSIDATA,
        cmd::f::SYNC_MSIADDR => m::cmd::fields::SYNC_MSIADDR,
        event::f::ID => m::event::fields::ID,
        event::f::SSV => m::event::fields::SSV,
        event::f::SSID => m::event::fields::SSID,
        event::f::SID => m::event::fields::SID,
        event::f::STAG => m::event::fields::STAG,
        event::f::STALL => m::event::fields::STALL,
        event::f::PNU => m::event::fields::PNU,
        event::f::IND => m::event::fields::IND,
        event::f::RNW => m::event::fields::RNW,
        event::f::S2 => m::event::fields::S2,
        event::f::CLASS => m::event::fields::CLASS,
        event::f::ADDR => m::event::fields::INPUT_ADDR,
        event::f::IPA => m::event::fields::IPA,
        event::f::FETCH_ADDR => m::event::fields::FETCH_ADDR,
        regs::idr0::S2P => m::regs::idr0::S2P,
        regs::idr0::S1P => m::regs::idr0::S1P,
        regs::idr0::TTF => m::regs::idr0::TTF,
        regs::idr0::COHACC => m::regs::idr0::COHACC,
        regs::idr0::BTM => m::regs::idr0::BTM,
        regs::idr0::HTTU => m::regs::idr0::HTTU,
        regs::idr0::HYP => m::regs::idr0::HYP,
        regs::idr0::ATS => m::regs::idr0::ATS,
        regs::idr0::ASID16 => m::regs::idr0::ASID16,
        regs::idr0::MSI => m::regs::idr0::MSI,
        regs::idr0::SEV => m::regs::idr0::SEV,
        regs::idr0::PRI => m::regs::idr0::PRI,
        regs::idr0::VMID16 => m::regs::idr0::VMID16,
        regs::idr0::CD2L => m::regs::idr0::CD2L,
        regs::idr0::TTENDIAN => m::regs::idr0::TTENDIAN,
        regs::idr0::STALL_MODEL => m::regs::idr0::STALL_MODEL,
        regs::idr0::TERM_MODEL => m::regs::idr0::TERM_MODEL,
        regs::idr0::ST_LEVEL => m::regs::idr0::ST_LEVEL,
        regs::idr1::SIDSIZE => m::regs::idr1::SIDSIZE,
        regs::idr1::SSIDSIZE => m::regs::idr1::SSIDSIZE,
        regs::idr1::PRIQS => m::regs::idr1::PRIQS,
        regs::idr1::EVENTQS => m::regs::idr1::EVENTQS,
        regs::idr1::CMDQS => m::regs::idr1::CMDQS,
        regs::idr1::ATTR_TYPES_OVR => m::regs::idr1::ATTR_TYPES_OVR,
        regs::idr3::FWB => m::regs::idr3::FWB,
        regs::idr3::RIL => m::regs::idr3::RIL,
        regs::idr3::BBML => m::regs::idr3::BBML,
        regs::idr5::OAS => m::regs::idr5::OAS,
        regs::idr5::GRAN4K => m::regs::idr5::GRAN4K,
        regs::idr5::GRAN16K => m::regs::idr5::GRAN16K,
        regs::idr5::GRAN64K => m::regs::idr5::GRAN64K,
        regs::idr5::VAX => m::regs::idr5::VAX,
        regs::idr5::STALL_MAX => m::regs::idr5::STALL_MAX,
        regs::strtab::BASE_ADDR => m::regs::strtab::BASE_ADDR,
        regs::strtab::BASE_RA => m::regs::strtab::BASE_RA,
        regs::strtab::CFG_LOG2SIZE => m::regs::strtab::CFG_LOG2SIZE,
        regs::strtab::CFG_SPLIT => m::regs::strtab::CFG_SPLIT,
        regs::strtab::CFG_FMT => m::regs::strtab::CFG_FMT,
    );
    // Opcodes and single-bit register flags given as plain constants.
    assert_eq!(smmuv3::cmd::op::SYNC, m::cmd::op::SYNC);
    assert_eq!(smmuv3::cmd::op::CFGI_STE_RANGE, m::cmd::op::CFGI_STE_RANGE);
    assert_eq!(smmuv3::cmd::op::ATC_INV, m::cmd::op::ATC_INV);
    assert_eq!(smmuv3::cmd::op::TLBI_S2_IPA, m::cmd::op::TLBI_S2_IPA);
    assert_eq!(regs::gerror::CMDQ_ERR, m::regs::gerror::CMDQ_ERR);
    assert_eq!(regs::gerror::ERR_MASK, m::regs::gerror::MASK);
    assert!(
        bad.is_empty(),
        "the two readings disagree:\n{}",
        bad.join("\n")
    );
}
