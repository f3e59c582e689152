//! The pages. Each handler asks the services, then renders; a service that does not answer
//! is shown as such and the rest of the page still renders.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use marty_config::Service;
use marty_proto::csca::v1 as csca;
use marty_proto::csca::v1::csca_service_client::CscaServiceClient;
use marty_proto::passport::v1 as passport;
use marty_proto::passport::v1::passport_engine_client::PassportEngineClient;
use marty_proto::pkd::v1 as pkd;
use marty_proto::pkd::v1::pkd_service_client::PkdServiceClient;
use time::{Duration, OffsetDateTime};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::Console;
use crate::history::{per_minute, recent_rate};
use crate::html::{Span, chart, clock, date, esc, page, timeline};
use crate::scrape;

/// Certificates that end within this many days are "expiring soon".
const EXPIRING_DAYS: i64 = 30;
/// At most this many certificates are read for one page.
const MAX_CERTIFICATES: usize = 20_000;

type Shared = State<Arc<Console>>;

pub fn router(console: Arc<Console>) -> Router {
    Router::new()
        .route("/", get(overview))
        .route("/certificates", get(certificates))
        .route("/certificates/{country}", get(country_certificates))
        .route("/certificates/{country}/{serial}", get(certificate))
        .route("/crls", get(crls))
        .route("/pkd", get(trust_anchors))
        .route("/passports", get(passports))
        .route("/isolation", get(isolation))
        .route("/console.css", get(style))
        .route("/healthz", get(|| async { "ok" }))
        .layer(axum::middleware::from_fn_with_state(
            console.clone(),
            addressed_to_us,
        ))
        .with_state(console)
        .layer(axum::middleware::map_response(security_headers))
}

/// Answers only requests whose Host is an IP address, `localhost` or a name in
/// `MARTY_CONSOLE_HOSTS`. A web page elsewhere that points its own name at the console's
/// address (DNS rebinding) makes the browser send that name, and is refused: it cannot read
/// the console through the operator's browser.
async fn addressed_to_us(
    State(c): Shared,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if host_allowed(host, &c.hosts) {
        return next.run(request).await;
    }
    (
        StatusCode::MISDIRECTED_REQUEST,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "This console answers requests addressed to it by IP address or localhost; \
         add the name you use to MARTY_CONSOLE_HOSTS (comma-separated).\n",
    )
        .into_response()
}

/// Whether `host` (a Host header: name or address, maybe with a port) names the console.
pub(crate) fn host_allowed(host: &str, names: &[String]) -> bool {
    let name = match host.strip_prefix('[') {
        // [IPv6]:port
        Some(rest) => {
            return rest.split_once(']').is_some_and(|(ip, port)| {
                ip.parse::<std::net::Ipv6Addr>().is_ok()
                    && (port.is_empty()
                        || port
                            .strip_prefix(':')
                            .is_some_and(|p| p.parse::<u16>().is_ok()))
            });
        }
        None => match host.rsplit_once(':') {
            Some((name, port)) if port.parse::<u16>().is_ok() => name,
            Some(_) => return false,
            None => host,
        },
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    !name.is_empty()
        && (name.parse::<std::net::Ipv4Addr>().is_ok()
            || name == "localhost"
            || names.contains(&name))
}

/// Nothing but the console's own stylesheet may load; pages are not framed or sniffed.
async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
    ] {
        h.insert(name, header::HeaderValue::from_static(value));
    }
    response
}

async fn style() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        crate::html::STYLE,
    )
        .into_response()
}

fn time_of(t: &Option<prost_types::Timestamp>) -> Option<OffsetDateTime> {
    t.as_ref().and_then(marty_proto::offset_date_time)
}

fn kind_name(kind: i32) -> &'static str {
    match csca::CertificateType::try_from(kind) {
        Ok(csca::CertificateType::Csca) => "CSCA",
        Ok(csca::CertificateType::Link) => "link",
        Ok(csca::CertificateType::DocumentSigner) => "Document Signer",
        Ok(csca::CertificateType::MasterListSigner) => "Master List Signer",
        _ => "other",
    }
}

fn status_name(status: i32) -> &'static str {
    match csca::CertificateStatus::try_from(status) {
        Ok(csca::CertificateStatus::Valid) => "valid",
        Ok(csca::CertificateStatus::NotYetValid) => "not yet valid",
        Ok(csca::CertificateStatus::Expired) => "expired",
        Ok(csca::CertificateStatus::Revoked) => "revoked",
        _ => "unknown",
    }
}

