use std::fs;

use super::*;

/// A config directory holding `yaml` as `<env>.yaml`, and a state dir, in a temp dir.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new(env_name: &str, yaml: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("config")).unwrap();
        fs::write(
            dir.path().join("config").join(format!("{env_name}.yaml")),
            yaml,
        )
        .unwrap();
        Self { dir }
    }

    fn env(&self) -> Env {
        Env::from_pairs([
            (
                "MARTY_CONFIG_DIR",
                self.dir.path().join("config").display().to_string(),
            ),
            (
                "MARTY_STATE_DIR",
                self.dir.path().join("state").display().to_string(),
            ),
        ])
    }

    fn file(&self, env_name: &str) -> String {
        self.dir
            .path()
            .join("config")
            .join(format!("{env_name}.yaml"))
            .display()
            .to_string()
    }
}

const MINIMAL: &str = "database:\n  host: db.internal\n  port: 6543\n";

fn shipped(env_name: &str) -> String {
    fs::read_to_string(format!(
        "{}/../../config/{env_name}.yaml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn origin_of<'a>(config: &'a Config, key: &str) -> &'a Origin {
    &config
        .settings()
        .iter()
        .find(|s| s.key == key)
        .unwrap()
        .origin
}

#[test]
fn shipped_files_name_the_design_databases() {
    let dev = Fixture::new("development", &shipped("development"));
    // Loading never writes; loading for setup generates the development passwords.
    let config = Config::load_from(&dev.env()).unwrap();
    let err = config
        .database(Service::Csca)
        .password(Role::App)
        .unwrap_err();
    assert!(err.to_string().contains("or run `marty db setup`"), "{err}");
    assert!(!dev.dir.path().join("state/secrets.json").exists());
    let config = Config::load_generating(&dev.env()).unwrap();
    assert_eq!(config.environment, Environment::Development);
    for service in Service::ALL {
        assert_eq!(
            config.database(service).database,
            service.default_database()
        );
        // Development generates the passwords of every role into a 0600 file.
        for role in Role::ALL {
            assert_eq!(
                expose(config.database(service).password(role).unwrap()).len(),
                32
            );
        }
    }
    assert_eq!(config.default_database().database, "marty_dev");
    assert_eq!(config.nats_url(), "nats://127.0.0.1:4222");
    let config = Config::load_from(&dev.env().with("MARTY_NATS_URL", "nats://bus:4333")).unwrap();
    assert_eq!(config.nats_url(), "nats://bus:4333");

    let testing = Fixture::new("testing", &shipped("testing"));
    let config = Config::load_from(&testing.env().with("MARTY_ENV", "testing")).unwrap();
    assert_eq!(config.database(Service::Pkd).database, "marty_pkd");

    let prod = Fixture::new("production", &shipped("production"));
    let env = prod
        .env()
        .with("MARTY_ENV", "production")
        .with("DB_HOST", "pg.example.org")
        .with("MARTY_CSCA_APP_PASSWORD", "s3cret");
    let config = Config::load_from(&env).unwrap();
    let csca = config.database(Service::Csca);
    assert_eq!(csca.database, "marty_csca_production");
    assert_eq!(csca.host, "pg.example.org");
    assert_eq!(expose(csca.password(Role::App).unwrap()), "s3cret");
    // Production never invents passwords: a missing one names its variable.
    let err = config
        .database(Service::Pkd)
        .password(Role::App)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "no password configured for role marty_pkd_app: set MARTY_PKD_APP_PASSWORD"
    );
    assert!(!prod.dir.path().join("state").join("secrets.json").exists());
}

#[test]
fn a_password_file_is_read_at_each_load_and_must_not_be_world_readable() {
    use std::os::unix::fs::PermissionsExt;
    let prod = Fixture::new("production", &shipped("production"));
    let file = prod.dir.path().join("csca-app.password");
    fs::write(&file, "first\n").unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
    let env = prod
        .env()
        .with("MARTY_ENV", "production")
        .with("DB_HOST", "pg.example.org")
        .with("MARTY_CSCA_APP_PASSWORD_FILE", file.display().to_string());
    let err = Config::load_from(&env).unwrap_err().to_string();
    assert!(
        err.contains("MARTY_CSCA_APP_PASSWORD_FILE") && err.contains("readable by other users"),
        "{err}"
    );
    assert!(
        !err.contains("first"),
        "the password must not be echoed: {err}"
    );
    // Group-readable is how a Secret volume reaches a non-root process (fsGroup).
    fs::set_permissions(&file, fs::Permissions::from_mode(0o640)).unwrap();
    let config = Config::load_from(&env).unwrap();
    assert_eq!(
        expose(config.database(Service::Csca).password(Role::App).unwrap()),
        "first"
    );
    // A rotated file is what the next load (a reload) sees.
    fs::write(&file, "second").unwrap();
    let config = Config::load_from(&env).unwrap();
    assert_eq!(
        expose(config.database(Service::Csca).password(Role::App).unwrap()),
        "second"
    );
    // The variable with the value itself still wins.
    let config = Config::load_from(&env.clone().with("MARTY_CSCA_APP_PASSWORD", "direct")).unwrap();
    assert_eq!(
        expose(config.database(Service::Csca).password(Role::App).unwrap()),
        "direct"
    );
    fs::write(&file, "\n").unwrap();
    let err = Config::load_from(&env).unwrap_err().to_string();
    assert!(err.contains("is empty"), "{err}");
}

#[test]
fn production_without_db_host_names_the_variable_and_file() {
    let prod = Fixture::new("production", &shipped("production"));
    let err = Config::load_from(&prod.env().with("MARTY_ENV", "production")).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: database.host: variable ${{DB_HOST}} is not set and has no default",
            prod.file("production")
        )
    );
}

