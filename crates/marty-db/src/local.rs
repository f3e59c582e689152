//! A private PostgreSQL cluster for development (`marty dev postgres …`) and the tests.
//!
//! The cluster lives in one directory (`.marty/postgres`, or a temp dir in tests): `data/`,
//! `sock/` (its own Unix socket directory, so it never collides with a system server),
//! `postgres.log` and `cluster.json` (port and administrator credentials, mode 0600). It uses
//! the machine's PostgreSQL binaries, scram-sha-256 for every connection (never `trust`), listens
//! on loopback only, and picks a free port. PostgreSQL refuses to run as root, so when Marty runs
//! as root the server runs as the `postgres` OS user, which then owns `data/` and `sock/`.

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use marty_config::{LocalClusterState, generate_password, write_private};
use secrecy::SecretString;

use crate::DbError;

/// The administrator the local cluster is initialised with.
pub const ADMIN_USER: &str = "marty_admin";

#[derive(Debug, Clone)]
pub struct LocalPostgres {
    root: PathBuf,
    /// Test clusters trade durability for speed (`fsync = off`); development keeps defaults.
    ephemeral: bool,
}

fn err(message: impl Into<String>) -> DbError {
    DbError::Local(message.into())
}

impl LocalPostgres {
    /// The cluster kept under `state_dir/postgres`.
    pub fn in_state_dir(state_dir: &Path) -> Self {
        let root = state_dir.join("postgres");
        Self {
            // The server runs in its data directory: every path handed to it must be absolute.
            root: std::path::absolute(&root).unwrap_or(root),
            ephemeral: false,
        }
    }

