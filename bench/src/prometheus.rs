//! Reading `/metrics` (the Prometheus text format) before and after a window, to tell how
//! much each counter grew: cache hits and misses, SQL statements, de-duplicated fetches.

use std::collections::BTreeMap;

/// Every sample of a scrape, keyed by its series (`name{labels}` as written).
pub type Samples = BTreeMap<String, f64>;

pub fn parse(text: &str) -> Samples {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.trim().rsplit_once(' ')?;
            Some((series.trim().to_owned(), value.parse::<f64>().ok()?))
        })
        .collect()
}

pub async fn scrape(client: &reqwest::Client, url: &str) -> anyhow::Result<Samples> {
    let text = client
        .get(url)
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    Ok(parse(&text))
}

/// How much each series grew from `before` to `after` (series only in `after` count from 0).
pub fn delta(before: &Samples, after: &Samples) -> Samples {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .collect()
}

/// The sum of every series of the metric `name`, whatever its labels.
pub fn sum(samples: &Samples, name: &str) -> f64 {
    samples
        .iter()
        .filter(|(series, _)| {
            series
                .strip_prefix(name)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('{'))
        })
        .map(|(_, v)| v)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "# HELP gantry_cache_hits_total x\n# TYPE gantry_cache_hits_total counter\n\
        gantry_cache_hits_total{cache=\"response\"} 10\ngantry_sql_statements_total 100\n";
    const AFTER: &str = "gantry_cache_hits_total{cache=\"response\"} 25\n\
        gantry_sql_statements_total 160\ngantry_sql_statements_total_other 1\n";

    #[test]
    fn counters_grow_by_their_difference_and_sum_across_labels() {
        let d = delta(&parse(BEFORE), &parse(AFTER));
        assert_eq!(sum(&d, "gantry_cache_hits_total"), 15.0);
        assert_eq!(sum(&d, "gantry_sql_statements_total"), 60.0);
    }
}
