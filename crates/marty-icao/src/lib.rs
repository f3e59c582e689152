//! ICAO Doc 9303 core: a pure library, no database and no network.
//!
//! - [`mrz`]: machine readable zones (TD1, TD2, TD3).
//! - [`der`]: the BER/DER reader and DER writer everything else stands on.
//! - [`lds`]: EF.COM, DG1, DG2 and data group identification.
//! - [`cert`], [`crl`], [`cms`], [`sod`], [`masterlist`]: the PKI artefacts, parsed over their
//!   original bytes and built to the Doc 9303 profiles ([`issue`]).
//! - [`trust`], [`pa`]: trust stores, path validation and Passive Authentication;
//!   [`country`]: MRZ issuing-State codes and the CSCA countries they correspond to.

pub mod algo;
pub mod cert;
pub mod cms;
pub mod country;
pub mod crl;
pub mod csr;
pub mod der;
pub mod hex;
pub mod inputs;
pub mod issue;
pub mod ldif;
pub mod lds;
pub mod masterlist;
pub mod mrz;
pub mod name;
pub mod oid;
pub mod pa;
pub mod sod;
pub mod text;
pub mod trust;

/// Stack size of the threads that parse untrusted input. Nesting is bounded by
/// [`der::MAX_DEPTH`] (a few KiB of stack per level at most), so this leaves a wide margin
/// whatever stack the process or the async runtime's threads were given.
pub const PARSER_STACK_BYTES: usize = 8 * 1024 * 1024;

/// Runs `f` on a thread with [`PARSER_STACK_BYTES`] of stack and returns its result. A panic
/// in `f` is resumed in the caller. If no thread can be started, `f` runs on the caller's.
pub fn on_parser_stack<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    let f = std::sync::Mutex::new(Some(f));
    let result = std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("marty-parse".into())
            .stack_size(PARSER_STACK_BYTES)
            .spawn_scoped(scope, || {
                let f = f.lock().ok().and_then(|mut f| f.take());
                f.map(|f| f())
            })
            .map(|handle| handle.join())
    });
    match result {
        Ok(Ok(Some(value))) => value,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        // The thread could not be started (resource limits), or never ran `f`.
        Ok(Ok(None)) | Err(_) => {
            let f = f.into_inner().ok().flatten();
            f.expect("the closure stays in its slot unless the parser thread ran it")()
        }
    }
}
