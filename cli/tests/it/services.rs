//! The services as operators meet them: real `marty serve` processes, the operator CLI over
//! gRPC, `curl`, `openssl`, and a scan of everything the processes logged for secrets.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use marty_config::Service;
use marty_testkit::tools::{curl, openssl_ok};
use sqlx::Row;

use crate::harness::{MartyCli, TestDb, TestNats, show, stderr, stdout};

/// Free loopback ports for the two services (gRPC, HTTP each).
fn ports() -> [u16; 4] {
    let mut v = [0; 4];
    for p in &mut v {
        *p = marty_events::local::free_port().unwrap();
    }
    v
}

struct Platform {
    db: TestDb,
    _nats: TestNats,
    env: Vec<(String, String)>,
    csca: Option<Child>,
    signer: Option<Child>,
    logs: tempfile::TempDir,
    csca_http: u16,
    signer_http: u16,
}

pub(crate) fn spawn_serve(
    db: &TestDb,
    env: &[(String, String)],
    service: &str,
    log: &Path,
) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_marty"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in db.env().into_iter().chain(env.iter().cloned()) {
        cmd.env(k, v);
    }
    cmd.args(["serve", service])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

pub(crate) fn wait_ready(http: u16, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if curl(&format!("http://127.0.0.1:{http}/readyz")).0 == 200 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} never became ready:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// SIGTERM, then the exit status.
pub(crate) fn terminate(child: &mut Child) -> std::process::ExitStatus {
    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            child.kill().ok();
            panic!("did not stop after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Platform {
    async fn start() -> Self {
        let db = TestDb::start().await;
        db.provision();
        let nats = TestNats::start();
        let [cg, ch, sg, sh] = ports();
        let env: Vec<(String, String)> = [
            ("MARTY_NATS_URL", nats.url.clone()),
            ("MARTY_CSCA_GRPC_PORT", cg.to_string()),
            ("MARTY_CSCA_HTTP_PORT", ch.to_string()),
            ("MARTY_DOCUMENT_SIGNER_GRPC_PORT", sg.to_string()),
            ("MARTY_DOCUMENT_SIGNER_HTTP_PORT", sh.to_string()),
            // Everything a process would say, so that the scan below sees it all.
            ("RUST_LOG", "debug".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let logs = tempfile::tempdir().unwrap();
        let csca = spawn_serve(&db, &env, "csca", &logs.path().join("csca.log"));
        let signer = spawn_serve(
            &db,
            &env,
            "document-signer",
            &logs.path().join("signer.log"),
        );
        wait_ready(ch, "csca", &logs.path().join("csca.log"));
        wait_ready(sh, "document_signer", &logs.path().join("signer.log"));
        Platform {
            db,
            _nats: nats,
            env,
            csca: Some(csca),
            signer: Some(signer),
            logs,
            csca_http: ch,
            signer_http: sh,
        }
    }

    /// `marty args…` in `dir` with the platform's environment; (exit code, stdout, output).
    fn marty(&self, dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_marty"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default());
        for (k, v) in self.db.env().into_iter().chain(self.env.iter().cloned()) {
            if k != "RUST_LOG" {
                cmd.env(k, v);
            }
        }
        let out = cmd.current_dir(dir).args(args).output().unwrap();
        (out.status.code(), stdout(&out), show(&out))
    }

    fn json(&self, dir: &Path, args: &[&str]) -> serde_json::Value {
        let (code, out, shown) = self.marty(dir, args);
        assert_eq!(code, Some(0), "marty {args:?}:\n{shown}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("marty {args:?}: {e}\n{shown}"))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn operators_run_csca_and_signer_from_the_cli() {
    let mut p = Platform::start().await;
    let work = tempfile::tempdir().unwrap();
    let d = work.path();

    // The CSCA and the first CRL.
    let created = p.json(
        d,
        &[
            "csca",
            "create",
            "--country",
            "UT",
            "--key",
            "ec:P-256:named",
            "--out",
            "csca.der",
            "--json",
        ],
    );
    assert_eq!(created["certificate"]["type"], "csca");
    assert_eq!(created["crl"]["crl_number"], "1");
    assert_eq!(created["certificate"]["file"], "csca.der");
    let (code, out, shown) = p.marty(d, &["csca", "create", "--country", "UT", "--json"]);
    assert_eq!(code, Some(1), "{shown}");
    assert!(
        out.contains("\"kind\": \"already_exists\"") || out.contains("\"kind\":\"already_exists\""),
        "{shown}"
    );
    let (code, _, shown) = p.marty(d, &["csca", "create", "--country", "utopia"]);
    assert_eq!(
        code,
        Some(3),
        "an argument the service refuses is a usage error: {shown}"
    );
    let (code, _, shown) = p.marty(d, &["csca", "list", "--csca-url", "not a url"]);
    assert_eq!(
        code,
        Some(3),
        "a malformed address is a usage error: {shown}"
    );

    // A signer, idempotently.
    let activated = p.json(
        d,
        &["signer", "activate", "--key", "ec:P-256:named", "--json"],
    );
    assert_eq!(activated["outcome"], "activated");
    let again = p.json(d, &["signer", "activate", "--json"]);
    assert_eq!(again["outcome"], "already active");
    assert_eq!(
        again["signer"]["serial_hex"],
        activated["signer"]["serial_hex"]
    );
    let status = p.json(d, &["signer", "status", "--out", "dsc.der", "--json"]);
    let dsc_serial = status["serial_hex"].as_str().unwrap().to_owned();
    openssl_ok(
        d,
        &[
            "x509", "-inform", "DER", "-in", "csca.der", "-out", "csca.pem",
        ],
    );
    openssl_ok(
        d,
        &[
            "x509", "-inform", "DER", "-in", "dsc.der", "-out", "dsc.pem",
        ],
    );
    assert!(openssl_ok(d, &["verify", "-CAfile", "csca.pem", "dsc.pem"]).contains("OK"));

    // An EF.SOD over real data groups, verified by OpenSSL and by `marty icao pa`.
    std::fs::create_dir_all(d.join("doc")).unwrap();
    let face = marty_testkit::tools::repo().join("samples/face.jpg");
    assert_eq!(
        p.marty(
            d,
            &[
                "icao",
                "mrz",
                "make",
                "--issuing-state",
                "UTO",
                "--document-number",
                "L898902C3",
                "--primary",
                "ERIKSSON",
                "--secondary",
                "ANNA MARIA",
                "--nationality",
                "UTO",
                "--birth",
                "740812",
                "--sex",
                "F",
                "--expiry",
                "340415",
                "--dg1",
                "doc/DG1.bin"
            ]
        )
        .0,
        Some(0)
    );
    assert_eq!(
        p.marty(
            d,
            &[
                "icao",
                "lds",
                "dg2",
                "--image",
                face.to_str().unwrap(),
                "--out",
                "doc/DG2.bin"
            ]
        )
        .0,
        Some(0)
    );
    let signed = p.json(
        d,
        &[
            "signer",
            "sign-lds",
            "--dg",
            "doc/DG1.bin",
            "--dg",
            "doc/DG2.bin",
            "--lds-version",
            "0108",
            "--document-reference",
            "L898902C3",
            "--out",
            "doc/EF_SOD.bin",
            "--json",
        ],
    );
    assert_eq!(signed["signer_serial_hex"], dsc_serial);
    let (code, _, shown) = p.marty(
        d,
        &[
            "signer",
            "sign-lds",
            "--dg",
            "doc/DG1.bin",
            "--dg",
            "doc/DG2.bin",
            "--out",
            "doc/EF_SOD.bin",
        ],
    );
    assert_eq!(code, Some(3), "no overwrite without --force: {shown}");
    let sod = std::fs::read(d.join("doc/EF_SOD.bin")).unwrap();
    std::fs::write(
        d.join("sod.cms"),
        marty_icao::der::parse(&sod).unwrap().value,
    )
    .unwrap();
    let out = openssl_ok(
        d,
        &[
            "cms",
            "-verify",
            "-inform",
            "DER",
            "-in",
            "sod.cms",
            "-CAfile",
            "csca.pem",
            "-purpose",
            "any",
            "-out",
            "/dev/null",
        ],
    );
    assert!(out.contains("Verification successful"), "{out}");
    std::fs::create_dir_all(d.join("trust")).unwrap();
    std::fs::copy(d.join("csca.der"), d.join("trust/csca.der")).unwrap();
    let (code, _, shown) = p.marty(d, &["icao", "pa", "doc", "--trust", "trust"]);
    assert_eq!(code, Some(0), "{shown}");

    // Listing with files; the names come from what the CLI parsed, never from the wire.
    let listed = p.json(d, &["csca", "list", "--out-dir", "certs", "--json"]);
    let files: Vec<String> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["file"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(files.len(), 2, "{listed}");
    for f in &files {
        let name = Path::new(f).file_name().unwrap().to_str().unwrap();
        assert!(
            name.starts_with("csca-") || name.starts_with("dsc-"),
            "{name}"
        );
        assert!(
            name.trim_end_matches(".der")
                .split('-')
                .nth(1)
                .unwrap()
                .chars()
                .all(|c| c.is_ascii_hexdigit())
        );
        marty_icao::cert::Certificate::from_der(&std::fs::read(d.join(f)).unwrap()).unwrap();
    }
    let only_dsc = p.json(d, &["csca", "list", "--type", "dsc", "--json"]);
    assert_eq!(only_dsc.as_array().unwrap().len(), 1);

    // Revocation, the CRL, the status.
    let revoked = p.json(
        d,
        &[
            "csca",
            "revoke",
            &dsc_serial,
            "--reason",
            "keyCompromise",
            "--json",
        ],
    );
    assert_eq!(revoked["certificate"]["status"], "REVOKED");
    assert_eq!(revoked["certificate"]["revocation_reason"], "keyCompromise");
    assert_eq!(
        revoked["crl"]["revoked_serials_hex"][0],
        dsc_serial.as_str()
    );
    let (code, _, shown) = p.marty(
        d,
        &["csca", "revoke", &dsc_serial, "--reason", "certificateHold"],
    );
    assert_eq!(code, Some(3), "{shown}");
    let crl = p.json(d, &["csca", "crl", "--out", "crl.der", "--json"]);
    assert_eq!(crl["crl_number"], "2");
    let text = openssl_ok(
        d,
        &[
            "crl", "-inform", "DER", "-in", "crl.der", "-CAfile", "csca.pem", "-noout", "-text",
        ],
    );
    assert!(
        text.contains("verify OK") && text.contains(&dsc_serial.to_uppercase()),
        "{text}"
    );
    let (code, out, _) = p.marty(d, &["csca", "status", &dsc_serial, "--json"]);
    assert_eq!(code, Some(1), "a revoked certificate's status exits 1");
    assert!(out.contains("REVOKED"));

    // The Document Signer learnt of the revocation from the CSCA's event and replaced its
    // signer.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, out, _) = p.marty(d, &["signer", "status", "--json"]);
        if code == Some(0) && !out.contains(&dsc_serial) {
            break;
        }
        assert!(Instant::now() < deadline, "no replacement signer: {out}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let expiring = p.json(d, &["csca", "expiring", "--days", "5000", "--json"]);
    let kinds: Vec<&str> = expiring
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["dsc", "csca"],
        "the replacement DSC and the CSCA; the revoked DSC is not listed: {expiring}"
    );
    let rotated = p.json(d, &["signer", "rotate", "--json"]);
    assert_eq!(rotated["state"], "active");
    let rolled = p.json(d, &["csca", "rollover", "--country", "UT", "--json"]);
    assert_eq!(rolled["link"]["type"], "link");
    let audit = p.json(d, &["signer", "audit", "--json"]);
    assert_eq!(audit.as_array().unwrap().len(), 1);
    assert_eq!(audit[0]["document_reference"], "L898902C3");

    // A service that is not there.
    let (code, _, shown) = p.marty(d, &["csca", "list", "--csca-url", "http://127.0.0.1:9"]);
    assert_eq!(code, Some(1), "{shown}");
    assert!(
        shown.contains("is it running?") && shown.contains("marty serve csca"),
        "{shown}"
    );

    // Metrics of real traffic.
    let (_, metrics) = curl(&format!("http://127.0.0.1:{}/metrics", p.csca_http));
    assert!(metrics.contains(r#"marty_grpc_requests_total{service="csca",method="marty.csca.v1.CscaService/IssueCertificate",code="OK"} 3"#), "{metrics}");
    let (_, metrics) = curl(&format!("http://127.0.0.1:{}/metrics", p.signer_http));
    assert!(
        metrics.contains(
            r#"method="marty.signer.v1.DocumentSigner/SignLdsSecurityObject",code="OK"} 1"#
        ),
        "{metrics}"
    );

    // SIGTERM: both stop cleanly.
    assert!(terminate(p.csca.as_mut().unwrap()).success());
    assert!(terminate(p.signer.as_mut().unwrap()).success());
    p.csca = None;
    p.signer = None;

    // Everything they logged, at debug level, holds no secret.
    let mut logs = String::new();
    for f in ["csca.log", "signer.log"] {
        logs.push_str(&std::fs::read_to_string(p.logs.path().join(f)).unwrap());
    }
    assert!(
        logs.contains("ready to serve") && logs.contains("DEBUG"),
        "the logs are real: {}",
        &logs[..logs.len().min(2000)]
    );
    let config = p.db.config();
    let mut secrets: Vec<(String, String)> = Vec::new();
    for s in Service::ALL {
        for r in marty_config::Role::ALL {
            if let Ok(pw) = config.database(s).password(r) {
                secrets.push((
                    format!("{s} {r} password"),
                    marty_config::expose(pw).to_owned(),
                ));
            }
        }
        let kek = config.kek(s).unwrap();
        let bytes = kek.current.bytes();
        secrets.push((format!("{s} KEK (hex)"), marty_icao::hex::encode(bytes)));
        secrets.push((
            format!("{s} KEK (base64)"),
            openssl::base64::encode_block(bytes),
        ));
    }
    if let Some(pw) = &config.admin().password {
        secrets.push(("admin password".into(), marty_config::expose(pw).to_owned()));
    }
    for (service, table, database) in [
        (Service::Csca, "csca_keys", "marty_csca"),
        (
            Service::DocumentSigner,
            "signer_keys",
            "marty_document_signer",
        ),
    ] {
        let store =
            marty_keys::EnvelopeKeyStore::from_config(service, &config.kek(service).unwrap());
        let mut conn = p.db.admin_on(database).await;
        let rows = sqlx::query(&format!(
            "select {} from {table}",
            marty_keys::table::SEALED_COLUMNS
        ))
        .fetch_all(&mut conn)
        .await
        .unwrap();
        assert!(!rows.is_empty());
        for row in rows {
            let sealed = marty_keys::SealedKey::from_row(&row).unwrap();
            let pair = marty_keys::KeyStore::open(&store, &sealed).unwrap();
            let private = pair.private.software().unwrap();
            let secret = private.ec_key().unwrap().private_key().to_vec();
            let pkcs8 = private.private_key_to_pkcs8().unwrap();
            secrets.push((
                format!("{table} key (hex)"),
                marty_icao::hex::encode(&secret),
            ));
            secrets.push((
                format!("{table} key (HEX)"),
                marty_icao::hex::encode_upper(&secret),
            ));
            secrets.push((
                format!("{table} PKCS#8 (base64)"),
                openssl::base64::encode_block(&pkcs8)[..40].to_owned(),
            ));
            let _ = row.len();
        }
    }
    assert!(secrets.len() > 20);
    for (what, value) in &secrets {
        assert!(value.len() >= 16, "{what}");
        assert!(
            !logs.contains(value.as_str()),
            "the logs contain the {what}"
        );
    }
    for marker in ["PRIVATE KEY", "password=", "PASSWORD"] {
        assert!(!logs.contains(marker), "the logs contain {marker:?}");
    }
}

/// `marty serve` refuses a database that is not its own; `marty serve all` stops every
/// service when one cannot run.
#[tokio::test(flavor = "multi_thread")]
async fn serve_refuses_another_services_database_and_all_stop_together() {
    let db = TestDb::start().await;
    db.provision();
    let nats = TestNats::start();
    let foreign = format!("postgres://127.0.0.1:{}/marty_document_signer", db.port);
    let out = db.marty_with(
        &["serve", "csca"],
        &[
            ("MARTY_NATS_URL", &nats.url),
            ("MARTY_CSCA_GRPC_PORT", "0"),
            ("MARTY_CSCA_HTTP_PORT", "0"),
            ("CSCA_DATABASE_URL", &foreign),
        ],
    );
    // A misplaced database is the configuration's fault: exit 3.
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    assert!(
        stderr(&out).contains("refusing to start csca")
            && stderr(&out).contains("may not connect to database marty_document_signer"),
        "{}",
        show(&out)
    );
    // An unreachable server is the environment's: exit 1.
    let nobody = marty_events::local::free_port().unwrap();
    let unreachable = format!("postgres://127.0.0.1:{nobody}/marty_csca");
    let out = db.marty_with(
        &["serve", "csca"],
        &[
            ("MARTY_NATS_URL", &nats.url),
            ("MARTY_CSCA_GRPC_PORT", "0"),
            ("MARTY_CSCA_HTTP_PORT", "0"),
            ("CSCA_DATABASE_URL", &unreachable),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(stderr(&out).contains("cannot connect"), "{}", show(&out));
    // All four, one misplaced: the others start, then all stop; nothing is left listening.
    let [a, b, c, e] = ports();
    let [f, g, h, i] = ports();
    let mut env: Vec<(&str, String)> = vec![
        ("MARTY_NATS_URL", nats.url.clone()),
        ("MARTY_CSCA_GRPC_PORT", a.to_string()),
        ("MARTY_CSCA_HTTP_PORT", b.to_string()),
        ("MARTY_DOCUMENT_SIGNER_GRPC_PORT", c.to_string()),
        ("MARTY_DOCUMENT_SIGNER_HTTP_PORT", e.to_string()),
        ("MARTY_PASSPORT_ENGINE_GRPC_PORT", f.to_string()),
        ("MARTY_PASSPORT_ENGINE_HTTP_PORT", g.to_string()),
        ("MARTY_PKD_GRPC_PORT", h.to_string()),
        ("MARTY_PKD_HTTP_PORT", i.to_string()),
    ];
    env.push((
        "PKD_SERVICE_DATABASE_URL",
        format!("postgres://127.0.0.1:{}/marty_csca", db.port),
    ));
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let started = Instant::now();
    let out = db.marty_with(&["serve", "all"], &pairs);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stderr(&out).contains("pkd exited") && stderr(&out).contains("stopping the other services"),
        "{}",
        show(&out)
    );
    assert!(started.elapsed() < Duration::from_secs(60));
    for port in [a, b, c, e, f, g, h, i] {
        assert!(
            std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "port {port} still taken"
        );
    }
}
