//! The development secrets file: role passwords and key-encryption keys generated once and
//! reused.
//!
//! In development nobody should have to invent twelve passwords and four KEKs, yet every role
//! must still have a real password (scram-sha-256, never `trust`) and every service's private
//! keys a real KEK. They are generated into `<state dir>/secrets.json`, created with mode 0600
//! and replaced atomically under a lock so that concurrent `marty` processes agree on one value.
//! A file that others can read is refused.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand::Rng;
use rand::distributions::Alphanumeric;
use serde::{Deserialize, Serialize};

use crate::ConfigError;

/// Length of generated passwords: 32 alphanumerics ≈ 190 bits.
const GENERATED_PASSWORD_LEN: usize = 32;

/// The file's one shape. Anything else — `[]`, `{}`, a misspelt key, a role that does not
/// exist — is refused rather than treated as empty: regenerating would silently give every
/// role a new password on the next `marty db setup`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretsDoc {
    /// Role name → password.
    passwords: BTreeMap<String, String>,
    /// Service id → key-encryption key, hex. Files written before services had keys lack it;
    /// missing KEKs are added (never replaced: a replaced KEK would lock the service out of
    /// every key it sealed).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    keks: BTreeMap<String, String>,
    /// Role name → the login that currently carries its credential, when it is the role's
    /// alternate (`marty_csca_app_alt`) after `marty db rotate-password`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    logins: BTreeMap<String, String>,
}

/// The alternate login of a service role, used by password rotation.
pub fn alternate_login(role_name: &str) -> String {
    format!("{role_name}_alt")
}

/// What the secrets file supplies.
#[derive(Debug, Default)]
pub(crate) struct StoredSecrets {
    pub passwords: BTreeMap<String, String>,
    pub keks: BTreeMap<String, String>,
    pub logins: BTreeMap<String, String>,
}

/// Returns the passwords for `names` and the KEKs for `services` from the file. When the file
/// does not exist and `generate` is set, passwords for every name and KEKs for every service
/// are generated and written first; without `generate` nothing is written. A file that exists
/// must hold every name; KEKs it lacks are added when `generate` is set.
pub(crate) fn load(
    path: &Path,
    names: &[String],
    services: &[&str],
    generate: bool,
) -> Result<StoredSecrets, ConfigError> {
    let err = |message: String| ConfigError::Secrets {
        path: path.to_path_buf(),
        message,
    };
    let read = |path: &Path| -> Result<SecretsDoc, ConfigError> {
        match fs::read(path) {
            Ok(bytes) => {
                check_private(path).map_err(err)?;
                let doc: SecretsDoc = serde_json::from_slice(&bytes).map_err(|e| {
                    err(format!(
                        "not a Marty secrets file ({e}); expected {{\"passwords\": {{\"<role>\": \"<password>\", …}}, \"keks\": {{\"<service>\": \"<64 hex digits>\", …}}}} — fix or remove it (removing it gives every role a new password at the next `marty db setup`, and makes the services' stored private keys unreadable)"
                    ))
                })?;
                let known = |k: &String| {
                    names.contains(k) || names.iter().any(|n| alternate_login(n) == *k)
                };
                if let Some(unknown) = doc.passwords.keys().find(|k| !known(k)) {
                    return Err(err(format!(
                        "holds a password for {unknown:?}, which is not one of Marty's roles"
                    )));
                }
                if let Some((role, login)) = doc.logins.iter().find(|(role, login)| {
                    !names.contains(role)
                        || **login != alternate_login(role)
                        || !doc.passwords.contains_key(*login)
                }) {
                    return Err(err(format!(
                        "names {login:?} as the login of {role:?}: it must be that role's alternate ({}) with a password in the file",
                        alternate_login(role)
                    )));
                }
                if let Some((role, _)) = doc.passwords.iter().find(|(_, p)| p.is_empty()) {
                    return Err(err(format!("holds an empty password for {role}")));
                }
                if let Some(unknown) = doc.keks.keys().find(|k| !services.contains(&k.as_str())) {
                    return Err(err(format!(
                        "holds a key-encryption key for {unknown:?}, which is not one of Marty's services"
                    )));
                }
                if let Some((service, _)) = doc
                    .keks
                    .iter()
                    .find(|(_, k)| crate::kek::KekSecret::parse(k).is_err())
                {
                    return Err(err(format!(
                        "holds a malformed key-encryption key for {service} (expected 64 hex digits)"
                    )));
                }
                Ok(doc)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(SecretsDoc::default()),
            Err(e) => Err(err(e.to_string())),
        }
    };

    // Passwords are written whole, for every role at once, and only when the file does not
    // exist: a file missing some roles was edited, and filling the gaps would quietly change
    // those roles' passwords at the next `setup`.
    let check_complete = |doc: &SecretsDoc| -> Result<(), ConfigError> {
        let missing: Vec<&str> = names
            .iter()
            .filter(|n| !doc.passwords.contains_key(*n))
            .map(String::as_str)
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(err(format!(
                "lacks the password{} of {}: restore {}, or remove the file to have `marty db setup` generate new passwords for every role (which changes them all)",
                if missing.len() == 1 { "" } else { "s" },
                missing.join(", "),
                if missing.len() == 1 { "it" } else { "them" }
            )))
        }
    };
    let lacks_keks = |doc: &SecretsDoc| services.iter().any(|s| !doc.keks.contains_key(*s));
    let doc = read(path)?;
    if path.exists() {
        check_complete(&doc)?;
    }
    if !generate || (path.exists() && !lacks_keks(&doc)) {
        return Ok(select(&doc, names, services));
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| err(format!("cannot create {}: {e}", dir.display())))?;
    // The lock serialises generation between processes; re-read under it so that a file
    // another process wrote meanwhile wins over fresh secrets.
    let lock = File::create(lock_path(path)).map_err(|e| err(e.to_string()))?;
    lock.lock().map_err(|e| err(format!("cannot lock: {e}")))?;
    let mut doc = read(path)?;
    let existed = path.exists();
    if existed {
        check_complete(&doc)?;
    } else {
        for name in names {
            doc.passwords.insert(name.clone(), generate_password());
        }
    }
    if !existed || lacks_keks(&doc) {
        for service in services {
            doc.keks
                .entry((*service).to_owned())
                .or_insert_with(crate::kek::KekSecret::generate_hex);
        }
        write_private(
            path,
            &serde_json::to_vec_pretty(&doc).map_err(|e| err(e.to_string()))?,
        )
        .map_err(|e| err(e.to_string()))?;
    }
    Ok(select(&doc, names, services))
}