fn unavailable(what: &str, e: &tonic::Status) -> String {
    format!(
        "<p class=\"bad\" role=\"alert\">{} did not answer: {}</p>",
        esc(what),
        esc(e.message())
    )
}

async fn overview(State(c): Shared) -> Html<String> {
    // Every service, and each one's three probes, at once: the page waits for the slowest
    // answer, not for the sum of twelve.
    let rows = futures::future::join_all(Service::ALL.map(|s| overview_row(&c, s)))
        .await
        .concat();
    Html(page(
        "/",
        "Overview",
        &format!(
            "<div class=\"wide\"><table><caption>Each service as its gRPC health check and its /metrics report it</caption>\
             <thead><tr><th scope=\"col\">service</th><th scope=\"col\">gRPC</th><th scope=\"col\">database</th>\
             <th scope=\"col\">version</th><th scope=\"col\">migration</th><th scope=\"col\">requests</th><th scope=\"col\">requests/min (5 min)</th>\
             <th scope=\"col\">errors</th><th scope=\"col\">errors/min (5 min)</th>\
             <th scope=\"col\">outbox backlog</th><th scope=\"col\">oldest unpublished (s)</th></tr></thead>\
             <tbody>{rows}</tbody></table></div>"
        ),
    ))
}

/// One service's row of the Overview.
async fn overview_row(c: &Console, service: Service) -> String {
    let mut health = HealthClient::new(c.channel(service));
    let (health, metrics, ready) = futures::join!(
        health.check(HealthCheckRequest {
            service: String::new(),
        }),
        scrape::get(c.tls.as_ref(), c.api(service), "/metrics"),
        scrape::get(c.tls.as_ref(), c.api(service), "/readyz"),
    );
    let up = match &health {
        Ok(r) => r.get_ref().status == 1,
        Err(_) => false,
    };
    let ready = ready.is_ok();
    let cell = |v: Option<f64>| v.map(|v| format!("{v:.0}")).unwrap_or_else(|| "–".into());
    let version = metrics
        .as_ref()
        .ok()
        .and_then(|m| scrape::label(m, "marty_build_info", "version"))
        .unwrap_or_else(|| "–".into());
    let (migration, requests, errors, backlog, oldest) = match &metrics {
        Ok(m) => (
            cell(scrape::sum(m, "marty_migration_version", &[])),
            cell(scrape::sum(m, "marty_grpc_requests_total", &[])),
            cell(scrape::sum_without(
                m,
                "marty_grpc_requests_total",
                "code=\"OK\"",
            )),
            cell(scrape::sum(m, "marty_outbox_backlog", &[])),
            cell(scrape::sum(m, "marty_outbox_oldest_age_seconds", &[])),
        ),
        Err(_) => Default::default(),
    };
    let samples = c.history.of(service);
    let rate = |v: fn(&crate::history::Sample) -> f64| {
        recent_rate(&samples, Duration::minutes(5), v)
            .map(|r| format!("{r:.1}"))
            .unwrap_or_else(|| "–".into())
    };
    let (request_rate, error_rate) = (rate(|s| s.requests), rate(|s| s.errors));
    format!(
        "<tr><th scope=\"row\">{}</th><td class=\"{}\">{}</td><td class=\"{}\">{}</td><td>{}</td><td>{migration}</td>\
         <td>{requests}</td><td>{request_rate}</td><td>{errors}</td><td>{error_rate}</td><td>{backlog}</td><td>{oldest}</td></tr>",
        service.id(),
        if up { "ok" } else { "bad" },
        if up { "up" } else { "down" },
        if ready { "ok" } else { "bad" },
        if ready { "ready" } else { "not ready" },
        esc(&version),
    )
}

/// The CSCA's certificates (of `kind`, or all), at most [`MAX_CERTIFICATES`]; true when the
/// list was cut there.
async fn all_certificates(
    c: &Console,
    kind: csca::CertificateType,
) -> Result<(Vec<csca::Certificate>, bool), tonic::Status> {
    let mut client = CscaServiceClient::new(c.channel(Service::Csca));
    let mut out = Vec::new();
    let mut token = String::new();
    for _ in 0..(MAX_CERTIFICATES / 1000 + 1) {
        let page = client
            .list_certificates(csca::ListCertificatesRequest {
                r#type: kind as i32,
                page_size: 1000,
                page_token: token.clone(),
                ..Default::default()
            })
            .await?
            .into_inner();
        out.extend(page.certificates);
        // A server that repeats its token would otherwise be followed for ever.
        if page.next_page_token.is_empty() || page.next_page_token == token {
            return Ok((out, false));
        }
        if out.len() >= MAX_CERTIFICATES {
            return Ok((out, true));
        }
        token = page.next_page_token;
    }
    Ok((out, true))
}

