//! Integration tests of the `marty` CLI and `marty-db` against real PostgreSQL servers, with
//! real roles logging in with real passwords. One test binary for the crate (link time).

// Test helpers fail loudly by design.
#![allow(clippy::unwrap_used)]

mod backup;
mod db;
mod deployment;
mod drift;
mod events;
mod harness;
mod icao;
mod monitoring;
mod platform;
mod privileges;
mod rotation;
mod security;
mod services;
mod split;
mod toolkit;
