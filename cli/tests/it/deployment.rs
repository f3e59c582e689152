//! The shipped deployments (deploy/docker-compose.yml, deploy/k8s/) checked offline: the
//! Kubernetes manifests by a schema validator (`kubernetes-validate --strict`), and both by
//! loading each workload's own environment into Marty's real configuration — it must resolve
//! (hosts, passwords, KEKs, listeners), keep every service on its own database as the isolation
//! guard sees it, probe the port the service listens on, and hand each workload only the
//! secrets its role needs.

use std::collections::BTreeMap;
use std::path::Path;

use marty_config::{Config, Env, Role, Service};
use marty_testkit::tools::{python, repo};
use serde_yaml::Value;

use crate::harness::show;

const KEK: &str = "9f1c2b3a4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8";

fn yaml_documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect()
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

/// Loads the production configuration the way a workload would, from `env`.
fn load(env: &BTreeMap<String, String>) -> Config {
    let mut pairs: Vec<(String, String)> = env.clone().into_iter().collect();
    pairs.push((
        "MARTY_CONFIG_DIR".into(),
        repo().join("config").display().to_string(),
    ));
    pairs.push(("MARTY_STATE_DIR".into(), "/nonexistent/marty-state".into()));
    Config::load_from(&Env::from_pairs(pairs)).unwrap_or_else(|e| panic!("{e}\n{env:?}"))
}

/// The secret-carrying variables a workload's environment names, by service.
fn secrets_named(env: &BTreeMap<String, String>) -> Vec<String> {
    env.keys()
        .filter(|k| k.contains("_PASSWORD") || k.contains("_KEK"))
        .cloned()
        .collect()
}

/// Checks what a service workload may see: only its own app password (and KEK).
fn assert_least_secrets(service: Service, env: &BTreeMap<String, String>) {
    let prefix = format!("MARTY_{}_", service.env_prefix());
    for var in secrets_named(env) {
        let own_app = var.starts_with(&service.password_env(Role::App));
        let own_kek = var.starts_with(&format!("{prefix}KEK"));
        let own_nats = var.starts_with(&format!("{prefix}NATS_PASSWORD"));
        assert!(
            own_app || own_kek || own_nats,
            "the {service} workload receives {var}, which it does not need"
        );
    }
}

fn check_service_config(service: Service, env: &BTreeMap<String, String>, http_probe_port: u16) {
    let config = load(env);
    assert!(
        config.isolation_conflicts().is_empty(),
        "{service}: {:?}",
        config.isolation_conflicts()
    );
    config
        .database(service)
        .password(Role::App)
        .unwrap_or_else(|e| panic!("{service}: {e}"));
    if [Service::Csca, Service::DocumentSigner, Service::Pkd].contains(&service) {
        config
            .kek(service)
            .unwrap_or_else(|e| panic!("{service}: {e}"));
    }
    let api = config.api(service);
    assert_eq!(
        api.listen_host, "0.0.0.0",
        "{service} must listen beyond loopback"
    );
    assert_eq!(
        api.http_port, http_probe_port,
        "{service}: probes hit another port"
    );
    assert_least_secrets(service, env);
    // Production: mutual TLS, with the service's own certificate from the mounted directory;
    // peers are reached over https.
    let tls = config.tls();
    assert!(tls.enabled(), "{service}: production without mutual TLS");
    assert!(
        env.contains_key("MARTY_TLS_DIR"),
        "{service}: no TLS directory given"
    );
    for peer in Service::ALL {
        assert!(
            config.api(peer).url.starts_with("https://"),
            "{service} reaches {peer} at {}",
            config.api(peer).url
        );
    }
}

