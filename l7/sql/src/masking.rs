//! Masking of result values: by column (the output name or, better, the
//! table column it comes from, so an alias cannot dodge a rule) and by value
//! detectors that find e-mail addresses, card numbers, phone numbers and
//! national ids anywhere in a text value (so `lower(email)` is caught too).

use regex::Regex;

use crate::guardrails::PolicyError;
use crate::names::glob_matches;
use crate::policy::{Detector, MaskStyle, MaskingPolicy};

/// One result column: its output label and, when the database says where it
/// comes from, the table column.
#[derive(Debug, Clone, Copy, Default)]
pub struct ColumnRef<'a> {
    pub label: &'a str,
    pub schema: Option<&'a str>,
    pub table: Option<&'a str>,
    pub column: Option<&'a str>,
}

/// A column pattern: `column`, `table.column` or `schema.table.column`.
#[derive(Debug, Clone)]
struct ColumnPattern {
    parts: Vec<String>,
}

impl ColumnPattern {
    fn parse(pattern: &str) -> Result<Self, PolicyError> {
        let parts: Vec<String> = pattern.split('.').map(str::to_owned).collect();
        if parts.is_empty() || parts.len() > 3 || parts.iter().any(String::is_empty) {
            return Err(PolicyError::TablePattern(format!(
                "{pattern:?} is not a column pattern (`column`, `table.column` or `schema.table.column`)"
            )));
        }
        Ok(Self { parts })
    }

    fn matches(&self, column: &ColumnRef<'_>) -> bool {
        let m = glob_matches;
        match self.parts.as_slice() {
            [name] => m(name, column.label) || column.column.is_some_and(|c| m(name, c)),
            [table, name] => match (column.table, column.column) {
                (Some(t), Some(c)) => m(table, t) && m(name, c),
                _ => false,
            },
            [schema, table, name] => match (column.schema, column.table, column.column) {
                (Some(s), Some(t), Some(c)) => m(schema, s) && m(table, t) && m(name, c),
                _ => false,
            },
            _ => false,
        }
    }
}

/// Why a value was masked, for the audit event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskReason {
    Column,
    Detector(Detector),
}

pub struct Masker {
    columns: Vec<(ColumnPattern, MaskStyle)>,
    detectors: Vec<(Detector, Regex)>,
}

fn detector_regex(detector: Detector) -> &'static str {
    match detector {
        Detector::Email => r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
        Detector::CardNumber => r"\b\d(?:[ -]?\d){12,18}\b",
        Detector::Phone => {
            r"(?:\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{2,4}){2,4}\b)|(?:(?:\(\d{3}\)\s?|\b\d{3}[.-])\d{3}[ .-]\d{4}\b)"
        }
        Detector::UsSsn => r"\b\d{3}-\d{2}-\d{4}\b",
        Detector::UkNino => r"\b[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b",
        Detector::FrNir => {
            r"\b[12] ?\d{2} ?(?:0[1-9]|1[0-2]) ?(?:2[AB]|\d{2}) ?\d{3} ?\d{3} ?\d{2}\b"
        }
    }
}

impl Masker {
    pub fn new(policy: &MaskingPolicy) -> Result<Self, PolicyError> {
        let columns = policy
            .columns
            .iter()
            .map(|rule| Ok((ColumnPattern::parse(&rule.column)?, rule.style)))
            .collect::<Result<Vec<_>, PolicyError>>()?;
        // Cards before phones: a card number also looks like a long phone number.
        let mut detectors = policy.detectors.clone();
        detectors.sort_by_key(|d| *d != Detector::CardNumber);
        detectors.dedup();
        let detectors = detectors
            .into_iter()
            .map(|d| {
                let regex = Regex::new(detector_regex(d)).map_err(|e| PolicyError::Regex {
                    pattern: d.as_str().into(),
                    reason: e.to_string(),
                })?;
                Ok((d, regex))
            })
            .collect::<Result<Vec<_>, PolicyError>>()?;
        Ok(Self { columns, detectors })
    }

    /// Nothing to mask: callers can skip result rows entirely.
    pub fn is_empty(&self) -> bool {
        self.columns.is_empty() && self.detectors.is_empty()
    }

