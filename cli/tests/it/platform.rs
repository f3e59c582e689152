//! The four services as real `marty serve` processes on one private PostgreSQL and NATS: the
//! PKD's download import and published master list checked by independent verifiers, and
//! the failures an operator meets — the engine killed in the middle of issuing, the PKD and
//! NATS restarted while the CSCA keeps publishing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use marty_proto::passport::v1 as pb;
use marty_testkit::tools::{openssl_ok, oracle, repo, show};
use sqlx::Row;

use crate::harness::{MartyCli, TestDb, TestNats, stdout};
use crate::services::{spawn_serve, terminate, wait_ready};

const SERVICES: [(&str, &str, &str); 4] = [
    ("csca", "csca", "CSCA"),
    ("document-signer", "document_signer", "DOCUMENT_SIGNER"),
    ("pkd", "pkd", "PKD"),
    ("passport-engine", "passport_engine", "PASSPORT_ENGINE"),
];

struct Four {
    db: TestDb,
    nats: TestNats,
    env: Vec<(String, String)>,
    children: BTreeMap<&'static str, Child>,
    http: BTreeMap<&'static str, u16>,
    grpc: BTreeMap<&'static str, u16>,
    logs: tempfile::TempDir,
}

impl Four {
    /// The four services on free ports; NATS private, so that it can be restarted.
    async fn start() -> Self {
        Self::start_with(Vec::new()).await
    }

    /// As [`Four::start`], with more environment for every process.
    async fn start_with(extra: Vec<(String, String)>) -> Self {
        let db = TestDb::start().await;
        db.provision();
        let nats = TestNats::private();
        let mut four = Four {
            db,
            nats,
            env: Vec::new(),
            children: BTreeMap::new(),
            http: BTreeMap::new(),
            grpc: BTreeMap::new(),
            logs: tempfile::tempdir().unwrap(),
        };
        // A port found free can be taken before the service binds it (tests run in parallel,
        // and every outgoing connection takes a port of the same range): then all four start
        // again on other ports.
        for attempt in 1..=3 {
            four.env = vec![("MARTY_NATS_URL".to_owned(), four.nats.url.clone())];
            four.env.extend(extra.iter().cloned());
            for (name, _, prefix) in SERVICES {
                let g = marty_events::local::free_port().unwrap();
                let h = marty_events::local::free_port().unwrap();
                four.env
                    .push((format!("MARTY_{prefix}_GRPC_PORT"), g.to_string()));
                four.env
                    .push((format!("MARTY_{prefix}_HTTP_PORT"), h.to_string()));
                four.grpc.insert(name, g);
                four.http.insert(name, h);
            }
            for (name, _, _) in SERVICES {
                four.spawn(name);
            }
            if four.all_ready() || attempt == 3 {
                break;
            }
            for (_, mut child) in std::mem::take(&mut four.children) {
                child.kill().ok();
                child.wait().ok();
            }
        }
        for (name, _, _) in SERVICES {
            four.ready(name);
        }
        four
    }

