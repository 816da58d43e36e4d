//! Line parser: text → [`Scenario`] (grammar: `docs/scenarios.md`).
//!
//! Each line is tokenized, an optional `NAME =` assignment is split off, and the
//! command's own argument schema is applied: positional words, `key=value` options and
//! bare flags. Every problem becomes a [`Diagnostic`] at `file:line:column`; parsing
//! continues on the next line so that one run reports several mistakes.

use super::ast::*;
use super::lexer::{
    Token, is_name, parse_duration_ns, parse_hex_bytes, parse_int, parse_size, tokenize,
};
use core::fmt;

/// Most diagnostics reported for one file before giving up.
pub const MAX_DIAGNOSTICS: usize = 20;

/// Largest buffer a scenario may create or fill in one statement (`map` size plus
/// offset, a `map-sg` total, `alloc-*`, `pages`, `cpu-fill`): 64 MiB. Scenarios state
/// behaviours, not bulk transfers; the cap keeps a hostile file from exhausting the
/// host's memory through the sparse simulated memory.
pub const MAX_BUFFER: u64 = 64 << 20;

/// Largest read of one statement (`cpu-read`, `dma-read`): 1 MiB.
pub const MAX_READ: u64 = 1 << 20;

/// A located error message.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    /// File name.
    pub file: String,
    /// Position.
    pub pos: Pos,
    /// What is wrong, and how to fix it where that is obvious.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.pos.line, self.pos.col, self.message
        )
    }
}

/// An error inside one line: column and message.
pub(crate) type LineErr = (u32, String);

/// Parse and check a scenario. `file` is only used in messages.
pub fn parse(file: &str, src: &str) -> Result<Scenario, Vec<Diagnostic>> {
    let mut stmts = Vec::new();
    let mut diags = Vec::new();
    for (idx, line) in src.lines().enumerate() {
        let line_no = u32::try_from(idx).unwrap_or(u32::MAX - 1).saturating_add(1);
        match parse_line(line) {
            Ok(None) => {}
            Ok(Some((col, kind))) => stmts.push(Stmt {
                pos: Pos { line: line_no, col },
                kind,
            }),
            Err((col, message)) => {
                diags.push(Diagnostic {
                    file: file.into(),
                    pos: Pos { line: line_no, col },
                    message,
                });
                if diags.len() >= MAX_DIAGNOSTICS {
                    break;
                }
            }
        }
    }
    if diags.is_empty() {
        let scenario = Scenario {
            file: file.into(),
            stmts,
        };
        super::check::check(&scenario)?;
        Ok(scenario)
    } else {
        Err(diags)
    }
}

/// Parse one line: `None` for a blank or comment line.
pub(crate) fn parse_line(line: &str) -> Result<Option<(u32, StmtKind)>, LineErr> {
    let tokens = tokenize(line);
    let Some(first) = tokens.first() else {
        return Ok(None);
    };
    let (handle, rest) = if tokens.len() >= 2 && tokens[1].text == "=" {
        if !is_name(first.text) {
            return Err((
                first.col,
                format!("`{}` is not a valid handle name", first.text),
            ));
        }
        (Some(first.clone()), &tokens[2..])
    } else {
        (None, &tokens[..])
    };
    let Some(cmd) = rest.first() else {
        return Err((tokens[1].col, "expected a command after `=`".into()));
    };
    let mut args = Args::new(cmd, &rest[1..])?;
    let kind = parse_command(cmd, handle.as_ref(), &mut args)?;
    args.finish()?;
    let needs_handle = kind.defines().is_some();
    match (&handle, needs_handle) {
        (Some(h), false) => {
            return Err((
                h.col,
                format!(
                    "`{}` does not produce a handle; remove `{} =`",
                    cmd.text, h.text
                ),
            ));
        }
        (None, true) => {
            return Err((
                cmd.col,
                format!(
                    "`{}` needs a handle: write `NAME = {} ...`",
                    cmd.text, cmd.text
                ),
            ));
        }
        _ => {}
    }
    Ok(Some((first.col, kind)))
}