#[test]
fn kubernetes_manifests_validate_and_give_each_workload_a_working_least_privilege_config() {
    let dir = repo().join("deploy/k8s");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let validator = python().with_file_name("kubernetes-validate");
    let out = std::process::Command::new(&validator)
        .args(["--strict", "--kubernetes-version", "1.30.0"])
        .args(&files)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", validator.display()));
    assert!(out.status.success(), "{}", show(&out));
    let text = show(&out);
    assert!(!text.contains("ERROR"), "{text}");

    let docs: Vec<Value> = files.iter().flat_map(|f| yaml_documents(f)).collect();
    let kind = |k: &'static str| docs.iter().filter(move |d| str_of(&d["kind"]) == k);
    // The schema validator does not know CloudNativePG's Cluster: its shape is checked here.
    let clusters: Vec<&Value> = kind("Cluster").collect();
    assert_eq!(clusters.len(), 4, "a PostgreSQL cluster per service");
    for c in &clusters {
        assert_eq!(str_of(&c["apiVersion"]), "postgresql.cnpg.io/v1");
        assert!(c["spec"]["instances"].as_u64().unwrap() >= 1);
        assert!(!str_of(&c["spec"]["storage"]["size"]).is_empty());
        let role = &c["spec"]["managed"]["roles"][0];
        assert_eq!(str_of(&role["name"]), "marty_admin");
        assert_eq!(role["superuser"].as_bool(), Some(false));
    }
    let nats = kind("StatefulSet")
        .find(|d| str_of(&d["metadata"]["name"]) == "marty-nats")
        .unwrap();
    assert_eq!(nats["spec"]["replicas"].as_u64(), Some(3));
    let conf = kind("ConfigMap").next().unwrap()["data"]["nats.conf"].clone();
    assert!(
        str_of(&conf).contains("jetstream")
            && str_of(&conf).matches("nats://marty-nats-").count() == 3
    );

    let secrets: BTreeMap<String, &Value> = kind("Secret")
        .map(|s| (str_of(&s["metadata"]["name"]).to_owned(), s))
        .collect();
    let files_dir = tempfile::tempdir().unwrap();
    // A workload's environment as the kubelet builds it: values, Secret references, files.
    let environment = |pod: &Value| -> BTreeMap<String, String> {
        let container = &pod["containers"][0];
        let mut volumes = BTreeMap::new();
        for v in pod["volumes"].as_sequence().unwrap() {
            if let Some(name) = v["secret"]["secretName"].as_str() {
                assert!(
                    secrets.contains_key(name),
                    "volume of unknown Secret {name}"
                );
                volumes.insert(str_of(&v["name"]).to_owned(), name.to_owned());
            }
        }
        let mut mounts = BTreeMap::new();
        for m in container["volumeMounts"].as_sequence().unwrap() {
            if let Some(secret) = volumes.get(str_of(&m["name"])) {
                mounts.insert(str_of(&m["mountPath"]).to_owned(), secret.clone());
            }
        }
        let mut env = BTreeMap::new();
        for e in container["env"].as_sequence().unwrap() {
            let name = str_of(&e["name"]).to_owned();
            let value = if let Some(v) = e["value"].as_str() {
                v.to_owned()
            } else {
                let s = str_of(&e["valueFrom"]["secretKeyRef"]["name"]);
                assert!(secrets.contains_key(s), "{name}: unknown Secret {s}");
                format!("from-secret-{s}")
            };
            if name.ends_with("_FILE") {
                // The file must come from a mounted Secret: write what the kubelet would.
                let (mount, secret) = mounts
                    .iter()
                    .find(|(m, _)| value.starts_with(m.as_str()))
                    .unwrap_or_else(|| panic!("{name}={value} is not in a mounted Secret"));
                let _ = mount;
                let local = files_dir
                    .path()
                    .join(value.trim_start_matches('/').replace('/', "_"));
                let content = if name.contains("_KEK") {
                    KEK.to_owned()
                } else if name.ends_with("_LOGIN_FILE") {
                    str_of(&secrets[secret.as_str()]["stringData"]["username"]).to_owned()
                } else {
                    format!("password-of-{secret}")
                };
                std::fs::write(&local, content).unwrap();
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&local, std::fs::Permissions::from_mode(0o440)).unwrap();
                env.insert(name, local.display().to_string());
            } else {
                env.insert(name, value);
            }
        }
        env
    };

    for service in Service::ALL {
        let name = format!("marty-{}", service.id().replace('_', "-"));
        let deployment = kind("Deployment")
            .find(|d| str_of(&d["metadata"]["name"]) == name)
            .unwrap_or_else(|| panic!("no Deployment {name}"));
        let pod = &deployment["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        assert_eq!(
            container["args"]
                .as_sequence()
                .unwrap()
                .iter()
                .map(str_of)
                .collect::<Vec<_>>(),
            ["serve", service.id()]
        );
        assert_eq!(
            str_of(&container["livenessProbe"]["httpGet"]["path"]),
            "/healthz"
        );
        assert_eq!(
            str_of(&container["readinessProbe"]["httpGet"]["path"]),
            "/readyz"
        );
        for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
            assert_eq!(
                str_of(&container[probe]["httpGet"]["scheme"]),
                "HTTPS",
                "{service} {probe}: the HTTP listener speaks TLS"
            );
        }
        // Its own certificate, no other service's.
        let tls_secret = pod["volumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|v| str_of(&v["name"]) == "tls")
            .unwrap_or_else(|| panic!("{service}: no TLS volume"));
        assert_eq!(
            str_of(&tls_secret["secret"]["secretName"]),
            format!("marty-tls-{}", service.id().replace('_', "-"))
        );
        assert!(
            kind("Secret")
                .any(|s| str_of(&s["metadata"]["name"])
                    == str_of(&tls_secret["secret"]["secretName"])),
            "{service}: its TLS Secret is not shipped"
        );
        let http = container["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|p| str_of(&p["name"]) == "http")
            .unwrap()["containerPort"]
            .as_u64()
            .unwrap() as u16;
        let env = environment(pod);
        assert_eq!(
            env[&format!("{}_DB_HOST", service.env_prefix())],
            format!("{name}-db-rw"),
            "{service} must use its own cluster"
        );
        check_service_config(service, &env, http);
        let config = load(&env);
        // Each database on its own server: four distinct hosts.
        let hosts: std::collections::BTreeSet<_> = Service::ALL
            .iter()
            .map(|s| config.database(*s).host.clone())
            .collect();
        assert_eq!(hosts.len(), 4, "{hosts:?}");
        assert!(
            kind("Service").any(|s| str_of(&s["metadata"]["name"]) == name),
            "no Service {name}"
        );

        // The migration Job: this service's owner, nothing else.
        let job = kind("Job")
            .find(|d| str_of(&d["metadata"]["name"]) == format!("{name}-migrate"))
            .unwrap_or_else(|| panic!("no migration Job for {service}"));
        let pod = &job["spec"]["template"]["spec"];
        let args: Vec<&str> = pod["containers"][0]["args"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(str_of)
            .collect();
        assert_eq!(args, ["db", "migrate", "--service", service.id()]);
        let env = environment(pod);
        let config = load(&env);
        config
            .database(service)
            .password(Role::Owner)
            .unwrap_or_else(|e| panic!("{service} migration: {e}"));
        for var in secrets_named(&env) {
            assert!(
                var.starts_with(&service.password_env(Role::Owner)),
                "the {service} migration Job receives {var}"
            );
        }
    }
    // The stream's Job: the NATS operator's password and nothing else.
    let init = kind("Job")
        .find(|d| str_of(&d["metadata"]["name"]) == "marty-events-init")
        .unwrap();
    let env = environment(&init["spec"]["template"]["spec"]);
    assert_eq!(secrets_named(&env), ["MARTY_NATS_OPERATOR_PASSWORD_FILE"]);
    assert!(
        load(&env)
            .nats_credential(marty_events::auth::OPERATOR_USER)
            .is_some()
    );
    // The setup Job: the administrator and every role it creates.
    let setup = kind("Job")
        .find(|d| str_of(&d["metadata"]["name"]) == "marty-db-setup")
        .unwrap();
    let config = load(&environment(&setup["spec"]["template"]["spec"]));
    assert_eq!(config.admin().user, "marty_admin");
    for service in Service::ALL {
        for role in Role::ALL {
            config.database(service).password(role).unwrap();
        }
    }
}

/// `${VAR:?message}`, `${VAR:-default}` and `$$` as docker compose interpolates them; a bare
/// `$NAME` would be interpolated too, so the file must have none.
fn interpolate(text: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        if rest[at..].starts_with("$$") {
            out.push('$');
            rest = &rest[at + 2..];
            continue;
        }
        assert!(
            rest[at..].starts_with("${"),
            "compose would interpolate {:?}",
            &rest[at..rest.len().min(at + 30)]
        );
        let end = rest[at..].find('}').unwrap() + at;
        let inner = &rest[at + 2..end];
        let (name, fallback) = match inner.find(":?").or_else(|| inner.find(":-")) {
            Some(i) => (&inner[..i], Some((&inner[i..i + 2], &inner[i + 2..]))),
            None => (inner, None),
        };
        match (vars.get(name), fallback) {
            (Some(v), _) => out.push_str(v),
            (None, Some((":-", default))) => out.push_str(default),
            (None, _) => panic!("compose needs {name}: {inner}"),
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

#[test]
fn the_compose_file_gives_each_service_a_working_least_privilege_config() {
    let example = std::fs::read_to_string(repo().join("deploy/marty.env.example")).unwrap();
    let mut vars: BTreeMap<String, String> = example
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains('='))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect();
    for v in vars.values_mut().filter(|v| v.len() == 64) {
        *v = KEK.to_owned();
    }
    let raw = std::fs::read_to_string(repo().join("deploy/docker-compose.yml")).unwrap();
    let compose: Value = serde_yaml::from_str(&interpolate(&raw, &vars)).unwrap();
    let services = &compose["services"];
    let env_of = |name: &str| -> BTreeMap<String, String> {
        services[name]["environment"]
            .as_mapping()
            .unwrap_or_else(|| panic!("no service {name}"))
            .iter()
            .map(|(k, v)| (str_of(k).to_owned(), str_of(v).to_owned()))
            .collect()
    };
    let migrate = load(&env_of("migrate"));
    for service in Service::ALL {
        for role in Role::ALL {
            migrate.database(service).password(role).unwrap();
        }
    }
    let command = services["migrate"]["command"][2].as_str().unwrap();
    assert!(
        command.contains("marty db setup")
            && command.contains("marty db migrate")
            && command.contains("marty events init"),
        "{command}"
    );
    assert!(
        migrate
            .nats_credential(marty_events::auth::OPERATOR_USER)
            .is_some(),
        "the migrate job creates the stream as the NATS operator"
    );
    // The CA's key stays in the certs job's volume.
    for (name, s) in services.as_mapping().unwrap() {
        if str_of(name) == "certs" {
            continue;
        }
        for v in s["volumes"].as_sequence().into_iter().flatten() {
            assert!(
                !str_of(v).starts_with("tls-ca:"),
                "{} mounts the CA",
                str_of(name)
            );
        }
    }
    for service in Service::ALL {
        let name = service.id().replace('_', "-");
        let s = &services[name.as_str()];
        assert_eq!(
            str_of(&s["depends_on"]["migrate"]["condition"]),
            "service_completed_successfully",
            "{service} must start after the migrations"
        );
        let test: Vec<&str> = s["healthcheck"]["test"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(str_of)
            .collect();
        let probe = test.last().unwrap();
        assert!(probe.ends_with("/readyz"), "{probe}");
        assert!(
            test.contains(&"/tls/ca.crt"),
            "{service}: the healthcheck must verify the service's certificate"
        );
        let port: u16 = probe
            .trim_start_matches("https://127.0.0.1:")
            .trim_end_matches("/readyz")
            .parse()
            .unwrap();
        check_service_config(service, &env_of(&name), port);
        // Its own certificate and key (and the CA certificate), never the CA key or another
        // service's key; its own NATS password.
        let volumes: Vec<&str> = s["volumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(str_of)
            .collect();
        assert_eq!(volumes, [format!("tls-{name}:/tls:ro")], "{service}");
        assert!(
            env_of(&name).contains_key(&marty_events::auth::password_variable(service)),
            "{service} logs in to NATS as itself"
        );
        let published: Vec<&str> = s["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(str_of)
            .collect();
        assert!(
            // Published on loopback only: the APIs have no authentication yet.
            published.contains(&format!("127.0.0.1:{port}:{port}").as_str()),
            "{published:?}"
        );
    }
}

/// The NATS users shipped in the compose file and the Kubernetes ConfigMap are the ones Marty
/// generates (`marty events authorization`), and a real nats-server running the compose
/// configuration lets the operator create the stream and each service publish only under its
/// own name.
#[tokio::test(flavor = "multi_thread")]
async fn the_shipped_nats_configuration_logs_in_each_service_as_itself() {
    let generated = std::process::Command::new(env!("CARGO_BIN_EXE_marty"))
        .args(["events", "authorization"])
        .output()
        .unwrap();
    assert!(generated.status.success(), "{}", show(&generated));
    let block = String::from_utf8(generated.stdout).unwrap();
    for s in Service::ALL {
        assert!(
            block.contains(&format!(
                "password: ${}",
                marty_events::auth::password_variable(s)
            )),
            "{block}"
        );
    }

    // Kubernetes: the ConfigMap carries the block; the servers get every password, from the
    // Secrets the services mount theirs from.
    let docs = yaml_documents(&repo().join("deploy/k8s/30-nats.yaml"));
    let conf = docs
        .iter()
        .find(|d| str_of(&d["kind"]) == "ConfigMap")
        .unwrap()["data"]["nats.conf"]
        .clone();
    assert!(str_of(&conf).contains(&block), "{}", str_of(&conf));
    let nats = docs
        .iter()
        .find(|d| str_of(&d["kind"]) == "StatefulSet")
        .unwrap();
    let env: Vec<String> = nats["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|e| str_of(&e["name"]).to_owned())
        .collect();
    for s in Service::ALL {
        assert!(
            env.contains(&marty_events::auth::password_variable(s)),
            "{env:?}"
        );
    }
    assert!(env.contains(&marty_events::auth::OPERATOR_PASSWORD_VARIABLE.to_owned()));

    // Compose: the same block, with compose's `$$` escapes.
    let example = std::fs::read_to_string(repo().join("deploy/marty.env.example")).unwrap();
    let vars: BTreeMap<String, String> = example
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains('='))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect();
    let raw = std::fs::read_to_string(repo().join("deploy/docker-compose.yml")).unwrap();
    let compose: Value = serde_yaml::from_str(&interpolate(&raw, &vars)).unwrap();
    let content = str_of(&compose["configs"]["nats-conf"]["content"]).to_owned();
    assert!(content.contains(&block), "{content}");
    let nats_env = compose["services"]["nats"]["environment"]
        .as_mapping()
        .unwrap();
    let password =
        |var: &str| -> String { str_of(&nats_env[&Value::String(var.to_owned())]).to_owned() };

    // That configuration, on a real server.
    let dir = tempfile::tempdir().unwrap();
    let port = marty_events::local::free_port().unwrap();
    let conf_path = dir.path().join("nats.conf");
    std::fs::write(
        &conf_path,
        content
            .replace("port: 4222", &format!("port: {port}"))
            .replace("http_port: 8222\n", "")
            .replace(
                "store_dir: /data",
                &format!("store_dir: {:?}", dir.path().join("js")),
            ),
    )
    .unwrap();
    let mut server = std::process::Command::new(marty_events::local::find_binary().unwrap());
    server.arg("-c").arg(&conf_path).env_clear();
    for s in Service::ALL {
        let var = marty_events::auth::password_variable(s);
        server.env(&var, password(&var));
    }
    let operator_var = marty_events::auth::OPERATOR_PASSWORD_VARIABLE;
    server.env(operator_var, password(operator_var));
    let mut server = server
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("nats://127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "nats-server did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    // The migrate job's `marty events init`, as the operator; twice (idempotent); without
    // the operator's password it is refused.
    let init = |operator_password: Option<String>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_marty"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("MARTY_STATE_DIR", dir.path().join("state"))
            .env(
                "MARTY_CONFIG_DIR",
                repo().join("config").display().to_string(),
            )
            .env("MARTY_NATS_URL", &url);
        if let Some(p) = operator_password {
            cmd.env(operator_var, p);
        }
        cmd.args(["events", "init"]).output().unwrap()
    };
    for _ in 0..2 {
        let out = init(Some(password(operator_var)));
        assert!(out.status.success(), "{}", show(&out));
    }
    let out = init(None);
    assert!(!out.status.success(), "{}", show(&out));

    // Each service's password logs in as that service, which publishes only under its name.
    let csca_var = marty_events::auth::password_variable(Service::Csca);
    let pkd = async_nats::ConnectOptions::new()
        .user_and_password(
            "pkd".into(),
            password(&marty_events::auth::password_variable(Service::Pkd)),
        )
        .custom_inbox_prefix("_INBOX_pkd")
        .connect(&url)
        .await
        .unwrap();
    let js = async_nats::jetstream::new(pkd);
    let own = js
        .publish("marty.pkd.test.ping", "x".into())
        .await
        .unwrap()
        .await;
    assert!(own.is_ok(), "{own:?}");
    let forged = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        js.publish("marty.csca.certificate.issued", "x".into())
            .await?
            .await
    })
    .await;
    assert!(
        !matches!(forged, Ok(Ok(_))),
        "the PKD published as the CSCA"
    );
    assert!(
        async_nats::ConnectOptions::new()
            .user_and_password("csca".into(), "not-the-password".into())
            .connect(&url)
            .await
            .is_err(),
        "{csca_var}: a wrong password is refused"
    );
    server.kill().ok();
    server.wait().ok();
}
