//! A reader of the Prometheus/OpenMetrics text exposition, for tests that
//! scrape `/metrics`: families by their `# TYPE` line, with their samples.

use std::collections::BTreeSet;

/// One metric family: `# TYPE name kind` and the samples after it.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    /// As on the `# TYPE` line (a counter's without `_total`).
    pub name: String,
    /// `counter`, `gauge`, `histogram`, ...
    pub kind: String,
    pub samples: Vec<Sample>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Family {
    /// The name queries use: a counter's samples end in `_total`.
    pub fn queried_name(&self) -> String {
        match self.kind.as_str() {
            "counter" => format!("{}_total", self.name),
            _ => self.name.clone(),
        }
    }

    /// The labels of its samples, without those the type adds (`le`, `quantile`).
    pub fn label_names(&self) -> BTreeSet<String> {
        self.samples
            .iter()
            .flat_map(|s| s.labels.iter().map(|(name, _)| name.clone()))
            .filter(|name| name != "le" && name != "quantile")
            .collect()
    }

    /// Every value `label` takes in its samples.
    pub fn label_values(&self, label: &str) -> BTreeSet<String> {
        self.samples
            .iter()
            .flat_map(|s| s.labels.iter())
            .filter(|(name, _)| name == label)
            .map(|(_, value)| value.clone())
            .collect()
    }
}

/// Parses a scrape: the exposition, or a whole HTTP response carrying one (as
/// `http_get` returns it). A sample must follow the `# TYPE` of its family and
/// be named as that type names its samples.
pub fn parse(text: &str) -> Result<Vec<Family>, String> {
    let text = match text.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/") => body,
        _ => text,
    };
    let mut families: Vec<Family> = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(declaration) = line.strip_prefix("# TYPE ") {
            let (name, kind) = declaration
                .split_once(' ')
                .ok_or_else(|| format!("a TYPE line without a type: {line:?}"))?;
            families.push(Family {
                name: name.to_owned(),
                kind: kind.trim().to_owned(),
                samples: Vec::new(),
            });
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let sample = parse_sample(line)?;
        let family = families
            .last_mut()
            .ok_or_else(|| format!("a sample before any TYPE line: {line:?}"))?;
        let suffixes: &[&str] = match family.kind.as_str() {
            "counter" => &["_total", "_created"],
            "histogram" => &["_bucket", "_sum", "_count", "_created"],
            "summary" => &["", "_sum", "_count", "_created"],
            "info" => &["_info"],
            _ => &[""],
        };
        let belongs = sample
            .name
            .strip_prefix(family.name.as_str())
            .is_some_and(|suffix| suffixes.contains(&suffix));
        if !belongs {
            return Err(format!(
                "sample {:?} is not one of {} {:?}'s",
                sample.name, family.kind, family.name
            ));
        }
        family.samples.push(sample);
    }
    Ok(families)
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let bad = |why: &str| format!("{why}: {line:?}");
    let name_end = line
        .find(['{', ' '])
        .ok_or_else(|| bad("a sample without a value"))?;
    let name = line[..name_end].to_owned();
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(mut inner) = rest.strip_prefix('{') {
        loop {
            inner = inner.trim_start_matches([',', ' ']);
            if let Some(after) = inner.strip_prefix('}') {
                rest = after;
                break;
            }
            let (label, after) = inner
                .split_once("=\"")
                .ok_or_else(|| bad("a label without a quoted value"))?;
            let (value, after) = quoted_value(after).ok_or_else(|| bad("an unterminated label"))?;
            labels.push((label.trim().to_owned(), value));
            inner = after;
        }
    }
    let value = rest
        .split_whitespace()
        .next()
        .ok_or_else(|| bad("a sample without a value"))?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other
            .parse()
            .map_err(|_| bad("a value that is not a number"))?,
    };
    Ok(Sample {
        name,
        labels,
        value,
    })
}

/// A label value up to its closing quote, unescaped; and what follows it.
fn quoted_value(text: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((value, &text[i + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => value.push('\n'),
                other => value.push(other),
            },
            other => value.push(other),
        }
    }
    None
}

/// The value of the sample `name` with exactly `labels`, if the scrape has it:
/// `sample(text, "postern_errors_total", &[("kind", "forbidden")])`.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let families = parse(text).unwrap_or_else(|e| panic!("{e} in the scrape:\n{text}"));
    let mut wanted: Vec<(&str, &str)> = labels.to_vec();
    wanted.sort_unstable();
    families
        .iter()
        .flat_map(|f| &f.samples)
        .find(|s| {
            let mut have: Vec<(&str, &str)> = s
                .labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            have.sort_unstable();
            s.name == name && have == wanted
        })
        .map(|s| s.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRAPE: &str = "# HELP postern_sessions Sessions ended.\n\
        # TYPE postern_sessions counter\n\
        postern_sessions_total{outcome=\"ok\"} 3\n\
        postern_sessions_total{outcome=\"error\"} 0\n\
        # TYPE postern_open_seconds histogram\n\
        postern_open_seconds_sum 0.5\n\
        postern_open_seconds_count 2\n\
        postern_open_seconds_bucket{le=\"0.1\"} 1\n\
        postern_open_seconds_bucket{le=\"+Inf\"} 2\n\
        # TYPE postern_odd gauge\n\
        postern_odd{path=\"a\\\"b\",x=\"y\"} -1\n\
        # EOF\n";

    #[test]
    fn families_have_their_samples_names_and_labels() {
        let families = parse(SCRAPE).unwrap();
        let names: Vec<String> = families.iter().map(Family::queried_name).collect();
        assert_eq!(
            names,
            [
                "postern_sessions_total",
                "postern_open_seconds",
                "postern_odd"
            ]
        );
        assert_eq!(
            families[0].label_values("outcome"),
            BTreeSet::from(["ok".to_owned(), "error".to_owned()])
        );
        assert!(families[1].label_names().is_empty());
        assert_eq!(families[2].samples[0].labels[0].1, "a\"b");
        assert_eq!(
            sample(SCRAPE, "postern_odd", &[("x", "y"), ("path", "a\"b")]),
            Some(-1.0)
        );
        assert_eq!(
            sample(SCRAPE, "postern_sessions_total", &[("outcome", "ok")]),
            Some(3.0)
        );
        assert_eq!(sample(SCRAPE, "postern_sessions_total", &[]), None);
    }

    #[test]
    fn an_http_response_head_is_skipped() {
        let response = format!("HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\n{SCRAPE}");
        assert_eq!(parse(&response).unwrap(), parse(SCRAPE).unwrap());
    }

    #[test]
    fn a_sample_outside_its_family_is_refused() {
        let error = parse("# TYPE a counter\nb_total 1\n").unwrap_err();
        assert!(error.contains("\"b_total\""), "{error}");
        assert!(parse("# TYPE a counter\na 1\n").is_err());
    }
}
