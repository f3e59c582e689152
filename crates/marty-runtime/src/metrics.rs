//! Prometheus metrics: a small registry of counters, gauges and histograms rendered in the text
//! exposition format, and the tower layer that counts and times every gRPC call.
//!
//! A registry of its own rather than a metrics crate: the set is small and fixed, the layer
//! needs labels it derives itself, and two services in one test process must not share global
//! state. Label values that come from clients (the gRPC path) are mapped to the set of methods
//! the server implements, so a client cannot create series without bound.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use http_body::{Body, Frame, SizeHint};

/// Upper bounds of the latency histogram, in seconds.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

type Labels = Vec<(String, String)>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

#[derive(Debug, Default, Clone)]
struct Histogram {
    buckets: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Debug)]
struct Family {
    help: &'static str,
    kind: Kind,
    values: BTreeMap<Labels, f64>,
    histograms: BTreeMap<Labels, Histogram>,
}

/// The metrics of one service process.
#[derive(Debug, Default)]
pub struct Registry {
    families: Mutex<BTreeMap<&'static str, Family>>,
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

impl Registry {
    fn with_family(
        &self,
        name: &'static str,
        help: &'static str,
        kind: Kind,
        f: impl FnOnce(&mut Family),
    ) {
        let mut families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let family = families.entry(name).or_insert_with(|| Family {
            help,
            kind,
            values: BTreeMap::new(),
            histograms: BTreeMap::new(),
        });
        f(family);
    }

    /// Adds `by` to a counter.
    pub fn add(&self, name: &'static str, help: &'static str, pairs: &[(&str, &str)], by: f64) {
        self.with_family(name, help, Kind::Counter, |f| {
            *f.values.entry(labels(pairs)).or_insert(0.0) += by;
        });
    }

    /// Sets a gauge.
    pub fn set(&self, name: &'static str, help: &'static str, pairs: &[(&str, &str)], value: f64) {
        self.with_family(name, help, Kind::Gauge, |f| {
            f.values.insert(labels(pairs), value);
        });
    }

    /// Replaces every value of a gauge at once (label sets absent from `rows` disappear), so
    /// a scrape never sees half of an update.
    pub fn set_all(
        &self,
        name: &'static str,
        help: &'static str,
        rows: &[(Vec<(&str, &str)>, f64)],
    ) {
        self.with_family(name, help, Kind::Gauge, |f| {
            f.values = rows.iter().map(|(p, v)| (labels(p), *v)).collect();
        });
    }

    /// Records one observation, in seconds, in a latency histogram.
    pub fn observe(
        &self,
        name: &'static str,
        help: &'static str,
        pairs: &[(&str, &str)],
        seconds: f64,
    ) {
        self.with_family(name, help, Kind::Histogram, |f| {
            let h = f.histograms.entry(labels(pairs)).or_default();
            for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
                if seconds <= *bound {
                    h.buckets[i] += 1;
                }
            }
            h.count += 1;
            h.sum += seconds;
        });
    }

    /// The text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        for (name, family) in families.iter() {
            let kind = match family.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
                Kind::Histogram => "histogram",
            };
            let _ = writeln!(out, "# HELP {name} {}", family.help);
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, value) in &family.values {
                let _ = writeln!(
                    out,
                    "{name}{} {}",
                    render_labels(labels, None),
                    number(*value)
                );
            }
            for (labels, h) in &family.histograms {
                for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
                    let le = bound.to_string();
                    let _ = writeln!(
                        out,
                        "{name}_bucket{} {}",
                        render_labels(labels, Some(&le)),
                        h.buckets[i]
                    );
                }
                let _ = writeln!(
                    out,
                    "{name}_bucket{} {}",
                    render_labels(labels, Some("+Inf")),
                    h.count
                );
                let _ = writeln!(
                    out,
                    "{name}_sum{} {}",
                    render_labels(labels, None),
                    number(h.sum)
                );
                let _ = writeln!(
                    out,
                    "{name}_count{} {}",
                    render_labels(labels, None),
                    h.count
                );
            }
        }
        out
    }
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn render_labels(labels: &Labels, le: Option<&str>) -> String {
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The gRPC methods a server implements, `/package.Service/Method`: the only values the
/// `method` label takes (anything else is `unknown`).
#[derive(Debug, Clone, Default)]
pub struct KnownMethods(Arc<HashSet<String>>);

impl KnownMethods {
    /// The methods of every service in the encoded descriptor sets, plus health and reflection.
    pub fn from_descriptor_sets(sets: &[&[u8]]) -> Self {
        use prost::Message;
        let mut methods = HashSet::new();
        for set in sets {
            if let Ok(set) = prost_types::FileDescriptorSet::decode(*set) {
                for file in set.file {
                    let package = file.package.unwrap_or_default();
                    for service in file.service {
                        let service_name = service.name.unwrap_or_default();
                        for method in service.method {
                            methods.insert(format!(
                                "/{package}.{service_name}/{}",
                                method.name.unwrap_or_default()
                            ));
                        }
                    }
                }
            }
        }
        for m in [
            "/grpc.health.v1.Health/Check",
            "/grpc.health.v1.Health/Watch",
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        ] {
            methods.insert(m.to_owned());
        }
        Self(Arc::new(methods))
    }

    pub fn contains(&self, path: &str) -> bool {
        self.0.contains(path)
    }

    /// Every method, `/package.Service/Method`, in no particular order.
    pub fn methods(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    fn label<'a>(&self, path: &'a str) -> &'a str {
        if self.0.contains(path) {
            path.trim_start_matches('/')
        } else {
            "unknown"
        }
    }
}