#[test]
fn global_and_per_service_host_port_overrides() {
    let f = Fixture::new("development", MINIMAL);
    let config = Config::load_from(&f.env()).unwrap();
    assert_eq!(config.database(Service::Csca).host, "db.internal");
    assert_eq!(config.database(Service::Csca).port, 6543);

    let env = f
        .env()
        .with("DB_HOST", "10.1.1.1")
        .with("DB_PORT", "7000")
        .with("PKD_DB_HOST", "pkd.internal")
        .with("PASSPORT_ENGINE_DB_PORT", "7001");
    let config = Config::load_from(&env).unwrap();
    assert_eq!(config.database(Service::Csca).host, "10.1.1.1");
    assert_eq!(config.database(Service::Csca).port, 7000);
    assert_eq!(config.database(Service::Pkd).host, "pkd.internal");
    assert_eq!(config.database(Service::Pkd).port, 7000);
    assert_eq!(config.database(Service::PassportEngine).port, 7001);
    assert_eq!(config.admin().host, "10.1.1.1");
    assert_eq!(
        *origin_of(&config, "services.pkd.host"),
        Origin::Env {
            var: "PKD_DB_HOST".into()
        }
    );
    assert_eq!(
        *origin_of(&config, "services.csca.port"),
        Origin::Env {
            var: "DB_PORT".into()
        }
    );
}

#[test]
fn service_url_override_and_its_password() {
    let f = Fixture::new("development", MINIMAL);
    let env = f.env().with(
        "PKD_SERVICE_DATABASE_URL",
        "postgres://marty_pkd_app:p%40ss@pkd-db:5544/pkd_elsewhere?sslmode=require",
    );
    let config = Config::load_from(&env).unwrap();
    let pkd = config.database(Service::Pkd);
    assert_eq!(pkd.location(), "pkd-db:5544/pkd_elsewhere");
    assert_eq!(pkd.sslmode, SslMode::Require);
    assert_eq!(expose(pkd.password(Role::App).unwrap()), "p@ss");
    assert_eq!(
        *origin_of(&config, "services.pkd.database"),
        Origin::Env {
            var: "PKD_SERVICE_DATABASE_URL".into()
        }
    );
    // Other services are untouched.
    assert_eq!(config.database(Service::Csca).host, "db.internal");
}

#[test]
fn service_url_with_a_foreign_role_is_refused() {
    let f = Fixture::new("development", MINIMAL);
    let env = f.env().with(
        "CSCA_DATABASE_URL",
        "postgres://marty_pkd_app:x@h/marty_csca",
    );
    let err = Config::load_from(&env).unwrap_err().to_string();
    assert_eq!(
        err,
        "environment variable CSCA_DATABASE_URL: names user \"marty_pkd_app\", but csca connects only as its own roles (marty_csca_owner, marty_csca_app, marty_csca_readonly)"
    );
    assert!(!err.contains(":x@"));
}