    /// Some rule names columns: callers must say where result columns come
    /// from (their source table column), or aliases would dodge the rules.
    pub fn has_column_rules(&self) -> bool {
        !self.columns.is_empty()
    }

    /// The style of the first column rule matching `column`: decided once per
    /// result description, not per row.
    pub fn column_rule(&self, column: &ColumnRef<'_>) -> Option<MaskStyle> {
        self.columns
            .iter()
            .find(|(pattern, _)| pattern.matches(column))
            .map(|(_, style)| *style)
    }

    /// The masked text of one value, or `None` if nothing in it is masked.
    pub fn mask(&self, rule: Option<MaskStyle>, value: &str) -> Option<(String, MaskReason)> {
        if let Some(style) = rule {
            return Some((apply_style(style, value), MaskReason::Column));
        }
        // Every detector needs an @ or at least six digits: skip the rest cheaply.
        let digits = value.bytes().filter(u8::is_ascii_digit).count();
        if digits < 6 && !value.contains('@') {
            return None;
        }
        let mut text = std::borrow::Cow::Borrowed(value);
        let mut reason = None;
        for (detector, regex) in &self.detectors {
            let replaced = regex.replace_all(&text, |caps: &regex::Captures<'_>| {
                let found = &caps[0];
                match mask_found(*detector, found) {
                    Some(masked) => {
                        reason.get_or_insert(MaskReason::Detector(*detector));
                        masked
                    }
                    None => found.to_owned(),
                }
            });
            if let std::borrow::Cow::Owned(replaced) = replaced {
                text = std::borrow::Cow::Owned(replaced);
            }
        }
        reason.map(|reason| (text.into_owned(), reason))
    }
}

fn apply_style(style: MaskStyle, value: &str) -> String {
    match style {
        MaskStyle::Redact => "****".into(),
        MaskStyle::KeepLast4 => {
            let chars: Vec<char> = value.chars().collect();
            if chars.len() <= 4 {
                "****".into()
            } else {
                let last: String = chars[chars.len() - 4..].iter().collect();
                format!("****{last}")
            }
        }
    }
}

/// Masks one detector match, after checks that regexes cannot express
/// (Luhn, check keys); `None` leaves it alone.
fn mask_found(detector: Detector, found: &str) -> Option<String> {
    let digits: String = found.chars().filter(char::is_ascii_digit).collect();
    match detector {
        Detector::Email => {
            let (local, domain) = found.split_once('@')?;
            let first = local.chars().next()?;
            Some(format!("{first}***@{domain}"))
        }
        Detector::CardNumber => (luhn_valid(&digits) && (13..=19).contains(&digits.len()))
            .then(|| keep_last(&digits, 4)),
        Detector::Phone => (10..=15)
            .contains(&digits.len())
            .then(|| keep_last(&digits, 2)),
        Detector::UsSsn => {
            let (area, group, serial) = (&digits[..3], &digits[3..5], &digits[5..]);
            let plausible = area != "000"
                && area != "666"
                && !area.starts_with('9')
                && group != "00"
                && serial != "0000";
            plausible.then(|| format!("***-**-{serial}"))
        }
        Detector::UkNino => Some("*********".into()),
        Detector::FrNir => fr_nir_valid(found).then(|| "*************".into()),
    }
}

fn keep_last(digits: &str, keep: usize) -> String {
    let cut = digits.len().saturating_sub(keep);
    format!("{}{}", "*".repeat(cut), &digits[cut..])
}

pub fn luhn_valid(digits: &str) -> bool {
    let mut sum = 0u32;
    for (i, c) in digits.chars().rev().enumerate() {
        let Some(mut d) = c.to_digit(10) else {
            return false;
        };
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    !digits.is_empty() && sum.is_multiple_of(10)
}

/// The NIR's key is 97 minus the first 13 digits modulo 97 (Corsica's 2A and
/// 2B count as 19 and 18).
fn fr_nir_valid(found: &str) -> bool {
    let compact: String = found.chars().filter(|c| !c.is_whitespace()).collect();
    if compact.len() != 15 {
        return false;
    }
    let (body, key) = compact.split_at(13);
    let body = body.replace("2A", "19").replace("2B", "18");
    let (Ok(number), Ok(key)) = (body.parse::<u64>(), key.parse::<u64>()) else {
        return false;
    };
    97 - number % 97 == key
}
