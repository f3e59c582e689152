-- Document Signer service: initial schema (database `document_signer`,
-- service id 'document_signer').
--
-- The Document Signer (DS) signs the Document Security Object (SOD) of every
-- ePassport chip (ICAO Doc 9303 parts 10-12). This database stores:
--   * signer_keys         - DS key pairs (private keys only ever stored
--                           encrypted under a KEK) and their lifecycle
--   * signer_certificates - DS certificates issued by the CSCA for those keys
--   * signature_audit     - append-only record of every SOD signed
--   * outbox / outbox_dead_letter / inbox - transactional event plumbing
--                           (relayed to NATS JetStream)
--
-- Domain constraint and index names carry a `ds_` prefix so that the API layer
-- can map violations unambiguously.

-- ---------------------------------------------------------------------------
-- Keys
-- ---------------------------------------------------------------------------

-- Private keys are NEVER stored in clear: encrypted_private_key is always the
-- ciphertext of the PKCS#8 key produced with encryption_scheme under the key
-- encryption key named by key_encryption_key_id (held outside this database).
-- The database cannot verify that, so it is the service's responsibility.
--
-- Lifecycle: 'pending_certificate' (CSR sent to the CSCA) -> 'active' (DS
-- certificate received, key used for signing) -> 'retired'.
create table signer_keys (
    id                            uuid        not null default gen_random_uuid(),
    key_label                     text        not null,
    -- issuing state (ISO 3166-1 alpha-2, as in the DS certificate subject).
    country_code                  char(2)     not null,
    -- MRZ document type code the key signs for ('P' = passport).
    document_type                 text        not null default 'P',
    algorithm                     text        not null,
    -- curve name for ecdsa (e.g. 'brainpoolP256r1'), modulus bits for rsa.
    curve_or_size                 text        not null,
    -- SubjectPublicKeyInfo, DER.
    public_key_der                bytea       not null,
    encrypted_private_key         bytea       not null,
    encryption_scheme             text        not null,
    -- identifier of the KEK (e.g. KMS key id / version); never the KEK itself.
    key_encryption_key_id         text        not null,
    -- AEAD nonce/IV, when the scheme does not embed it in the ciphertext.
    nonce                         bytea,
    status                        text        not null default 'pending_certificate',
    -- window in which the key may sign SODs (PrivateKeyUsagePeriod, typically
    -- a few months); enforced by the service before each signature.
    private_key_usage_not_before  timestamptz,
    private_key_usage_not_after   timestamptz,
    activated_at                  timestamptz,
    retired_at                    timestamptz,
    created_at                    timestamptz not null default now(),
    constraint ds_signer_keys_pk primary key (id),
    constraint ds_signer_keys_label_uk unique (key_label),
    constraint ds_signer_keys_country_code_ck check (country_code ~ '^[A-Z]{2}$'),
    -- MRZ document code: one letter, optionally followed by a letter or filler.
    constraint ds_signer_keys_document_type_ck check (document_type ~ '^[A-Z][A-Z<]?$'),
    constraint ds_signer_keys_algorithm_ck check (algorithm in ('ecdsa', 'rsa', 'rsassa-pss')),
    constraint ds_signer_keys_status_ck check (status in ('pending_certificate', 'active', 'retired')),
    -- an active key must record when it became active.
    constraint ds_signer_keys_activated_ck check (status <> 'active' or activated_at is not null),
    -- retired <=> retirement time recorded.
    constraint ds_signer_keys_retired_ck check ((status = 'retired') = (retired_at is not null)),
    constraint ds_signer_keys_usage_period_ck check (
        private_key_usage_not_before is null
        or private_key_usage_not_after is null
        or private_key_usage_not_after > private_key_usage_not_before
    )
);

-- At most one active signing key per country and document type, so key
-- selection for signing is unambiguous; rotation must retire the old key and
-- activate the new one in the same transaction.
create unique index ds_signer_keys_one_active_uk on signer_keys (country_code, document_type) where status = 'active';