#[test]
fn role_password_variables() {
    let f = Fixture::new("development", MINIMAL);
    let env = f
        .env()
        .with("MARTY_PASSPORT_ENGINE_APP_PASSWORD", "from-env");
    let config = Config::load_from(&env).unwrap();
    let pe = config.database(Service::PassportEngine);
    assert_eq!(expose(pe.password(Role::App).unwrap()), "from-env");
    // Without generation the others are unset.
    assert!(pe.password(Role::Owner).is_err());
    let setting = config
        .settings()
        .iter()
        .find(|s| s.key == "services.passport_engine.passwords.app")
        .unwrap();
    assert_eq!(setting.value, "********");
    assert_eq!(
        setting.origin,
        Origin::Env {
            var: "MARTY_PASSPORT_ENGINE_APP_PASSWORD".into()
        }
    );
}

#[test]
fn admin_connection_from_db_user_and_url() {
    let f = Fixture::new("development", MINIMAL);
    let env = f
        .env()
        .with("DB_USER", "provisioner")
        .with("DB_PASSWORD", "adminpw")
        .with("DB_HOST", "admin-host");
    let config = Config::load_from(&env).unwrap();
    assert_eq!(
        config.admin().to_string(),
        "provisioner@admin-host:6543/postgres"
    );
    assert_eq!(expose(config.admin().password.as_ref().unwrap()), "adminpw");

    let env = f.env().with("DB_USER", "ignored").with(
        "MARTY_ADMIN_DATABASE_URL",
        "postgresql://root2:pw@u-host:1234/maint",
    );
    let config = Config::load_from(&env).unwrap();
    assert_eq!(config.admin().to_string(), "root2@u-host:1234/maint");
}

#[test]
fn legacy_database_url() {
    let f = Fixture::new("development", MINIMAL);
    let config = Config::load_from(
        &f.env()
            .with("MARTY_DATABASE_URL", "postgres://legacy-host:5999/old_dev"),
    )
    .unwrap();
    let legacy = config.default_database();
    assert_eq!(
        (legacy.host.as_str(), legacy.port, legacy.database.as_str()),
        ("legacy-host", 5999, "old_dev")
    );
}

#[test]
fn nested_expansion_in_the_file() {
    let yaml = "database:\n  host: ${PRIMARY:-${FALLBACK:-default-host}}\n  port: ${PORT:-5432}\n";
    let f = Fixture::new("development", yaml);
    assert_eq!(
        Config::load_from(&f.env())
            .unwrap()
            .database(Service::Csca)
            .host,
        "default-host"
    );
    let config = Config::load_from(&f.env().with("FALLBACK", "fb")).unwrap();
    assert_eq!(config.database(Service::Csca).host, "fb");
    let config = Config::load_from(&f.env().with("FALLBACK", "fb").with("PRIMARY", "pr")).unwrap();
    assert_eq!(config.database(Service::Csca).host, "pr");
}

#[test]
fn invalid_values_name_file_and_key() {
    let f = Fixture::new("development", "database:\n  port: lots\n");
    let err = Config::load_from(&f.env()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: database.port: expected a port number (1-65535), found \"lots\" (invalid digit found in string)",
            f.file("development")
        )
    );
    let f = Fixture::new("development", MINIMAL);
    let err = Config::load_from(&f.env().with("DB_PORT", "99999")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "environment variable DB_PORT: expected a port number (1-65535), found \"99999\" (number too large to fit in target type)"
    );
}

#[test]
fn unknown_keys_are_refused() {
    let f = Fixture::new("development", "services:\n  csca:\n    databse: x\n");
    let err = Config::load_from(&f.env()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: services.csca.databse: unknown key; expected one of: database, host, port, sslmode, pool, passwords, logins, api, keys, policy",
            f.file("development")
        )
    );
    let f = Fixture::new(
        "development",
        "services:\n  trust_store:\n    database: x\n",
    );
    let err = Config::load_from(&f.env()).unwrap_err();
    assert!(
        err.to_string().ends_with("services.trust_store: unknown key; expected one of: csca, document_signer, passport_engine, pkd"),
        "{err}"
    );
}

#[test]
fn malformed_yaml_names_file_and_position() {
    let f = Fixture::new("development", "database:\n  host: [unclosed\n");
    let err = Config::load_from(&f.env()).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("{}: malformed YAML: ", f.file("development"))),
        "{err}"
    );
    assert!(err.contains("line 3"), "{err}");
}

