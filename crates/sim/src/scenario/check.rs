//! Static checks of a parsed scenario: names declared before use, handle kinds, unique
//! StreamIDs, one `platform` line first. Runs before anything is simulated so that a
//! typo is reported at its `file:line:column` rather than as a confusing failure later.

use super::ast::*;
use super::parser::{Diagnostic, MAX_DIAGNOSTICS};
use std::collections::BTreeMap;

/// What a handle names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandleKind {
    /// A streaming mapping (`map`, `map-sg`).
    Streaming,
    /// A coherent or non-contiguous allocation.
    Coherent,
    /// An IOMMU domain.
    Domain,
    /// Raw physical pages.
    Pages,
}

impl HandleKind {
    fn describe(self) -> &'static str {
        match self {
            HandleKind::Streaming => "a streaming mapping",
            HandleKind::Coherent => "a coherent allocation",
            HandleKind::Domain => "a domain",
            HandleKind::Pages => "physical pages",
        }
    }
}

struct HandleState {
    kind: HandleKind,
    live: bool,
    line: u32,
}

struct Checker<'a> {
    file: &'a str,
    diags: Vec<Diagnostic>,
    smmus: BTreeMap<String, ()>,
    devices: BTreeMap<String, ()>,
    sids: BTreeMap<(String, u32), String>,
    handles: BTreeMap<String, HandleState>,
    platform_seen: bool,
    declarations_over: bool,
    any_read: bool,
}