fn select(doc: &SecretsDoc, names: &[String], services: &[&str]) -> StoredSecrets {
    StoredSecrets {
        passwords: names
            .iter()
            .flat_map(|n| [n.clone(), alternate_login(n)])
            .filter_map(|n| doc.passwords.get(&n).map(|p| (n, p.clone())))
            .collect(),
        logins: doc.logins.clone(),
        keks: services
            .iter()
            .filter_map(|s| doc.keks.get(*s).map(|k| ((*s).to_owned(), k.clone())))
            .collect(),
    }
}

/// Records a rotation in the secrets file: `login` (the role `role_name` or its alternate)
/// gets `password` and becomes the role's login. The other login's password stays, so that
/// both work until the rotation is finished. Under the file's lock, replaced atomically.
pub fn record_rotation(
    path: &Path,
    role_name: &str,
    login: &str,
    password: &str,
) -> Result<(), ConfigError> {
    update(path, |doc| {
        doc.passwords.insert(login.to_owned(), password.to_owned());
        if login == role_name {
            doc.logins.remove(role_name);
        } else {
            doc.logins.insert(role_name.to_owned(), login.to_owned());
        }
    })
}

/// The password the secrets file holds for `login`, if any.
pub fn stored_password(path: &Path, login: &str) -> Result<Option<String>, ConfigError> {
    let err = |message: String| ConfigError::Secrets {
        path: path.to_path_buf(),
        message,
    };
    check_private(path).map_err(err)?;
    let bytes = fs::read(path).map_err(|e| err(e.to_string()))?;
    let doc: SecretsDoc = serde_json::from_slice(&bytes)
        .map_err(|e| err(format!("not a Marty secrets file ({e})")))?;
    Ok(doc.passwords.get(login).cloned())
}

/// Removes the password of a role's alternate login once a rotation away from it finished
/// (the role's own entry stays: the file holds every role).
pub fn forget_alternate(path: &Path, login: &str) -> Result<(), ConfigError> {
    update(path, |doc| {
        doc.passwords.remove(login);
    })
}

