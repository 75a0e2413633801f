//! `gantry-bench compare-answers`: sends the `gateway-bound` deep query to each gateway and
//! checks that their answers are the same bytes once every object's keys are sorted. A
//! comparison of speed between gateways that answer differently compares nothing, so
//! `bench/run` stops when they differ.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Map, Value};

use crate::scenario::deep_query_body;

/// One gateway's answer to the deep query.
#[derive(Debug)]
pub struct Answer {
    pub name: String,
    /// The body as the gateway sent it.
    pub raw_len: usize,
    /// The body with every object's keys sorted, re-serialized compactly.
    pub sorted: Vec<u8>,
}

/// Asks `url` for the deep query; an HTTP error, a body that is not JSON, `errors` or no
/// `data` is an error.
pub async fn fetch(client: &reqwest::Client, name: &str, url: &str) -> anyhow::Result<Answer> {
    let response = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(reqwest::header::ACCEPT, "application/json")
        .body(deep_query_body())
        .send()
        .await
        .with_context(|| format!("{name}: sending the deep query to {url}"))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .with_context(|| format!("{name}: reading the answer"))?;
    if !status.is_success() {
        bail!(
            "{name}: HTTP {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(500)])
        );
    }
    let value: Value =
        serde_json::from_slice(&body).with_context(|| format!("{name}: the answer is not JSON"))?;
    if let Some(errors) = value.get("errors") {
        bail!("{name}: the answer has errors: {errors}");
    }
    if value.get("data").is_none_or(Value::is_null) {
        bail!("{name}: the answer has no data");
    }
    Ok(Answer {
        name: name.to_owned(),
        raw_len: body.len(),
        sorted: serde_json::to_vec(&sorted(value))?,
    })
}

/// `value` with the keys of every object in order (the parser bounds the depth).
pub fn sorted(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            let mut out = Map::with_capacity(entries.len());
            for (key, value) in entries {
                out.insert(key, sorted(value));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// Fetches every `(name, url)`'s answer and fails unless all are equal (with one gateway,
/// unless it answers with data and no errors); with `save`, each sorted answer is written
/// there as `<name>.json` (to diff them when they differ).
pub async fn compare(gateways: &[(String, String)], save: Option<&Path>) -> anyhow::Result<()> {
    if gateways.is_empty() {
        bail!("give --gateway NAME=URL at least once");
    }
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()?;
    let mut answers = Vec::with_capacity(gateways.len());
    for (name, url) in gateways {
        answers.push(fetch(&client, name, url).await?);
    }
    if let Some(dir) = save {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for answer in &answers {
            let path: PathBuf = dir.join(format!("{}.json", answer.name));
            std::fs::write(&path, &answer.sorted)
                .with_context(|| format!("writing {}", path.display()))?;
        }
    }
    let first = &answers[0];
    for other in &answers[1..] {
        if other.sorted != first.sorted {
            let at = first
                .sorted
                .iter()
                .zip(&other.sorted)
                .position(|(a, b)| a != b)
                .unwrap_or(first.sorted.len().min(other.sorted.len()));
            let excerpt = |bytes: &[u8]| {
                let from = at.saturating_sub(80);
                String::from_utf8_lossy(&bytes[from..(at + 80).min(bytes.len())]).into_owned()
            };
            bail!(
                "{} and {} answer differently ({} and {} bytes sorted; first difference at \
                 byte {at}):\n  {}: …{}…\n  {}: …{}…",
                first.name,
                other.name,
                first.sorted.len(),
                other.sorted.len(),
                first.name,
                excerpt(&first.sorted),
                other.name,
                excerpt(&other.sorted),
            );
        }
    }
    let sizes: Vec<String> = answers
        .iter()
        .map(|a| format!("{} {} bytes", a.name, a.raw_len))
        .collect();
    if answers.len() == 1 {
        eprintln!(
            "answer has data and no errors: {} bytes sorted ({})",
            first.sorted.len(),
            sizes.join(", ")
        );
    } else {
        eprintln!(
            "answers identical after sorting keys: {} bytes ({})",
            first.sorted.len(),
            sizes.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_order_does_not_matter_but_values_and_list_order_do() {
        let a = json!({"data": {"b": [1, {"y": 2, "x": 1}], "a": null}});
        let b = json!({"data": {"a": null, "b": [1, {"x": 1, "y": 2}]}});
        let c = json!({"data": {"a": null, "b": [{"x": 1, "y": 2}, 1]}});
        let bytes = |v: Value| serde_json::to_vec(&sorted(v)).unwrap();
        assert_eq!(bytes(a.clone()), bytes(b));
        assert_ne!(bytes(a), bytes(c));
        assert_eq!(
            String::from_utf8(bytes(json!({"z": 1, "a": {"c": 1, "b": 2}}))).unwrap(),
            r#"{"a":{"b":2,"c":1},"z":1}"#
        );
    }
}