impl Checker<'_> {
    fn err(&mut self, pos: Pos, message: String) {
        if self.diags.len() < MAX_DIAGNOSTICS {
            self.diags.push(Diagnostic {
                file: self.file.into(),
                pos,
                message,
            });
        }
    }

    fn device(&mut self, pos: Pos, name: &str) {
        if !self.devices.contains_key(name) {
            self.err(
                pos,
                format!(
                    "unknown device `{name}` (declare it with `device {name} sid=.. smmu=..` first)"
                ),
            );
        }
    }

    fn handle(&mut self, pos: Pos, name: &str, kinds: &[HandleKind], must_be_live: bool) {
        let msg = match self.handles.get(name) {
            None => Some(format!("unknown handle `{name}`")),
            Some(h) if !kinds.contains(&h.kind) => Some(format!(
                "`{name}` is {} (line {}), expected {}",
                h.kind.describe(),
                h.line,
                kinds
                    .iter()
                    .map(|k| k.describe())
                    .collect::<Vec<_>>()
                    .join(" or ")
            )),
            Some(h) if must_be_live && !h.live => Some(format!(
                "`{name}` was already released (it was created at line {})",
                h.line
            )),
            _ => None,
        };
        if let Some(m) = msg {
            self.err(pos, m);
        }
    }

    fn release(&mut self, name: &str) {
        if let Some(h) = self.handles.get_mut(name) {
            h.live = false;
        }
    }

    fn target(&mut self, pos: Pos, t: &Target, kinds: &[HandleKind]) {
        if let Target::Handle { name, .. } = t {
            self.handle(pos, name, kinds, false);
        }
    }

    fn stmt(&mut self, s: &Stmt) {
        use HandleKind::*;
        let pos = s.pos;
        match &s.kind {
            StmtKind::Platform { .. } => {
                if self.platform_seen {
                    self.err(pos, "`platform` given twice".into());
                } else if !self.smmus.is_empty() || self.declarations_over {
                    self.err(
                        pos,
                        "`platform` must come before every other statement".into(),
                    );
                }
                self.platform_seen = true;
            }
            StmtKind::Smmu(d) => {
                if self.declarations_over {
                    self.err(
                        pos,
                        format!(
                            "SMMU `{}` declared after the platform started running",
                            d.name
                        ),
                    );
                }
                if self.smmus.insert(d.name.clone(), ()).is_some() {
                    self.err(pos, format!("SMMU `{}` declared twice", d.name));
                }
            }
            StmtKind::Device(d) => {
                if !self.smmus.contains_key(&d.smmu) {
                    self.err(
                        pos,
                        format!("device `{}` is behind unknown SMMU `{}`", d.name, d.smmu),
                    );
                }
                if self.devices.insert(d.name.clone(), ()).is_some() {
                    self.err(pos, format!("device `{}` declared twice", d.name));
                }
                if let Some(other) = self.sids.insert((d.smmu.clone(), d.sid), d.name.clone()) {
                    self.err(
                        pos,
                        format!(
                            "StreamID {:#x} on `{}` is already used by `{other}`",
                            d.sid, d.smmu
                        ),
                    );
                }
            }
            StmtKind::Map { device, .. }
            | StmtKind::MapSg { device, .. }
            | StmtKind::Alloc { device, .. } => self.device(pos, device),
            StmtKind::Unmap { handle } | StmtKind::Sync { handle, .. } => {
                self.handle(pos, handle, &[Streaming], true);
                if matches!(s.kind, StmtKind::Unmap { .. }) {
                    self.release(handle);
                }
            }
            StmtKind::Free { handle } => {
                self.handle(pos, handle, &[Coherent, Pages], true);
                self.release(handle);
            }
            StmtKind::CpuWrite { target, .. }
            | StmtKind::CpuFill { target, .. }
            | StmtKind::CpuRead { target, .. } => {
                if let Target::Iova(_) = target {
                    self.err(
                        pos,
                        "the CPU accesses buffers by handle, not by IOVA".into(),
                    );
                }
                self.target(pos, target, &[Streaming, Coherent, Pages]);
                if matches!(s.kind, StmtKind::CpuRead { .. }) {
                    self.any_read = true;
                }
            }
            StmtKind::DmaRead { device, target, .. }
            | StmtKind::DmaWrite { device, target, .. } => {
                self.device(pos, device);
                self.target(pos, target, &[Streaming, Coherent]);
                if matches!(s.kind, StmtKind::DmaRead { .. }) {
                    self.any_read = true;
                }
            }
            StmtKind::Domain { smmu, .. } => {
                if !self.smmus.contains_key(smmu) {
                    self.err(pos, format!("unknown SMMU `{smmu}`"));
                }
            }
            StmtKind::Attach { device, domain } => {
                self.device(pos, device);
                self.handle(pos, domain, &[Domain], true);
            }
            StmtKind::Detach { device }
            | StmtKind::SetType { device, .. }
            | StmtKind::Bind { device, .. } => self.device(pos, device),
            StmtKind::FreeDomain { domain } => {
                self.handle(pos, domain, &[Domain], true);
                self.release(domain);
            }
            StmtKind::Pages { .. } | StmtKind::Advance { .. } => {}
            StmtKind::IommuMap { domain, phys, .. } => {
                self.handle(pos, domain, &[Domain], true);
                self.handle(pos, phys, &[Pages], true);
            }
            StmtKind::IommuUnmap { domain, .. } | StmtKind::EnforceCoherency { domain } => {
                self.handle(pos, domain, &[Domain], true)
            }
            StmtKind::Flush { device } => {
                if let Some(d) = device {
                    self.device(pos, d);
                }
            }
            StmtKind::Expect(e) => match e {
                Expect::Bytes(_) if !self.any_read => self.err(
                    pos,
                    "`expect bytes` needs an earlier `dma-read` or `cpu-read`".into(),
                ),
                Expect::Type(d, _) => self.device(pos, d),
                _ => {}
            },
        }
        if !matches!(
            s.kind,
            StmtKind::Platform { .. } | StmtKind::Smmu(_) | StmtKind::Device(_)
        ) {
            self.declarations_over = true;
        }
        if let Some(h) = s.kind.defines() {
            let kind = match s.kind {
                StmtKind::Map { .. } | StmtKind::MapSg { .. } => Streaming,
                StmtKind::Alloc { .. } => Coherent,
                StmtKind::Domain { .. } => Domain,
                _ => Pages,
            };
            if let Some(old) = self.handles.get(h) {
                if old.live {
                    let line = old.line;
                    self.err(pos, format!("handle `{h}` is still in use (created at line {line}); release it first or pick another name"));
                }
            }
            self.handles.insert(
                h.to_string(),
                HandleState {
                    kind,
                    live: true,
                    line: pos.line,
                },
            );
        }
    }
}

/// Check a parsed scenario; every problem is reported.
pub fn check(s: &Scenario) -> Result<(), Vec<Diagnostic>> {
    let mut c = Checker {
        file: &s.file,
        diags: Vec::new(),
        smmus: BTreeMap::new(),
        devices: BTreeMap::new(),
        sids: BTreeMap::new(),
        handles: BTreeMap::new(),
        platform_seen: false,
        declarations_over: false,
        any_read: false,
    };
    for stmt in &s.stmts {
        c.stmt(stmt);
    }
    if c.diags.is_empty() {
        Ok(())
    } else {
        Err(c.diags)
    }
}