/// The arguments of one command, consumed by its parser.
struct Args<'a> {
    cmd: &'a str,
    end_col: u32,
    positional: Vec<(Token<'a>, bool)>,
    named: Vec<(&'a str, &'a str, u32, bool)>,
}

impl<'a> Args<'a> {
    fn new(cmd: &Token<'a>, tokens: &[Token<'a>]) -> Result<Self, LineErr> {
        let mut positional = Vec::new();
        let mut named: Vec<(&str, &str, u32, bool)> = Vec::new();
        for t in tokens {
            let is_operator = matches!(t.text, "==" | "!=" | "<=" | ">=");
            if let Some((k, v)) = t.text.split_once('=').filter(|_| !is_operator) {
                if k.is_empty() {
                    return Err((
                        t.col,
                        format!("`{}`: missing option name before `=`", t.text),
                    ));
                }
                if v.is_empty() {
                    return Err((
                        t.col,
                        format!("option `{k}` has no value (write `{k}=VALUE`)"),
                    ));
                }
                if named.iter().any(|n| n.0 == k) {
                    return Err((t.col, format!("option `{k}` given twice")));
                }
                named.push((k, v, t.col, false));
            } else {
                positional.push((t.clone(), false));
            }
        }
        let end_col = tokens.last().map_or(cmd.col, |t| t.col).saturating_add(
            u32::try_from(tokens.last().map_or(cmd.text, |t| t.text).chars().count()).unwrap_or(0),
        );
        Ok(Args {
            cmd: cmd.text,
            end_col,
            positional,
            named,
        })
    }

    /// The `idx`-th positional argument, described as `what` in the error.
    fn positional(&mut self, idx: usize, what: &str) -> Result<Token<'a>, LineErr> {
        match self.positional.get_mut(idx) {
            Some((t, used)) => {
                *used = true;
                Ok(t.clone())
            }
            None => Err((self.end_col, format!("`{}` expects {what}", self.cmd))),
        }
    }

    /// An optional positional argument.
    fn positional_opt(&mut self, idx: usize) -> Option<Token<'a>> {
        self.positional.get_mut(idx).map(|(t, used)| {
            *used = true;
            t.clone()
        })
    }

    /// A `key=value` option.
    fn take(&mut self, key: &str) -> Option<(&'a str, u32)> {
        self.named.iter_mut().find(|n| n.0 == key).map(|n| {
            n.3 = true;
            (n.1, n.2)
        })
    }

    /// A required `key=value` option.
    fn require(&mut self, key: &str, what: &str) -> Result<(&'a str, u32), LineErr> {
        let end = self.end_col;
        let cmd = self.cmd;
        self.take(key)
            .ok_or_else(|| (end, format!("`{cmd}` needs `{key}={what}`")))
    }

    /// A bare flag among the positional words after `from`.
    fn flag(&mut self, from: usize, name: &str) -> bool {
        for (t, used) in self.positional.iter_mut().skip(from) {
            if !*used && t.text == name {
                *used = true;
                return true;
            }
        }
        false
    }

    fn finish(self) -> Result<(), LineErr> {
        if let Some((t, _)) = self.positional.iter().find(|(_, used)| !used) {
            return Err((t.col, format!("unexpected `{}` for `{}`", t.text, self.cmd)));
        }
        if let Some(n) = self.named.iter().find(|n| !n.3) {
            return Err((n.2, format!("unknown option `{}` for `{}`", n.0, self.cmd)));
        }
        Ok(())
    }
}

fn name_arg(t: &Token<'_>, what: &str) -> Result<String, LineErr> {
    if is_name(t.text) {
        Ok(t.text.to_string())
    } else {
        Err((t.col, format!("`{}` is not a valid {what} name", t.text)))
    }
}

/// Column of the value part of a `key=value` token.
fn value_col(key: &str, col: u32) -> u32 {
    col.saturating_add(u32::try_from(key.chars().count()).unwrap_or(0))
        .saturating_add(1)
}

fn size_opt(args: &mut Args<'_>, key: &str) -> Result<Option<u64>, LineErr> {
    match args.take(key) {
        None => Ok(None),
        Some((v, col)) => parse_size(v)
            .map(Some)
            .map_err(|m| (value_col(key, col), m)),
    }
}