#[test]
fn missing_file_and_unknown_environment() {
    let f = Fixture::new("development", MINIMAL);
    let err = Config::load_from(&f.env().with("MARTY_ENV", "staging")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "environment variable MARTY_ENV: unknown environment \"staging\": expected development, testing or production"
    );
    let err = Config::load_from(&f.env().with("MARTY_ENV", "testing")).unwrap_err();
    assert!(
        err.to_string().starts_with(&format!(
            "cannot read configuration file {}",
            f.file("testing")
        )),
        "{err}"
    );
}

#[test]
fn secrets_never_appear_in_debug_or_settings() {
    let f = Fixture::new("development", MINIMAL);
    let env = f
        .env()
        .with("MARTY_CSCA_OWNER_PASSWORD", "TopSecretOwner")
        .with("DB_PASSWORD", "TopSecretAdmin")
        .with(
            "PKD_SERVICE_DATABASE_URL",
            "postgres://marty_pkd_app:TopSecretUrl@h/db",
        );
    let config = Config::load_from(&env).unwrap();
    let debug = format!("{config:?} {env:?}");
    let shown = serde_json::to_string(config.settings()).unwrap();
    for secret in ["TopSecretOwner", "TopSecretAdmin", "TopSecretUrl"] {
        assert!(!debug.contains(secret), "Debug leaks {secret}");
        assert!(!shown.contains(secret), "settings leak {secret}");
    }
}

#[test]
fn isolation_conflicts_are_explained() {
    let yaml = "services:\n  pkd:\n    database: template1\n  passport_engine:\n    database: marty_dev\n  csca:\n    database: postgres\n";
    let f = Fixture::new("development", yaml);
    let config = Config::load_from(&f.env()).unwrap();
    let problems = config.isolation_conflicts();
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(problems.iter().any(|p| p.starts_with(
        "service pkd is configured to use template1, one of PostgreSQL's own databases"
    )));
    assert!(problems.iter().any(|p| p.starts_with(
        "service csca is configured to use postgres, one of PostgreSQL's own databases"
    )));
    assert!(problems.iter().any(|p| p.starts_with(
        "service passport_engine is configured to use the legacy shared database marty_dev"
    )));
    // Through a URL too, and for the legacy database.
    let fine = Fixture::new("development", MINIMAL);
    let env = fine
        .env()
        .with("CSCA_DATABASE_URL", "postgres://h/template0")
        .with("MARTY_DATABASE_URL", "postgres://h/template1");
    let problems = Config::load_from(&env).unwrap().isolation_conflicts();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[1].starts_with("the legacy shared database is configured as template1"));
    assert!(
        Config::load_from(&fine.env())
            .unwrap()
            .isolation_conflicts()
            .is_empty()
    );
}

#[test]
fn urls_are_percent_decoded_and_may_name_a_socket_directory() {
    let f = Fixture::new("development", MINIMAL);
    // `+` is a plus sign in a URL's userinfo (form decoding would make it a space).
    let env = f.env().with(
        "CSCA_DATABASE_URL",
        "postgres://marty_csca_app:a+b%2Bc%20d@db:5433/marty_csca",
    );
    let config = Config::load_from(&env).unwrap();
    assert_eq!(
        expose(config.database(Service::Csca).password(Role::App).unwrap()),
        "a+b+c d"
    );
    // libpq's forms of a Unix socket directory.
    for url in [
        "postgres://marty_csca_app@/marty_csca?host=/run/postgresql&port=5439",
        "postgres://marty_csca_app@%2Frun%2Fpostgresql:5439/marty_csca",
    ] {
        let config = Config::load_from(&f.env().with("CSCA_DATABASE_URL", url)).unwrap();
        let csca = config.database(Service::Csca);
        assert_eq!(
            (csca.host.as_str(), csca.port),
            ("/run/postgresql", 5439),
            "{url}"
        );
    }
    // As libpq: the last of a repeated parameter counts, and a query parameter overrides the
    // authority.
    let config = Config::load_from(&f.env().with(
        "CSCA_DATABASE_URL",
        "postgres://h1:1/marty_csca?port=6001&host=h2&host=h3",
    ))
    .unwrap();
    let csca = config.database(Service::Csca);
    assert_eq!((csca.host.as_str(), csca.port), ("h3", 6001));
    // What libpq would read differently, or a NUL that cuts a name short, is refused.
    for (url, why) in [
        (
            "postgres://marty_csca_app:%ZZ@h/marty_csca",
            "not followed by two hex digits",
        ),
        (
            "postgres://h/marty_csca%00application_name%00x",
            "control character",
        ),
        ("postgres://h1,h2/marty_csca", "several hosts"),
        ("postgres://h/db?host=a%2Cb", "several hosts"),
    ] {
        let err = Config::load_from(&f.env().with("CSCA_DATABASE_URL", url))
            .unwrap_err()
            .to_string();
        assert!(err.contains(why), "{url}: {err}");
    }
    let err = Config::load_from(&f.env().with("CSCA_DB_HOST", "a\u{1b}b"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("control character"), "{err}");
    // A parameter Marty would silently ignore is refused instead.
    let err = Config::load_from(&f.env().with(
        "CSCA_DATABASE_URL",
        "postgres://h/marty_csca?sslrootcert=/etc/ca.pem",
    ))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("unsupported URL parameter \"sslrootcert\""),
        "{err}"
    );
}