/// Counts and times every gRPC call by method and status code.
#[derive(Debug, Clone)]
pub struct GrpcMetricsLayer {
    registry: Arc<Registry>,
    service: &'static str,
    known: KnownMethods,
}

impl GrpcMetricsLayer {
    pub fn new(registry: Arc<Registry>, service: &'static str, known: KnownMethods) -> Self {
        Self {
            registry,
            service,
            known,
        }
    }
}

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;
    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
    layer: GrpcMetricsLayer,
}

/// Records one call once: at the status (header or trailer), or as `cancelled` when the
/// response is dropped before one was seen.
struct CallRecord {
    registry: Arc<Registry>,
    service: &'static str,
    method: String,
    started: Instant,
    done: bool,
}

impl CallRecord {
    fn finish(&mut self, code: &str) {
        if self.done {
            return;
        }
        self.done = true;
        let pairs = [
            ("service", self.service),
            ("method", self.method.as_str()),
            ("code", code),
        ];
        self.registry.add(
            "marty_grpc_requests_total",
            "gRPC calls by method and status code.",
            &pairs,
            1.0,
        );
        self.registry.observe(
            "marty_grpc_request_duration_seconds",
            "Duration of gRPC calls until their status, by method.",
            &pairs[..2],
            self.started.elapsed().as_secs_f64(),
        );
    }
}

impl Drop for CallRecord {
    fn drop(&mut self) {
        self.finish("cancelled");
    }
}

/// The name of a gRPC status code (`grpc-status` header value).
fn code_name(value: &[u8]) -> &'static str {
    match value {
        b"0" => "OK",
        b"1" => "CANCELLED",
        b"2" => "UNKNOWN",
        b"3" => "INVALID_ARGUMENT",
        b"4" => "DEADLINE_EXCEEDED",
        b"5" => "NOT_FOUND",
        b"6" => "ALREADY_EXISTS",
        b"7" => "PERMISSION_DENIED",
        b"8" => "RESOURCE_EXHAUSTED",
        b"9" => "FAILED_PRECONDITION",
        b"10" => "ABORTED",
        b"11" => "OUT_OF_RANGE",
        b"12" => "UNIMPLEMENTED",
        b"13" => "INTERNAL",
        b"14" => "UNAVAILABLE",
        b"15" => "DATA_LOSS",
        b"16" => "UNAUTHENTICATED",
        _ => "INVALID_STATUS",
    }
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for GrpcMetrics<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Body + Unpin,
{
    type Response = http::Response<MetricsBody<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let mut record = CallRecord {
            registry: self.layer.registry.clone(),
            service: self.layer.service,
            method: self.layer.known.label(request.uri().path()).to_owned(),
            started: Instant::now(),
            done: false,
        };
        // Everything the handler logs carries the service and the method.
        let span = tracing::info_span!("rpc", service = %record.service, method = %record.method);
        let future = tracing::Instrument::instrument(self.inner.call(request), span);
        Box::pin(async move {
            let response = future.await?;
            // A trailers-only response (every error) carries the status in its headers.
            if let Some(status) = response.headers().get("grpc-status") {
                record.finish(code_name(status.as_bytes()));
            }
            Ok(response.map(|body| MetricsBody {
                inner: body,
                record: Some(record),
            }))
        })
    }
}

/// A response body that records the call when its trailers (with `grpc-status`) pass.
pub struct MetricsBody<B> {
    inner: B,
    record: Option<CallRecord>,
}

impl<B> std::fmt::Debug for MetricsBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsBody")
    }
}

impl<B: Body + Unpin> Body for MetricsBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref()
                    && let Some(mut record) = this.record.take()
                {
                    let code = trailers
                        .get("grpc-status")
                        .map_or("UNKNOWN", |v| code_name(v.as_bytes()));
                    record.finish(code);
                }
            }
            Poll::Ready(None) => {
                if let Some(mut record) = this.record.take() {
                    record.finish("UNKNOWN");
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(mut record) = this.record.take() {
                    record.finish("CANCELLED");
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_gauges_and_histograms() {
        let r = Registry::default();
        r.add("marty_x_total", "X.", &[("code", "OK")], 1.0);
        r.add("marty_x_total", "X.", &[("code", "OK")], 2.0);
        r.set("marty_g", "G.", &[], 0.5);
        r.observe("marty_h_seconds", "H.", &[("m", "a\"b")], 0.003);
        let text = r.render();
        assert!(
            text.contains("# TYPE marty_x_total counter\nmarty_x_total{code=\"OK\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("marty_g 0.5\n"), "{text}");
        assert!(
            text.contains("marty_h_seconds_bucket{m=\"a\\\"b\",le=\"0.0025\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("marty_h_seconds_bucket{m=\"a\\\"b\",le=\"0.005\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("marty_h_seconds_count{m=\"a\\\"b\"} 1\n"),
            "{text}"
        );
    }

    #[test]
    fn unknown_paths_share_one_label() {
        let known = KnownMethods::from_descriptor_sets(&[marty_proto::FILE_DESCRIPTOR_SET]);
        assert_eq!(
            known.label("/marty.csca.v1.CscaService/CreateCsca"),
            "marty.csca.v1.CscaService/CreateCsca"
        );
        assert_eq!(known.label("/marty.csca.v1.CscaService/Nope"), "unknown");
        assert_eq!(known.label("/random/path"), "unknown");
    }
}
