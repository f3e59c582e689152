//! The `marty` binary run against the test servers of `marty-testkit`.

use std::process::{Command, Output};

pub use marty_testkit::{TestDb, TestNats};

/// Running the real `marty` binary with a test database's environment.
pub trait MartyCli {
    fn marty_with(&self, args: &[&str], extra: &[(&str, &str)]) -> Output;
    fn marty(&self, args: &[&str]) -> Output;
    fn marty_ok(&self, args: &[&str]) -> String;
    fn provision(&self);
}

impl MartyCli for TestDb {
    /// Runs `marty args…` with [`Self::env`] plus `extra`, and nothing else of this process's
    /// environment but PATH, so that a developer's variables cannot leak in.
    fn marty_with(&self, args: &[&str], extra: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_marty"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default());
        for (k, v) in self.env() {
            cmd.env(k, v);
        }
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd.args(args).output().expect("running marty")
    }

    fn marty(&self, args: &[&str]) -> Output {
        self.marty_with(args, &[])
    }

    /// `marty args…`, asserting success; returns stdout.
    fn marty_ok(&self, args: &[&str]) -> String {
        let out = self.marty(args);
        assert!(
            out.status.success(),
            "marty {args:?} failed:\n{}",
            show(&out)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// setup + migrate through the CLI.
    fn provision(&self) {
        self.marty_ok(&["db", "setup"]);
        self.marty_ok(&["db", "migrate"]);
    }
}

pub use marty_testkit::tools::show;

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
