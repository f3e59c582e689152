//! Service-to-service security as an attacker meets it: real CSCA and Document Signer
//! services with mutual TLS, reached by independent clients (curl, Python grpcio with
//! reflection, the `marty` CLI). A client without a certificate, with one from another CA, or
//! speaking plaintext is refused in the handshake; identity comes from the certificate only,
//! so a spoofed header changes nothing; the per-RPC policy allows and denies as documented,
//! each refusal counted; the Document Signer obtains its certificate from the CSCA over mTLS
//! with its own identity; a renewed certificate is served without a restart.

use std::path::Path;
use std::time::{Duration, Instant};

use marty_testkit::tools::{curl_with, grpc_probe_with};
use marty_testkit::{TestNats, spawn_app};
use marty_tls::Identity;

use crate::harness::{MartyCli, TestDb, show, stderr};

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_owned()
}

/// The probe's environment for presenting `stem`'s certificate from `dir` (no certificate
/// when `stem` is None) to a service that must be `server`.
fn as_identity(dir: &Path, stem: Option<&str>, server: &str) -> Vec<(String, String)> {
    let mut env = vec![
        ("GRPC_PROBE_CA".to_owned(), s(&dir.join("ca.crt"))),
        ("GRPC_PROBE_SERVER_NAME".to_owned(), server.to_owned()),
    ];
    if let Some(stem) = stem {
        env.push((
            "GRPC_PROBE_CERT".to_owned(),
            s(&dir.join(format!("{stem}.crt"))),
        ));
        env.push((
            "GRPC_PROBE_KEY".to_owned(),
            s(&dir.join(format!("{stem}.key"))),
        ));
    }
    env
}

fn probe(env: &[(String, String)], args: &[&str]) -> (Option<i32>, serde_json::Value, String) {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    grpc_probe_with(&env, args)
}

/// The gRPC status code name a call ended with ("OK" on success).
fn code(result: &(Option<i32>, serde_json::Value, String)) -> String {
    match result.1["ok"].as_bool() {
        Some(true) => "OK".into(),
        _ => result.1["code"].as_str().unwrap_or("NO ANSWER").to_owned(),
    }
}

fn tls_curl(dir: &Path, stem: Option<&str>, url: &str) -> (u16, String) {
    let ca = s(&dir.join("ca.crt"));
    let (cert, key) = stem
        .map(|st| {
            (
                s(&dir.join(format!("{st}.crt"))),
                s(&dir.join(format!("{st}.key"))),
            )
        })
        .unzip();
    let mut options = vec!["--cacert", ca.as_str()];
    if let (Some(c), Some(k)) = (&cert, &key) {
        options.extend(["--cert", c.as_str(), "--key", k.as_str()]);
    }
    curl_with(&options, url)
}

