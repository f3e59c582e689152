-- Passport Engine service: initial schema (database `passport_engine`,
-- service id 'passport_engine').
--
-- The Passport Engine personalises ePassports (builds the LDS: EF.COM, data
-- groups and the SOD signed by the Document Signer) and verifies passports
-- (passive authentication against the PKD trust material). This database
-- stores:
--   * passports           - the chip contents of every passport issued here.
--                           Contains personal data (incl. the DG2 facial
--                           image): access must stay restricted to this service
--   * validation_requests - history of verification requests and their reports
--   * validation_cache    - verification results keyed by SOD hash, valid for
--                           one trust-store version and until expiry
--   * outbox / outbox_dead_letter / inbox - transactional event plumbing
--                           (relayed to NATS JetStream)
--
-- Domain constraint and index names carry a `pe_` prefix so that the API
-- layer can map violations unambiguously.

-- ---------------------------------------------------------------------------
-- Passports
-- ---------------------------------------------------------------------------

create table passports (
    id                              uuid        not null default gen_random_uuid(),
    -- as printed in the MRZ, without check digit.
    document_number                 text        not null,
    -- MRZ document code ('P', 'PD', ...).
    document_type                   text        not null default 'P',
    -- ICAO 9303 three-letter code; may contain '<' fillers (e.g. 'D<<').
    issuing_state                   char(3)     not null,
    holder_primary_name             text,
    holder_secondary_name           text,
    nationality                     char(3),
    -- YYMMDD exactly as in the MRZ: unknown parts are '<', so this cannot be a
    -- date column.
    date_of_birth                   text,
    sex                             char(1),
    date_of_expiry                  date,
    -- full MRZ text (lines separated by newline).
    mrz                             text        not null,
    -- raw elementary files as written to the chip (DER/TLV).
    dg1                             bytea       not null,
    -- facial image data group; optional so it can be purged/omitted.
    dg2                             bytea,
    ef_com                          bytea       not null,
    ef_sod                          bytea       not null,
    -- SHA-256 of the DS certificate embedded in the SOD, to find every
    -- passport affected by a DS certificate revocation.
    signer_certificate_fingerprint  bytea,
    status                          text        not null default 'issued',
    issued_at                       timestamptz not null default now(),
    constraint pe_passports_pk primary key (id),
    constraint pe_passports_document_number_ck check (document_number ~ '^[A-Z0-9<]+$'),
    constraint pe_passports_document_type_ck check (document_type ~ '^[A-Z][A-Z<]?$'),
    constraint pe_passports_issuing_state_ck check (issuing_state ~ '^[A-Z<]{3}$'),
    constraint pe_passports_nationality_ck check (nationality ~ '^[A-Z<]{3}$'),
    constraint pe_passports_date_of_birth_ck check (date_of_birth ~ '^[0-9<]{6}$'),
    -- '<' = unspecified, as in the MRZ.
    constraint pe_passports_sex_ck check (sex in ('F', 'M', '<')),
    constraint pe_passports_signer_fingerprint_len_ck check (octet_length(signer_certificate_fingerprint) = 32),
    constraint pe_passports_status_ck check (status in ('issued', 'revoked', 'cancelled')),
    -- a document number is unique within its issuing state.
    constraint pe_passports_document_uk unique (issuing_state, document_number)
);

-- Passports signed with a given DS certificate (revocation impact).
create index pe_passports_signer_fingerprint_ix on passports (signer_certificate_fingerprint);

-- ---------------------------------------------------------------------------
-- Validation
-- ---------------------------------------------------------------------------

create table validation_requests (
    id            uuid        not null default gen_random_uuid(),
    -- null when verifying a passport not issued here (e.g. a foreign one).
    passport_id   uuid,
    sod_sha256    bytea       not null,
    verdict       text        not null,
    -- full verification report (checks performed, chain, CRL status, ...).
    report        jsonb       not null,
    -- authenticated caller that requested the verification.
    requested_by  text,
    requested_at  timestamptz not null default now(),
    constraint pe_validation_requests_pk primary key (id),
    constraint pe_validation_requests_passport_fk foreign key (passport_id) references passports (id),
    constraint pe_validation_requests_sod_sha256_len_ck check (octet_length(sod_sha256) = 32),
    constraint pe_validation_requests_verdict_ck check (verdict in ('VALID', 'INVALID', 'INDETERMINATE'))
);

-- History of verifications of one SOD.
create index pe_validation_requests_sod_sha256_ix on validation_requests (sod_sha256);
-- Time-range listing and retention purge.
create index pe_validation_requests_requested_at_ix on validation_requests (requested_at);
-- Verifications of a passport issued here (and FK checks on passports).
create index pe_validation_requests_passport_ix on validation_requests (passport_id) where passport_id is not null;

-- Cached verification results. An entry is only reusable while the trust
-- store (certificates + CRLs) is at trust_store_version and before expires_at
-- (typically bounded by the next CRL update).
create table validation_cache (
    sod_sha256           bytea       not null,
    trust_store_version  text        not null,
    verdict              text        not null,
    report               jsonb       not null,
    cached_at            timestamptz not null default now(),
    expires_at           timestamptz not null,
    constraint pe_validation_cache_pk primary key (sod_sha256),
    constraint pe_validation_cache_sod_sha256_len_ck check (octet_length(sod_sha256) = 32),
    constraint pe_validation_cache_verdict_ck check (verdict in ('VALID', 'INVALID', 'INDETERMINATE')),
    constraint pe_validation_cache_expiry_ck check (expires_at > cached_at)
);

-- Purge of expired entries.
create index pe_validation_cache_expires_at_ix on validation_cache (expires_at);

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
    source          text        not null default 'passport_engine',
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
    source           text        not null default 'passport_engine',
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
