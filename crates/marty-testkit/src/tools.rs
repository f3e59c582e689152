//! The independent verifiers and clients tests call: the `openssl` CLI, the Python oracle
//! (asn1crypto + cryptography), the Python gRPC client with reflection, `curl`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn show(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn openssl(dir: &Path, args: &[&str]) -> Output {
    Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("the openssl CLI is installed")
}

/// `openssl args…`, asserting success; returns stdout and stderr.
pub fn openssl_ok(dir: &Path, args: &[&str]) -> String {
    let out = openssl(dir, args);
    assert!(out.status.success(), "openssl {args:?}:\n{}", show(&out));
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The Python interpreter of the oracles: `$MARTY_PYTHON`, else the virtualenv `make test`
/// creates.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("MARTY_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = repo().join(".venv/bin/python");
    assert!(
        venv.exists(),
        "the independent Python verifiers are not installed: run `make test` (it creates .venv from scripts/oracle-requirements.txt), or set MARTY_PYTHON"
    );
    venv
}

/// Prometheus' `promtool`: `$MARTY_PROMTOOL`, else the one `make test` extracts into the
/// virtualenv (scripts/ensure-promtool.sh), else one on PATH.
pub fn promtool() -> PathBuf {
    if let Some(p) = std::env::var_os("MARTY_PROMTOOL") {
        return PathBuf::from(p);
    }
    let venv = repo().join(".venv/bin/promtool");
    if venv.exists() {
        return venv;
    }
    let on_path = Command::new("promtool").arg("--version").output();
    assert!(
        on_path.is_ok_and(|o| o.status.success()),
        "promtool is not installed: run `make test` (scripts/ensure-promtool.sh puts it in .venv/bin), or set MARTY_PROMTOOL"
    );
    PathBuf::from("promtool")
}

fn python_script(
    script: &str,
    dir: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (Option<i32>, serde_json::Value, String) {
    let out = Command::new(python())
        .current_dir(dir)
        .arg(repo().join("scripts").join(script))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let report = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.code(), report, show(&out))
}

/// Runs the Python artefact oracle (`scripts/oracle.py`): exit code, JSON report, transcript.
pub fn oracle(dir: &Path, args: &[&str]) -> (Option<i32>, serde_json::Value, String) {
    python_script("oracle.py", dir, args, &[])
}

/// Runs the Python gRPC client (`scripts/grpc_probe.py`), which learns every message type
/// from the server's reflection service.
pub fn grpc_probe(args: &[&str]) -> (Option<i32>, serde_json::Value, String) {
    python_script("grpc_probe.py", &repo(), args, &[])
}

/// [`grpc_probe`] with environment variables (its TLS files, extra metadata).
pub fn grpc_probe_with(
    env: &[(&str, &str)],
    args: &[&str],
) -> (Option<i32>, serde_json::Value, String) {
    python_script("grpc_probe.py", &repo(), args, env)
}

/// `curl -s` a URL: (HTTP status, body).
pub fn curl(url: &str) -> (u16, String) {
    curl_with(&[], url)
}

/// `curl -s` with more options (`--cacert`, `--cert`…): (HTTP status, body); status 0 when
/// no HTTP response came (refused connection or handshake).
pub fn curl_with(options: &[&str], url: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-m", "10", "-w", "\n%{http_code}"])
        .args(options)
        .arg(url)
        .output()
        .expect("curl is installed");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}