/// A required, non-zero size of at most `max` bytes.
fn size_req(args: &mut Args<'_>, key: &str, max: u64) -> Result<u64, LineErr> {
    let (v, col) = args.require(key, "SIZE")?;
    let n = parse_size(v).map_err(|m| (value_col(key, col), m))?;
    if n == 0 {
        return Err((value_col(key, col), format!("`{key}` must not be zero")));
    }
    if n > max {
        return Err((
            value_col(key, col),
            format!("`{key}` is at most {max:#x} bytes in a scenario, got {n:#x}"),
        ));
    }
    Ok(n)
}

fn int_opt(args: &mut Args<'_>, key: &str, max: u64) -> Result<Option<u64>, LineErr> {
    match args.take(key) {
        None => Ok(None),
        Some((v, col)) => {
            let n = parse_int(v).map_err(|m| (value_col(key, col), m))?;
            if n > max {
                return Err((
                    value_col(key, col),
                    format!("`{key}` is at most {max}, got {n}"),
                ));
            }
            Ok(Some(n))
        }
    }
}

fn granule(v: &str, col: u32) -> Result<u64, LineErr> {
    match parse_size(v) {
        Ok(g @ (0x1000 | 0x4000 | 0x10000)) => Ok(g),
        _ => Err((col, format!("`{v}` is not a granule (use 4k, 16k or 64k)"))),
    }
}

fn dir_opt(args: &mut Args<'_>) -> Result<Dir, LineErr> {
    match args.take("dir") {
        None => Ok(Dir::Bidirectional),
        Some((v, col)) => match v {
            "bidir" | "bidirectional" => Ok(Dir::Bidirectional),
            "to-device" => Ok(Dir::ToDevice),
            "from-device" => Ok(Dir::FromDevice),
            _ => Err((
                value_col("dir", col),
                format!("`{v}` is not a direction (use to-device, from-device or bidir)"),
            )),
        },
    }
}

fn domain_type(v: &str, col: u32) -> Result<DomainType, LineErr> {
    Ok(match v {
        "blocked" => DomainType::Blocked,
        "identity" => DomainType::Identity,
        "unmanaged" => DomainType::Unmanaged,
        "DMA" | "dma" => DomainType::Dma,
        "DMA-FQ" | "dma-fq" => DomainType::DmaFq,
        "auto" => DomainType::Auto,
        _ => {
            return Err((
                col,
                format!(
                    "`{v}` is not a domain type (use blocked, identity, unmanaged, DMA, DMA-FQ or auto)"
                ),
            ));
        }
    })
}

/// `NAME`, `NAME+OFF`, `NAME-OFF` or a raw IOVA number.
fn target(t: &Token<'_>) -> Result<Target, LineErr> {
    let s = t.text;
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        return parse_size(s).map(Target::Iova).map_err(|m| (t.col, m));
    }
    let plus = s.find('+');
    // Names may contain `-`, so only a `-` followed by a digit starts a negative offset.
    let minus = s
        .char_indices()
        .zip(s.chars().skip(1))
        .find(|((_, c), next)| *c == '-' && next.is_ascii_digit())
        .map(|((i, _), _)| i);
    let (name, offset) = match (plus, minus) {
        (Some(i), _) | (None, Some(i)) => {
            let off = parse_size(&s[i + 1..]).map_err(|m| (t.col, m))?;
            let off =
                i64::try_from(off).map_err(|_| (t.col, format!("offset in `{s}` is too large")))?;
            (&s[..i], if plus.is_some() { off } else { -off })
        }
        (None, None) => (s, 0),
    };
    if !is_name(name) {
        return Err((
            t.col,
            format!(
                "`{s}` is not a target (use HANDLE, HANDLE+OFFSET, HANDLE-OFFSET or an IOVA number)"
            ),
        ));
    }
    Ok(Target::Handle {
        name: name.into(),
        offset,
    })
}

