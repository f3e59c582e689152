//! `/metrics` of a service, fetched as its HTTP listener serves it (over mutual TLS when the
//! platform runs so), and the few series the overview shows.

use std::sync::Arc;
use std::time::Duration;

use marty_config::Service;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One HTTP/1.1 GET with `Connection: close`; the body, when the status is 200.
pub async fn get(
    tls: Option<&Arc<marty_tls::TlsMaterial>>,
    service: Service,
    host: &str,
    port: u16,
    path: &str,
) -> Result<String, String> {
    let work = async {
        let tcp = tokio::net::TcpStream::connect((host, port))
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
                let _ = stream.read_to_end(&mut response).await;
            }
            None => {
                let mut stream = tcp;
                stream
                    .write_all(request.as_bytes())
                    .await
                    .map_err(|e| e.to_string())?;
                stream
                    .read_to_end(&mut response)
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        let text = String::from_utf8_lossy(&response).into_owned();
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| "no HTTP answer".to_owned())?;
        let status = head.split_whitespace().nth(1).unwrap_or("");
        if status != "200" {
            return Err(format!("HTTP {status}"));
        }
        if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            return Ok(dechunk(body));
        }
        Ok(body.to_owned())
    };
    tokio::time::timeout(Duration::from_secs(3), work)
        .await
        .map_err(|_| "no answer within 3 s".to_owned())?
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
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
        assert_eq!(dechunk("5\r\nhello\r\n0\r\n\r\n"), "hello");
    }
}
