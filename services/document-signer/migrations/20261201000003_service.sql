-- The Document Signer service (marty-document-signer): what running it needs beyond the
-- initial schema.

-- Envelope encryption (marty-keys): the private key under a data key of its own
-- (encrypted_private_key + nonce), the data key wrapped by the service's key-encryption key
-- (wrapped_data_key + data_key_nonce). The KEK never enters the database.
alter table signer_keys
    add column wrapped_data_key   bytea,
    add column data_key_nonce     bytea,
    add column signs_with_pss     boolean not null default false,
    -- e.g. ec:P-256:explicit, as `marty signer activate --key` spells it.
    add column key_spec           text,
    -- why a key stopped signing: replaced by a rotation, its DSC revoked, its usage period
    -- over, or never activated (the CSCA did not certify it).
    add column retirement_reason  text;

alter table signer_keys
    add constraint ds_signer_keys_envelope_ck check (
        encryption_scheme <> 'envelope-aes-256-gcm/v1'
        or (wrapped_data_key is not null and data_key_nonce is not null and nonce is not null)
    ),
    add constraint ds_signer_keys_retirement_reason_ck check (
        retirement_reason is null
        or retirement_reason in ('rotated', 'revoked', 'usage_period_ended', 'not_activated')
    ),
    add constraint ds_signer_keys_retirement_reason_status_ck check (
        retirement_reason is null or status = 'retired'
    );

-- Certificates: the private key usage period the CSCA granted, the issuing CSCA, and the
-- revocation the CSCA announced.
alter table signer_certificates
    add column private_key_usage_not_before timestamptz,
    add column private_key_usage_not_after  timestamptz,
    add column csca_der                     bytea,
    add column revoked_at                   timestamptz,
    add column revocation_reason            smallint;

-- The audit covers detached document signatures (SignDocument) too; for those,
-- lds_security_object_sha256 holds the SHA-256 of the signed document.
alter table signature_audit
    add column kind text not null default 'lds_security_object',
    add constraint ds_signature_audit_kind_ck check (kind in ('lds_security_object', 'document'));

create index ds_signature_audit_signed_at_ix on signature_audit (signed_at, id);
