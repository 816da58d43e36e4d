//! Splits a scenario line into tokens and reads numbers, sizes, durations and hex data.
//!
//! Every function here works on arbitrary (even non-ASCII) text without slicing inside
//! a character and without arithmetic overflow: bad input is an `Err`, never a panic.

/// One whitespace-separated token of a line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token<'a> {
    /// The text.
    pub text: &'a str,
    /// 1-based column (in characters) of its first character.
    pub col: u32,
}

/// Split `line` into tokens, dropping a `#` comment.
pub fn tokenize(line: &str) -> Vec<Token<'_>> {
    let mut out = Vec::new();
    let mut start: Option<(usize, u32)> = None;
    let mut col: u32 = 0;
    for (i, ch) in line.char_indices() {
        col = col.saturating_add(1);
        if ch == '#' {
            if let Some((s, c)) = start.take() {
                out.push(Token {
                    text: &line[s..i],
                    col: c,
                });
            }
            return out;
        }
        if ch.is_whitespace() {
            if let Some((s, c)) = start.take() {
                out.push(Token {
                    text: &line[s..i],
                    col: c,
                });
            }
        } else if start.is_none() {
            start = Some((i, col));
        }
    }
    if let Some((s, c)) = start {
        out.push(Token {
            text: &line[s..],
            col: c,
        });
    }
    out
}

/// Whether `s` is a valid name (device, SMMU, handle): a letter or `_`, then letters,
/// digits, `_` or `-`.
pub fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Parse an unsigned integer: decimal, `0x` hex or `0b` binary, `_` allowed as separator.
pub fn parse_int(s: &str) -> Result<u64, String> {
    let (digits, radix) = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (h, 16)
    } else if let Some(b) = s.strip_prefix("0b") {
        (b, 2)
    } else {
        (s, 10)
    };
    let mut value: u64 = 0;
    let mut any = false;
    for c in digits.chars() {
        if c == '_' {
            continue;
        }
        let d = c
            .to_digit(radix)
            .ok_or_else(|| format!("`{s}` is not a number"))?;
        value = value
            .checked_mul(u64::from(radix))
            .and_then(|v| v.checked_add(u64::from(d)))
            .ok_or_else(|| format!("`{s}` does not fit in 64 bits"))?;
        any = true;
    }
    if !any {
        return Err(format!("`{s}` is not a number"));
    }
    Ok(value)
}

/// Split a trailing alphabetic suffix off a number (`16k` → (`16`, `k`)); hex digits
/// of a `0x` number are never taken as a suffix.
fn split_suffix(s: &str) -> (&str, &str) {
    if s.starts_with("0x") || s.starts_with("0X") {
        return (s, "");
    }
    let idx = s
        .char_indices()
        .find(|(_, c)| c.is_ascii_alphabetic())
        .map_or(s.len(), |(i, _)| i);
    (&s[..idx], &s[idx..])
}

/// Parse a size: an integer with an optional binary suffix `k`, `m`, `g` (or `KiB`,
/// `MiB`, `GiB`), e.g. `4096`, `0x1000`, `4k`, `2M`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let (num, suffix) = split_suffix(s);
    let shift = match suffix.to_ascii_lowercase().as_str() {
        "" => 0,
        "k" | "kib" => 10,
        "m" | "mib" => 20,
        "g" | "gib" => 30,
        other => {
            return Err(format!(
                "unknown size suffix `{other}` in `{s}` (use k, m or g)"
            ));
        }
    };
    let n = parse_int(num)?;
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("`{s}` does not fit in 64 bits"))
}

/// Parse a duration into nanoseconds: an integer with a unit `ns`, `us`, `ms` or `s`.
pub fn parse_duration_ns(s: &str) -> Result<u64, String> {
    let (num, suffix) = split_suffix(s);
    let mult: u64 = match suffix {
        "ns" => 1,
        "us" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "" => return Err(format!("duration `{s}` needs a unit (ns, us, ms or s)")),
        other => {
            return Err(format!(
                "unknown duration unit `{other}` in `{s}` (use ns, us, ms or s)"
            ));
        }
    };
    let n = parse_int(num)?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("duration `{s}` does not fit in 64 bits of nanoseconds"))
}

/// Parse hex data: pairs of hex digits, optionally separated by `:` or `_`
/// (`deadbeef`, `de:ad:be:ef`).
pub fn parse_hex_bytes(s: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut hi: Option<u32> = None;
    for c in s.chars() {
        if c == ':' || c == '_' {
            if hi.is_some() {
                return Err(format!("odd number of hex digits before `{c}` in `{s}`"));
            }
            continue;
        }
        let d = c
            .to_digit(16)
            .ok_or_else(|| format!("`{c}` is not a hex digit in data `{s}`"))?;
        match hi.take() {
            None => hi = Some(d),
            // Both digits are < 16, so the byte is < 256.
            Some(h) => out.push(((h << 4) | d) as u8),
        }
    }
    if hi.is_some() {
        return Err(format!("odd number of hex digits in data `{s}`"));
    }
    if out.is_empty() {
        return Err("data must contain at least one byte".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_columns_and_drop_comments() {
        let t = tokenize("  map  nic size=4k # tail");
        let got: Vec<_> = t.iter().map(|t| (t.text, t.col)).collect();
        assert_eq!(got, vec![("map", 3), ("nic", 8), ("size=4k", 12)]);
        assert!(tokenize("# only comment").is_empty());
        assert_eq!(tokenize("a#b")[0].text, "a");
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let t = tokenize("é x");
        assert_eq!(t[1].col, 3);
    }

    #[test]
    fn numbers_sizes_durations() {
        assert_eq!(parse_int("0x10"), Ok(16));
        assert_eq!(parse_int("1_000"), Ok(1000));
        assert_eq!(parse_int("0b101"), Ok(5));
        assert!(parse_int("").is_err());
        assert!(parse_int("0x").is_err());
        assert!(parse_int("18446744073709551616").is_err());
        assert_eq!(parse_size("4k"), Ok(4096));
        assert_eq!(parse_size("2M"), Ok(2 << 20));
        assert_eq!(parse_size("0x1000"), Ok(4096));
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert!(parse_size("4q").is_err());
        assert!(parse_size("17179869184g").is_err());
        assert_eq!(parse_duration_ns("10ms"), Ok(10_000_000));
        assert_eq!(parse_duration_ns("3us"), Ok(3000));
        assert!(parse_duration_ns("10").is_err());
        assert!(parse_duration_ns("99999999999999s").is_err());
    }

    #[test]
    fn hex_data() {
        assert_eq!(
            parse_hex_bytes("deadBEEF"),
            Ok(vec![0xde, 0xad, 0xbe, 0xef])
        );
        assert_eq!(parse_hex_bytes("de:ad"), Ok(vec![0xde, 0xad]));
        assert!(parse_hex_bytes("abc").is_err());
        assert!(parse_hex_bytes("zz").is_err());
        assert!(parse_hex_bytes("a:b").is_err());
        assert!(parse_hex_bytes("").is_err());
    }

    #[test]
    fn names() {
        assert!(is_name("nic0"));
        assert!(is_name("rx-buf_1"));
        assert!(!is_name("0nic"));
        assert!(!is_name(""));
        assert!(!is_name("a+b"));
    }
}