#[test]
fn production_never_reads_the_development_secrets_file() {
    let prod = Fixture::new("production", &shipped("production"));
    // A secrets file left by development in the same state directory.
    let state = prod.dir.path().join("state");
    fs::create_dir_all(&state).unwrap();
    let secrets = state.join("secrets.json");
    fs::write(
        &secrets,
        r#"{"passwords": {"marty_csca_app": "from-the-dev-file"}}"#,
    )
    .unwrap();
    fs::set_permissions(
        &secrets,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let env = prod
        .env()
        .with("MARTY_ENV", "production")
        .with("DB_HOST", "pg.example.org");
    let config = Config::load_from(&env).unwrap();
    let err = config
        .database(Service::Csca)
        .password(Role::App)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "no password configured for role marty_csca_app: set MARTY_CSCA_APP_PASSWORD"
    );
    assert!(
        config
            .settings()
            .iter()
            .all(|s| !matches!(s.origin, Origin::SecretsFile { .. })),
        "{:?}",
        config.settings()
    );
    // Generating passwords is refused outright in production.
    let yaml =
        shipped("production").replace("generate_passwords: false", "generate_passwords: true");
    let prod = Fixture::new("production", &yaml);
    let err = Config::load_from(
        &prod
            .env()
            .with("MARTY_ENV", "production")
            .with("DB_HOST", "h"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("database.generate_passwords: must be false in production"),
        "{err}"
    );
}

#[test]
fn local_cluster_state_is_used_when_enabled() {
    let yaml = "database:\n  local_postgres: true\n";
    let f = Fixture::new("development", yaml);
    let state = LocalClusterState {
        host: "127.0.0.1".into(),
        port: 45678,
        socket_dir: "/tmp/sock".into(),
        admin_user: "marty_admin".into(),
        admin_password: "pw".into(),
    };
    assert!(!format!("{state:?}").contains("\"pw\""));
    let path = LocalClusterState::path(&f.dir.path().join("state"));
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, serde_json::to_vec(&state).unwrap()).unwrap();
    let config = Config::load_from(&f.env()).unwrap();
    assert_eq!(config.database(Service::Csca).port, 45678);
    assert_eq!(config.admin().user, "marty_admin");
    // An explicit variable still wins over the local cluster.
    let config = Config::load_from(&f.env().with("DB_PORT", "5555")).unwrap();
    assert_eq!(config.database(Service::Csca).port, 5555);
}

mod never_panics {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Whatever a configuration file holds, loading it returns a value or an error.
        #[test]
        fn loading_arbitrary_yaml(text in "(?s).{0,200}") {
            let f = Fixture::new("development", &text);
            let _ = Config::load_from(&f.env());
        }

        /// Structured noise: YAML-ish lines with references, defaults and braces.
        #[test]
        fn loading_yaml_like_documents(
            lines in proptest::collection::vec(
                "(database|services|admin|legacy|  host|  port|  csca|    database|  pool|    max_connections): ?(\\$\\{[A-Z_]{0,4}(:-)?|\\}|[a-z0-9]{0,5}|\\[|-1){0,4}",
                0..8,
            )
        ) {
            let f = Fixture::new("development", &lines.join("\n"));
            let _ = Config::load_from(&f.env().with("A", "1"));
        }

        #[test]
        fn expanding_arbitrary_strings(text in "(?s)[${}:\\-A-Z_a-z]{0,40}") {
            let env = Env::from_pairs([("A", "x"), ("B_", "")]);
            let _ = crate::expand::expand(&text, &env);
        }
    }
}