-- ---------------------------------------------------------------------------
-- Certificates
-- ---------------------------------------------------------------------------

-- DS certificates received from the CSCA. A key may have several over time
-- (e.g. re-issued certificate), hence a separate table.
create table signer_certificates (
    id                      uuid        not null default gen_random_uuid(),
    signer_key_id           uuid        not null,
    der                     bytea       not null,
    fingerprint_sha256      bytea       not null,
    -- raw INTEGER content octets of the serial number.
    serial_number           bytea       not null,
    -- RFC 4514 string form of the names, as produced by the service.
    issuer_dn               text        not null,
    subject_dn              text        not null,
    subject_key_identifier  bytea,
    not_before              timestamptz not null,
    not_after               timestamptz not null,
    received_at             timestamptz not null default now(),
    constraint ds_signer_certificates_pk primary key (id),
    constraint ds_signer_certificates_key_fk foreign key (signer_key_id) references signer_keys (id),
    constraint ds_signer_certificates_fingerprint_uk unique (fingerprint_sha256),
    constraint ds_signer_certificates_fingerprint_len_ck check (octet_length(fingerprint_sha256) = 32),
    -- RFC 5280: issuer + serial number identify a certificate.
    constraint ds_signer_certificates_issuer_serial_uk unique (issuer_dn, serial_number),
    constraint ds_signer_certificates_validity_ck check (not_after > not_before)
);

-- Certificates of a key, latest first (used when building the SOD).
create index ds_signer_certificates_key_ix on signer_certificates (signer_key_id, not_after);

-- ---------------------------------------------------------------------------
-- Signature audit
-- ---------------------------------------------------------------------------

-- One row per SOD signed, written in the same transaction as the signature is
-- released. Append-only: rows are never updated or deleted (enforced by the
-- trigger below).
create table signature_audit (
    id                          bigint      generated always as identity,
    signer_key_id               uuid        not null,
    certificate_id              uuid        not null,
    document_number             text,
    -- algorithm used for the data group hashes in the LDSSecurityObject.
    digest_algorithm            text        not null,
    signature_algorithm         text        not null,
    -- hashes rather than content: the audit must not hold personal data.
    lds_security_object_sha256  bytea       not null,
    sod_sha256                  bytea       not null,
    -- authenticated caller (service/operator) that requested the signature.
    requested_by                text,
    signed_at                   timestamptz not null default now(),
    constraint ds_signature_audit_pk primary key (id),
    constraint ds_signature_audit_key_fk foreign key (signer_key_id) references signer_keys (id),
    constraint ds_signature_audit_certificate_fk foreign key (certificate_id) references signer_certificates (id),
    constraint ds_signature_audit_lds_sha256_len_ck check (octet_length(lds_security_object_sha256) = 32),
    constraint ds_signature_audit_sod_sha256_len_ck check (octet_length(sod_sha256) = 32)
);

-- Usage of a key over time (e.g. everything signed by a compromised key).
create index ds_signature_audit_key_signed_at_ix on signature_audit (signer_key_id, signed_at);
-- Look up the signing history of a document.
create index ds_signature_audit_document_number_ix on signature_audit (document_number);
-- FK lookups / "what did this certificate sign".
create index ds_signature_audit_certificate_ix on signature_audit (certificate_id);

-- Rejects updates and deletes so the audit trail stays append-only even for
-- code paths that bypass the service layer.
create function ds_signature_audit_reject_change() returns trigger
language plpgsql
as $$
begin
    raise exception 'signature_audit is append-only (% rejected)', tg_op
        using errcode = 'restrict_violation', constraint = 'ds_signature_audit_append_only';
end;
$$;

create trigger ds_signature_audit_append_only_tg
    before update or delete on signature_audit
    for each row execute function ds_signature_audit_reject_change();