fn legend() -> String {
    format!(
        "<p class=\"legend\"><span>bar: validity</span><span>dark inner bar: private key usage period</span>\
         <span class=\"warn\">amber: expires within {EXPIRING_DAYS} days</span><span class=\"bad\">struck through: revoked</span></p>"
    )
}

/// Every country at a glance: the CSCA counts them (one query, whatever their number), and each
/// country links to its own page.
async fn certificates(State(c): Shared) -> Html<String> {
    let summaries = match CscaServiceClient::new(c.channel(Service::Csca))
        .summarize_certificates(csca::SummarizeCertificatesRequest {
            expiring_days: EXPIRING_DAYS as u32,
        })
        .await
    {
        Ok(r) => r.into_inner().summaries,
        Err(e) => {
            return Html(page(
                "/certificates",
                "Certificates",
                &unavailable("The CSCA", &e),
            ));
        }
    };
    #[derive(Default)]
    struct Country {
        by_kind: BTreeMap<&'static str, u64>,
        valid: u64,
        expiring: u64,
        revoked: u64,
        expired: u64,
        next_expiry: Option<OffsetDateTime>,
    }
    let mut countries: BTreeMap<String, Country> = BTreeMap::new();
    for s in &summaries {
        let c = countries.entry(s.country.clone()).or_default();
        *c.by_kind.entry(kind_name(s.r#type)).or_default() += s.total;
        c.valid += s.valid;
        c.expiring += s.expiring;
        c.revoked += s.revoked;
        c.expired += s.expired;
        if let Some(t) = time_of(&s.next_expiry) {
            c.next_expiry = Some(c.next_expiry.map_or(t, |n| n.min(t)));
        }
    }
    if countries.is_empty() {
        return Html(page(
            "/certificates",
            "Certificates",
            "<p>The CSCA holds no certificates yet.</p>",
        ));
    }
    let mut rows = String::new();
    for (country, n) in &countries {
        let kind = |k: &str| n.by_kind.get(k).copied().unwrap_or(0);
        let flagged = |count: u64, class: &str, what: &str| {
            if count == 0 {
                "<td>0</td>".to_owned()
            } else {
                format!("<td class=\"{class}\">{count} {what}</td>")
            }
        };
        let href = format!("/certificates/{}", pct(country));
        let _ = write!(
            rows,
            "<tr><th scope=\"row\"><a href=\"{}\">{}</a></th><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>{}{}<td>{}</td><td>{}</td></tr>",
            esc(&href),
            esc(country),
            kind("CSCA"),
            kind("link"),
            kind("Document Signer"),
            kind("Master List Signer"),
            n.valid,
            flagged(n.expiring, "warn", "expire soon"),
            flagged(n.revoked, "bad", "revoked"),
            n.expired,
            date(n.next_expiry),
        );
    }
    Html(page(
        "/certificates",
        "Certificates",
        &format!(
            "<div class=\"wide\"><table><caption>Certificates per country; a country's page shows their timeline</caption>\
             <thead><tr><th scope=\"col\">country</th><th scope=\"col\">CSCAs</th><th scope=\"col\">links</th>\
             <th scope=\"col\">Document Signers</th><th scope=\"col\">Master List Signers</th><th scope=\"col\">valid</th>\
             <th scope=\"col\">expiring within {EXPIRING_DAYS} days</th><th scope=\"col\">revoked</th><th scope=\"col\">expired</th>\
             <th scope=\"col\">next expiry</th></tr></thead><tbody>{rows}</tbody></table></div>"
        ),
    ))
}

/// Certificates per page of a country's page.
const COUNTRY_PAGE: u32 = 200;

/// One country's certificates, [`COUNTRY_PAGE`] at a time, oldest first: the timeline and
/// the table. `?after=` carries the CSCA's page token.
async fn country_certificates(
    State(c): Shared,
    Path(country): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    if !(country.len() == 2 && country.bytes().all(|b| b.is_ascii_uppercase())) {
        return error_page(
            StatusCode::NOT_FOUND,
            "Country not found",
            "<p>A country is two capital letters (ISO 3166-1 alpha-2), e.g. /certificates/DE.</p>",
        );
    }
    let after = query
        .as_deref()
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("after="))
        .unwrap_or("")
        .to_owned();
    let listed = CscaServiceClient::new(c.channel(Service::Csca))
        .list_certificates(csca::ListCertificatesRequest {
            country: country.clone(),
            page_size: COUNTRY_PAGE,
            page_token: after.clone(),
            ..Default::default()
        })
        .await;
    let listed = match listed {
        Ok(r) => r.into_inner(),
        Err(e) if e.code() == tonic::Code::InvalidArgument => {
            // The country is well-formed: what the CSCA refused is the page token.
            return error_page(
                StatusCode::BAD_REQUEST,
                "Not a page of this list",
                &format!(
                    "<p>{}</p><p><a href=\"/certificates/{country}\">first page</a></p>",
                    esc(e.message())
                ),
            );
        }
        Err(e) => {
            return error_page(
                StatusCode::BAD_GATEWAY,
                "Certificates",
                &unavailable("The CSCA", &e),
            );
        }
    };
    let now = OffsetDateTime::now_utc();
    let mut body = legend();
    if listed.certificates.is_empty() {
        body.push_str("<p>No certificates of this country.</p>");
    } else {
        body.push_str(&country_section(&country, &listed.certificates, now));
    }
    let mut links = Vec::new();
    if !after.is_empty() {
        links.push(format!(
            "<a href=\"/certificates/{}\">first page</a>",
            esc(&pct(&country))
        ));
    }
    if !listed.next_page_token.is_empty() && listed.next_page_token != after {
        links.push(format!(
            "<a href=\"/certificates/{}?after={}\" rel=\"next\">next {COUNTRY_PAGE}</a>",
            esc(&pct(&country)),
            esc(&pct(&listed.next_page_token))
        ));
    }
    if !links.is_empty() {
        let _ = write!(
            body,
            "<nav aria-label=\"pages\"><p>{}</p></nav>",
            links.join(" · ")
        );
    }
    Html(page(
        "/certificates",
        &format!("Certificates of {country}"),
        &body,
    ))
    .into_response()
}

/// A Certificates error page with its status.
fn error_page(status: StatusCode, title: &str, body: &str) -> Response {
    (status, Html(page("/certificates", title, body))).into_response()
}

/// Percent-encoding for a path segment or query value: unreserved characters stay.
fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The timeline and the table of one country's certificates.
fn country_section(country: &str, certs: &[csca::Certificate], now: OffsetDateTime) -> String {
    let mut spans = Vec::new();
    let mut rows = String::new();
    for cert in certs {
        let (Some(nb), Some(na)) = (time_of(&cert.not_before), time_of(&cert.not_after)) else {
            continue;
        };
        let revoked = status_name(cert.status) == "revoked";
        // As the CSCA's summary counts it: valid (from not_before to not_after inclusive) and
        // ending within EXPIRING_DAYS.
        let expiring =
            !revoked && nb <= now && na >= now && na - now <= Duration::days(EXPIRING_DAYS);
        let usage = match (
            time_of(&cert.private_key_usage_not_before),
            time_of(&cert.private_key_usage_not_after),
        ) {
            (Some(a), Some(b)) => Some((a, b)),
            _ => None,
        };
        let href = format!(
            "/certificates/{}/{}",
            pct(&cert.country),
            pct(&cert.serial_hex)
        );
        let label = format!(
            "{} {}",
            kind_name(cert.r#type),
            cert.serial_hex.chars().take(8).collect::<String>()
        );
        spans.push(Span {
            label: label.clone(),
            href: href.clone(),
            not_before: nb,
            not_after: na,
            usage,
            revoked,
            expiring,
        });
        let status = status_name(cert.status);
        let class = match (revoked, expiring) {
            (true, _) => "bad",
            (_, true) => "warn",
            _ if status == "valid" => "ok",
            _ => "",
        };
        let shown = if expiring {
            "valid, expires soon"
        } else {
            status
        };
        let _ = write!(
            rows,
            "<tr><td>{}</td><td><a href=\"{}\" class=\"mono\">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{class}\">{}</td></tr>",
            kind_name(cert.r#type),
            esc(&href),
            esc(&cert.serial_hex),
            esc(&cert.subject),
            date(Some(nb)),
            date(Some(na)),
            usage
                .map(|(a, b)| format!("{} – {}", date(Some(a)), date(Some(b))))
                .unwrap_or_else(|| "–".into()),
            shown
        );
    }
    format!(
        "{}<div class=\"wide\"><table><caption>Certificates of {c}</caption><thead><tr><th scope=\"col\">kind</th><th scope=\"col\">serial</th>\
         <th scope=\"col\">subject</th><th scope=\"col\">not before</th><th scope=\"col\">not after</th>\
         <th scope=\"col\">private key usage</th><th scope=\"col\">status</th></tr></thead><tbody>{rows}</tbody></table></div>",
        timeline(&spans, now),
        c = esc(country)
    )
}

async fn certificate(
    State(c): Shared,
    Path((country, serial)): Path<(String, String)>,
) -> Response {
    let (serial, der_wanted) = match serial.strip_suffix(".der") {
        Some(s) => (s.to_owned(), true),
        None => (serial, false),
    };
    let found = CscaServiceClient::new(c.channel(Service::Csca))
        .get_certificate(csca::GetCertificateRequest {
            serial_hex: serial.clone(),
            country: country.clone(),
            ..Default::default()
        })
        .await;
    let cert = match found {
        Ok(r) => r.into_inner(),
        Err(e) if e.code() == tonic::Code::NotFound || e.code() == tonic::Code::InvalidArgument => {
            return error_page(
                StatusCode::NOT_FOUND,
                "Certificate not found",
                &format!("<p>{}</p>", esc(e.message())),
            );
        }
        Err(e) => {
            return error_page(
                StatusCode::BAD_GATEWAY,
                "Certificate",
                &unavailable("The CSCA", &e),
            );
        }
    };
    if der_wanted {
        // The file name is built from the serial's hex digits only, never from the certificate.
        let name: String = cert
            .serial_hex
            .chars()
            .filter(char::is_ascii_hexdigit)
            .collect();
        return (
            [
                (header::CONTENT_TYPE, "application/pkix-cert".to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{name}.der\""),
                ),
            ],
            cert.der,
        )
            .into_response();
    }
    let decoded = match marty_icao::cert::Certificate::from_der(&cert.der) {
        Ok(parsed) => {
            let mut rows = String::new();
            let mut row = |k: &str, v: String| {
                let _ = write!(
                    rows,
                    "<tr><th scope=\"row\">{}</th><td>{}</td></tr>",
                    esc(k),
                    esc(&v)
                );
            };
            row("subject", parsed.subject.to_string());
            row("issuer", parsed.issuer.to_string());
            row("serial", cert.serial_hex.clone());
            row("not before", date(Some(parsed.not_before)));
            row("not after", date(Some(parsed.not_after)));
            row(
                "public key",
                marty_icao::algo::describe_public_key(&parsed.spki),
            );
            row(
                "signature algorithm",
                parsed
                    .signature_algorithm
                    .as_ref()
                    .map(|a| a.name())
                    .unwrap_or_else(|e| e.to_string()),
            );
            row(
                "subject key identifier",
                marty_icao::hex::encode(&parsed.subject_key_id.clone().unwrap_or_default()),
            );
            row(
                "authority key identifier",
                marty_icao::hex::encode(&parsed.authority_key_id.clone().unwrap_or_default()),
            );
            row("SHA-256 fingerprint", cert.fingerprint_sha256.clone());
            row("status", status_name(cert.status).to_owned());
            rows
        }
        Err(e) => format!(
            "<tr><td colspan=\"2\" class=\"bad\">not decodable: {}</td></tr>",
            esc(&e.to_string())
        ),
    };
    let href = format!(
        "/certificates/{}/{}.der",
        esc(&cert.country),
        esc(&cert.serial_hex)
    );
    Html(page(
        "/certificates",
        &format!("{} {}", kind_name(cert.r#type), cert.serial_hex),
        &format!(
            "<table><caption>Decoded certificate</caption><tbody>{decoded}</tbody></table><p><a href=\"{href}\">Download the DER</a></p>"
        ),
    ))
    .into_response()
}

async fn crls(State(c): Shared) -> Html<String> {
    let now = OffsetDateTime::now_utc();
    let countries: std::collections::BTreeSet<String> =
        match all_certificates(&c, csca::CertificateType::Csca).await {
            Ok((v, _)) => v.into_iter().map(|c| c.country).collect(),
            Err(e) => return Html(page("/crls", "CRLs", &unavailable("The CSCA", &e))),
        };
    let mut rows = String::new();
    let mut client = CscaServiceClient::new(c.channel(Service::Csca));
    for country in &countries {
        match client
            .get_latest_crl(csca::GetLatestCrlRequest {
                country: country.clone(),
            })
            .await
        {
            Ok(r) => {
                let crl = r.into_inner();
                let next = time_of(&crl.next_update);
                let stale = next.is_none_or(|n| n <= now);
                let _ = write!(
                    rows,
                    "<tr><th scope=\"row\">{}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td></tr>",
                    esc(country),
                    esc(&crl.crl_number),
                    date(time_of(&crl.this_update)),
                    date(next),
                    crl.revoked_serials_hex.len(),
                    if stale { "bad" } else { "ok" },
                    if stale {
                        "stale: past nextUpdate"
                    } else {
                        "fresh"
                    }
                );
            }
            Err(e) => {
                let _ = write!(
                    rows,
                    "<tr><th scope=\"row\">{}</th><td colspan=\"5\" class=\"bad\">{}</td></tr>",
                    esc(country),
                    esc(e.message())
                );
            }
        }
    }
    Html(page(
        "/crls",
        "CRLs",
        &format!(
            "<div class=\"wide\"><table><caption>The latest CRL of each country with a CSCA</caption><thead><tr><th scope=\"col\">country</th>\
             <th scope=\"col\">number</th><th scope=\"col\">thisUpdate</th><th scope=\"col\">nextUpdate</th><th scope=\"col\">revoked</th>\
             <th scope=\"col\">freshness</th></tr></thead><tbody>{rows}</tbody></table></div>"
        ),
    ))
}

fn source_name(source: i32) -> &'static str {
    match pkd::Source::try_from(source) {
        Ok(pkd::Source::LocalEvent) => "own CSCA",
        Ok(pkd::Source::MasterList) => "imported master list",
        Ok(pkd::Source::ManualImport) => "manual import",
        Ok(pkd::Source::Ldif) => "LDIF",
        _ => "unknown",
    }
}

async fn trust_anchors(State(c): Shared) -> Html<String> {
    let anchors = match PkdServiceClient::new(c.channel(Service::Pkd))
        .list_trust_anchors(pkd::ListTrustAnchorsRequest::default())
        .await
    {
        Ok(r) => r.into_inner().anchors,
        Err(e) => {
            return Html(page(
                "/pkd",
                "PKD trust anchors",
                &unavailable("The PKD", &e),
            ));
        }
    };
    let mut by_country: BTreeMap<String, Vec<pkd::TrustCertificate>> = BTreeMap::new();
    for a in anchors {
        by_country.entry(a.country.clone()).or_default().push(a);
    }
    let mut rows = String::new();
    for (country, anchors) in &by_country {
        for a in anchors {
            let _ = write!(
                rows,
                "<tr><th scope=\"row\">{}</th><td>{}</td><td>{}</td><td class=\"mono\">{}</td><td>{}</td><td>{}</td></tr>",
                esc(country),
                esc(&a.kind),
                esc(&a.subject),
                esc(&a.serial_hex),
                source_name(a.source),
                if a.revoked {
                    "<span class=\"bad\">revoked</span>"
                } else {
                    "trusted"
                }
            );
        }
    }
    let count = by_country.values().map(Vec::len).sum::<usize>();
    Html(page(
        "/pkd",
        "PKD trust anchors",
        &format!(
            "<p>{count} trust anchors of {} countries.</p><div class=\"wide\"><table><caption>What the PKD trusts, and where it learnt it</caption>\
             <thead><tr><th scope=\"col\">country</th><th scope=\"col\">kind</th><th scope=\"col\">subject</th><th scope=\"col\">serial</th>\
             <th scope=\"col\">source</th><th scope=\"col\">state</th></tr></thead><tbody>{rows}</tbody></table></div>",
            by_country.len()
        ),
    ))
}

async fn passports(State(c): Shared) -> Html<String> {
    // Counts from the engine's /metrics: no personal data.
    let counts = match scrape::get(c.tls.as_ref(), c.api(Service::PassportEngine), "/metrics").await
    {
        Ok(m) => {
            let n = |method: &str, code: &str| {
                scrape::sum(
                    &m,
                    "marty_grpc_requests_total",
                    &[
                        &format!("method=\"marty.passport.v1.PassportEngine/{method}\""),
                        code,
                    ],
                )
                .unwrap_or(0.0)
            };
            format!(
                "<table><caption>Since the engine started</caption><tbody>\
                 <tr><th scope=\"row\">passports issued</th><td>{:.0}</td></tr>\
                 <tr><th scope=\"row\">verifications answered</th><td>{:.0}</td></tr>\
                 <tr><th scope=\"row\">calls refused or failed</th><td>{:.0}</td></tr></tbody></table>",
                n("IssuePassport", "code=\"OK\"") + n("ProcessPassport", "code=\"OK\""),
                n("VerifyPassport", "code=\"OK\""),
                scrape::sum_without(&m, "marty_grpc_requests_total", "code=\"OK\"").unwrap_or(0.0),
            )
        }
        Err(e) => format!(
            "<p class=\"bad\" role=\"alert\">The Passport Engine's metrics did not answer: {}</p>",
            esc(&e)
        ),
    };
    // The list carries holders' MRZ: only identities the policy lets list passports see it.
    let list = match PassportEngineClient::new(c.channel(Service::PassportEngine))
        .list_passports(passport::ListPassportsRequest {
            page_size: 50,
            page_token: String::new(),
        })
        .await
    {
        Ok(r) => {
            let mut rows = String::new();
            for p in r.into_inner().passports {
                let _ = write!(
                    rows,
                    "<tr><td class=\"mono\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(&p.document_number),
                    esc(&p.document_type),
                    esc(&p.issuing_state),
                    date(time_of(&p.issued_at)),
                    esc(&p.status)
                );
            }
            format!(
                "<div class=\"wide\"><table><caption>The 50 most recent passports</caption><thead><tr><th scope=\"col\">document</th>\
                 <th scope=\"col\">type</th><th scope=\"col\">state</th><th scope=\"col\">issued</th><th scope=\"col\">status</th></tr></thead>\
                 <tbody>{rows}</tbody></table></div>"
            )
        }
        Err(e) if e.code() == tonic::Code::PermissionDenied => "<p>The console's identity may not list passports (they carry holders' data): counts only.</p>".into(),
        Err(e) => unavailable("The Passport Engine", &e),
    };
    let verifications = recent_verifications(&c).await;
    let samples = c.history.of(Service::PassportEngine);
    let over_time = chart(
        "Passports issued and verified per minute, the last hour",
        &[
            ("issued", "issued", per_minute(&samples, |s| s.issued)),
            ("verified", "verified", per_minute(&samples, |s| s.verified)),
        ],
    );
    Html(page(
        "/passports",
        "Passports",
        &format!(
            "{counts}<h2>Over time</h2>{over_time}<h2>Recent verifications</h2>{verifications}<h2>Recent passports</h2>{list}"
        ),
    ))
}

/// How many verification reports the Passports page shows.
const RECENT_VERIFICATIONS: u32 = 20;

/// The engine's latest verification records with their checks (no holder data: the engine
/// leaves the MRZ out of this RPC).
async fn recent_verifications(c: &Console) -> String {
    let listed = PassportEngineClient::new(c.channel(Service::PassportEngine))
        .list_verifications(passport::ListVerificationsRequest {
            page_size: RECENT_VERIFICATIONS,
            page_token: String::new(),
        })
        .await;
    let records = match listed {
        Ok(r) => r.into_inner().verifications,
        Err(e) if e.code() == tonic::Code::PermissionDenied => {
            return "<p>The console's identity may not read verification records.</p>".into();
        }
        Err(e) => return unavailable("The Passport Engine", &e),
    };
    if records.is_empty() {
        return "<p>No verification recorded yet.</p>".into();
    }
    let mut rows = String::new();
    for v in &records {
        let class = match v.verdict.as_str() {
            "VALID" => "ok",
            "INVALID" => "bad",
            _ => "warn",
        };
        let checks: Vec<String> = v
            .checks
            .iter()
            .map(|c| {
                let class = match c.status.as_str() {
                    "passed" => "ok",
                    "failed" => "bad",
                    "warning" => "warn",
                    _ => "",
                };
                format!(
                    "<li><span class=\"{class}\">{}</span> {}: {}</li>",
                    esc(&c.status),
                    esc(&c.name),
                    esc(&c.detail)
                )
            })
            .collect();
        // The count of each status in the row; every check with its detail one click away.
        let mut tally: BTreeMap<&str, usize> = BTreeMap::new();
        for c in &v.checks {
            *tally.entry(c.status.as_str()).or_default() += 1;
        }
        let tally: Vec<String> = tally
            .iter()
            .map(|(status, n)| format!("{n} {}", esc(status)))
            .collect();
        let at = time_of(&v.requested_at);
        let _ = write!(
            rows,
            "<tr><td>{} {}</td><td class=\"{class}\">{}</td><td>{}</td><td><details><summary>{}</summary><ul class=\"checks\">{}</ul></details></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            date(at),
            at.map(clock).unwrap_or_default(),
            esc(&v.verdict),
            esc(&v.summary),
            tally.join(", "),
            checks.join(""),
            esc(&v.signer_subject),
            if v.issued_here {
                "issued here"
            } else {
                "foreign"
            },
            if v.requested_by.is_empty() {
                "–".to_owned()
            } else {
                esc(&v.requested_by)
            },
        );
    }
    format!(
        "<div class=\"wide\"><table><caption>The {RECENT_VERIFICATIONS} most recent verifications, newest first</caption><thead><tr>\
         <th scope=\"col\">when</th><th scope=\"col\">verdict</th><th scope=\"col\">summary</th><th scope=\"col\">checks</th>\
         <th scope=\"col\">Document Signer</th><th scope=\"col\">passport</th><th scope=\"col\">asked by</th></tr></thead>\
         <tbody>{rows}</tbody></table></div>"
    )
}

async fn isolation(State(c): Shared) -> Html<String> {
    let text = match std::fs::read_to_string(&c.isolation_file) {
        Ok(t) => t,
        Err(_) => {
            return Html(page(
                "/isolation",
                "Isolation",
                &format!(
                    "<p>No isolation proof has been published yet. Run <code>marty db verify --json-file {}</code> (from the CLI or a periodic job).</p>",
                    esc(&c.isolation_file.display().to_string())
                ),
            ));
        }
    };
    let Ok(report) = serde_json::from_str::<serde_json::Value>(&text) else {
        return Html(page(
            "/isolation",
            "Isolation",
            "<p class=\"bad\" role=\"alert\">The published report is not JSON.</p>",
        ));
    };
    let s = |v: &serde_json::Value| v.as_str().unwrap_or("").to_owned();
    let databases: Vec<String> = report["databases"]
        .as_array()
        .map(|a| a.iter().map(s).collect())
        .unwrap_or_default();
    let roles: Vec<String> = report["roles"]
        .as_array()
        .map(|a| a.iter().map(s).collect())
        .unwrap_or_default();
    let cells = report["cells"].as_array().cloned().unwrap_or_default();
    let mut head = String::from("<th scope=\"col\">role \\ database</th>");
    for d in &databases {
        let _ = write!(head, "<th scope=\"col\">{}</th>", esc(d));
    }
    let mut rows = String::new();
    for r in &roles {
        let _ = write!(rows, "<tr><th scope=\"row\">{}</th>", esc(r));
        for d in &databases {
            let cell = cells
                .iter()
                .find(|c| s(&c["role"]) == *r && s(&c["database"]) == *d);
            match cell {
                Some(c) => {
                    let ok = c["ok"].as_bool().unwrap_or(false);
                    let allowed: Vec<String> = c["actual"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|p| p[1]["outcome"] == "allowed")
                        .map(|p| s(&p[0]))
                        .collect();
                    let _ = write!(
                        rows,
                        "<td class=\"{}\">{} {}</td>",
                        if ok { "ok" } else { "bad" },
                        if ok { "as declared" } else { "DEVIATES" },
                        esc(&if allowed.is_empty() {
                            "(nothing allowed)".to_owned()
                        } else {
                            allowed.join(", ")
                        })
                    );
                }
                None => rows.push_str("<td>–</td>"),
            }
        }
        rows.push_str("</tr>");
    }
    let outcome = s(&report["outcome"]);
    let class = if outcome == "verified" { "ok" } else { "bad" };
    Html(page(
        "/isolation",
        "Isolation",
        &format!(
            "<p>Proof made <strong>{}</strong> by <code>marty db verify</code>: <span class=\"{class}\">{}</span>, {} deviations.</p>\
             <div class=\"wide\"><table><caption>What each role could do in each database, as the proof found it by acting as the role</caption>\
             <thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>",
            esc(&s(&report["finished_at"])),
            esc(&outcome),
            report["deviations"].as_u64().unwrap_or(0)
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::host_allowed;

    #[test]
    fn only_addresses_localhost_and_configured_names_are_answered() {
        let names = vec!["console.example.org".to_owned()];
        for ok in [
            "127.0.0.1:9090",
            "127.0.0.1",
            "10.1.2.3:80",
            "localhost:9090",
            "LOCALHOST",
            "[::1]:9090",
            "[::1]",
            "console.example.org",
            "Console.Example.Org.:443",
        ] {
            assert!(host_allowed(ok, &names), "{ok}");
        }
        for refused in [
            "",
            "rebind.example:9090",
            "localhost.evil.example",
            "127.0.0.1.evil.example",
            "[::1",
            "[::1]x",
            "[evil]:1",
            "127.0.0.1:99999",
            "example.org:port",
            ":9090",
            "console.example.org.evil",
        ] {
            assert!(!host_allowed(refused, &names), "{refused}");
        }
    }
}