const KEK_HEX: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

#[test]
fn keks_come_from_variables_files_or_the_development_secrets_file() {
    // Development: `db setup` (load_generating) writes one KEK per service, once.
    let dev = Fixture::new("development", &shipped("development"));
    let env = dev.env().with("DB_HOST", "h");
    let before = Config::load_from(&env).unwrap();
    let err = before.kek(Service::Csca).unwrap_err().to_string();
    assert!(
        err.contains("set MARTY_CSCA_KEK") && err.contains("run `marty db setup`"),
        "{err}"
    );
    let generated = Config::load_generating(&env).unwrap();
    let first = generated.kek(Service::Csca).unwrap();
    assert!(matches!(first.origin, Origin::SecretsFile { .. }));
    let again = Config::load_generating(&env).unwrap();
    assert_eq!(
        again.kek(Service::Csca).unwrap().current.bytes(),
        first.current.bytes()
    );
    assert_ne!(
        again.kek(Service::Pkd).unwrap().current.bytes(),
        first.current.bytes(),
        "every service has its own KEK"
    );

    // A variable wins, and `previous` is read for a rotation.
    let env2 = env
        .clone()
        .with("MARTY_CSCA_KEK", KEK_HEX)
        .with("MARTY_CSCA_PREVIOUS_KEK", hex_of(first.current.bytes()));
    let rotated = Config::load_from(&env2)
        .unwrap()
        .kek(Service::Csca)
        .unwrap();
    assert_eq!(hex_of(rotated.current.bytes()), KEK_HEX);
    assert_eq!(
        rotated.previous.as_ref().unwrap().bytes(),
        first.current.bytes()
    );
    // The same KEK twice is no rotation.
    let same = env
        .clone()
        .with("MARTY_CSCA_KEK", KEK_HEX)
        .with("MARTY_CSCA_PREVIOUS_KEK", KEK_HEX);
    let err = Config::load_from(&same)
        .unwrap()
        .kek(Service::Csca)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("previous key-encryption key is the current one")
    );

    // A KEK file must be the owner's alone, and hold a well-formed key.
    let file = dev.dir.path().join("csca.kek");
    fs::write(&file, format!("{KEK_HEX}\n")).unwrap();
    fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let env3 = env
        .clone()
        .with("MARTY_CSCA_KEK_FILE", file.display().to_string());
    let err = Config::load_from(&env3)
        .unwrap()
        .kek(Service::Csca)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("readable by other users (mode 644)") && err.contains("MARTY_CSCA_KEK_FILE"),
        "{err}"
    );
    fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let from_file = Config::load_from(&env3)
        .unwrap()
        .kek(Service::Csca)
        .unwrap();
    assert_eq!(hex_of(from_file.current.bytes()), KEK_HEX);
    fs::write(&file, "too short").unwrap();
    let err = Config::load_from(&env3)
        .unwrap()
        .kek(Service::Csca)
        .unwrap_err()
        .to_string();
    assert!(err.contains("expected 64 hex digits"), "{err}");
    // A malformed variable names itself and never echoes the value.
    let bad = env.clone().with("MARTY_CSCA_KEK", "secret-but-wrong");
    let err = Config::load_from(&bad)
        .unwrap()
        .kek(Service::Csca)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("MARTY_CSCA_KEK") && !err.contains("secret-but-wrong"),
        "{err}"
    );
    // Never shown by settings or Debug.
    let shown = format!(
        "{:?} {:?}",
        Config::load_from(&env2).unwrap(),
        Config::load_from(&env2).unwrap().settings()
    );
    assert!(
        !shown.contains(KEK_HEX) && !shown.contains(&KEK_HEX[..16]),
        "{shown}"
    );
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn secrets_files_written_before_keks_existed_gain_them_and_keep_their_passwords() {
    let dev = Fixture::new("development", &shipped("development"));
    let env = dev.env().with("DB_HOST", "h");
    let config = Config::load_generating(&env).unwrap();
    let password = expose(config.database(Service::Csca).password(Role::App).unwrap()).to_owned();
    let path = dev.dir.path().join("state").join("secrets.json");
    let mut doc: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    let kek = doc["keks"]["csca"].as_str().unwrap().to_owned();
    doc.as_object_mut().unwrap().remove("keks");
    secrets::write_private(&path, &serde_json::to_vec(&doc).unwrap()).unwrap();
    let again = Config::load_generating(&env).unwrap();
    assert_eq!(
        expose(again.database(Service::Csca).password(Role::App).unwrap()),
        password
    );
    assert_ne!(
        hex_of(again.kek(Service::Csca).unwrap().current.bytes()),
        kek,
        "a new KEK for a file that had none"
    );
    // Existing KEKs are never replaced.
    let kept = hex_of(again.kek(Service::Csca).unwrap().current.bytes());
    let third = Config::load_generating(&env).unwrap();
    assert_eq!(
        hex_of(third.kek(Service::Csca).unwrap().current.bytes()),
        kept
    );
    // A malformed or foreign KEK entry is refused, and the file left as it was.
    let mut doc: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    doc["keks"]["csca"] = "zz".into();
    secrets::write_private(&path, &serde_json::to_vec(&doc).unwrap()).unwrap();
    let err = Config::load_generating(&env).unwrap_err().to_string();
    assert!(
        err.contains("malformed key-encryption key for csca"),
        "{err}"
    );
    doc["keks"]["csca"] = kept.clone().into();
    doc["keks"]["billing"] = kept.into();
    secrets::write_private(&path, &serde_json::to_vec(&doc).unwrap()).unwrap();
    let err = Config::load_generating(&env).unwrap_err().to_string();
    assert!(
        err.contains("\"billing\", which is not one of Marty's services"),
        "{err}"
    );
}