/// The serial number of the certificate a TLS server presents (openssl s_client).
fn served_serial(dir: &Path, port: u16) -> String {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect 127.0.0.1:{port} -servername csca.marty -CAfile {ca} -cert {crt} -key {key} </dev/null 2>/dev/null | openssl x509 -noout -serial",
            ca = s(&dir.join("ca.crt")),
            crt = s(&dir.join("operator.crt")),
            key = s(&dir.join("operator.key")),
        ))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn file_serial(path: &Path) -> String {
    let out = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_refuses_strangers_and_the_policy_holds_per_rpc() {
    let db = TestDb::start().await;
    db.provision();
    let nats = TestNats::start();
    let certs = tempfile::tempdir().unwrap();
    let dir = certs.path();
    marty_tls::dev::ensure(dir, &marty_tls::dev::default_identities(), false).unwrap();
    let stranger_dir = tempfile::tempdir().unwrap();
    let stranger = stranger_dir.path();
    // Another CA issuing the very same identities.
    marty_tls::dev::ensure(stranger, &marty_tls::dev::default_identities(), false).unwrap();
    let dir_s = s(dir);
    let tls = [
        ("MARTY_TLS", "mutual"),
        ("MARTY_TLS_DIR", dir_s.as_str()),
        ("MARTY_TLS_RELOAD_SECS", "1"),
    ];
    let csca = spawn_app(&marty_csca::DESCRIPTOR, db.service_env(&nats, &tls))
        .await
        .unwrap();
    let csca_url = format!("https://127.0.0.1:{}", csca.grpc_port);
    let mut signer_env = tls.to_vec();
    signer_env.push(("MARTY_CSCA_URL", csca_url.as_str()));
    let signer = spawn_app(
        &marty_document_signer::DESCRIPTOR,
        db.service_env(&nats, &signer_env),
    )
    .await
    .unwrap();
    let csca_grpc = format!("127.0.0.1:{}", csca.grpc_port);
    let signer_grpc = format!("127.0.0.1:{}", signer.grpc_port);
    let csca_http = format!("https://127.0.0.1:{}", csca.http_port);

    // HTTP: a client with a certificate from the CA gets everything; one without reaches only
    // the probes (an orchestrator's kubelet presents none).
    let healthz = format!("{csca_http}/healthz");
    let metrics_url = format!("{csca_http}/metrics");
    assert_eq!(tls_curl(dir, Some("operator"), &healthz).0, 200);
    assert_eq!(tls_curl(dir, Some("verifier"), &metrics_url).0, 200);
    assert_eq!(tls_curl(dir, None, &healthz).0, 200, "the liveness probe");
    assert_eq!(tls_curl(dir, None, &format!("{csca_http}/readyz")).0, 200);
    let (status, body) = tls_curl(dir, None, &metrics_url);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("client certificate"), "{body}");
    assert_eq!(
        curl_with(
            &[
                "--cacert",
                &s(&dir.join("ca.crt")),
                "--cert",
                &s(&stranger.join("operator.crt")),
                "--key",
                &s(&stranger.join("operator.key")),
            ],
            &healthz
        )
        .0,
        0,
        "a certificate from another CA is refused in the handshake"
    );
    assert_eq!(
        curl_with(&[], &format!("http://127.0.0.1:{}/healthz", csca.http_port)).0,
        0,
        "plaintext"
    );

    // gRPC, through an independent reflection client: the same.
    let operator = as_identity(dir, Some("operator"), "csca.marty");
    let listed = probe(&operator, &["list", &csca_grpc]);
    assert_eq!(listed.0, Some(0), "{}", listed.2);
    assert!(
        listed.1["services"]
            .as_array()
            .unwrap()
            .contains(&"marty.csca.v1.CscaService".into()),
        "{}",
        listed.2
    );
    for (what, env) in [
        (
            "no client certificate",
            as_identity(dir, None, "csca.marty"),
        ),
        (
            "a certificate from another CA",
            vec![
                ("GRPC_PROBE_CA".to_owned(), s(&dir.join("ca.crt"))),
                ("GRPC_PROBE_SERVER_NAME".to_owned(), "csca.marty".to_owned()),
                (
                    "GRPC_PROBE_CERT".to_owned(),
                    s(&stranger.join("operator.crt")),
                ),
                (
                    "GRPC_PROBE_KEY".to_owned(),
                    s(&stranger.join("operator.key")),
                ),
            ],
        ),
        ("plaintext", Vec::new()),
    ] {
        let r = probe(&env, &["list", &csca_grpc]);
        assert_eq!(r.0, Some(2), "{what} must be refused: {}", r.2);
    }
    // The operator's CLI, misconfigured, says what is wrong instead of "transport error".
    let stranger_s = s(stranger);
    let plain_url = csca_url.replace("https://", "http://");
    for (what, url, env, expected) in [
        (
            "an https URL without TLS",
            &csca_url,
            vec![("MARTY_TLS", "off"), ("MARTY_TLS_DIR", dir_s.as_str())],
            "is https:// but this CLI's TLS is off",
        ),
        (
            "plaintext",
            &plain_url,
            vec![("MARTY_TLS", "off"), ("MARTY_TLS_DIR", dir_s.as_str())],
            "must use it too",
        ),
        (
            "another CA",
            &csca_url,
            vec![
                ("MARTY_TLS", "mutual"),
                ("MARTY_TLS_DIR", stranger_s.as_str()),
            ],
            "certificates of the same CA",
        ),
    ] {
        let out = db.marty_with(&["csca", "list", "--csca-url", url], &env);
        let said = show(&out);
        assert!(!out.status.success(), "{what}: {said}");
        assert!(said.contains(expected), "{what}: {said}");
    }
    // The client checks the server too: the CSCA is not the Document Signer, whatever
    // address was dialled.
    let wrong_server = probe(
        &as_identity(dir, Some("operator"), "document-signer.marty"),
        &["list", &csca_grpc],
    );
    assert_eq!(wrong_server.0, Some(2), "{}", wrong_server.2);

    // The policy, row by row, allowed and denied. "Allowed" means past the policy: the call
    // may still fail on its content (a junk CSR is INVALID_ARGUMENT).
    let junk_csr = r#"{"csrDer": "AAEC", "profile": "PROFILE_DOCUMENT_SIGNER", "country": "UT"}"#;
    let junk_mls =
        r#"{"csrDer": "AAEC", "profile": "PROFILE_MASTER_LIST_SIGNER", "country": "UT"}"#;
    let issue = "marty.csca.v1.CscaService/IssueCertificate";
    let create = "marty.csca.v1.CscaService/CreateCsca";
    let list = "marty.csca.v1.CscaService/ListCertificates";
    let at_csca = |stem: &str, method: &str, body: &str| {
        code(&probe(
            &as_identity(dir, Some(stem), "csca.marty"),
            &["call", &csca_grpc, method, body],
        ))
    };
    assert_eq!(
        at_csca("document_signer", issue, junk_csr),
        "INVALID_ARGUMENT"
    );
    assert_eq!(at_csca("pkd", issue, junk_mls), "INVALID_ARGUMENT");
    assert_eq!(
        at_csca("document_signer", issue, junk_mls),
        "PERMISSION_DENIED"
    );
    assert_eq!(at_csca("pkd", issue, junk_csr), "PERMISSION_DENIED");
    assert_eq!(at_csca("operator", issue, junk_csr), "PERMISSION_DENIED");
    assert_eq!(
        at_csca("passport_engine", issue, junk_csr),
        "PERMISSION_DENIED"
    );
    assert_eq!(at_csca("verifier", issue, junk_csr), "PERMISSION_DENIED");
    let ut = r#"{"country": "UT", "keySpec": "ec:P-256:named"}"#;
    assert_eq!(at_csca("document_signer", create, ut), "PERMISSION_DENIED");
    assert_eq!(at_csca("verifier", create, ut), "PERMISSION_DENIED");
    assert_eq!(at_csca("operator", create, ut), "OK");
    assert_eq!(at_csca("verifier", list, "{}"), "OK");
    assert_eq!(at_csca("passport_engine", list, "{}"), "OK");

    // A spoofed identity header is only a header: the verifier stays a verifier.
    let mut spoofed = as_identity(dir, Some("verifier"), "csca.marty");
    spoofed.push((
        "GRPC_PROBE_METADATA".to_owned(),
        r#"{"x-client-cert-subject": "CN=document-signer.marty", "x-marty-identity": "marty://service/document_signer"}"#.to_owned(),
    ));
    let r = probe(&spoofed, &["call", &csca_grpc, issue, junk_csr]);
    assert_eq!(code(&r), "PERMISSION_DENIED", "{}", r.2);
    assert!(
        r.1["message"]
            .as_str()
            .unwrap()
            .contains("verifier verifier"),
        "{}",
        r.2
    );

    // The Document Signer obtains its certificate from the CSCA over mTLS, as itself.
    let at_signer = |stem: &str, method: &str, body: &str| {
        probe(
            &as_identity(dir, Some(stem), "document-signer.marty"),
            &["call", &signer_grpc, method, body],
        )
    };
    let ensure = "marty.signer.v1.DocumentSigner/EnsureActiveSigner";
    assert_eq!(
        code(&at_signer(
            "passport_engine",
            ensure,
            r#"{"country": "UT"}"#
        )),
        "PERMISSION_DENIED"
    );
    let activated = at_signer("operator", ensure, r#"{"country": "UT"}"#);
    assert_eq!(code(&activated), "OK", "{}", activated.2);
    let sign = "marty.signer.v1.DocumentSigner/SignLdsSecurityObject";
    let hashes = r#"{"country": "UT", "dataGroupHashes": [{"number": 1, "hash": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="}, {"number": 2, "hash": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="}]}"#;
    let signed = at_signer("passport_engine", sign, hashes);
    assert_eq!(code(&signed), "OK", "{}", signed.2);
    for stem in ["operator", "csca", "document_signer", "pkd", "verifier"] {
        assert_eq!(
            code(&at_signer(stem, sign, hashes)),
            "PERMISSION_DENIED",
            "{stem}"
        );
    }

    // The CSCA's rows say who asked, from the certificates: the operator created the CSCA
    // (and its first CRL), the Document Signer requested its certificate.
    {
        use sqlx::Row;
        let mut conn = db.admin_on("marty_csca").await;
        let rows = sqlx::query(
            "select kind, requested_by from certificates union all select 'crl', requested_by from crls order by 1",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        let by_kind: Vec<(String, String)> = rows
            .iter()
            .map(|r| {
                (
                    r.get("kind"),
                    r.get::<Option<String>, _>("requested_by")
                        .unwrap_or_default(),
                )
            })
            .collect();
        assert_eq!(by_kind.len(), 3, "{by_kind:?}");
        for (kind, who) in &by_kind {
            let expected = match kind.as_str() {
                "document_signer" => "marty://service/document_signer (",
                _ => "marty://operator/operator (",
            };
            assert!(who.starts_with(expected), "{kind}: {who}");
        }
    }

    // Every refusal is counted by RPC and kind of caller.
    let (status, metrics) = tls_curl(dir, Some("operator"), &format!("{csca_http}/metrics"));
    assert_eq!(status, 200);
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("marty_authz_denied_total{")
                && l.contains("rpc=\"marty.csca.v1.CscaService/CreateCsca\"")
                && l.contains("caller=\"document_signer\"")),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("marty_authz_denied_total{")
                && l.contains("rpc=\"marty.csca.v1.CscaService/IssueCertificate\"")
                && l.contains("caller=\"pkd\"")),
        "the profile check (the PKD asking for a DSC) counts too: {metrics}"
    );
    assert!(
        metrics.contains("marty_tls_handshake_failures_total{"),
        "{metrics}"
    );

    // The CLI presents the operator's certificate; as the verifier it may read, not create.
    let cli = [
        ("MARTY_TLS", "mutual"),
        ("MARTY_TLS_DIR", dir_s.as_str()),
        ("MARTY_CSCA_URL", csca_url.as_str()),
    ];
    let out = db.marty_with(&["csca", "list", "--country", "UT", "--json"], &cli);
    assert!(out.status.success(), "{}", show(&out));
    let mut as_verifier = cli.to_vec();
    as_verifier.push(("MARTY_TLS_IDENTITY", "verifier"));
    let out = db.marty_with(&["csca", "create", "--country", "UT"], &as_verifier);
    assert!(!out.status.success(), "{}", show(&out));
    assert!(
        stderr(&out).contains("not open to verifier"),
        "{}",
        show(&out)
    );
    let mut plain = cli.to_vec();
    plain[0] = ("MARTY_TLS", "off");
    let out = db.marty_with(&["csca", "list"], &plain);
    assert!(
        !out.status.success(),
        "plaintext must not reach a TLS service: {}",
        show(&out)
    );

    // A renewed certificate is served without a restart.
    let before = served_serial(dir, csca.grpc_port);
    assert_eq!(before, file_serial(&dir.join("csca.crt")));
    std::fs::remove_file(dir.join("csca.crt")).unwrap();
    marty_tls::dev::ensure(
        dir,
        &[Identity::Service(marty_config::Service::Csca)],
        false,
    )
    .unwrap();
    let renewed = file_serial(&dir.join("csca.crt"));
    assert_ne!(renewed, before);
    let deadline = Instant::now() + Duration::from_secs(20);
    while served_serial(dir, csca.grpc_port) != renewed {
        assert!(
            Instant::now() < deadline,
            "the renewed certificate was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        code(&probe(&operator, &["call", &csca_grpc, list, "{}"])),
        "OK"
    );
    // Files swapped for another identity's are not taken up: the CSCA stays the CSCA.
    for ext in ["crt", "key"] {
        let tmp = dir.join(format!("swap.{ext}"));
        std::fs::copy(dir.join(format!("operator.{ext}")), &tmp).unwrap();
        std::fs::rename(&tmp, dir.join(format!("csca.{ext}"))).unwrap();
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(served_serial(dir, csca.grpc_port), renewed);

    // A service refuses to start with another identity's certificate.
    let wrong = tempfile::tempdir().unwrap();
    std::fs::copy(dir.join("ca.crt"), wrong.path().join("ca.crt")).unwrap();
    for ext in ["crt", "key"] {
        std::fs::copy(
            dir.join(format!("document_signer.{ext}")),
            wrong.path().join(format!("pkd.{ext}")),
        )
        .unwrap();
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        wrong.path().join("pkd.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let wrong_s = s(wrong.path());
    let err = spawn_app(
        &marty_pkd::DESCRIPTOR,
        db.service_env(
            &nats,
            &[("MARTY_TLS", "mutual"), ("MARTY_TLS_DIR", wrong_s.as_str())],
        ),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("carries marty://service/document_signer, not marty://service/pkd"),
        "{err}"
    );
    // ... and without its files, saying how to make them.
    let empty = tempfile::tempdir().unwrap();
    let empty_s = s(empty.path());
    let err = spawn_app(
        &marty_pkd::DESCRIPTOR,
        db.service_env(
            &nats,
            &[("MARTY_TLS", "mutual"), ("MARTY_TLS_DIR", empty_s.as_str())],
        ),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("marty dev certs"), "{err}");

    // The console over mutual TLS: it reads as the verifier (gRPC health, /readyz, /metrics,
    // the certificate list) and never as more.
    let console_port = marty_events::local::free_port().unwrap();
    let mut env: Vec<(String, String)> = [
        ("MARTY_TLS", dir_s.clone()),
        ("MARTY_TLS_DIR", dir_s.clone()),
        ("MARTY_CSCA_GRPC_PORT", csca.grpc_port.to_string()),
        ("MARTY_CSCA_HTTP_PORT", csca.http_port.to_string()),
        (
            "MARTY_DOCUMENT_SIGNER_GRPC_PORT",
            signer.grpc_port.to_string(),
        ),
        (
            "MARTY_DOCUMENT_SIGNER_HTTP_PORT",
            signer.http_port.to_string(),
        ),
        ("MARTY_CONSOLE_LISTEN", format!("127.0.0.1:{console_port}")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    env[0].1 = "mutual".into();
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("console.log");
    let mut console = crate::services::spawn_serve(&db, &env, "console", &log);
    let base = format!("http://127.0.0.1:{console_port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while marty_testkit::tools::curl(&format!("{base}/healthz")).0 != 200 {
        assert!(
            Instant::now() < deadline,
            "{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, overview) = marty_testkit::tools::curl(&format!("{base}/"));
    assert_eq!(status, 200);
    for service in ["csca", "document_signer"] {
        let row = overview
            .split("<tr>")
            .find(|r| r.contains(&format!(">{service}</th>")))
            .unwrap_or_else(|| panic!("{overview}"));
        assert!(row.contains(">up<") && row.contains(">ready<"), "{row}");
        assert!(
            row.contains(">20261"),
            "the migration version from /metrics: {row}"
        );
    }
    let (status, certificates) = marty_testkit::tools::curl(&format!("{base}/certificates"));
    assert_eq!(status, 200);
    assert!(certificates.contains(">UT</a></th>"), "{certificates}");
    let (status, country) = marty_testkit::tools::curl(&format!("{base}/certificates/UT"));
    assert_eq!(status, 200);
    assert!(country.contains("<td>CSCA</td>"), "{country}");
    let (_, metrics) = tls_curl(dir, Some("operator"), &format!("{csca_http}/metrics"));
    assert!(
        !metrics
            .lines()
            .any(|l| l.starts_with("marty_authz_denied_total{")
                && l.contains("caller=\"verifier\"")
                && (l.contains("ListCertificates") || l.contains("SummarizeCertificates"))),
        "the verifier may list and count certificates: {metrics}"
    );
    crate::services::terminate(&mut console);
    // `marty db status` reads a service's pool from its /metrics over mutual TLS too.
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let out = db.marty_with(&["db", "status", "--json"], &pairs);
    let rows: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", show(&out)));
    let csca_row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["service"] == "csca")
        .unwrap();
    assert!(csca_row["pool"]["max"].as_f64().is_some(), "{csca_row}");

    signer.stop().await.unwrap();
    csca.stop().await.unwrap();
}

/// The event bus as an attacker with a stolen service credential meets it: a user per
/// service, each limited to its own subjects. The PKD's credential cannot announce a CSCA
/// certificate, nor read another service's events; nobody gets in without a login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_users_publish_only_under_their_own_service() {
    use async_nats::jetstream;
    use marty_config::Service;
    let state = tempfile::tempdir().unwrap();
    let nats = marty_events::local::LocalNats::in_state_dir(state.path());
    let consumes: Vec<(Service, &[&str])> = [
        &marty_csca::DESCRIPTOR,
        &marty_document_signer::DESCRIPTOR,
        &marty_passport_engine::DESCRIPTOR,
        &marty_pkd::DESCRIPTOR,
    ]
    .iter()
    .map(|d| (d.service, d.consumes))
    .collect();
    let server = nats.start_authenticated(&consumes).unwrap();
    let passwords: std::collections::BTreeMap<String, String> =
        serde_json::from_slice(&std::fs::read(nats.users_file()).unwrap()).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(nats.users_file())
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let login = |user: &str| {
        let options = async_nats::ConnectOptions::new()
            .user_and_password(user.to_owned(), passwords[user].clone())
            .connection_timeout(Duration::from_secs(5));
        let options = match user {
            "operator" => options,
            id => options.custom_inbox_prefix(format!("_INBOX_{id}")),
        };
        let url = server.url.clone();
        async move { options.connect(url).await.unwrap() }
    };

    // No login, or a wrong password: refused.
    assert!(async_nats::connect(&server.url).await.is_err());
    assert!(
        async_nats::ConnectOptions::new()
            .user_and_password("csca".into(), "guess".into())
            .connect(&server.url)
            .await
            .is_err()
    );

    let operator = jetstream::new(login("operator").await);
    marty_events::relay::ensure_stream(
        &operator,
        &marty_events::RelayConfig::new(Service::Csca).stream,
    )
    .await
    .unwrap();
    let forged = marty_events::Envelope {
        id: uuid::Uuid::new_v4(),
        source: Service::Csca,
        event_type: "csca.certificate.issued".into(),
        key: "certificate:forged".into(),
        occurred_at: time::OffsetDateTime::now_utc(),
        schema_version: 1,
        payload: serde_json::json!({ "type": "csca", "der": "MAA=" }),
        headers: Default::default(),
    };
    let body = serde_json::to_vec(&forged).unwrap();

    // The PKD's credential cannot publish as the CSCA: the server refuses, nothing is stored.
    let pkd = jetstream::new(login("pkd").await);
    let attempt = tokio::time::timeout(Duration::from_secs(5), async {
        pkd.publish(forged.subject(), body.clone().into())
            .await?
            .await
    })
    .await;
    assert!(
        !matches!(attempt, Ok(Ok(_))),
        "the PKD's credential published on {}",
        forged.subject()
    );
    let mut stream = operator.get_stream("MARTY").await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 0);
    // ... nor reconfigure the stream (shrinking it, or narrowing its subjects, would silence
    // every other service), nor delete it.
    let mut narrowed = stream.info().await.unwrap().config.clone();
    narrowed.max_messages = 1;
    narrowed.subjects = vec!["marty.pkd.>".into()];
    assert!(pkd.update_stream(narrowed).await.is_err());
    assert!(pkd.delete_stream("MARTY").await.is_err());
    let config = stream.info().await.unwrap().config.clone();
    assert_eq!(config.subjects, vec!["marty.>".to_owned()]);
    assert_eq!(config.max_messages, -1);
    // A service finds the stream the operator made and uses it without changing it.
    marty_events::relay::ensure_stream(&pkd, &marty_events::RelayConfig::new(Service::Pkd).stream)
        .await
        .unwrap();
    // ... nor read the Passport Engine's events (a consumer of its subjects is refused).
    let snoop = pkd
        .create_consumer_on_stream(
            jetstream::consumer::pull::Config {
                durable_name: Some("pkd--snoop".into()),
                filter_subject: "marty.passport_engine.>".into(),
                ..Default::default()
            },
            "MARTY",
        )
        .await;
    assert!(
        snoop.is_err(),
        "the PKD made a consumer of the engine's events"
    );
    // Its own declared consumer works.
    pkd.create_consumer_on_stream(
        jetstream::consumer::pull::Config {
            durable_name: Some("pkd--marty_csca_all".into()),
            filter_subject: "marty.csca.>".into(),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ..Default::default()
        },
        "MARTY",
    )
    .await
    .unwrap();

    // The CSCA's own credential publishes its own events.
    let csca = jetstream::new(login("csca").await);
    csca.publish(forged.subject(), body.into())
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 1);
    nats.stop().unwrap();
}
