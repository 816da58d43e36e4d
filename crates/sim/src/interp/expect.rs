//! Evaluation of `expect` statements against the interpreter's last outcome, last
//! data, the SMMU models' counters and sanitizer, the DMA layer's exposure accounting
//! and the oracle's stale windows (`docs/scenarios.md`, "Outcomes").

use super::{Interp, Outcome, Step};
use crate::scenario::{DomainType as ScnType, Expect};

/// Normalised event name: `FTranslation` → `translation`, `CBadSte` → `badste`.
fn event_key(debug_name: &str) -> String {
    let s = debug_name
        .strip_prefix('F')
        .or_else(|| debug_name.strip_prefix('C'))
        .unwrap_or(debug_name);
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_lowercase()
}

fn hex(b: &[u8]) -> String {
    if b.is_empty() {
        return "nothing".into();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Interp {
    /// Evaluate one expectation; `Err` says why it does not hold.
    pub(super) fn expect(&mut self, e: &Expect) -> Step {
        let p = self.p();
        match e {
            Expect::Ok => {
                if self.last != Outcome::Ok {
                    return Err(format!(
                        "expected the last action to succeed, but {}",
                        self.last.describe()
                    ));
                }
            }
            Expect::Fault(kind) => match (&self.last, kind) {
                (Outcome::Fault(f), None) => {
                    let _ = f;
                }
                (Outcome::Fault(f), Some(k)) if event_key(f) == event_key(k) => {}
                (other, k) => {
                    return Err(format!(
                        "expected a {}fault, but {}",
                        k.as_ref().map_or(String::new(), |k| format!("{k} ")),
                        other.describe()
                    ));
                }
            },
            Expect::Error(errno) => match (&self.last, errno) {
                (Outcome::Err(..) | Outcome::False, None) => {}
                (Outcome::Err(e, _), Some(want)) if format!("{e:?}") == *want => {}
                (other, want) => {
                    return Err(format!(
                        "expected an error{}, but {}",
                        want.as_ref().map_or(String::new(), |w| format!(" {w}")),
                        other.describe()
                    ));
                }
            },
            Expect::Bytes(want) => {
                if &self.data != want {
                    return Err(format!(
                        "expected bytes {}, read {}",
                        hex(want),
                        hex(&self.data)
                    ));
                }
            }
            Expect::SanitizerClean => {
                let r = p.sanitizer_reports();
                if let Some(first) = r.first() {
                    return Err(format!(
                        "the sanitizer has {} report(s); first: {first}",
                        r.len()
                    ));
                }
            }
            Expect::Exposed(cmp, n) => {
                let got = p.exposed_bytes();
                if !cmp.holds(got, *n) {
                    return Err(format!(
                        "expected exposed {} {n} bytes, got {got}",
                        cmp.symbol()
                    ));
                }
            }
            Expect::Counter(name, cmp, n) => {
                let c = p.counters();
                let got = c
                    .get(name)
                    .ok_or_else(|| format!("unknown counter `{name}`"))?;
                if !cmp.holds(got, *n) {
                    return Err(format!(
                        "expected counter {name} {} {n}, got {got}",
                        cmp.symbol()
                    ));
                }
            }
            Expect::StaleWindow(cmp, n) => {
                let got = self.oracle.stale().windows_ns.max;
                if !cmp.holds(got, *n) {
                    return Err(format!(
                        "expected the longest stale window {} {n} ns, got {got} ns ({} stale accesses)",
                        cmp.symbol(),
                        self.oracle.stale().windows_ns.count
                    ));
                }
            }
            Expect::Type(device, ty) => {
                let dev = self.dev(device)?;
                let got = p
                    .core
                    .device_group(p.devices[dev].id)
                    .and_then(|g| p.core.group_type(g))
                    .unwrap_or("unknown");
                let want = match ty {
                    ScnType::Blocked => "blocked",
                    ScnType::Identity => "identity",
                    ScnType::Unmanaged => "unmanaged",
                    ScnType::Dma => "DMA",
                    ScnType::DmaFq => "DMA-FQ",
                    ScnType::Auto => "auto",
                };
                if got != want {
                    return Err(format!(
                        "expected `{device}`'s group type {want}, got {got}"
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_match_ignoring_prefix_case_and_punctuation() {
        for (model, written) in [
            ("FTranslation", "translation"),
            ("FTranslation", "F_TRANSLATION"),
            ("CBadSte", "bad-ste"),
            ("CBadSte", "C_BAD_STE"),
            ("FAddrSize", "addr-size"),
        ] {
            assert_eq!(event_key(model), event_key(written), "{model} {written}");
        }
        assert_ne!(event_key("FPermission"), event_key("translation"));
        assert_ne!(event_key("CBadSte"), event_key("bad-cd"));
    }
}