#[test]
fn production_needs_a_kek_from_the_environment() {
    let prod = Fixture::new("production", &shipped("production"));
    let env = prod
        .env()
        .with("MARTY_ENV", "production")
        .with("DB_HOST", "pg");
    let err = Config::load_from(&env)
        .unwrap()
        .kek(Service::DocumentSigner)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "key-encryption key of document_signer: no key-encryption key configured: set MARTY_DOCUMENT_SIGNER_KEK (64 hex digits, e.g. from `openssl rand -hex 32`) or MARTY_DOCUMENT_SIGNER_KEK_FILE (a 0600 file holding one)"
    );
}

#[test]
fn service_endpoints_and_policies() {
    let dev = Fixture::new("development", &shipped("development"));
    let config = Config::load_from(&dev.env()).unwrap();
    for s in Service::ALL {
        let api = config.api(s);
        assert_eq!(api.grpc_port, s.grpc_port());
        assert_eq!(api.http_port, s.http_port());
        assert_eq!(api.url, format!("http://127.0.0.1:{}", s.grpc_port()));
    }
    assert_eq!(config.runtime().log_format, LogFormat::Human);
    assert_eq!(config.csca_policy().crl_validity_days, 30);
    assert_eq!(config.signer_policy().document_type, "P");

    let env = dev
        .env()
        .with("MARTY_CSCA_GRPC_PORT", "0")
        .with("MARTY_CSCA_LISTEN_HOST", "0.0.0.0")
        .with("MARTY_LOG_FORMAT", "json")
        .with("MARTY_DOCUMENT_SIGNER_COUNTRY", "UT");
    let config = Config::load_from(&env).unwrap();
    assert_eq!(config.api(Service::Csca).grpc_port, 0);
    assert_eq!(config.api(Service::Csca).url, "http://127.0.0.1:0");
    assert_eq!(config.runtime().log_format, LogFormat::Json);
    assert_eq!(config.signer_policy().country.as_deref(), Some("UT"));
    assert_eq!(
        origin_of(&config, "services.csca.api.grpc_port"),
        &Origin::Env {
            var: "MARTY_CSCA_GRPC_PORT".into()
        }
    );

    for (var, value, why) in [
        ("MARTY_CSCA_GRPC_PORT", "70000", "MARTY_CSCA_GRPC_PORT"),
        ("MARTY_LOG_FORMAT", "xml", "expected human or json"),
        ("MARTY_CSCA_URL", "ftp://x", "an http:// or https:// URL"),
        (
            "MARTY_CSCA_URL",
            "http://u:p@x:1",
            "must not carry credentials",
        ),
        (
            "MARTY_DOCUMENT_SIGNER_COUNTRY",
            "utopia",
            "two upper-case letters",
        ),
        (
            "MARTY_CSCA_CRL_DISTRIBUTION_POINT",
            "file:///etc",
            "ldap, http or https",
        ),
    ] {
        let err = Config::load_from(&dev.env().with(var, value))
            .unwrap_err()
            .to_string();
        assert!(err.contains(why), "{var}={value}: {err}");
    }
    // Policies that contradict themselves are refused with the key at fault.
    for (yaml, why) in [
        (
            "services:\n  csca:\n    policy:\n      crl_validity_days: 120\n",
            "services.csca.policy.crl_validity_days: must be 2 to 90 days",
        ),
        (
            "services:\n  csca:\n    policy:\n      dsc_validity_days: 30\n      dsc_key_usage_days: 60\n",
            "services.csca.policy.dsc_validity_days: must be longer than dsc_key_usage_days",
        ),
        (
            "services:\n  document_signer:\n    policy:\n      rotate_before_days: 90\n",
            "rotate_before_days: must be shorter than key_usage_days",
        ),
        (
            "services:\n  pkd:\n    policy:\n      x: 1\n",
            "services.pkd.policy: unknown key",
        ),
        (
            "services:\n  csca:\n    api:\n      grpc: 1\n",
            "services.csca.api.grpc: unknown key",
        ),
    ] {
        let f = Fixture::new("development", &format!("{MINIMAL}{yaml}"));
        let err = Config::load_from(&f.env()).unwrap_err().to_string();
        assert!(err.contains(why), "{yaml}: {err}");
    }
}

