//! Who may publish and subscribe what on NATS: a user per service, limited to its own
//! subjects, plus an operator user for `marty events`.
//!
//! A service may publish only `marty.<its id>.>` (so a PKD credential cannot announce a CSCA
//! certificate), create and read only its own durable consumers, each on exactly the filter
//! its descriptor declares, and receive replies only on its own inbox prefix (so it cannot
//! read the events delivered to another service). JetStream's replies come from the server
//! itself and need no permission of the receiver.

use marty_config::Service;

use crate::relay::SUBJECT_PREFIX;

/// The stream every event goes to.
pub const STREAM: &str = "MARTY";
/// The NATS user of the operator's tools (`marty events …`): no subject limits.
pub const OPERATOR_USER: &str = "operator";

/// The NATS user name of a service.
pub fn user(service: Service) -> &'static str {
    service.id()
}

/// The reply subject prefix a service's connection uses (and the only one it may subscribe to).
pub fn inbox_prefix(service: Service) -> String {
    format!("_INBOX_{}", service.id())
}

/// What one user may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permissions {
    pub publish: Vec<String>,
    pub subscribe: Vec<String>,
}

/// The permissions of `service`, which consumes `consumes` (subject filters).
pub fn service_permissions(service: Service, consumes: &[&str]) -> Permissions {
    let mut publish = vec![
        format!("{SUBJECT_PREFIX}.{}.>", service.id()),
        "$JS.API.INFO".to_owned(),
        // Read only: a service that could update the stream could shrink its limits or
        // narrow its subjects and silence every other service's events. The operator creates
        // and configures it (`marty dev nats start`).
        format!("$JS.API.STREAM.INFO.{STREAM}"),
    ];
    for filter in consumes {
        let durable = crate::ConsumerConfig::new(service, *filter).durable_name();
        publish.push(format!(
            "$JS.API.CONSUMER.CREATE.{STREAM}.{durable}.{filter}"
        ));
        publish.push(format!("$JS.API.CONSUMER.INFO.{STREAM}.{durable}"));
        publish.push(format!("$JS.API.CONSUMER.MSG.NEXT.{STREAM}.{durable}"));
        publish.push(format!("$JS.ACK.{STREAM}.{durable}.>"));
    }
    Permissions {
        publish,
        subscribe: vec![format!("{}.>", inbox_prefix(service))],
    }
}

/// A user of the server's configuration.
#[derive(Debug, Clone)]
pub struct NatsUser {
    pub name: String,
    pub password: String,
    /// None: no limits (the operator).
    pub permissions: Option<Permissions>,
}

fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

fn list(items: &[String]) -> String {
    items
        .iter()
        .map(|s| quoted(s))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The nats-server configuration: loopback on `port`, JetStream in `store_dir`, these users.
pub fn server_config(port: u16, store_dir: &std::path::Path, users: &[NatsUser]) -> String {
    let mut out = format!(
        "# Written by Marty; regenerated at every start.\nlisten: \"127.0.0.1:{port}\"\njetstream {{ store_dir: {} }}\n",
        quoted(&store_dir.display().to_string())
    );
    let entries: Vec<String> = users
        .iter()
        .map(|u| user_entry(&u.name, &quoted(&u.password), u.permissions.as_ref()))
        .collect();
    out.push_str(&authorization(&entries));
    out
}

/// The `authorization` block of a deployed nats-server: a user per service with the
/// permissions its consumers need, and the operator; each password is a reference to the
/// server's environment (`$MARTY_<SERVICE>_NATS_PASSWORD`, `$MARTY_NATS_OPERATOR_PASSWORD`),
/// which nats-server resolves when it reads its configuration, so no password is in the file.
pub fn deployment_authorization(consumes: &[(Service, &[&str])]) -> String {
    let mut entries: Vec<String> = Service::ALL
        .into_iter()
        .map(|s| {
            let filters = consumes
                .iter()
                .find(|(c, _)| *c == s)
                .map(|(_, f)| *f)
                .unwrap_or(&[]);
            user_entry(
                user(s),
                &format!("${}", password_variable(s)),
                Some(&service_permissions(s, filters)),
            )
        })
        .collect();
    entries.push(user_entry(
        OPERATOR_USER,
        &format!("${OPERATOR_PASSWORD_VARIABLE}"),
        None,
    ));
    authorization(&entries)
}

/// The variable holding a service's NATS password.
pub fn password_variable(service: Service) -> String {
    format!("MARTY_{}_NATS_PASSWORD", service.env_prefix())
}

/// The variable holding the operator's NATS password.
pub const OPERATOR_PASSWORD_VARIABLE: &str = "MARTY_NATS_OPERATOR_PASSWORD";

fn user_entry(name: &str, password: &str, permissions: Option<&Permissions>) -> String {
    let mut out = format!("    {{ user: {}, password: {password}", quoted(name));
    if let Some(p) = permissions {
        out.push_str(&format!(
            ", permissions: {{ publish: {{ allow: [{}] }}, subscribe: {{ allow: [{}] }} }}",
            list(&p.publish),
            list(&p.subscribe)
        ));
    }
    out.push_str(" }\n");
    out
}

fn authorization(entries: &[String]) -> String {
    format!(
        "authorization {{\n  users: [\n{}  ]\n}}\n",
        entries.concat()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_publishes_only_its_own_subjects_and_consumes_what_it_declares() {
        let p = service_permissions(Service::Pkd, &["marty.csca.>"]);
        assert_eq!(p.publish[0], "marty.pkd.>");
        assert!(p.publish.iter().all(|s| !s.starts_with("marty.csca")));
        assert!(
            p.publish
                .contains(&"$JS.API.CONSUMER.CREATE.MARTY.pkd--marty_csca_all.marty.csca.>".into())
        );
        assert!(
            p.publish.iter().all(|s| !s.contains("DELETE")
                && !s.contains("UPDATE")
                && !s.contains("STREAM.CREATE")),
            "{:?}",
            p.publish
        );
        assert_eq!(p.subscribe, vec!["_INBOX_pkd.>".to_owned()]);
        let conf = server_config(
            4222,
            std::path::Path::new("/tmp/js"),
            &[NatsUser {
                name: "pkd".into(),
                password: "a\"b".into(),
                permissions: Some(p),
            }],
        );
        assert!(conf.contains(r#"password: "a\"b""#), "{conf}");
    }
}