fn cmp_and_number<'a>(
    args: &mut Args<'a>,
    first: usize,
    what: &str,
) -> Result<(Cmp, Token<'a>), LineErr> {
    let t = args.positional(first, what)?;
    let cmp = match t.text {
        "==" => Some(Cmp::Eq),
        "!=" => Some(Cmp::Ne),
        "<" => Some(Cmp::Lt),
        "<=" => Some(Cmp::Le),
        ">" => Some(Cmp::Gt),
        ">=" => Some(Cmp::Ge),
        _ => None,
    };
    match cmp {
        Some(c) => Ok((c, args.positional(first + 1, what)?)),
        None => Ok((Cmp::Eq, t)),
    }
}

fn parse_command(
    cmd: &Token<'_>,
    handle: Option<&Token<'_>>,
    args: &mut Args<'_>,
) -> Result<StmtKind, LineErr> {
    let h = || handle.map(|h| h.text.to_string()).unwrap_or_default();
    Ok(match cmd.text {
        "platform" => {
            let cpu_page = match args.take("cpu-page") {
                None => 0x1000,
                Some((v, col)) => granule(v, value_col("cpu-page", col))?,
            };
            let policy = match args.take("policy") {
                None => Policy::Strict,
                Some(("strict", _)) => Policy::Strict,
                Some(("lazy", _)) => Policy::Lazy,
                Some(("passthrough", _)) => Policy::Passthrough,
                Some((v, col)) => {
                    return Err((
                        value_col("policy", col),
                        format!("`{v}` is not a policy (use strict, lazy or passthrough)"),
                    ));
                }
            };
            let cpus = int_opt(args, "cpus", 256)?.unwrap_or(1);
            if cpus == 0 {
                return Err((cmd.col, "`cpus` must be at least 1".into()));
            }
            StmtKind::Platform {
                cpu_page,
                policy,
                cpus: cpus as u32,
            }
        }
        "smmu" => {
            let name = name_arg(&args.positional(0, "an SMMU name")?, "SMMU")?;
            let granule = match args.take("granule") {
                None => 0x1000,
                Some((v, col)) => granule(v, value_col("granule", col))?,
            };
            let tlb = int_opt(args, "tlb", 1 << 20)?.map(|n| n as u32);
            let walk_cache = int_opt(args, "walk-cache", 1 << 20)?.map(|n| n as u32);
            let cfg_cache = int_opt(args, "cfg-cache", 1 << 20)?.map(|n| n as u32);
            let cmdq_log2 = int_opt(args, "cmdq-log2", 19)?.unwrap_or(8) as u32;
            // Without a list the SMMU has every feature (like the model's default).
            let mut features = SmmuFeatures::ALL;
            if let Some((list, col)) = args.take("features") {
                features = SmmuFeatures::default();
                for f in list.split(',') {
                    match f {
                        "ats" => features.ats = true,
                        "coherent" => features.coherent = true,
                        "s1" => features.s1 = true,
                        "s2" => features.s2 = true,
                        "fwb" => features.fwb = true,
                        "ril" => features.ril = true,
                        _ => {
                            return Err((
                                value_col("features", col),
                                format!(
                                    "unknown SMMU feature `{f}` (use ats, coherent, s1, s2, fwb, ril)"
                                ),
                            ));
                        }
                    }
                }
                if !features.s1 && !features.s2 {
                    features.s1 = true;
                }
            }
            StmtKind::Smmu(SmmuDecl {
                name,
                granule,
                tlb,
                walk_cache,
                cfg_cache,
                cmdq_log2,
                features,
            })
        }
        "device" => {
            let name = name_arg(&args.positional(0, "a device name")?, "device")?;
            let (sid, col) = args.require("sid", "STREAMID")?;
            let sid = parse_int(sid).map_err(|m| (value_col("sid", col), m))?;
            let sid = u32::try_from(sid)
                .map_err(|_| (value_col("sid", col), "StreamID must fit in 32 bits".into()))?;
            let (smmu, col) = args.require("smmu", "NAME")?;
            if !is_name(smmu) {
                return Err((
                    value_col("smmu", col),
                    format!("`{smmu}` is not a valid SMMU name"),
                ));
            }
            let dma_bits = match int_opt(args, "dma-mask", 64)? {
                None => 64,
                Some(b) if b >= 12 => b as u32,
                Some(b) => {
                    return Err((
                        cmd.col,
                        format!("dma-mask of {b} bits is too small (12..=64)"),
                    ));
                }
            };
            let untrusted = args.flag(1, "untrusted");
            let noncoherent = args.flag(1, "noncoherent");
            let ats = args.flag(1, "ats");
            let no_snoop = args.flag(1, "no-snoop");
            let canwbs = args.flag(1, "canwbs");
            StmtKind::Device(DeviceDecl {
                name,
                sid,
                smmu: smmu.into(),
                dma_bits,
                untrusted,
                coherent: !noncoherent,
                ats,
                no_snoop,
                canwbs,
            })
        }
        "map" => {
            let device = name_arg(&args.positional(0, "a device")?, "device")?;
            let size = size_req(args, "size", MAX_BUFFER)?;
            let offset = size_opt(args, "offset")?.unwrap_or(0);
            if offset.saturating_add(size) > MAX_BUFFER {
                return Err((
                    cmd.col,
                    format!("`offset` + `size` is at most {MAX_BUFFER:#x} bytes in a scenario"),
                ));
            }
            let dir = dir_opt(args)?;
            let around = int_opt(args, "around", 255)?.map(|b| b as u8);
            StmtKind::Map {
                handle: h(),
                device,
                size,
                offset,
                dir,
                around,
            }
        }
        "map-sg" => {
            let device = name_arg(&args.positional(0, "a device")?, "device")?;
            let (v, col) = args.require("lens", "LEN,LEN,...")?;
            let mut lens = Vec::new();
            for l in v.split(',') {
                let n = parse_size(l).map_err(|m| (value_col("lens", col), m))?;
                if n == 0 {
                    return Err((
                        value_col("lens", col),
                        "scatterlist elements must not be empty".into(),
                    ));
                }
                lens.push(n);
            }
            if lens
                .iter()
                .try_fold(0u64, |a, &l| a.checked_add(l))
                .is_none_or(|t| t > MAX_BUFFER)
            {
                return Err((
                    value_col("lens", col),
                    format!("a scatterlist is at most {MAX_BUFFER:#x} bytes in a scenario"),
                ));
            }
            if lens.len() > 4096 {
                return Err((
                    value_col("lens", col),
                    "at most 4096 scatterlist elements".into(),
                ));
            }
            let dir = dir_opt(args)?;
            StmtKind::MapSg {
                handle: h(),
                device,
                lens,
                dir,
            }
        }
        "unmap" => StmtKind::Unmap {
            handle: name_arg(&args.positional(0, "a handle")?, "handle")?,
        },
        "alloc-coherent" | "alloc-noncontiguous" => {
            let device = name_arg(&args.positional(0, "a device")?, "device")?;
            let size = size_req(args, "size", MAX_BUFFER)?;
            StmtKind::Alloc {
                handle: h(),
                device,
                size,
                noncontiguous: cmd.text == "alloc-noncontiguous",
            }
        }
        "free" => StmtKind::Free {
            handle: name_arg(&args.positional(0, "a handle")?, "handle")?,
        },
        "sync" => {
            let handle = name_arg(&args.positional(0, "a handle")?, "handle")?;
            let (v, col) = args.require("for", "cpu|device")?;
            let to = match v {
                "cpu" => SyncFor::Cpu,
                "device" => SyncFor::Device,
                _ => {
                    return Err((
                        value_col("for", col),
                        format!("`{v}`: sync is `for=cpu` or `for=device`"),
                    ));
                }
            };
            StmtKind::Sync { handle, to }
        }
        "cpu-write" => {
            let target = target(&args.positional(0, "a target (HANDLE[+OFFSET])")?)?;
            let (v, col) = args.require("data", "HEX")?;
            let data = parse_hex_bytes(v).map_err(|m| (value_col("data", col), m))?;
            StmtKind::CpuWrite { target, data }
        }
        "cpu-fill" => {
            let target = target(&args.positional(0, "a target (HANDLE[+OFFSET])")?)?;
            let byte = int_opt(args, "byte", 255)?.unwrap_or(0) as u8;
            let len = size_req(args, "len", MAX_BUFFER)?;
            StmtKind::CpuFill { target, byte, len }
        }
        "cpu-read" => {
            let target = target(&args.positional(0, "a target (HANDLE[+OFFSET])")?)?;
            let len = size_req(args, "len", MAX_READ)?;
            StmtKind::CpuRead { target, len }
        }
        "dma-read" => {
            let device = name_arg(&args.positional(0, "a device")?, "device")?;
            let target = target(&args.positional(1, "a target (HANDLE[+OFFSET] or IOVA)")?)?;
            let len = size_req(args, "len", MAX_READ)?;
            let no_snoop = args.flag(2, "no-snoop");
            StmtKind::DmaRead {
                device,
                target,
                len,
                no_snoop,
            }
        }
        "dma-write" => {
            let device = name_arg(&args.positional(0, "a device")?, "device")?;
            let target = target(&args.positional(1, "a target (HANDLE[+OFFSET] or IOVA)")?)?;
            let (v, col) = args.require("data", "HEX")?;
            let data = parse_hex_bytes(v).map_err(|m| (value_col("data", col), m))?;
            let no_snoop = args.flag(2, "no-snoop");
            StmtKind::DmaWrite {
                device,
                target,
                data,
                no_snoop,
            }
        }
        "domain" => {
            let smmu = name_arg(&args.positional(0, "an SMMU")?, "SMMU")?;
            let ty = match args.take("type") {
                None => DomainType::Unmanaged,
                Some((v, col)) => domain_type(v, value_col("type", col))?,
            };
            if ty == DomainType::Auto {
                return Err((cmd.col, "`auto` is only valid for `set-type`".into()));
            }
            let enforce_coherency = args.flag(1, "enforce-coherency");
            StmtKind::Domain {
                handle: h(),
                smmu,
                ty,
                enforce_coherency,
            }
        }
        "attach" => StmtKind::Attach {
            device: name_arg(&args.positional(0, "a device and a domain")?, "device")?,
            domain: name_arg(&args.positional(1, "a device and a domain")?, "domain")?,
        },
        "detach" => StmtKind::Detach {
            device: name_arg(&args.positional(0, "a device")?, "device")?,
        },
        "free-domain" => StmtKind::FreeDomain {
            domain: name_arg(&args.positional(0, "a domain")?, "domain")?,
        },
        "pages" => StmtKind::Pages {
            handle: h(),
            size: size_req(args, "size", MAX_BUFFER)?,
        },
        "iommu-map" => {
            let domain = name_arg(&args.positional(0, "a domain")?, "domain")?;
            let (v, col) = args.require("iova", "IOVA")?;
            let iova = parse_size(v).map_err(|m| (value_col("iova", col), m))?;
            let (v, col) = args.require("phys", "HANDLE")?;
            if !is_name(v) {
                return Err((value_col("phys", col), format!("`{v}` is not a handle")));
            }
            let phys = v.to_string();
            let size = size_req(args, "size", u64::MAX)?;
            let prot = match args.take("prot") {
                None => 0b11,
                Some((v, col)) => prot_list(v).map_err(|m| (value_col("prot", col), m))?,
            };
            StmtKind::IommuMap {
                domain,
                iova,
                phys,
                size,
                prot,
            }
        }
        "iommu-unmap" => {
            let domain = name_arg(&args.positional(0, "a domain")?, "domain")?;
            let (v, col) = args.require("iova", "IOVA")?;
            let iova = parse_size(v).map_err(|m| (value_col("iova", col), m))?;
            let size = size_req(args, "size", u64::MAX)?;
            StmtKind::IommuUnmap { domain, iova, size }
        }
        "enforce-coherency" => StmtKind::EnforceCoherency {
            domain: name_arg(&args.positional(0, "a domain")?, "domain")?,
        },
        "set-type" => {
            let device = name_arg(&args.positional(0, "a device and a type")?, "device")?;
            let t = args.positional(1, "a device and a type")?;
            let ty = domain_type(t.text, t.col)?;
            if matches!(ty, DomainType::Blocked | DomainType::Unmanaged) {
                return Err((
                    t.col,
                    format!(
                        "sysfs accepts identity, DMA, DMA-FQ or auto, not `{}`",
                        t.text
                    ),
                ));
            }
            StmtKind::SetType { device, ty }
        }
        "bind" | "unbind" => StmtKind::Bind {
            device: name_arg(&args.positional(0, "a device")?, "device")?,
            bound: cmd.text == "bind",
        },
        "flush" => StmtKind::Flush {
            device: args
                .positional_opt(0)
                .map(|t| name_arg(&t, "device"))
                .transpose()?,
        },
        "advance" => {
            let t = args.positional(0, "a duration such as 10ms")?;
            StmtKind::Advance {
                ns: parse_duration_ns(t.text).map_err(|m| (t.col, m))?,
            }
        }
        "expect" => StmtKind::Expect(parse_expect(args)?),
        other => {
            return Err((
                cmd.col,
                format!("unknown command `{other}` (see docs/scenarios.md for the list)"),
            ));
        }
    })
}