fn update(path: &Path, change: impl FnOnce(&mut SecretsDoc)) -> Result<(), ConfigError> {
    let err = |message: String| ConfigError::Secrets {
        path: path.to_path_buf(),
        message,
    };
    let lock = File::create(lock_path(path)).map_err(|e| err(e.to_string()))?;
    lock.lock().map_err(|e| err(format!("cannot lock: {e}")))?;
    check_private(path).map_err(err)?;
    let bytes = fs::read(path).map_err(|e| err(e.to_string()))?;
    let mut doc: SecretsDoc = serde_json::from_slice(&bytes)
        .map_err(|e| err(format!("not a Marty secrets file ({e})")))?;
    change(&mut doc);
    write_private(
        path,
        &serde_json::to_vec_pretty(&doc).map_err(|e| err(e.to_string()))?,
    )
    .map_err(|e| err(e.to_string()))
}

/// A fresh random password of URL- and SQL-safe characters.
pub fn generate_password() -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(GENERATED_PASSWORD_LEN)
        .map(char::from)
        .collect()
}

fn lock_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

pub(crate) fn check_private(path: &Path) -> Result<(), String> {
    let mode = fs::metadata(path)
        .map_err(|e| e.to_string())?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(format!(
            "is readable by other users (mode {:o}); run `chmod 600 {}`",
            mode & 0o777,
            path.display()
        ));
    }
    Ok(())
}

/// Writes `bytes` to `path` with mode 0600, atomically (temporary file + rename), so that a
/// crash never leaves a truncated secrets file.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = write_temporary(path, bytes)?;
    fs::rename(&tmp, path)
}

/// As [`write_private`], but fails with `AlreadyExists` instead of replacing `path`: the
/// finished file is linked into place, which the kernel refuses if the name exists.
pub fn write_private_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = write_temporary(path, bytes)?;
    let linked = fs::hard_link(&tmp, path);
    fs::remove_file(&tmp)?;
    linked
}

/// `bytes` in a 0600 file beside `path`, synced to disk.
fn write_temporary(path: &Path, bytes: &[u8]) -> std::io::Result<PathBuf> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(tmp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_once_and_reuses() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.json");
        let names = vec!["marty_csca_app".to_owned(), "marty_pkd_owner".to_owned()];
        let first = load(&path, &names, &[], true).unwrap().passwords;
        assert_eq!(first.len(), 2);
        assert_eq!(first["marty_csca_app"].len(), GENERATED_PASSWORD_LEN);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let second = load(&path, &names, &[], true).unwrap().passwords;
        assert_eq!(first, second);
        assert_ne!(first["marty_csca_app"], first["marty_pkd_owner"]);
    }

    #[test]
    fn without_generation_missing_stay_missing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.json");
        let got = load(&path, &["marty_csca_app".to_owned()], &["csca"], false)
            .unwrap()
            .passwords;
        assert!(got.is_empty());
        assert!(!path.exists());
    }

    #[test]
    fn files_of_the_wrong_shape_are_refused_not_regenerated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.json");
        let names = vec!["marty_csca_app".to_owned()];
        for (text, why) in [
            ("[]", "not a Marty secrets file"),
            ("{}", "missing field `passwords`"),
            (r#"{"passwords": {}, "extra": 1}"#, "unknown field `extra`"),
            (r#"{"pasword": {"marty_csca_app": "x"}}"#, "unknown field"),
            (
                r#"{"passwords": {"marty_csca_ap": "x"}}"#,
                "not one of Marty's roles",
            ),
            (r#"{"passwords": {"marty_csca_app": ""}}"#, "empty password"),
            (
                r#"{"passwords": {"marty_csca_app": 5}}"#,
                "not a Marty secrets file",
            ),
        ] {
            fs::write(&path, text).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
            let err = load(&path, &names, &[], true).unwrap_err().to_string();
            assert!(err.contains(why), "{text}: {err}");
            // The file is left as it was.
            assert_eq!(fs::read_to_string(&path).unwrap(), text);
        }
        // An empty or partial file was edited: refused too, never filled in.
        for text in [
            r#"{"passwords": {}}"#,
            r#"{"passwords": {"marty_csca_app": "x"}}"#,
        ] {
            fs::write(&path, text).unwrap();
            let two = vec!["marty_csca_app".to_owned(), "marty_pkd_app".to_owned()];
            let err = load(&path, &two, &[], true).unwrap_err().to_string();
            assert!(err.contains("lacks the password"), "{text}: {err}");
            assert_eq!(fs::read_to_string(&path).unwrap(), text);
        }
    }

    #[test]
    fn world_readable_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.json");
        fs::write(&path, r#"{"passwords": {}}"#).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = load(&path, &["x".to_owned()], &[], true).unwrap_err();
        assert!(
            err.to_string()
                .contains("readable by other users (mode 644)"),
            "{err}"
        );
    }
}