    /// A throwaway cluster in `root` for tests.
    pub fn ephemeral(root: &Path) -> Self {
        Self {
            root: std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf()),
            ephemeral: true,
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    fn socket_dir(&self) -> PathBuf {
        self.root.join("sock")
    }

    fn log_file(&self) -> PathBuf {
        self.root.join("postgres.log")
    }

    fn state_file(&self) -> PathBuf {
        self.root.join("cluster.json")
    }

    /// The recorded state, if the cluster was ever started.
    pub fn state(&self) -> Result<Option<LocalClusterState>, DbError> {
        match fs::read(self.state_file()) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| err(format!("{}: {e}", self.state_file().display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(err(format!("{}: {e}", self.state_file().display()))),
        }
    }

    /// Is the server process running?
    pub fn is_running(&self) -> Result<bool, DbError> {
        if !self.data_dir().join("PG_VERSION").exists() {
            return Ok(false);
        }
        let bin = find_binaries()?;
        let status = self
            .command(&bin, "pg_ctl")
            .arg("status")
            .arg("-D")
            .arg(self.data_dir())
            .output()
            .map_err(|e| err(format!("running pg_ctl status: {e}")))?;
        Ok(status.status.success())
    }

    /// Initialises the cluster if needed and starts it (if not running); returns where it
    /// listens. Keeps the previous port when it is still free.
    pub fn start(&self) -> Result<LocalClusterState, DbError> {
        let bin = find_binaries()?;
        let previous = self.state()?;
        if self.is_running()? {
            return previous.ok_or_else(|| err("the server runs but cluster.json is missing; stop it with pg_ctl and start again"));
        }
        fs::create_dir_all(&self.root)
            .map_err(|e| err(format!("creating {}: {e}", self.root.display())))?;
        let as_root = is_root();
        if as_root {
            // The postgres user must be able to reach its directories.
            fs::set_permissions(&self.root, fs::Permissions::from_mode(0o755))
                .map_err(|e| err(format!("chmod {}: {e}", self.root.display())))?;
            check_traversable(&self.root)?;
        }
        let pending = self.root.join("pending-admin-password");
        let admin_password = if self.data_dir().join("PG_VERSION").exists() {
            match (&previous, fs::read_to_string(&pending)) {
                (Some(state), _) => state.admin_password.clone(),
                // Initialised, but the first start did not get as far as cluster.json.
                (None, Ok(password)) => SecretString::from(password),
                (None, Err(_)) => {
                    return Err(err(format!(
                        "{} holds a cluster whose administrator password is lost (cluster.json is missing); remove the directory to start afresh",
                        self.root.display()
                    )));
                }
            }
        } else {
            SecretString::from(self.init(&bin, as_root)?)
        };
        let port = match &previous {
            Some(state) if port_is_free(state.port) => state.port,
            _ => free_port()?,
        };
        let socket_dir = self.socket_dir();
        fs::create_dir_all(&socket_dir)
            .map_err(|e| err(format!("creating {}: {e}", socket_dir.display())))?;
        if as_root {
            chown_to_postgres(&socket_dir)?;
            chown_to_postgres(&self.root.join("data"))?;
            // The log file is written by pg_ctl running as postgres.
            fs::write(self.log_file(), b"").ok();
            chown_to_postgres(&self.log_file())?;
        }
        let mut options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c password_encryption=scram-sha-256",
            socket_dir.display()
        );
        if self.ephemeral {
            options.push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
        }
        let out = self
            .command(&bin, "pg_ctl")
            .arg("start")
            .arg("-w")
            .args(["-t", "60"])
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.log_file())
            .arg("-o")
            .arg(&options)
            .output()
            .map_err(|e| err(format!("running pg_ctl start: {e}")))?;
        if !out.status.success() {
            let log = fs::read_to_string(self.log_file()).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(10).collect();
            return Err(err(format!(
                "pg_ctl start failed: {}{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            )));
        }
        let state = LocalClusterState {
            host: "127.0.0.1".into(),
            port,
            socket_dir,
            admin_user: ADMIN_USER.into(),
            admin_password,
        };
        let json = serde_json::to_vec_pretty(&state).map_err(|e| err(e.to_string()))?;
        write_private(&self.state_file(), &json)
            .map_err(|e| err(format!("writing {}: {e}", self.state_file().display())))?;
        fs::remove_file(&pending).ok();
        Ok(state)
    }

    fn init(&self, bin: &Path, as_root: bool) -> Result<String, DbError> {
        let data = self.data_dir();
        if data.exists() {
            fs::remove_dir_all(&data)
                .map_err(|e| err(format!("removing incomplete {}: {e}", data.display())))?;
        }
        fs::create_dir_all(&data).map_err(|e| err(format!("creating {}: {e}", data.display())))?;
        fs::set_permissions(&data, fs::Permissions::from_mode(0o700)).ok();
        let password = generate_password();
        // initdb reads the superuser password from a file; it must be readable by the server user.
        let pwfile = self.root.join("initdb-pwfile");
        write_private(&pwfile, password.as_bytes())
            .map_err(|e| err(format!("writing {}: {e}", pwfile.display())))?;
        // Kept until cluster.json is written, so an interrupted start does not lose it.
        write_private(
            &self.root.join("pending-admin-password"),
            password.as_bytes(),
        )
        .map_err(|e| err(e.to_string()))?;
        if as_root {
            chown_to_postgres(&data)?;
            chown_to_postgres(&pwfile)?;
        }
        let out = self
            .command(bin, "initdb")
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                ADMIN_USER,
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-instructions",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()
            .map_err(|e| err(format!("running initdb: {e}")));
        fs::remove_file(&pwfile).ok();
        let out = out?;
        if !out.status.success() {
            return Err(err(format!(
                "initdb failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(password)
    }

    /// Stops the server if it runs; returns whether it was running.
    pub fn stop(&self) -> Result<bool, DbError> {
        if !self.is_running()? {
            return Ok(false);
        }
        let bin = find_binaries()?;
        let out = self
            .command(&bin, "pg_ctl")
            .arg("stop")
            .arg("-w")
            .args(["-m", "fast"])
            .arg("-D")
            .arg(self.data_dir())
            .output()
            .map_err(|e| err(format!("running pg_ctl stop: {e}")))?;
        if !out.status.success() {
            return Err(err(format!(
                "pg_ctl stop failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(true)
    }

    /// A command for one of the server binaries, run as `postgres` when we are root.
    fn command(&self, bin: &Path, program: &str) -> Command {
        let path = bin.join(program);
        if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }
}

/// The directory of `pg_ctl`/`initdb`: `MARTY_PG_BIN_DIR`, else `PATH`, else the newest
/// `/usr/lib/postgresql/*/bin`.
pub fn find_binaries() -> Result<PathBuf, DbError> {
    if let Some(dir) = std::env::var_os("MARTY_PG_BIN_DIR") {
        let dir = PathBuf::from(dir);
        if dir.join("pg_ctl").exists() && dir.join("initdb").exists() {
            return Ok(dir);
        }
        return Err(err(format!(
            "MARTY_PG_BIN_DIR={} holds no pg_ctl and initdb",
            dir.display()
        )));
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("pg_ctl").exists() && dir.join("initdb").exists() {
                return Ok(dir);
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("pg_ctl").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).ok_or_else(|| {
        err("no PostgreSQL server binaries found (looked for pg_ctl and initdb in MARTY_PG_BIN_DIR, PATH and /usr/lib/postgresql/*/bin). \
             Install them (Debian/Ubuntu: `apt-get install postgresql`; `make demo` and `make test` do this for you), \
             or use an existing server instead: set DB_HOST/DB_PORT and DB_USER/DB_PASSWORD (or MARTY_ADMIN_DATABASE_URL)")
    })
}

fn is_root() -> bool {
    // The owner of /proc/self is the process's effective uid, which is what PostgreSQL checks.
    fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

fn postgres_ids() -> Result<(u32, u32), DbError> {
    let passwd =
        fs::read_to_string("/etc/passwd").map_err(|e| err(format!("reading /etc/passwd: {e}")))?;
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.first() == Some(&"postgres") && fields.len() > 3)
                .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
                .flatten()
        })
        .ok_or_else(|| err("running as root, but there is no `postgres` OS user to run the server as (PostgreSQL refuses to run as root); install the postgresql package, which creates it"))
}

fn chown_to_postgres(path: &Path) -> Result<(), DbError> {
    let (uid, gid) = postgres_ids()?;
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .map_err(|e| err(format!("chown {} to postgres: {e}", path.display())))
}

/// The `postgres` user must be able to traverse every ancestor of the cluster directory.
fn check_traversable(dir: &Path) -> Result<(), DbError> {
    let absolute = fs::canonicalize(dir).map_err(|e| err(format!("{}: {e}", dir.display())))?;
    for ancestor in absolute.ancestors().skip(1) {
        let mode = fs::metadata(ancestor)
            .map(|m| m.permissions().mode())
            .unwrap_or(0o755);
        if mode & 0o001 == 0 {
            return Err(err(format!(
                "the postgres OS user cannot reach {} because {} has mode {:o}; put the state directory (MARTY_STATE_DIR) under a directory others can traverse",
                dir.display(),
                ancestor.display(),
                mode & 0o777
            )));
        }
    }
    Ok(())
}

fn free_port() -> Result<u16, DbError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| err(format!("finding a free port: {e}")))
}

fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}
