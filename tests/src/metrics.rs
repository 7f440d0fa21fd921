//! Reading a Prometheus text exposition (`GET /metrics` on an edge or the control plane's
//! `--metrics-listen` server), so tests assert on the numbers operators would see.

use std::collections::BTreeMap;

/// One sample line: `name{label="value",...} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Every sample of one scrape.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    pub samples: Vec<Sample>,
}

impl Metrics {
    /// GET `url` and parse the body; an error unless the status is 200 and every sample line
    /// parses.
    pub async fn scrape(http: &reqwest::Client, url: &str) -> anyhow::Result<Metrics> {
        let response = http.get(url).send().await?;
        let status = response.status().as_u16();
        let body = response.text().await?;
        anyhow::ensure!(status == 200, "GET {url} answered {status}: {body}");
        Metrics::parse(&body)
    }

    /// Parses the text exposition format (comments and blank lines skipped).
    pub fn parse(text: &str) -> anyhow::Result<Metrics> {
        let samples = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(parse_sample)
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Metrics { samples })
    }

    /// Sum of every sample named `name` whose labels include all of `labels`; `None` when no
    /// sample matches (the metric is not exported, or not with those labels).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut matched = self
            .samples
            .iter()
            .filter(|sample| {
                sample.name == name
                    && labels.iter().all(|(label, value)| {
                        sample.labels.get(*label).map(String::as_str) == Some(*value)
                    })
            })
            .map(|sample| sample.value)
            .peekable();
        matched.peek()?;
        Some(matched.sum())
    }

    /// Like [`Metrics::sum`], but an error naming the metric when nothing matches, for use
    /// inside `eventually`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> anyhow::Result<f64> {
        self.sum(name, labels).ok_or_else(|| {
            let names: std::collections::BTreeSet<&str> = self
                .samples
                .iter()
                .map(|sample| sample.name.as_str())
                .collect();
            anyhow::anyhow!("no sample {name} with labels {labels:?}; exported: {names:?}")
        })
    }
}

fn parse_sample(line: &str) -> anyhow::Result<Sample> {
    let (name, labels, rest) = match line.find('{') {
        Some(open) => {
            let (labels, rest) = parse_labels(&line[open + 1..])
                .map_err(|error| anyhow::anyhow!("{error} in metrics line {line:?}"))?;
            (&line[..open], labels, rest)
        }
        None => {
            let split = line
                .find(char::is_whitespace)
                .ok_or_else(|| anyhow::anyhow!("no value in metrics line {line:?}"))?;
            (&line[..split], BTreeMap::new(), &line[split..])
        }
    };
    let value_text = rest
        .split_whitespace()
        .next()
        .ok_or_else(|| anyhow::anyhow!("no value in metrics line {line:?}"))?;
    let value = match value_text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        text => text
            .parse::<f64>()
            .map_err(|error| anyhow::anyhow!("bad value in metrics line {line:?}: {error}"))?,
    };
    Ok(Sample {
        name: name.trim().to_owned(),
        labels,
        value,
    })
}

/// Parses `a="x",b="y\"z"}` (the part after `{`); returns the labels and what follows `}`.
fn parse_labels(text: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start_matches([' ', ',']);
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let eq = rest.find('=').ok_or("label without '='")?;
        let name = rest[..eq].trim().to_owned();
        let quoted = rest[eq + 1..]
            .trim_start()
            .strip_prefix('"')
            .ok_or("label value not quoted")?;
        let mut value = String::new();
        let mut chars = quoted.char_indices();
        let end = loop {
            match chars.next() {
                Some((index, '"')) => break index,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, other)) => value.push(other),
                    None => return Err("unterminated escape".to_owned()),
                },
                Some((_, other)) => value.push(other),
                None => return Err("unterminated label value".to_owned()),
            }
        };
        labels.insert(name, value);
        rest = &quoted[end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::Metrics;

    const TEXT: &str = "\
# HELP tollgate_limit_alerts_total Alerts recorded.
# TYPE tollgate_limit_alerts_total counter
tollgate_limit_alerts_total{kind=\"soft\",metric=\"budget_micros_per_month\"} 2
tollgate_limit_alerts_total{kind=\"hard\",metric=\"budget_micros_per_month\"} 1
tollgate_limit_alerts_total{kind=\"soft\",metric=\"tokens_per_day\"} 1 1700000000000
tollgate_limits_fallback_active 3
odd{path=\"a,b}\\\"c\"} 0.5
";

    #[test]
    fn sums_samples_matching_the_labels() {
        let metrics = Metrics::parse(TEXT).unwrap();
        assert_eq!(
            metrics.sum("tollgate_limit_alerts_total", &[("kind", "soft")]),
            Some(3.0)
        );
        assert_eq!(metrics.sum("tollgate_limit_alerts_total", &[]), Some(4.0));
        assert_eq!(
            metrics.sum("tollgate_limits_fallback_active", &[]),
            Some(3.0)
        );
        assert_eq!(
            metrics.sum("tollgate_limit_alerts_total", &[("kind", "other")]),
            None
        );
        assert_eq!(metrics.sum("missing", &[]), None);
    }

    #[test]
    fn label_values_may_hold_commas_braces_and_escaped_quotes() {
        let metrics = Metrics::parse(TEXT).unwrap();
        assert_eq!(metrics.sum("odd", &[("path", "a,b}\"c")]), Some(0.5));
    }

    #[test]
    fn a_line_without_a_value_is_an_error() {
        assert!(Metrics::parse("lonely_metric\n").is_err());
        assert!(Metrics::parse("m{a=\"x\"}\n").is_err());
    }
}
