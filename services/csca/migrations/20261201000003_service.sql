-- The CSCA service (marty-csca): what running it needs beyond the initial schema.

-- Envelope encryption (marty-keys): each private key is encrypted under a data key of its
-- own (encrypted_private_key + nonce, AES-256-GCM) and that data key is wrapped by the
-- service's key-encryption key (wrapped_data_key + data_key_nonce). The KEK never enters the
-- database; key_encryption_key_id names it.
alter table csca_keys
    add column wrapped_data_key bytea,
    add column data_key_nonce   bytea,
    add column signs_with_pss   boolean not null default false,
    -- the key as `marty csca create --key` spells it, e.g. ec:P-384:explicit; a rollover
    -- keeps the kind of key unless told otherwise.
    add column key_spec         text,
    add column country_code     char(2);

alter table csca_keys
    add constraint csca_keys_envelope_ck check (
        encryption_scheme <> 'envelope-aes-256-gcm/v1'
        or (wrapped_data_key is not null and data_key_nonce is not null and nonce is not null)
    ),
    add constraint csca_keys_country_code_ck check (country_code is null or country_code ~ '^[A-Z]{2}$');

-- The current CSCA of a country: its newest key that is not retired.
create index csca_keys_country_current_ix on csca_keys (country_code, created_at) where retired_at is null;

-- The CSCA certificate that issued a certificate (null for a self-signed CSCA certificate):
-- capping validity by the issuer's, and which CRL lists a revocation.
alter table certificates
    add column issuer_certificate_id uuid,
    -- documentTypeList of a Document Signer certificate.
    add column document_types text[],
    add constraint csca_certificates_issuer_fk foreign key (issuer_certificate_id) references certificates (id);

create index csca_certificates_issuer_ix on certificates (issuer_certificate_id);
-- Keyset paging of ListCertificates.
create index csca_certificates_created_ix on certificates (created_at, id);
-- Lookup by serial alone (GetCertificate, RevokeCertificate without a country).
create index csca_certificates_serial_ix on certificates (serial_number);
