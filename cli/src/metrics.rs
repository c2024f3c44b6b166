//! Samples of the Prometheus text exposition format, as the services' `/metrics`
//! endpoints serve it: enough to read counters and gauges by name and label.

/// One line of the Prometheus text format.
pub struct Sample {
    pub name: String,
    pub labels: String,
    pub value: f64,
}

/// Returns the samples of an exposition text, skipping comments and malformed lines.
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| {
            let (series, rest) = match line.find('}') {
                Some(close) => line.split_at(close + 1),
                None => line.split_once(' ')?,
            };
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, labels.trim_end_matches('}')),
                None => (series, ""),
            };
            let value = rest.split_whitespace().next()?.parse().ok()?;
            Some(Sample {
                name: name.to_owned(),
                labels: labels.to_owned(),
                value,
            })
        })
        .collect()
}

/// Adds up the samples named `name` over all their labels; `None` if there is none.
pub fn sum(samples: &[Sample], name: &str) -> Option<f64> {
    let mut matching = samples
        .iter()
        .filter(|sample| sample.name == name)
        .peekable();
    matching.peek()?;
    Some(matching.map(|sample| sample.value).sum())
}

/// Value of label `key` in a label list such as `projection="accounts",partition="0"`.
pub fn label<'a>(labels: &'a str, key: &str) -> Option<&'a str> {
    labels.split(',').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        (name.trim() == key).then(|| value.trim().trim_matches('"'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_reads_names_labels_and_values() {
        let text = "# HELP medflow_relay_lag_events Events\n\
                    # TYPE medflow_relay_lag_events gauge\n\
                    medflow_relay_lag_events 3\n\
                    medflow_projector_lag_messages{partition=\"0\",projection=\"accounts\",topic=\"t.account\"} 7\n";
        let samples = parse(text);
        assert_eq!(samples.len(), 2);
        assert_eq!(sum(&samples, "medflow_relay_lag_events"), Some(3.0));
        assert_eq!(samples[1].name, "medflow_projector_lag_messages");
        assert_eq!(label(&samples[1].labels, "projection"), Some("accounts"));
        assert_eq!(samples[1].value, 7.0);
    }

    #[test]
    fn sum_of_missing_metric_is_none() {
        assert_eq!(sum(&parse("other 1\n"), "medflow_relay_lag_events"), None);
    }
}
