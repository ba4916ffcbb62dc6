//! Reading a node's `/metrics` (Prometheus text format) in tests: fetch it, parse the samples, look
//! them up by exact name and labels.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// One sample line: `name{label="value",…} number`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed scrape.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub text: String,
    pub samples: Vec<Sample>,
}

/// Fetches `/metrics` from `addr` with a plain HTTP/1.1 request (bounded by a timeout).
pub async fn scrape(addr: SocketAddr) -> Metrics {
    try_scrape(addr).await.unwrap_or_else(|problem| panic!("{problem}"))
}

/// Like [`scrape`], with a failure as a value (for tools that report rather than panic).
pub async fn try_scrape(addr: SocketAddr) -> Result<Metrics, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fetch = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: settle\r\nConnection: close\r\n\r\n").await?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    let response = tokio::time::timeout(Duration::from_secs(10), fetch)
        .await
        .map_err(|_| format!("scraping {addr} timed out"))?
        .map_err(|e| format!("scraping {addr}: {e}"))?;
    if !response.starts_with("HTTP/1.1 200") {
        return Err(format!("scraping {addr}: {}", response.lines().next().unwrap_or("")));
    }
    let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body).to_owned();
    Ok(Metrics::parse(body))
}

impl Metrics {
    /// Parses Prometheus' text format (comments skipped; label values without escaped quotes).
    pub fn parse(text: String) -> Metrics {
        let samples = text
            .lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .filter_map(parse_line)
            .collect();
        Metrics { text, samples }
    }

    /// The samples named exactly `name` whose labels include every `(label, value)` of `labels`.
    pub fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&str, &str)],
    ) -> impl Iterator<Item = &'a Sample> {
        self.samples.iter().filter(move |s| {
            s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).is_some_and(|actual| actual == v))
        })
    }

    /// The value of the one sample named `name` with `labels` (`None` when there is none; fails
    /// when several match).
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let found: Vec<&Sample> = self.matching(name, labels).collect();
        assert!(found.len() <= 1, "{name}{labels:?} is ambiguous: {found:?}");
        found.first().map(|s| s.value)
    }

    /// The sum over every sample named `name` with `labels` (0 when there is none).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|s| s.value).sum()
    }
}

fn parse_line(line: &str) -> Option<Sample> {
    let (series, value) = line.rsplit_once(' ')?;
    let value = value.parse().ok()?;
    let (name, labels) = match series.split_once('{') {
        None => (series, BTreeMap::new()),
        Some((name, rest)) => {
            let inner = rest.strip_suffix('}')?;
            let mut labels = BTreeMap::new();
            for pair in inner.split("\",").filter(|p| !p.is_empty()) {
                let (key, value) = pair.split_once("=\"")?;
                labels.insert(key.trim_start_matches(',').to_owned(), value.trim_end_matches('"').to_owned());
            }
            (name, labels)
        }
    };
    Some(Sample { name: name.to_owned(), labels, value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_parse_with_their_labels() {
        let metrics = Metrics::parse(
            "# HELP x y\nsettle_sagas_finished_total{kind=\"attach_payment\",state=\"succeeded\"} 4\n\
             settle_idempotent_replays_total 2\nrpc_server_duration_milliseconds_bucket{le=\"+Inf\",rpc_method=\"A\"} 3\n"
                .to_owned(),
        );
        assert_eq!(metrics.get("settle_sagas_finished_total", &[("kind", "attach_payment")]), Some(4.0));
        assert_eq!(metrics.get("settle_idempotent_replays_total", &[]), Some(2.0));
        assert_eq!(metrics.get("rpc_server_duration_milliseconds_bucket", &[("le", "+Inf")]), Some(3.0));
        assert_eq!(metrics.get("settle_sagas_finished", &[]), None, "names match exactly");
    }
}
