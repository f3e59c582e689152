//! The PKD's downloads: `GET /v1/pkd/masterlist` (the latest master list it published, CMS
//! DER), `/v1/pkd/dsclist` (every Document Signer certificate it knows, PEM) and
//! `/v1/pkd/crl/{country}` (the latest CRL of the country, DER; a country with several CSCA
//! keys has one per key, so `?aki=<hex>` picks one). Each carries a strong ETag (a digest of
//! the body) and answers `If-None-Match` with 304.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use marty_icao::algo::DigestAlgorithm;

use crate::error::PkdError;
use crate::service::Pkd;

pub fn router(pkd: Arc<Pkd>) -> Router {
    Router::new()
        .route("/v1/pkd/masterlist", get(masterlist))
        .route("/v1/pkd/dsclist", get(dsclist))
        .route("/v1/pkd/crl/{country}", get(crl))
        .with_state(pkd)
}

fn error(e: PkdError) -> Response {
    let (status, message) = match e {
        PkdError::InvalidArgument(m) => (StatusCode::BAD_REQUEST, m),
        PkdError::NotFound(m) => (StatusCode::NOT_FOUND, m),
        PkdError::AlreadyExists(m) | PkdError::FailedPrecondition(m) => (StatusCode::CONFLICT, m),
        PkdError::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, m),
        PkdError::Internal(e) => {
            let _span = tracing::error_span!("http", service = %crate::SERVICE).entered();
            let s = marty_runtime::internal_status(&e);
            (StatusCode::INTERNAL_SERVER_ERROR, s.message().to_owned())
        }
    };
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{message}\n"),
    )
        .into_response()
}

/// The body with its ETag, or 304 when the client has it.
fn download(
    headers: &HeaderMap,
    body: Vec<u8>,
    content_type: &'static str,
    file: &str,
) -> Response {
    let etag = format!(
        "\"{}\"",
        marty_icao::hex::encode(&DigestAlgorithm::Sha256.digest(&body)[..16])
    );
    let matches = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == etag || t == "*");
    let etag_value = HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"\""));
    if matches {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag_value)]).into_response();
    }
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{file}\""))
        .unwrap_or(HeaderValue::from_static("attachment"));
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::ETAG, etag_value),
            (header::CONTENT_DISPOSITION, disposition),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

/// The latest published master list; `?country=CC` the latest of that issuing State.
async fn masterlist(State(pkd): State<Arc<Pkd>>, uri: Uri, headers: HeaderMap) -> Response {
    let country = uri.query().and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("country="))
            .map(|c| c.trim().to_ascii_uppercase())
    });
    if let Some(c) = &country
        && !marty_icao::country::is_alpha2(c)
    {
        return error(PkdError::InvalidArgument(
            "country: an ISO 3166-1 alpha-2 code, e.g. ?country=DE".into(),
        ));
    }
    match pkd.latest_published(country.as_deref()).await {
        Ok(Some((der, _))) => download(&headers, der, "application/pkcs7-mime", "masterlist.ml"),
        Ok(None) => error(PkdError::NotFound(
            "no master list has been published yet: run `marty pkd export-ml`".into(),
        )),
        Err(e) => error(e),
    }
}

async fn dsclist(State(pkd): State<Arc<Pkd>>, headers: HeaderMap) -> Response {
    match pkd.document_signers().await {
        Ok(certs) => {
            let pem: Vec<u8> = certs
                .iter()
                .flat_map(|c| marty_icao::inputs::encode_pem("CERTIFICATE", &c.der))
                .collect();
            download(&headers, pem, "application/x-pem-file", "dsclist.pem")
        }
        Err(e) => error(e),
    }
}

async fn crl(
    State(pkd): State<Arc<Pkd>>,
    Path(country): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let country = country.to_ascii_uppercase();
    if !marty_icao::country::is_alpha2(&country) {
        return error(PkdError::InvalidArgument(
            "the country is an ISO 3166-1 alpha-2 code, e.g. /v1/pkd/crl/DE".into(),
        ));
    }
    let crls = match pkd.latest_crls(&country).await {
        Ok(c) => c,
        Err(e) => return error(e),
    };
    let aki = uri.query().and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("aki="))
            .map(|a| a.trim().to_ascii_lowercase())
    });
    let chosen = match aki {
        Some(aki) => crls
            .into_iter()
            .find(|c| marty_icao::hex::encode(&c.aki) == aki),
        None => crls.into_iter().max_by_key(|c| c.this_update),
    };
    match chosen {
        Some(c) => download(
            &headers,
            c.der,
            "application/pkix-crl",
            &format!("{country}.crl"),
        ),
        None => error(PkdError::NotFound(format!("no CRL of {country} is stored"))),
    }
}