#[test]
fn key_stores_default_to_envelopes_and_a_token_needs_its_module_label_and_pin() {
    use crate::KeyStoreSettings;
    let dev = Fixture::new("development", &shipped("development"));
    let config = Config::load_from(&dev.env()).unwrap();
    for s in Service::ALL {
        assert_eq!(config.key_store(s), &KeyStoreSettings::Envelope);
    }

    // A token: its module, its label (default marty-<service>), the PIN read at use.
    let module = dev.dir.path().join("libtoken.so");
    fs::write(&module, b"").unwrap();
    let env = dev
        .env()
        .with("MARTY_CSCA_KEY_STORE", "pkcs11")
        .with("MARTY_CSCA_PKCS11_MODULE", module.to_str().unwrap());
    let config = Config::load_from(&env).unwrap();
    assert_eq!(
        config.key_store(Service::Csca),
        &KeyStoreSettings::Pkcs11 {
            module: module.clone(),
            token: "marty-csca".into()
        }
    );
    let err = config.pkcs11_pin(Service::Csca).unwrap_err().to_string();
    assert!(err.contains("MARTY_CSCA_PKCS11_PIN"), "{err}");
    let with_pin = env.clone().with("MARTY_CSCA_PKCS11_PIN", "12345678");
    let config = Config::load_from(&with_pin).unwrap();
    assert_eq!(
        config.pkcs11_pin(Service::Csca).unwrap().as_str(),
        "12345678"
    );
    let shown = format!("{:?}", config.settings());
    assert!(!shown.contains("12345678"), "{shown}");

    // A PIN file readable by others is refused, a 0600 one is read.
    let pin_file = dev.dir.path().join("csca.pin");
    fs::write(&pin_file, "87654321\n").unwrap();
    fs::set_permissions(
        &pin_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let with_file = env
        .clone()
        .with("MARTY_CSCA_PKCS11_PIN_FILE", pin_file.to_str().unwrap());
    let err = Config::load_from(&with_file)
        .unwrap()
        .pkcs11_pin(Service::Csca)
        .unwrap_err()
        .to_string();
    assert!(err.contains("chmod 600"), "{err}");
    fs::set_permissions(
        &pin_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let config = Config::load_from(&with_file).unwrap();
    assert_eq!(
        config.pkcs11_pin(Service::Csca).unwrap().as_str(),
        "87654321"
    );

    // A service without keys has no store to choose; an unknown store is named.
    let err = Config::load_from(&dev.env().with("MARTY_PASSPORT_ENGINE_KEY_STORE", "pkcs11"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("holds no private keys"), "{err}");
    let err = Config::load_from(&dev.env().with("MARTY_PKD_KEY_STORE", "hsm"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("envelope or pkcs11"), "{err}");

    // Production names the module explicitly (no guessing which library holds its CSCA keys).
    let prod = Fixture::new("production", &shipped("production"));
    let err = Config::load_from(
        &prod
            .env()
            .with("MARTY_ENV", "production")
            .with("DB_HOST", "pg.example.org")
            .with("MARTY_CSCA_KEY_STORE", "pkcs11"),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("MARTY_CSCA_PKCS11_MODULE"), "{err}");
}
