//! ICAO Doc 9303 core: a pure library, no database and no network.
//!
//! - [`mrz`]: machine readable zones (TD1, TD2, TD3).
//! - [`der`]: the BER/DER reader and DER writer everything else stands on.
//! - [`lds`]: EF.COM, DG1, DG2 and data group identification.
//! - [`cert`], [`crl`], [`cms`], [`sod`], [`masterlist`]: the PKI artefacts, parsed over their
//!   original bytes and built to the Doc 9303 profiles ([`issue`]).
//! - [`trust`], [`pa`]: trust stores, path validation and Passive Authentication.

pub mod algo;
pub mod cert;
pub mod cms;
pub mod crl;
pub mod der;
pub mod hex;
pub mod issue;
pub mod lds;
pub mod masterlist;
pub mod mrz;
pub mod name;
pub mod oid;
pub mod pa;
pub mod sod;
pub mod trust;
