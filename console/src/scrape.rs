//! `/metrics` of a service, fetched as its HTTP listener serves it (over mutual TLS when the
//! platform runs so), and the few series the overview shows.

use std::sync::Arc;
use std::time::Duration;

use marty_config::ServiceApi;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The most of an answer read: a /metrics page is kilobytes; a broken or hostile endpoint
/// must not fill the console's memory.
const MAX_RESPONSE: u64 = 8 * 1024 * 1024;

/// One HTTP/1.1 GET with `Connection: close`; the body, when the status is 200.
pub async fn get(
    tls: Option<&Arc<marty_tls::TlsMaterial>>,
    api: &ServiceApi,
    path: &str,
) -> Result<String, String> {
    let (service, host, port) = (api.service, api.reach_host.as_str(), api.http_port);
    let work = async {
        let tcp = tokio::net::TcpStream::connect(format!("{host}:{port}"))
            .await
            .map_err(|e| format!("connecting to {host}:{port}: {e}"))?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nAccept: text/plain\r\n\r\n"
        );
        let mut response = Vec::new();
        match tls {
            Some(m) => {
                let name = rustls_pki_types::ServerName::try_from(marty_tls::server_name(service))
                    .map_err(|e| e.to_string())?;
                // HTTP/1.1 over TLS: the material's client configuration offers only h2 (gRPC).
                let mut config = (*m.client_config()).clone();
                config.alpn_protocols = vec![b"http/1.1".to_vec()];
                let mut stream = tokio_rustls::TlsConnector::from(Arc::new(config))
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("TLS with {service}: {e}"))?;
                stream
                    .write_all(request.as_bytes())
                    .await
                    .map_err(|e| e.to_string())?;
                // A server may close without close_notify; what arrived is the answer.
                let _ = (&mut stream)
                    .take(MAX_RESPONSE)
                    .read_to_end(&mut response)
                    .await;
            }
            None => {
                let mut stream = tcp;
                stream
                    .write_all(request.as_bytes())
                    .await
                    .map_err(|e| e.to_string())?;
                (&mut stream)
                    .take(MAX_RESPONSE)
                    .read_to_end(&mut response)
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        let split = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| "no HTTP answer".to_owned())?;
        let head = String::from_utf8_lossy(&response[..split]).into_owned();
        let body = &response[split + 4..];
        let status = head.split_whitespace().nth(1).unwrap_or("");
        if status != "200" {
            return Err(format!("HTTP {status}"));
        }
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(body)
        } else {
            body.to_vec()
        };
        Ok(String::from_utf8_lossy(&body).into_owned())
    };
    tokio::time::timeout(Duration::from_secs(3), work)
        .await
        .map_err(|_| "no answer within 3 s".to_owned())?
}

/// The body of a chunked answer, in bytes (chunk sizes count bytes, not characters).
fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = body.windows(2).position(|w| w == b"\r\n") {
        let size = String::from_utf8_lossy(&body[..eol]);
        let Ok(n) = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16) else {
            break;
        };
        let rest = &body[eol + 2..];
        if n == 0 || rest.len() < n {
            break;
        }
        out.extend_from_slice(&rest[..n]);
        body = rest[n..].strip_prefix(b"\r\n").unwrap_or(&rest[n..]);
    }
    out
}

/// The value of label `label` on the first sample of `name`.
pub fn label(metrics: &str, name: &str, label: &str) -> Option<String> {
    let prefix = format!("{name}{{");
    let key = format!("{label}=\"");
    metrics
        .lines()
        .filter_map(|line| line.strip_prefix(&prefix))
        .find_map(|labels| {
            // The label at the start of the set or after a comma, not a suffix of another's
            // name (`git_version=`). Label values here never hold `,` or `"`.
            let start = if labels.starts_with(&key) {
                key.len()
            } else {
                labels.find(&format!(",{key}"))? + key.len() + 1
            };
            let value = &labels[start..];
            Some(value[..value.find('"')?].to_owned())
        })
}

/// The sum of every sample of `name` whose labels contain each of `with` (`key="value"`).
pub fn sum(metrics: &str, name: &str, with: &[&str]) -> Option<f64> {
    let mut found = None;
    for line in metrics.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let bare = series.split('{').next().unwrap_or("");
        if bare != name || !with.iter().all(|w| series.contains(w)) {
            continue;
        }
        if let Ok(v) = value.parse::<f64>() {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

/// The sum of `name` over samples whose labels do not contain `without`.
pub fn sum_without(metrics: &str, name: &str, without: &str) -> Option<f64> {
    let all = sum(metrics, name, &[])?;
    Some(all - sum(metrics, name, &[without]).unwrap_or(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_read_from_the_first_sample() {
        let m = "# HELP marty_build_info v\nmarty_build_info{service=\"csca\",version=\"0.1.0\"} 1\n\
                 marty_build_info_x{version=\"9\"} 1\n";
        assert_eq!(
            label(m, "marty_build_info", "version").as_deref(),
            Some("0.1.0")
        );
        assert_eq!(
            label(m, "marty_build_info", "service").as_deref(),
            Some("csca")
        );
        assert_eq!(label(m, "marty_build_info", "commit"), None);
        assert_eq!(
            label(
                "marty_build_info{version=\"cut",
                "marty_build_info",
                "version"
            ),
            None
        );
        assert_eq!(label(m, "marty_build", "version"), None);
        let other = "marty_build_info{git_version=\"x\",version=\"2\"} 1\n";
        assert_eq!(
            label(other, "marty_build_info", "version").as_deref(),
            Some("2")
        );
    }

    #[test]
    fn sums_pick_series_by_name_and_labels() {
        let m = "# HELP x\nmarty_grpc_requests_total{service=\"csca\",method=\"a\",code=\"OK\"} 3\n\
                 marty_grpc_requests_total{service=\"csca\",method=\"b\",code=\"NOT_FOUND\"} 2\n\
                 marty_grpc_requests_total_other 9\nmarty_outbox_backlog{service=\"csca\"} 0\n";
        assert_eq!(sum(m, "marty_grpc_requests_total", &[]), Some(5.0));
        assert_eq!(
            sum_without(m, "marty_grpc_requests_total", "code=\"OK\""),
            Some(2.0)
        );
        assert_eq!(sum(m, "marty_outbox_backlog", &[]), Some(0.0));
        assert_eq!(sum(m, "missing", &[]), None);
        assert_eq!(dechunk(b"5\r\nhello\r\n0\r\n\r\n"), b"hello");
        // Sizes count bytes: a chunk of "é" (two bytes) and a cut one do not panic.
        assert_eq!(dechunk("2\r\né\r\n0\r\n\r\n".as_bytes()), "é".as_bytes());
        assert_eq!(dechunk(b"ff\r\nshort"), b"");
    }
}