-- ---------------------------------------------------------------------------
-- Transactional outbox / inbox.
--
-- Constraint and index names in this section are deliberately identical in
-- every service database (no service prefix) so that the shared outbox relay
-- and inbox helpers can rely on one set of names.
-- ---------------------------------------------------------------------------

-- Events are written here in the same transaction as the state change that
-- produced them; a relay later publishes them to NATS JetStream.
create table outbox (
    id              bigint generated always as identity,
    event_id        uuid        not null default gen_random_uuid(),
    -- producing service id; defaulted so callers cannot get it wrong.
    source          text        not null default 'document_signer',
    -- dotted event name, mapped onto a JetStream subject by the relay.
    event_type      text        not null,
    -- ordering key: events with the same key must be published in id order.
    event_key       text        not null,
    schema_version  int         not null default 1,
    payload         jsonb       not null,
    headers         jsonb       not null default '{}',
    occurred_at     timestamptz not null default now(),
    -- relay bookkeeping: retries use exponential back-off via next_attempt_at.
    attempts        int         not null default 0,
    next_attempt_at timestamptz not null default now(),
    last_error      text,
    -- null until the relay got a JetStream publish ack.
    published_at    timestamptz,
    constraint outbox_pk primary key (id),
    -- event_id doubles as the JetStream Nats-Msg-Id (publisher dedupe) and as
    -- the consumer's inbox key, so it must be unique.
    constraint outbox_event_id_uk unique (event_id),
    -- event_type becomes part of a NATS subject: only lowercase dot-separated
    -- tokens, so no whitespace or wildcard characters ('*', '>') can leak in.
    constraint outbox_event_type_ck check (event_type ~ '^[a-z0-9_-]+(\.[a-z0-9_-]+)+$'),
    constraint outbox_schema_version_ck check (schema_version >= 1),
    constraint outbox_attempts_ck check (attempts >= 0),
    constraint outbox_payload_object_ck check (jsonb_typeof(payload) = 'object'),
    constraint outbox_headers_object_ck check (jsonb_typeof(headers) = 'object')
);

-- The relay claims due, unpublished rows with
--   where published_at is null and next_attempt_at <= now()
--   order by next_attempt_at, id for update skip locked;
-- the partial index keeps this small no matter how many published rows remain.
create index outbox_due_ix on outbox (next_attempt_at, id) where published_at is null;

-- Purge job deletes published rows older than the retention period.
create index outbox_published_ix on outbox (published_at) where published_at is not null;

-- Events the relay gave up on (attempt limit reached or permanently rejected).
-- Rows are moved here from outbox in one transaction, keeping the original id.
create table outbox_dead_letter (
    -- copied from outbox.id, hence not an identity column.
    id               bigint      not null,
    event_id         uuid        not null default gen_random_uuid(),
    source           text        not null default 'document_signer',
    event_type       text        not null,
    event_key        text        not null,
    schema_version   int         not null default 1,
    payload          jsonb       not null,
    headers          jsonb       not null default '{}',
    occurred_at      timestamptz not null default now(),
    attempts         int         not null default 0,
    next_attempt_at  timestamptz not null default now(),
    last_error       text,
    published_at     timestamptz,
    dead_lettered_at timestamptz not null default now(),
    constraint outbox_dead_letter_pk primary key (id),
    constraint outbox_dead_letter_event_id_uk unique (event_id)
);

-- Operators list dead letters newest first.
create index outbox_dead_letter_dead_lettered_at_ix on outbox_dead_letter (dead_lettered_at);

-- Idempotent consumption: a consumer inserts the event id here in the same
-- transaction as its effect; a primary-key conflict means "already processed"
-- (JetStream delivers at least once).
create table inbox (
    event_id     uuid        not null,
    -- producing service and event type, for diagnostics only.
    source       text        not null,
    event_type   text        not null,
    processed_at timestamptz not null default now(),
    constraint inbox_pk primary key (event_id)
);

-- Purge of entries older than the JetStream duplicate/redelivery window.
create index inbox_processed_at_ix on inbox (processed_at);