    /// Whether all four become ready; false as soon as one could not take its port.
    fn all_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(30);
        for (name, _, _) in SERVICES {
            loop {
                if marty_testkit::tools::curl(&self.http_url(name, "/readyz")).0 == 200 {
                    break;
                }
                let exited = self
                    .children
                    .get_mut(name)
                    .is_some_and(|c| c.try_wait().ok().flatten().is_some());
                if exited || Instant::now() > deadline {
                    let log = std::fs::read_to_string(self.log(name)).unwrap_or_default();
                    if log.contains("Address already in use") {
                        return false;
                    }
                    // Anything else is reported by `ready` below.
                    return true;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        true
    }

    fn log(&self, name: &str) -> PathBuf {
        self.logs.path().join(format!("{name}.log"))
    }

    /// The end of each service's log, for a failure's message.
    fn log_tails(&self) -> String {
        let mut out = String::new();
        for (name, _, _) in SERVICES {
            let text = std::fs::read_to_string(self.log(name)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out.push_str(&format!("--- {name} log (end)\n"));
            for l in &lines[lines.len().saturating_sub(15)..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    fn spawn(&mut self, name: &'static str) {
        // Each start appends to the log of the last one.
        let log = self.log(name);
        let previous = std::fs::read(&log).unwrap_or_default();
        let child = spawn_serve(&self.db, &self.env, name, &log);
        if !previous.is_empty() {
            std::fs::write(self.log(&format!("{name}.before")), previous).unwrap();
        }
        self.children.insert(name, child);
    }

    fn ready(&self, name: &str) {
        wait_ready(self.http[name], name, &self.log(name));
    }

    fn kill9(&mut self, name: &str) {
        let mut child = self.children.remove(name).unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    fn http_url(&self, name: &str, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http[name])
    }

    fn grpc_url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}", self.grpc[name])
    }

    /// `marty args…` in `dir` with the platform's environment: (exit code, stdout, all).
    fn marty(&self, dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
        let extra: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let out = Command::new(env!("CARGO_BIN_EXE_marty"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.db.env())
            .envs(extra)
            .current_dir(dir)
            .args(args)
            .output()
            .unwrap();
        (out.status.code(), stdout(&out), show(&out))
    }

    fn json(&self, dir: &Path, args: &[&str]) -> serde_json::Value {
        let (code, out, shown) = self.marty(dir, args);
        assert_eq!(
            code,
            Some(0),
            "marty {args:?}:\n{shown}\n{}",
            self.log_tails()
        );
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("marty {args:?}: {e}\n{shown}"))
    }

    /// Waits until `marty args…` exits 0.
    fn until_ok(&self, dir: &Path, args: &[&str], what: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (code, _, shown) = self.marty(dir, args);
            if code == Some(0) {
                return;
            }
            assert!(Instant::now() < deadline, "{what} never happened:\n{shown}");
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// A CSCA for UT and an active signer, known to the PKD.
    fn country(&self, d: &Path) {
        self.json(
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
        self.json(
            d,
            &["signer", "activate", "--key", "ec:P-256:named", "--json"],
        );
        self.until_ok(
            d,
            &["pkd", "list", "--country", "UT"],
            "the PKD learning UT's CSCA",
        );
    }

    async fn query_one(&self, database: &str, sql: &str) -> sqlx::postgres::PgRow {
        let mut conn = self.db.admin_on(database).await;
        sqlx::query(sql).fetch_one(&mut conn).await.unwrap()
    }

    async fn uuids(&self, database: &str, sql: &str) -> BTreeSet<uuid::Uuid> {
        let mut conn = self.db.admin_on(database).await;
        sqlx::query_scalar(sql)
            .fetch_all(&mut conn)
            .await
            .unwrap()
            .into_iter()
            .collect()
    }

    fn stop_all(mut self) {
        self.stop_children();
    }

    fn stop_children(&mut self) {
        for (name, mut child) in std::mem::take(&mut self.children) {
            assert!(
                terminate(&mut child).success(),
                "{name} did not stop cleanly"
            );
        }
    }
}

fn vectors(path: &str) -> String {
    repo()
        .join("../shared/vectors")
        .join(path)
        .to_string_lossy()
        .into_owned()
}

impl Drop for Four {
    /// A failed test leaves no service behind.
    fn drop(&mut self) {
        for (_, mut child) in std::mem::take(&mut self.children) {
            child.kill().ok();
            child.wait().ok();
        }
    }
}

/// `curl -s -D -` a URL with extra arguments: (status, lower-case headers, body).
fn curl_full(url: &str, extra: &[&str], body: &Path) -> (u16, String, Vec<u8>) {
    let out = Command::new("curl")
        .args(["-s", "-m", "10", "-D", "-", "-o"])
        .arg(body)
        .args(extra)
        .arg(url)
        .output()
        .unwrap();
    let headers = String::from_utf8_lossy(&out.stdout).to_lowercase();
    let status = headers
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, headers, std::fs::read(body).unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pkd_imports_a_download_and_publishes_a_master_list_others_verify() {
    let p = Four::start().await;
    let work = tempfile::tempdir().unwrap();
    let d = work.path();
    p.country(d);

    // The load command, briefly: calls made, none failed, percentiles in order.
    for op in ["issue", "verify"] {
        let r = p.json(
            d,
            &[
                "bench",
                op,
                "--concurrency",
                "2",
                "--duration",
                "2",
                "--json",
            ],
        );
        assert!(r["calls"].as_u64().unwrap() > 0, "{r}");
        assert_eq!(r["errors"], 0, "{r}");
        assert!(
            r["p50_ms"].as_f64().unwrap() <= r["p99_ms"].as_f64().unwrap(),
            "{r}"
        );
    }

    // Before any export the download is absent, not empty.
    let (status, _, _) = curl_full(
        &p.http_url("pkd", "/v1/pkd/masterlist"),
        &[],
        &d.join("none"),
    );
    assert_eq!(status, 404);

    // The published master list: `marty icao`, the Python oracle and the HTTP download agree.
    let exported = p.json(d, &["pkd", "export-ml", "--out", "UT.ml", "--json"]);
    assert_eq!(exported["countries"], serde_json::json!(["UT"]));
    assert_eq!(exported["certificate_count"], 1);
    let verified = p.json(
        d,
        &[
            "icao",
            "masterlist",
            "verify",
            "UT.ml",
            "--root",
            "csca.der",
            "--json",
        ],
    );
    assert_eq!(verified["verdict"], "VALID", "{verified}");
    let (code, report, shown) = oracle(d, &["masterlist", "UT.ml", "--root", "csca.der"]);
    assert_eq!(
        code,
        Some(0),
        "the oracle refuses the master list: {report}\n{shown}"
    );
    let (code, _, shown) = p.marty(d, &["pkd", "export-ml", "--out", "UT.ml"]);
    assert_eq!(code, Some(3), "an existing file is kept: {shown}");
    let (status, headers, body) = curl_full(
        &p.http_url("pkd", "/v1/pkd/masterlist"),
        &[],
        &d.join("got.ml"),
    );
    assert_eq!(status, 200, "{headers}");
    assert!(
        headers.contains("content-type: application/pkcs7-mime"),
        "{headers}"
    );
    assert_eq!(body, std::fs::read(d.join("UT.ml")).unwrap());
    let etag = headers
        .lines()
        .find_map(|l| l.strip_prefix("etag: "))
        .unwrap()
        .trim()
        .to_owned();
    let (status, _, _) = curl_full(
        &p.http_url("pkd", "/v1/pkd/masterlist"),
        &["-H", &format!("If-None-Match: {etag}")],
        &d.join("again.ml"),
    );
    assert_eq!(status, 304);
    // A second export reuses the Master List Signer key (one key row, sealed).
    p.json(d, &["pkd", "export-ml", "--out", "UT2.ml", "--json"]);
    let keys = p
        .query_one(
            "marty_pkd",
            "select count(*) as n, bool_and(encryption_scheme = 'envelope-aes-256-gcm/v1') as sealed from master_list_signer_keys",
        )
        .await;
    assert_eq!(keys.get::<i64, _>("n"), 1);
    assert!(keys.get::<bool, _>("sealed"));

    // A synthetic download with the real German master list in it.
    let summary = p.json(
        d,
        &[
            "pkd",
            "make-test-ldif",
            "--dscs",
            "400",
            "--cscas",
            "14",
            "--include-ml",
            &vectors("masterlist/DE_ML_2026-05-28-08-28-45.ml"),
            "--include-crl",
            &vectors("crl/CRL_NL_CSCA_7_crlnumber7_2025-05-19.crl"),
            "--out",
            "pkd.ldif",
            "--json",
        ],
    );
    assert_eq!(summary["master_lists"], 15);
    let de_root = vectors("masterlist/DE_ROOT_CA_CSCA07.cer");
    let import = [
        "pkd",
        "import-ldif",
        "pkd.ldif",
        "--root",
        "pkd.ldif.root.pem",
        "--root",
        de_root.as_str(),
        "--json",
    ];
    let first = p.json(d, &import);
    assert_eq!(
        (
            &first["master_lists"],
            &first["certificates"],
            &first["crls"]
        ),
        (
            &serde_json::json!(15),
            &serde_json::json!(400),
            &serde_json::json!(15)
        ),
        "{first}"
    );
    let synthetic_rejects: Vec<&serde_json::Value> = first["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| !r["subject"].as_str().unwrap_or_default().contains("c=DE"))
        .collect();
    assert!(synthetic_rejects.is_empty(), "{first}");
    // 14 CSCAs, 400 DSCs and 14 CRLs of the synthetic countries, the German master list's
    // CSCAs, and the real Dutch CRL verified against the Dutch CSCA that list carries.
    assert!(first["added"].as_u64().unwrap() >= 429 + 10, "{first}");
    let nl = p.json(d, &["pkd", "list", "--country", "NL", "--json"]);
    assert_eq!(nl["crls"][0]["crl_number"], "7", "{nl}");
    let xa = p.json(d, &["pkd", "list", "--country", "AA", "--json"]);
    assert_eq!(xa["cscas"].as_array().unwrap().len(), 1, "{xa}");
    assert_eq!(xa["crls"].as_array().unwrap().len(), 1, "{xa}");
    assert!(
        !p.json(d, &["pkd", "list", "--country", "DE", "--json"])["cscas"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let dsc_rows = p
        .query_one(
            "marty_pkd",
            "select count(*) as n, count(*) filter (where revoked) as revoked,
                    count(*) filter (where verified_by is null) as unverified
               from certificates where source = 'ldif' and kind = 'document_signer'",
        )
        .await;
    assert_eq!(dsc_rows.get::<i64, _>("n"), 400);
    // Each synthetic CRL revokes one Document Signer.
    assert_eq!(dsc_rows.get::<i64, _>("revoked"), 14);
    assert_eq!(dsc_rows.get::<i64, _>("unverified"), 0);

    // Again: nothing new, everything reported as a duplicate.
    let second = p.json(d, &import);
    assert_eq!(second["added"], 0, "{second}");
    assert_eq!(
        second["duplicates"].as_u64().unwrap(),
        first["added"].as_u64().unwrap() + first["duplicates"].as_u64().unwrap(),
        "{second}"
    );

    // Another download whose CSCAs nobody vouches for: its master lists fail against the
    // roots given, and its certificates and CRLs chain to nothing stored.
    p.json(
        d,
        &[
            "pkd",
            "make-test-ldif",
            "--dscs",
            "50",
            "--cscas",
            "5",
            "--out",
            "rogue.ldif",
            "--json",
        ],
    );
    let rogue = p.json(
        d,
        &[
            "pkd",
            "import-ldif",
            "rogue.ldif",
            "--root",
            "pkd.ldif.root.pem",
            "--json",
        ],
    );
    assert_eq!(rogue["added"], 0, "{rogue}");
    assert_eq!(rogue["rejected_total"], 5 + 50 + 5, "{rogue}");
    let reasons: Vec<&str> = rogue["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("does not verify against the roots")),
        "{rogue}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("no stored CSCA of")),
        "{rogue}"
    );
    // With its own root, its master lists do verify — but a file read from a URL never is.
    std::fs::write(
        d.join("url.ldif"),
        "dn: cn=x,o=dsc,c=XA,dc=data\nuserCertificate;binary:< file:///etc/passwd\n\n",
    )
    .unwrap();
    let (code, _, shown) = p.marty(d, &["pkd", "import-ldif", "url.ldif"]);
    assert_eq!(code, Some(3), "{shown}");
    assert!(shown.contains("never followed"), "{shown}");
    let (code, _, shown) = p.marty(d, &["pkd", "import-ldif", "pkd.ldif"]);
    assert_eq!(code, Some(3), "master lists need a root: {shown}");

    // The published master list now carries the imported CSCAs too.
    let exported = p.json(d, &["pkd", "export-ml", "--out", "all.ml", "--json"]);
    assert!(
        exported["certificate_count"].as_u64().unwrap() > 14,
        "{exported}"
    );
    let (code, report, shown) = oracle(d, &["masterlist", "all.ml", "--root", "csca.der"]);
    assert_eq!(code, Some(0), "{report}\n{shown}");
    p.stop_all();
}

/// Issues passports until told to stop or the engine fails; returns how many succeeded.
async fn issue_until_failure(
    url: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> u32 {
    let Ok(channel) = tonic::transport::Endpoint::from_shared(url)
        .unwrap()
        .connect()
        .await
    else {
        return 0;
    };
    let mut client = pb::passport_engine_client::PassportEngineClient::new(channel);
    let face = std::fs::read(repo().join("samples/face.jpg")).unwrap();
    let mut n = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let r = client
            .issue_passport(pb::IssuePassportRequest {
                holder: Some(pb::Holder {
                    primary_identifier: "Eriksson".into(),
                    secondary_identifier: "Anna".into(),
                    nationality: "UTO".into(),
                    date_of_birth: "1974-08-12".into(),
                    sex: "F".into(),
                }),
                date_of_expiry: (time::OffsetDateTime::now_utc().date()
                    + time::Duration::days(3000))
                .to_string(),
                document_type: "P".into(),
                document_number: String::new(),
                face_image: face.clone(),
            })
            .await;
        match r {
            Ok(_) => n += 1,
            Err(_) => break,
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_engine_leaves_no_orphans_and_the_pkd_sees_each_event_once() {
    let mut p = Four::start().await;
    let work = tempfile::tempdir().unwrap();
    let d = work.path();
    p.country(d);

    // kill -9 of the engine while four clients issue.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            tokio::spawn(issue_until_failure(
                p.grpc_url("passport-engine"),
                stop.clone(),
            ))
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n: i64 = p
            .query_one(
                "marty_passport_engine",
                "select count(*) as n from passports",
            )
            .await
            .get("n");
        if n >= 20 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the engine issued only {n} passports"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    p.kill9("passport-engine");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut answered = 0;
    for c in clients {
        answered += c.await.unwrap();
    }
    p.spawn("passport-engine");
    p.ready("passport-engine");

    let passports = p
        .uuids("marty_passport_engine", "select id from passports")
        .await;
    assert!(
        passports.len() as u32 >= answered,
        "an answered issuance was lost"
    );
    let announced = p
        .uuids(
            "marty_passport_engine",
            "select (payload->>'passport_id')::uuid from outbox where event_type = 'passport_engine.passport.issued'",
        )
        .await;
    assert_eq!(
        passports, announced,
        "a passport without its event, or an event without its passport"
    );
    // The relay publishes what the killed process had not; every event reaches NATS.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let pending: i64 = p
            .query_one(
                "marty_passport_engine",
                "select count(*) as n from outbox where published_at is null",
            )
            .await
            .get("n");
        if pending == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{pending} events never published"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let on_nats = issued_on_nats(&p.nats).await;
    assert_eq!(
        on_nats, passports,
        "NATS and the engine's database disagree"
    );
    // Every stored passport verifies: none holds a partial or foreign SOD.
    let channel = tonic::transport::Endpoint::from_shared(p.grpc_url("passport-engine"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut engine = pb::passport_engine_client::PassportEngineClient::new(channel);
    for id in &passports {
        let stored = engine
            .get_passport(pb::GetPassportRequest {
                id: id.to_string(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let mut request = pb::VerifyPassportRequest::default();
        for f in stored.files {
            match f.name.as_str() {
                "EF.SOD" => request.ef_sod = f.content,
                "EF.COM" => {}
                _ => request.data_groups.push(f.content),
            }
        }
        assert!(!request.ef_sod.is_empty(), "passport {id} has no EF.SOD");
        let report = engine.verify_passport(request).await.unwrap().into_inner();
        assert_eq!(report.verdict, "VALID", "passport {id}: {report:?}");
    }

    // The PKD stopped hard while the CSCA rolls over and issues a CRL; then NATS restarted
    // while it issues another: every CSCA event takes effect in the PKD once.
    p.kill9("pkd");
    p.json(d, &["csca", "rollover", "--country", "UT", "--json"]);
    p.json(d, &["csca", "crl", "--country", "UT", "--issue", "--json"]);
    p.spawn("pkd");
    p.ready("pkd");
    p.nats.stop();
    p.json(d, &["csca", "crl", "--country", "UT", "--issue", "--json"]);
    p.nats.restart();
    let csca_events = p
        .uuids(
            "marty_csca",
            "select event_id from outbox where event_type like 'csca.%'",
        )
        .await;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let seen = p
            .uuids(
                "marty_pkd",
                "select event_id from inbox where event_type like 'csca.%'",
            )
            .await;
        if seen == csca_events {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the PKD saw {} of {} CSCA events",
            seen.intersection(&csca_events).count(),
            csca_events.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let parked: i64 = p
        .query_one("marty_pkd", "select count(*) as n from inbox_parked")
        .await
        .get("n");
    assert_eq!(parked, 0);
    // The effect, once each: the CSCA's certificates and CRLs, no more, no fewer.
    let csca_side = p
        .query_one(
            "marty_csca",
            "select (select count(*) from certificates where kind in ('csca', 'link')) as certs,
                    (select count(*) from crls) as crls",
        )
        .await;
    let pkd_side = p
        .query_one(
            "marty_pkd",
            "select (select count(*) from certificates where kind in ('csca', 'link') and source = 'local_event') as certs,
                    (select count(*) from crls where source = 'local_event') as crls",
        )
        .await;
    assert_eq!(csca_side.get::<i64, _>("certs"), 3, "CSCA, new CSCA, link");
    assert_eq!(
        csca_side.get::<i64, _>("certs"),
        pkd_side.get::<i64, _>("certs")
    );
    assert_eq!(
        csca_side.get::<i64, _>("crls"),
        pkd_side.get::<i64, _>("crls")
    );
    p.stop_all();
}

/// The passport ids of every `passport_engine.passport.issued` message on the stream.
async fn issued_on_nats(nats: &TestNats) -> BTreeSet<uuid::Uuid> {
    use futures::StreamExt;
    let js = nats.jetstream().await;
    let stream = js.get_stream("MARTY").await.unwrap();
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            filter_subject: "marty.passport_engine.passport.issued".into(),
            deliver_policy: async_nats::jetstream::consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .unwrap();
    let pending = consumer.clone().info().await.unwrap().num_pending as usize;
    let mut ids = BTreeSet::new();
    let mut messages = consumer
        .fetch()
        .max_messages(pending.max(1))
        .messages()
        .await
        .unwrap();
    let mut read = 0;
    while read < pending {
        let Some(m) = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .unwrap()
        else {
            break;
        };
        let m = m.unwrap();
        let envelope: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        ids.insert(
            envelope["payload"]["passport_id"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap(),
        );
        read += 1;
    }
    ids
}

/// A private SoftHSM2 (its own configuration and token directory) with one initialised
/// token per label, all with the user PIN `pin`.
pub(crate) struct SoftHsm {
    dir: tempfile::TempDir,
}

impl SoftHsm {
    pub(crate) fn with_tokens(labels: &[&str], pin: &str) -> SoftHsm {
        let dir = tempfile::tempdir().unwrap();
        let tokens = dir.path().join("tokens");
        std::fs::create_dir_all(&tokens).unwrap();
        let hsm = SoftHsm { dir };
        std::fs::write(
            hsm.conf(),
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
                tokens.display()
            ),
        )
        .unwrap();
        for label in labels {
            let out = Command::new("softhsm2-util")
                .env("SOFTHSM2_CONF", hsm.conf())
                .args([
                    "--init-token",
                    "--free",
                    "--label",
                    label,
                    "--so-pin",
                    "so-pin-never-used",
                    "--pin",
                    pin,
                ])
                .output()
                .expect("softhsm2-util (Debian package softhsm2, installed by `make test`)");
            assert!(out.status.success(), "{}", show(&out));
        }
        hsm
    }

    pub(crate) fn conf(&self) -> PathBuf {
        self.dir.path().join("softhsm2.conf")
    }
}

/// Issue 11 §4: the CSCA, the Document Signer and the PKD keep their keys in PKCS#11 tokens;
/// everything they sign verifies with OpenSSL and the ICAO toolkit, their databases hold only
/// the handles, and the tokens refuse to hand the keys out.
#[tokio::test(flavor = "multi_thread")]
async fn keys_in_pkcs11_tokens_sign_everything_and_never_leave_them() {
    use std::os::unix::fs::PermissionsExt;
    let pin = "4711-marty-hsm";
    let labels = ["marty-csca", "marty-document-signer", "marty-pkd"];
    let hsm = SoftHsm::with_tokens(&labels, pin);
    let pin_file = hsm.dir.path().join("pkd.pin");
    std::fs::write(&pin_file, format!("{pin}\n")).unwrap();
    std::fs::set_permissions(&pin_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let conf = hsm.conf().display().to_string();
    let mut extra = vec![("SOFTHSM2_CONF".to_owned(), conf.clone())];
    for prefix in ["CSCA", "DOCUMENT_SIGNER", "PKD"] {
        extra.push((format!("MARTY_{prefix}_KEY_STORE"), "pkcs11".into()));
    }
    extra.push(("MARTY_CSCA_PKCS11_PIN".into(), pin.into()));
    extra.push(("MARTY_DOCUMENT_SIGNER_PKCS11_PIN".into(), pin.into()));
    extra.push((
        "MARTY_PKD_PKCS11_PIN_FILE".into(),
        pin_file.display().to_string(),
    ));
    let p = Four::start_with(extra).await;
    let work = tempfile::tempdir().unwrap();
    let d = work.path();

    // ICAO's CSCA profile (brainpool, explicit parameters) and an RSA-PSS Document Signer,
    // both generated inside their tokens.
    let created = p.json(
        d,
        &[
            "csca",
            "create",
            "--country",
            "UT",
            "--key",
            "ec:brainpoolP256r1",
            "--out",
            "csca.der",
            "--json",
        ],
    );
    assert_eq!(created["crl"]["crl_number"], "1", "{created}");
    p.json(
        d,
        &["signer", "activate", "--key", "rsa-pss:3072", "--json"],
    );
    p.json(d, &["signer", "status", "--out", "dsc.der", "--json"]);
    for f in ["csca", "dsc"] {
        openssl_ok(
            d,
            &[
                "x509",
                "-inform",
                "DER",
                "-in",
                &format!("{f}.der"),
                "-out",
                &format!("{f}.pem"),
            ],
        );
    }
    let text = openssl_ok(d, &["x509", "-in", "csca.pem", "-noout", "-text"]);
    assert!(
        text.contains("Field Type: prime-field"),
        "the CSCA's key is published with explicit parameters:\n{text}"
    );
    // OpenSSL refuses CA keys with explicit parameters; the Python oracle checks the chain.
    let (_, csca, shown) = oracle(d, &["cert", "csca.der"]);
    assert_eq!(csca["ok"], true, "{shown}");
    let (_, dsc, shown) = oracle(d, &["cert", "dsc.der", "--issuer", "csca.der"]);
    assert_eq!(dsc["ok"], true, "{shown}");
    let text = openssl_ok(d, &["x509", "-in", "dsc.pem", "-noout", "-text"]);
    assert!(
        text.contains("rsaEncryption") && text.contains("3072 bit"),
        "{text}"
    );

    // An EF.SOD signed through the token, verified by OpenSSL and by Passive Authentication.
    std::fs::create_dir_all(d.join("doc")).unwrap();
    let face = repo().join("samples/face.jpg");
    for args in [
        vec![
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
            "doc/DG1.bin",
        ],
        vec![
            "icao",
            "lds",
            "dg2",
            "--image",
            face.to_str().unwrap(),
            "--out",
            "doc/DG2.bin",
        ],
        vec![
            "signer",
            "sign-lds",
            "--dg",
            "doc/DG1.bin",
            "--dg",
            "doc/DG2.bin",
            "--out",
            "doc/EF_SOD.bin",
        ],
    ] {
        let (code, _, shown) = p.marty(d, &args);
        assert_eq!(code, Some(0), "marty {args:?}:\n{shown}\n{}", p.log_tails());
    }
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
            "-noverify",
            "-out",
            "/dev/null",
        ],
    );
    assert!(out.contains("Verification successful"), "{out}");
    let parsed = openssl_ok(d, &["asn1parse", "-inform", "DER", "-in", "sod.cms"]);
    assert!(
        parsed.contains("rsassaPss"),
        "the token signed with RSASSA-PSS: {parsed}"
    );
    let (_, checked, shown) = oracle(
        d,
        &[
            "sod",
            "doc/EF_SOD.bin",
            "--dg",
            "1=doc/DG1.bin",
            "--dg",
            "2=doc/DG2.bin",
        ],
    );
    assert_eq!(checked["ok"], true, "{shown}");
    std::fs::create_dir_all(d.join("trust")).unwrap();
    std::fs::copy(d.join("csca.der"), d.join("trust/csca.der")).unwrap();
    let (code, _, shown) = p.marty(d, &["icao", "pa", "doc", "--trust", "trust"]);
    assert_eq!(code, Some(0), "{shown}");

    // The PKD's master list, signed by its Master List Signer key in the PKD's token.
    p.until_ok(
        d,
        &["pkd", "list", "--country", "UT"],
        "the PKD learning UT's CSCA",
    );
    p.json(d, &["pkd", "export-ml", "--out", "UT.ml", "--json"]);
    let (code, _, shown) = p.marty(
        d,
        &[
            "icao",
            "masterlist",
            "verify",
            "UT.ml",
            "--root",
            "csca.der",
        ],
    );
    assert_eq!(code, Some(0), "{shown}");

    // The databases hold each key's public half and its token handle, nothing else.
    for (database, table, label) in [
        ("marty_csca", "csca_keys", "marty-csca"),
        (
            "marty_document_signer",
            "signer_keys",
            "marty-document-signer",
        ),
        ("marty_pkd", "master_list_signer_keys", "marty-pkd"),
    ] {
        let mut conn = p.db.admin_on(database).await;
        let rows = sqlx::query(&format!(
            "select id, encryption_scheme, key_encryption_key_id, encrypted_private_key, coalesce(length(nonce), 0) + coalesce(length(wrapped_data_key), 0) + coalesce(length(data_key_nonce), 0) as other from {table}"
        ))
        .fetch_all(&mut conn)
        .await
        .unwrap();
        assert!(!rows.is_empty(), "{table} holds the key");
        let mut ids = BTreeSet::new();
        for row in &rows {
            let id: uuid::Uuid = row.get("id");
            assert_eq!(row.get::<String, _>("encryption_scheme"), "pkcs11/v1");
            assert_eq!(
                row.get::<String, _>("key_encryption_key_id"),
                format!("pkcs11:{label}")
            );
            let handle = String::from_utf8(row.get::<Vec<u8>, _>("encrypted_private_key"))
                .expect("a handle is text, a key is not");
            assert!(
                handle.starts_with(&format!("pkcs11:token={label};object=marty%2F"))
                    && handle.ends_with(";type=private"),
                "{handle}"
            );
            assert_eq!(row.get::<i32, _>("other"), 0, "no key material beside it");
            ids.insert(id);
        }
        // The token describes the same keys as confined: sensitive, never extractable, and it
        // refuses to return their values.
        let service = table_service(table);
        let inspected = p.json(d, &["keys", "inspect", "--service", service, "--json"]);
        assert_eq!(inspected["confined"], true, "{inspected}");
        let token_ids: BTreeSet<uuid::Uuid> = inspected["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| {
                assert_eq!(k["extractable"], false, "{k}");
                assert_eq!(k["never_extractable"], true, "{k}");
                assert_eq!(k["value_refused"], true, "{k}");
                k["key_id"].as_str().unwrap().parse().unwrap()
            })
            .collect();
        assert_eq!(
            token_ids, ids,
            "{service}: the table's keys are the token's"
        );
    }

    // A key imported into the token (made outside it) under a Marty label is reported as one
    // that may exist outside the token.
    openssl_ok(
        d,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "outside.pem",
        ],
    );
    let outsider = uuid::Uuid::new_v4();
    let out = Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", &conf)
        .current_dir(d)
        .args([
            "--import",
            "outside.pem",
            "--token",
            "marty-csca",
            "--label",
            &format!("marty/csca/{outsider}"),
            "--id",
            &outsider.simple().to_string(),
            "--pin",
            pin,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let (code, out, shown) = p.marty(d, &["keys", "inspect", "--service", "csca", "--json"]);
    assert_eq!(code, Some(1), "{shown}");
    let inspected: serde_json::Value = serde_json::from_str(&out).unwrap();
    let imported = inspected["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["key_id"] == outsider.to_string())
        .unwrap_or_else(|| panic!("{inspected}"));
    assert_eq!(imported["confined"], false, "{imported}");

    // A service given a wrong or an empty PIN refuses to start, and says why.
    let empty_pin = hsm.dir.path().join("empty.pin");
    std::fs::write(&empty_pin, "\n").unwrap();
    std::fs::set_permissions(&empty_pin, std::fs::Permissions::from_mode(0o600)).unwrap();
    let csca_env = |pin: &str| -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = p
            .env
            .iter()
            .filter(|(k, _)| !k.starts_with("MARTY_CSCA_"))
            .cloned()
            .collect();
        if pin.is_empty() {
            env.push((
                "MARTY_CSCA_PKCS11_PIN_FILE".into(),
                empty_pin.display().to_string(),
            ));
        } else {
            env.push(("MARTY_CSCA_PKCS11_PIN".into(), pin.into()));
        }
        env.push(("MARTY_CSCA_KEY_STORE".into(), "pkcs11".into()));
        env.push(("MARTY_CSCA_GRPC_PORT".into(), "0".into()));
        env.push(("MARTY_CSCA_HTTP_PORT".into(), "0".into()));
        env
    };
    for (given, expected) in [
        ("wrong-pin-0000", "PIN of token \"marty-csca\" is wrong"),
        ("", "PIN of token \"marty-csca\" is empty"),
    ] {
        let log = p.logs.path().join("csca-bad-pin.log");
        let mut child = spawn_serve(&p.db, &csca_env(given), "csca", &log);
        let status = child.wait().unwrap();
        let said = std::fs::read_to_string(&log).unwrap();
        assert_eq!(status.code(), Some(3), "{said}");
        assert!(said.contains(expected), "{said}");
        assert!(
            given.is_empty() || !said.contains(given),
            "the PIN is never printed: {said}"
        );
    }

    // Back on envelope encryption after the token trial, the CSCA still starts (its token
    // keys are refused when used, not at start).
    let mut env: Vec<(String, String)> = p
        .env
        .iter()
        .filter(|(k, _)| !k.starts_with("MARTY_CSCA_"))
        .cloned()
        .collect();
    let http = marty_events::local::free_port().unwrap();
    env.push(("MARTY_CSCA_KEY_STORE".into(), "envelope".into()));
    env.push(("MARTY_CSCA_GRPC_PORT".into(), "0".into()));
    env.push(("MARTY_CSCA_HTTP_PORT".into(), http.to_string()));
    let log = p.logs.path().join("csca-envelope.log");
    let mut child = spawn_serve(&p.db, &env, "csca", &log);
    wait_ready(http, "csca on envelope keys", &log);
    assert!(terminate(&mut child).success());
    p.stop_all();
}

fn table_service(table: &str) -> &'static str {
    match table {
        "csca_keys" => "csca",
        "signer_keys" => "document_signer",
        _ => "pkd",
    }
}

/// Issue 12 (first part): the console reads the running platform through its APIs and
/// /metrics only, and shows each page in a real browser.
#[tokio::test(flavor = "multi_thread")]
async fn the_console_shows_the_platform_through_its_apis() {
    let p = Four::start().await;
    let work = tempfile::tempdir().unwrap();
    let d = work.path();
    p.country(d);
    // A CSCA that expires in 10 days: the timeline marks it.
    p.json(
        d,
        &[
            "csca",
            "create",
            "--country",
            "FR",
            "--key",
            "ec:P-256:named",
            "--validity-days",
            "10",
            "--key-usage-days",
            "5",
            "--json",
        ],
    );
    // The isolation proof, published where the console reads it.
    let iso = d.join("isolation.json");
    let (code, _, shown) = p.marty(d, &["db", "verify", "--json-file", iso.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{shown}");
    let proof: serde_json::Value = serde_json::from_slice(&std::fs::read(&iso).unwrap()).unwrap();
    let port = marty_events::local::free_port().unwrap();
    let mut env = p.env.clone();
    env.push(("MARTY_CONSOLE_LISTEN".into(), format!("127.0.0.1:{port}")));
    env.push((
        "MARTY_CONSOLE_ISOLATION_FILE".into(),
        iso.display().to_string(),
    ));
    env.push(("MARTY_CONSOLE_SAMPLE_SECS".into(), "1".into()));
    let log = p.logs.path().join("console.log");
    let mut console = spawn_serve(&p.db, &env, "console", &log);
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while marty_testkit::tools::curl(&format!("{base}/healthz")).0 != 200 {
        assert!(
            Instant::now() < deadline,
            "the console never answered:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let get = |path: &str| {
        let (status, body) = marty_testkit::tools::curl(&format!("{base}{path}"));
        assert_eq!(status, 200, "{path}: {body}");
        body
    };

    let head = Command::new("curl")
        .args(["-sI", &format!("{base}/")])
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&head.stdout).to_ascii_lowercase();
    assert!(
        head.contains("content-security-policy: default-src 'none'")
            && head.contains("x-content-type-options: nosniff"),
        "{head}"
    );
    // A page elsewhere whose own name points at the console (DNS rebinding) is refused; the
    // console's address and localhost are answered.
    let with_host = |host: &str| -> String {
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-H"])
            .arg(format!("Host: {host}"))
            .arg(format!("{base}/"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(with_host(&format!("rebind.example:{port}")), "421");
    assert_eq!(
        with_host(&format!("localhost.rebind.example:{port}")),
        "421"
    );
    assert_eq!(with_host(&format!("localhost:{port}")), "200");
    assert_eq!(with_host(&format!("127.0.0.1:{port}")), "200");
    let overview = get("/");
    for s in ["csca", "document_signer", "passport_engine", "pkd"] {
        assert!(
            overview.contains(&format!("<th scope=\"row\">{s}</th>")),
            "{overview}"
        );
    }
    assert_eq!(overview.matches(">up<").count(), 4, "{overview}");
    assert_eq!(overview.matches(">ready<").count(), 4, "{overview}");
    assert_eq!(
        overview
            .matches(&format!("<td>{}</td>", env!("CARGO_PKG_VERSION")))
            .count(),
        4,
        "each service's version from its /metrics: {overview}"
    );

    let listed = p.json(d, &["csca", "list", "--json"]);
    let all = listed.as_array().unwrap_or_else(|| panic!("{listed}"));
    let serial_of = |kind: &str, country: &str| -> String {
        all.iter()
            .find(|c| c["type"] == kind && c["country"] == country)
            .unwrap_or_else(|| panic!("no {kind} of {country}: {listed}"))["serial_hex"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let ut_csca = serial_of("csca", "UT");
    let ut_dsc = serial_of("dsc", "UT");
    // 250 more Document Signer rows of UT (the load fixture of docs/PERFORMANCE.md): more
    // than one page of a country.
    let fixture = std::fs::read_to_string(repo().join("scripts/fixtures/certificates.sql"))
        .unwrap()
        .replace(":certificates", "250")
        .replace(":countries", "1");
    let mut conn = p.db.admin_on("marty_csca").await;
    sqlx::raw_sql(&fixture).execute(&mut conn).await.unwrap();
    drop(conn);

    // The summary counts per country; the CSCA of FR, and only it, expires within 30 days.
    let summary = get("/certificates");
    let row_of = |page: &str, country: &str| -> String {
        page.split("<tr>")
            .find(|r| r.contains(&format!(">{country}</a></th>")))
            .unwrap_or_else(|| panic!("no row of {country}: {page}"))
            .to_owned()
    };
    let fr = row_of(&summary, "FR");
    assert!(fr.contains("<td class=\"warn\">1 expire soon</td>"), "{fr}");
    let ut = row_of(&summary, "UT");
    assert!(!ut.contains("expire soon"), "{ut}");
    let ut_dscs = all
        .iter()
        .filter(|c| c["country"] == "UT" && c["type"] == "dsc")
        .count()
        + 250;
    assert!(ut.contains(&format!("<td>{ut_dscs}</td>")), "{ut}");
    let fr_page = get("/certificates/FR");
    assert_eq!(
        fr_page.matches("valid, expires soon").count(),
        1,
        "{fr_page}"
    );
    assert!(fr_page.contains("<svg class=\"timeline\""), "{fr_page}");
    // A country's pages, followed to the end, show each of its certificates once.
    let mut seen = BTreeSet::new();
    let mut next = "/certificates/UT".to_owned();
    let mut pages = 0;
    loop {
        let html = get(&next);
        pages += 1;
        assert_eq!(html.matches("valid, expires soon").count(), 0);
        for serial in html.split("class=\"mono\">").skip(1) {
            let serial = serial.split('<').next().unwrap().to_owned();
            assert!(seen.insert(serial.clone()), "{serial} shown twice");
        }
        match html
            .split("rel=\"next\"")
            .next()
            .and_then(|h| h.rsplit("href=\"").next())
        {
            Some(href) if html.contains("rel=\"next\"") => {
                next = href.trim_end_matches("\" ").replace("&amp;", "&");
            }
            _ => break,
        }
        assert!(pages < 10, "paging never ended");
    }
    let ut_total = all.iter().filter(|c| c["country"] == "UT").count() + 250;
    assert_eq!(seen.len(), ut_total);
    assert_eq!(pages, ut_total.div_ceil(200));
    assert!(seen.contains(&ut_csca) && seen.contains(&ut_dsc));
    // Neither a country that is not two capitals (a blank one would list every country) nor
    // a token the CSCA did not hand out is followed.
    for (path, status) in [
        ("/certificates/%20%20", 404),
        ("/certificates/%3Cb%3E", 404),
        ("/certificates/ut", 404),
        ("/certificates/UT?after=junk", 400),
    ] {
        let (got, body) = marty_testkit::tools::curl(&format!("{base}{path}"));
        assert_eq!(got, status, "{path}: {body}");
        assert!(!body.contains("<b>"), "{body}");
    }

    // The decoded certificate and its DER, byte for byte what the CSCA issued.
    let detail = get(&format!("/certificates/UT/{ut_csca}"));
    assert!(detail.contains("C=UT, CN=CSCA UT"), "{detail}");
    let out = Command::new("curl")
        .args(["-s", "-o"])
        .arg(d.join("downloaded.der"))
        .arg(format!("{base}/certificates/UT/{ut_csca}.der"))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        std::fs::read(d.join("downloaded.der")).unwrap(),
        std::fs::read(d.join("csca.der")).unwrap()
    );
    assert_eq!(
        marty_testkit::tools::curl(&format!("{base}/certificates/UT/00")).0,
        404
    );

    let crls = get("/crls");
    assert!(
        crls.contains("<th scope=\"row\">UT</th>") && crls.contains("fresh"),
        "{crls}"
    );
    let anchors = get("/pkd");
    assert!(anchors.contains("own CSCA"), "{anchors}");
    // Traffic on the engine (one passport issued, then verified for two seconds) shows as
    // rates and on the chart once the console has sampled it.
    let (code, _, shown) = p.marty(
        d,
        &[
            "bench",
            "verify",
            "--duration",
            "2",
            "--concurrency",
            "1",
            "--json",
        ],
    );
    assert_eq!(code, Some(0), "{shown}");
    std::thread::sleep(Duration::from_secs(3));
    let passports = get("/passports");
    assert!(passports.contains("passports issued"), "{passports}");
    assert!(passports.contains("<svg class=\"chart\""), "{passports}");
    assert!(passports.contains("verified: "), "{passports}");
    // The passport the benchmark issued, by its document number (TLS is off here: the list
    // is shown; over mutual TLS the verifier sees counts only).
    let issued = p.json(d, &["passport", "list", "--json"]);
    let number = issued[0]["document_number"]
        .as_str()
        .unwrap_or_else(|| panic!("{issued}"));
    assert!(
        passports.contains(&format!("<td class=\"mono\">{number}</td>")),
        "{passports}"
    );
    // The verification reports of that traffic, with their checks.
    let recent = passports
        .split("<h2>Recent verifications</h2>")
        .nth(1)
        .and_then(|s| s.split("<h2>").next())
        .unwrap_or_else(|| panic!("{passports}"));
    assert_eq!(
        recent.matches("<tr><td>").count(),
        20,
        "the 20 most recent: {recent}"
    );
    assert!(
        recent.contains("<td class=\"ok\">VALID</td>")
            && recent.contains("sod_signature")
            && recent.contains("issued here"),
        "{recent}"
    );
    let overview = get("/");
    let engine = overview
        .split("<tr>")
        .find(|r| r.contains(">passport_engine</th>"))
        .unwrap();
    assert!(
        !engine.contains("<td>–</td>"),
        "every column of the engine has a value, its rates too: {engine}"
    );
    let isolation = get("/isolation");
    let cells = proof["cells"].as_array().unwrap().len();
    assert!(cells >= 60, "{proof}");
    assert_eq!(
        isolation.matches(">as declared ").count(),
        cells,
        "every cell of the published matrix: {isolation}"
    );
    assert!(
        isolation.contains(proof["finished_at"].as_str().unwrap()),
        "with its time"
    );

    // A revocation made through the CLI shows at the next load.
    p.json(
        d,
        &[
            "csca",
            "revoke",
            &ut_dsc,
            "--reason",
            "superseded",
            "--json",
        ],
    );
    let certificates = get("/certificates/UT");
    let row = certificates
        .split("<tr>")
        .find(|r| r.contains(&ut_dsc) && r.contains("<td>Document Signer</td>"))
        .unwrap_or_else(|| panic!("{certificates}"));
    assert!(row.contains(">revoked<"), "{row}");

    // Every page in a real browser (Chromium driven by playwright-core), at a desktop and a
    // phone size: no console errors, no failed requests, no axe-core violation of WCAG 2 A/AA;
    // the screenshots stay under target/console-screenshots.
    let shots = marty_testkit::tools::repo().join("target/console-screenshots");
    let node_modules = marty_testkit::tools::python()
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("node/node_modules");
    let out = Command::new("node")
        .env("NODE_PATH", &node_modules)
        .arg(marty_testkit::tools::repo().join("scripts/console_check.js"))
        .arg(&shots)
        .arg(format!("overview={base}/"))
        .arg(format!("certificates={base}/certificates"))
        .arg(format!("country={base}/certificates/FR"))
        .arg(format!("certificate={base}/certificates/UT/{ut_csca}"))
        .arg(format!("crls={base}/crls"))
        .arg(format!("pkd={base}/pkd"))
        .arg(format!("passports={base}/passports"))
        .arg(format!("isolation={base}/isolation"))
        .output()
        .expect("node (make oracle installs the browser tools into .venv/node)");
    assert!(out.status.success(), "{}", show(&out));
    let checked: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let pages = checked["pages"].as_array().unwrap();
    assert_eq!(pages.len(), 16, "eight pages at two sizes");
    for page in pages {
        assert_eq!(page["console_errors"], serde_json::json!([]), "{page}");
        assert_eq!(page["failed_requests"], serde_json::json!([]), "{page}");
        assert_eq!(page["violations"], serde_json::json!([]), "{page}");
        let png = std::fs::metadata(page["screenshot"].as_str().unwrap()).unwrap();
        assert!(png.len() > 2_000, "{page}");
    }
    assert!(terminate(&mut console).success());
    p.stop_all();
}
