//! The key-table contract: a service stores sealed keys in a table of its own database with
//! these columns (the CSCA's `csca_keys`, the Document Signer's `signer_keys`):
//!
//! | column | holds |
//! |---|---|
//! | `id uuid` | the key id (bound into the associated data) |
//! | `public_key_der bytea` | SubjectPublicKeyInfo |
//! | `signs_with_pss boolean` | RSASSA-PSS signatures |
//! | `encryption_scheme text` | [`crate::ENVELOPE_SCHEME`] |
//! | `key_encryption_key_id text` | the id of the KEK that wrapped the data key, never the KEK |
//! | `encrypted_private_key bytea`, `nonce bytea` | the private key under its data key |
//! | `wrapped_data_key bytea`, `data_key_nonce bytea` | the data key under the KEK |

use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use crate::{KeyError, KeyStore, SealedKey};

/// The columns of [`SealedKey`], for `select` lists.
pub const SEALED_COLUMNS: &str = "id, public_key_der, signs_with_pss, encryption_scheme, key_encryption_key_id, encrypted_private_key, nonce, wrapped_data_key, data_key_nonce";

/// Binds `s` to the first nine placeholders, in the order of [`SEALED_COLUMNS`]: an insert
/// names `{SEALED_COLUMNS}` first and its own columns from `$10` on.
pub fn bind_sealed<'q>(
    query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    s: &'q SealedKey,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    query
        .bind(s.key_id)
        .bind(&s.spki)
        .bind(s.pss)
        .bind(&s.scheme)
        .bind(&s.kek_id)
        .bind(&s.ciphertext)
        .bind(&s.nonce)
        .bind(&s.wrapped_data_key)
        .bind(&s.data_key_nonce)
}

impl SealedKey {
    /// Reads the [`SEALED_COLUMNS`] of a row.
    pub fn from_row(row: &PgRow) -> Result<SealedKey, sqlx::Error> {
        Ok(SealedKey {
            key_id: row.try_get("id")?,
            spki: row.try_get("public_key_der")?,
            pss: row.try_get("signs_with_pss")?,
            scheme: row.try_get("encryption_scheme")?,
            kek_id: row.try_get("key_encryption_key_id")?,
            ciphertext: row.try_get("encrypted_private_key")?,
            nonce: row
                .try_get::<Option<Vec<u8>>, _>("nonce")?
                .unwrap_or_default(),
            wrapped_data_key: row
                .try_get::<Option<Vec<u8>>, _>("wrapped_data_key")?
                .unwrap_or_default(),
            data_key_nonce: row
                .try_get::<Option<Vec<u8>>, _>("data_key_nonce")?
                .unwrap_or_default(),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RewrapError {
    #[error("reading or updating {table}: {source}")]
    Database {
        table: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// Re-wraps, in one transaction, the data key of every key of the store's scheme in `table`
/// that is not sealed under the store's current KEK (a KEK rotation: `MARTY_<SERVICE>_KEK` is the new KEK,
/// `…_PREVIOUS_KEK` the old one). The private keys' ciphertexts are not touched. Returns how
/// many keys were re-wrapped; a key no configured KEK opens fails the whole rotation.
pub async fn rewrap_table(
    conn: &mut PgConnection,
    store: &dyn KeyStore,
    table: &'static str,
) -> Result<usize, RewrapError> {
    let db = |source| RewrapError::Database { table, source };
    // Only the store's own kind of key: a service back on envelope encryption after a token
    // trial must still start (its token keys are refused when used, not here).
    let rows = sqlx::query(&format!(
        "select {SEALED_COLUMNS} from {table} where key_encryption_key_id <> $1 and encryption_scheme = $2 for update"
    ))
    .bind(store.current_kek_id())
    .bind(store.scheme())
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?;
    let mut count = 0;
    for row in rows {
        let sealed = SealedKey::from_row(&row).map_err(db)?;
        let rewrapped = store.rewrap(&sealed)?;
        sqlx::query(&format!(
            "update {table} set key_encryption_key_id = $2, wrapped_data_key = $3, data_key_nonce = $4 where id = $1"
        ))
        .bind(rewrapped.key_id)
        .bind(&rewrapped.kek_id)
        .bind(&rewrapped.wrapped_data_key)
        .bind(&rewrapped.data_key_nonce)
        .execute(&mut *conn)
        .await
        .map_err(db)?;
        count += 1;
    }
    Ok(count)
}
