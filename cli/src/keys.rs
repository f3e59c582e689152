//! `marty keys`: what a service's key store holds, as the store itself reports it.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;
use marty_config::{Config, KeyStoreSettings, Service};

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// List the private keys a service's PKCS#11 token holds for it, with the attributes that
    /// keep them inside the token (sensitive, never extractable, value refused when asked).
    /// Exit 0 when every key is confined to the token, 1 when one is not (an alert can use it),
    /// 3 when the token cannot be read (configuration, PIN, module).
    Inspect {
        /// csca, document_signer or pkd.
        #[arg(long)]
        service: Service,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(config: &Config, command: KeysCommand) -> Result<ExitCode> {
    match command {
        KeysCommand::Inspect { service, json } => inspect(config, service, json),
    }
}

fn inspect(config: &Config, service: Service, json: bool) -> Result<ExitCode> {
    let KeyStoreSettings::Pkcs11 { module, token } = config.key_store(service) else {
        return crate::operate::input(Err(anyhow::anyhow!(
            "the {service} service keeps its keys by envelope encryption in its database (services.{}.keys.store: envelope); `marty keys inspect` reads PKCS#11 tokens",
            service.id()
        )));
    };
    let store = crate::operate::input(
        marty_keys::configured_token(config, service)
            .with_context(|| format!("opening token {token:?} of {service}")),
    )?;
    let keys = crate::operate::input(store.inspect().context("reading the token"))?;
    let confined = keys.iter().all(|k| k.confined());
    if json {
        crate::commands::print_json(&serde_json::json!({
            "service": service.id(),
            "module": module,
            "token": token,
            "confined": confined,
            "keys": keys.iter().map(|k| serde_json::json!({
                "key_id": k.key_id,
                "label": k.label,
                "key_type": k.key_type,
                "sensitive": k.sensitive,
                "extractable": k.extractable,
                "always_sensitive": k.always_sensitive,
                "never_extractable": k.never_extractable,
                "value_refused": k.value_refused,
                "confined": k.confined(),
            })).collect::<Vec<_>>(),
        }))?;
    } else {
        println!(
            "{} key(s) of {service} in token {token:?} ({})",
            keys.len(),
            module.display()
        );
        for k in &keys {
            println!(
                "  {} {:<3} sensitive={} extractable={} never_extractable={} value_refused={} -> {}",
                k.key_id
                    .map(|u| u.to_string())
                    .unwrap_or_else(|| k.label.clone()),
                k.key_type,
                k.sensitive,
                k.extractable,
                k.never_extractable,
                k.value_refused,
                if k.confined() {
                    "confined"
                } else {
                    "CAN LEAVE THE TOKEN"
                }
            );
        }
    }
    Ok(if confined {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
