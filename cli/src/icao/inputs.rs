//! Reading what users hand to `marty icao`: DER, PEM or 0x77-wrapped files, times, keys,
//! trust directories and folders of LDS files.

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use marty_icao::cert::Certificate;
use marty_icao::inputs::{self, LdsFiles, TrustItem};
use marty_icao::issue::KeyPair;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The environment variable holding the passphrase of private key files, unless
/// `--passphrase-env` names another.
pub const DEFAULT_PASSPHRASE_ENV: &str = "MARTY_KEY_PASSPHRASE";

/// A file's bytes, PEM decoded when it is PEM (the first block), as is otherwise.
pub fn read_input(path: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    inputs::decode_pem(&bytes).with_context(|| format!("{}", path.display()))
}

pub fn read_certificate(path: &Path) -> Result<Certificate> {
    Certificate::from_der(&read_input(path)?).with_context(|| format!("{}", path.display()))
}

/// RFC 3339 (`2026-01-15T00:00:00Z`) or a date (`2026-01-15`, midnight UTC).
pub fn parse_time(text: &str) -> Result<OffsetDateTime> {
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(t);
    }
    let date = time::Date::parse(
        text,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .map_err(|_| {
        anyhow!(
            "invalid time {text:?}: expected RFC 3339 (2026-01-15T12:00:00Z) or a date (2026-01-15)"
        )
    })?;
    Ok(date.midnight().assume_utc())
}

/// The regular files of a directory, sorted by name (so that reports are reproducible).
fn files_in(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read directory {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    paths.retain(|p| p.is_file());
    paths.sort();
    Ok(paths)
}

/// Every certificate and CRL in a directory (other files are an error: a trust directory
/// should hold nothing else).
pub fn read_trust_dir(dir: &Path) -> Result<Vec<TrustItem>> {
    let mut items = Vec::new();
    for path in files_in(dir)? {
        let bytes =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        items.push(inputs::trust_item(&bytes).with_context(|| format!("{}", path.display()))?);
    }
    if !items.iter().any(|i| matches!(i, TrustItem::Certificate(_))) {
        bail!("trust directory {} holds no certificate", dir.display());
    }
    Ok(items)
}

/// The certificates of a trust directory (its CRLs left out).
pub fn read_certificates_in(dir: &Path) -> Result<Vec<Certificate>> {
    Ok(read_trust_dir(dir)?
        .into_iter()
        .filter_map(|i| match i {
            TrustItem::Certificate(c) => Some(*c),
            TrustItem::Crl(_) => None,
        })
        .collect())
}

/// The LDS files of a folder, recognised by their tags.
pub fn read_lds_folder(dir: &Path) -> Result<LdsFiles> {
    let mut files = Vec::new();
    for path in files_in(dir)? {
        let bytes =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        files.push((name, bytes));
    }
    LdsFiles::collect(files).with_context(|| format!("{}", dir.display()))
}

/// Reads an encrypted private key, with its passphrase from the environment.
pub fn read_key(
    path: &Path,
    passphrase_env: &str,
    certificate: Option<&Certificate>,
) -> Result<KeyPair> {
    let pem = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let passphrase = passphrase(passphrase_env)?;
    KeyPair::from_encrypted_pem(&pem, passphrase.as_bytes(), certificate)
        .with_context(|| format!("{}", path.display()))
}

pub fn passphrase(var: &str) -> Result<String> {
    match std::env::var(var) {
        Ok(p) if !p.is_empty() => Ok(p),
        _ => bail!(
            "set {var} to the passphrase that protects private key files (keys are never written or read in clear)"
        ),
    }
}

/// Writes a private key encrypted under the passphrase, mode 0600. An existing file is kept
/// unless `force`: a key file lost to a typo cannot be recovered.
pub fn write_key(path: &Path, key: &KeyPair, passphrase_env: &str, force: bool) -> Result<()> {
    refuse_existing(path, force)?;
    create_parent(path)?;
    let pem = key.to_encrypted_pem(passphrase(passphrase_env)?.as_bytes())?;
    if force {
        marty_config::write_private(path, &pem)
    } else {
        marty_config::write_private_new(path, &pem)
    }
    .with_context(|| format!("writing {}", path.display()))
}

/// Whether two paths name one file: the same path once made absolute and normalised, or the
/// same file on disk (a link).
pub fn same_file(a: &Path, b: &Path) -> bool {
    let lexical = |p: &Path| -> Option<std::path::PathBuf> {
        let absolute = std::path::absolute(p).ok()?;
        let mut out = std::path::PathBuf::new();
        for c in absolute.components() {
            match c {
                std::path::Component::ParentDir => {
                    out.pop();
                }
                std::path::Component::CurDir => {}
                other => out.push(other),
            }
        }
        Some(out)
    };
    if lexical(a).is_some_and(|x| Some(x) == lexical(b)) {
        return true;
    }
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

/// Creates the directory an output file goes into.
fn create_parent(path: &Path) -> Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::create_dir_all(dir)
            .with_context(|| format!("creating directory {}", dir.display())),
        _ => Ok(()),
    }
}

/// Fails if `path` exists and `force` is not set, before any work is done.
pub fn refuse_existing(path: &Path, force: bool) -> Result<()> {
    if !force && path.symlink_metadata().is_ok() {
        bail!(
            "{} exists: refusing to overwrite it (pass --force to replace it)",
            path.display()
        );
    }
    Ok(())
}

/// Writes a DER artefact atomically (temporary file, then rename): an interrupted run never
/// leaves a truncated certificate or SOD behind. Without `force` an existing file is never
/// replaced, even by a race: the file is linked into place, which fails if the name exists.
pub fn write_der(path: &Path, bytes: &[u8], force: bool) -> Result<()> {
    refuse_existing(path, force)?;
    create_parent(path)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = std::path::PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    let placed = if force {
        std::fs::rename(&tmp, path)
    } else {
        let linked = std::fs::hard_link(&tmp, path);
        std::fs::remove_file(&tmp).ok();
        linked
    };
    match placed {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::remove_file(&tmp).ok();
            bail!(
                "{} exists: refusing to overwrite it (pass --force to replace it)",
                path.display()
            )
        }
        Err(e) => {
            std::fs::remove_file(&tmp).ok();
            Err(e).with_context(|| format!("writing {}", path.display()))
        }
    }
}