fn prot_list(v: &str) -> Result<u32, String> {
    let mut p = 0;
    for f in v.split(',') {
        p |= match f {
            "r" | "read" => 1,
            "w" | "write" => 2,
            "rw" => 3,
            "cache" => 4,
            "noexec" => 8,
            "mmio" => 16,
            "priv" => 32,
            _ => {
                return Err(format!(
                    "unknown protection `{f}` (use read, write, rw, cache, noexec, mmio, priv)"
                ));
            }
        };
    }
    Ok(p)
}

fn parse_expect(args: &mut Args<'_>) -> Result<Expect, LineErr> {
    let what = args.positional(
        0,
        "what to expect (ok, fault, error, bytes, sanitizer, exposed, counter, stale-window, type)",
    )?;
    Ok(match what.text {
        "ok" => Expect::Ok,
        "fault" => Expect::Fault(args.positional_opt(1).map(|t| t.text.to_string())),
        "error" => Expect::Error(args.positional_opt(1).map(|t| t.text.to_string())),
        "bytes" => {
            let t = args.positional(1, "hex bytes")?;
            let mut data = parse_hex_bytes(t.text).map_err(|m| (t.col, m))?;
            let mut i = 2;
            while let Some(t) = args.positional_opt(i) {
                data.extend(parse_hex_bytes(t.text).map_err(|m| (t.col, m))?);
                i += 1;
            }
            Expect::Bytes(data)
        }
        "sanitizer" => {
            let t = args.positional(1, "`clean` after `sanitizer`")?;
            if t.text != "clean" {
                return Err((t.col, "only `expect sanitizer clean` exists".into()));
            }
            Expect::SanitizerClean
        }
        "exposed" => {
            let (cmp, n) =
                cmp_and_number(args, 1, "a number of bytes, optionally after a comparison")?;
            Expect::Exposed(cmp, parse_size(n.text).map_err(|m| (n.col, m))?)
        }
        "counter" => {
            let name = args.positional(1, "a counter name")?;
            let (cmp, n) = cmp_and_number(args, 2, "a counter name, a comparison and a number")?;
            Expect::Counter(
                name.text.to_string(),
                cmp,
                parse_size(n.text).map_err(|m| (n.col, m))?,
            )
        }
        "stale-window" => {
            let (cmp, n) = cmp_and_number(args, 1, "a duration, optionally after a comparison")?;
            let ns = if n.text == "0" {
                0
            } else {
                parse_duration_ns(n.text).map_err(|m| (n.col, m))?
            };
            Expect::StaleWindow(cmp, ns)
        }
        "type" => {
            let dev = name_arg(&args.positional(1, "a device and a type")?, "device")?;
            let t = args.positional(2, "a device and a type")?;
            Expect::Type(dev, domain_type(t.text, t.col)?)
        }
        other => {
            return Err((
                what.col,
                format!(
                    "unknown expectation `{other}` (use ok, fault, error, bytes, sanitizer clean, exposed, counter, stale-window, type)"
                ),
            ));
        }
    })
}
