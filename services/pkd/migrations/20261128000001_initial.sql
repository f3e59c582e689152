-- PKD service: initial schema (database `pkd`, service id 'pkd').
--
-- The Public Key Directory holds the trust material needed to verify
-- ePassports of any state (ICAO Doc 9303 part 12): CSCA, link and signer
-- certificates and CRLs, whether produced locally (received as CSCA events),
-- extracted from imported Master Lists, or imported manually. It also records
-- Master Lists it imported or published and the synchronisation jobs that move
-- this material around. This database stores:
--   * certificates        - deduplicated trust certificates, per country
--   * crls                - deduplicated CRLs, per country and issuer
--   * master_lists        - imported and published CMS Master Lists
--   * master_list_entries - which certificates each Master List contained
--   * sync_jobs           - import/publish job tracking
--   * outbox / outbox_dead_letter / inbox - transactional event plumbing
--                           (relayed to NATS JetStream)
--
-- Domain constraint and index names carry a `pkd_` prefix so that the API
-- layer can map violations unambiguously.

-- ---------------------------------------------------------------------------
-- Certificates
-- ---------------------------------------------------------------------------

create table certificates (
    id                        uuid        not null default gen_random_uuid(),
    country_code              char(2)     not null,
    kind                      text        not null,
    -- RFC 4514 string form of the names, as produced by the service.
    subject_dn                text        not null,
    issuer_dn                 text        not null,
    -- raw INTEGER content octets of the serial number.
    serial_number             bytea       not null,
    subject_key_identifier    bytea,
    authority_key_identifier  bytea,
    not_before                timestamptz not null,
    not_after                 timestamptz not null,
    der                       bytea       not null,
    -- the same certificate arrives through several channels (events, several
    -- Master Lists); the fingerprint deduplicates it.
    fingerprint_sha256        bytea       not null,
    -- channel the certificate was first learnt from.
    source                    text        not null,
    -- master list id or event id of that first occurrence.
    source_reference          text,
    imported_at               timestamptz not null default now(),
    -- set when a CRL or revocation event marks the certificate revoked.
    revoked                   boolean     not null default false,
    constraint pkd_certificates_pk primary key (id),
    constraint pkd_certificates_country_code_ck check (country_code ~ '^[A-Z]{2}$'),
    constraint pkd_certificates_kind_ck check (
        kind in ('csca', 'link', 'document_signer', 'master_list_signer', 'deviation_list_signer')
    ),
    constraint pkd_certificates_fingerprint_uk unique (fingerprint_sha256),
    constraint pkd_certificates_fingerprint_len_ck check (octet_length(fingerprint_sha256) = 32),
    -- no validity-period check on purpose: foreign trust material is stored
    -- exactly as received and judged during validation, not at import.
    constraint pkd_certificates_source_ck check (source in ('local_event', 'master_list', 'manual_import'))
);

-- Trust store per country: "all CSCA/link certificates of XX".
create index pkd_certificates_country_kind_ix on certificates (country_code, kind);
-- Chain building: find the issuer whose SKI matches a certificate's AKI.
create index pkd_certificates_ski_ix on certificates (subject_key_identifier);
-- Applying CRLs: revoked entries are identified by issuer + serial number.
-- Not unique: foreign CAs have been known to reuse serials, and the
-- fingerprint already deduplicates.
create index pkd_certificates_issuer_serial_ix on certificates (issuer_dn, serial_number);

-- ---------------------------------------------------------------------------
-- CRLs
-- ---------------------------------------------------------------------------

create table crls (
    id                        uuid          not null default gen_random_uuid(),
    country_code              char(2)       not null,
    issuer_dn                 text          not null,
    -- Doc 9303 part 12 requires the AKI and CRLNumber extensions in CRLs;
    -- both take part in the uniqueness key below, hence not null.
    authority_key_identifier  bytea         not null,
    -- CRLNumber: non-negative INTEGER of at most 20 octets (< 2^159).
    crl_number                numeric(48,0) not null,
    this_update               timestamptz   not null,
    -- optional in X.509 although required by Doc 9303; kept nullable so that
    -- non-conforming foreign CRLs can still be stored and reported on.
    next_update               timestamptz,
    der                       bytea         not null,
    fingerprint_sha256        bytea         not null,
    source                    text          not null,
    imported_at               timestamptz   not null default now(),
    constraint pkd_crls_pk primary key (id),
    constraint pkd_crls_country_code_ck check (country_code ~ '^[A-Z]{2}$'),
    constraint pkd_crls_crl_number_ck check (
        crl_number >= 0 and crl_number < 730750818665451459101842416358141509827966271488
    ),
    constraint pkd_crls_update_ck check (next_update is null or next_update > this_update),
    constraint pkd_crls_fingerprint_uk unique (fingerprint_sha256),
    constraint pkd_crls_fingerprint_len_ck check (octet_length(fingerprint_sha256) = 32),
    constraint pkd_crls_source_ck check (source in ('local_event', 'master_list', 'manual_import')),
    -- one CRL per issuer key and number; the unique index also serves
    -- "latest CRL of this issuer" (order by crl_number desc limit 1).
    constraint pkd_crls_number_uk unique (country_code, authority_key_identifier, crl_number)
);

-- ---------------------------------------------------------------------------
-- Master Lists
-- ---------------------------------------------------------------------------

create table master_lists (
    id                   uuid        not null default gen_random_uuid(),
    -- 'imported': received from another state / ICAO PKD;
    -- 'published': produced and signed by this state.
    direction            text        not null,
    issuer_country       char(2)     not null,
    signer_subject_dn    text,
    -- CMS signingTime signed attribute, when present.
    signing_time         timestamptz,
    certificate_count    int         not null,
    -- complete CMS SignedData, DER.
    der                  bytea       not null,
    fingerprint_sha256   bytea       not null,
    -- outcome of CMS signature + Master List Signer chain verification;
    -- unverified lists are kept for diagnosis but never feed the trust store.
    signature_verified   boolean     not null,
    verification_report  jsonb,
    created_at           timestamptz not null default now(),
    constraint pkd_master_lists_pk primary key (id),
    constraint pkd_master_lists_direction_ck check (direction in ('imported', 'published')),
    constraint pkd_master_lists_issuer_country_ck check (issuer_country ~ '^[A-Z]{2}$'),
    constraint pkd_master_lists_certificate_count_ck check (certificate_count >= 0),
    -- re-importing the same Master List file is detected here.
    constraint pkd_master_lists_fingerprint_uk unique (fingerprint_sha256),
    constraint pkd_master_lists_fingerprint_len_ck check (octet_length(fingerprint_sha256) = 32)
);

-- Latest Master List per issuer and direction.
create index pkd_master_lists_issuer_created_ix on master_lists (issuer_country, direction, created_at);

-- Which (deduplicated) certificates each Master List contained.
create table master_list_entries (
    master_list_id  uuid not null,
    certificate_id  uuid not null,
    constraint pkd_master_list_entries_pk primary key (master_list_id, certificate_id),
    -- deleting a Master List removes its membership rows, not the certificates.
    constraint pkd_master_list_entries_master_list_fk foreign key (master_list_id)
        references master_lists (id) on delete cascade,
    constraint pkd_master_list_entries_certificate_fk foreign key (certificate_id)
        references certificates (id)
);

-- "Which Master Lists contained this certificate" and FK checks on
-- certificate deletion (the primary key only covers master_list_id first).
create index pkd_master_list_entries_certificate_ix on master_list_entries (certificate_id);

-- ---------------------------------------------------------------------------
-- Synchronisation jobs
-- ---------------------------------------------------------------------------

create table sync_jobs (
    id           uuid        not null default gen_random_uuid(),
    -- e.g. 'master_list_import', 'crl_import', 'publish_master_list'; left
    -- open so new job kinds need no migration.
    kind         text        not null,
    status       text        not null default 'queued',
    -- where the material came from / went to (URL, file name, event id).
    source       text,
    started_at   timestamptz,
    finished_at  timestamptz,
    items_total  int,
    items_done   int,
    error        text,
    created_at   timestamptz not null default now(),
    constraint pkd_sync_jobs_pk primary key (id),
    constraint pkd_sync_jobs_status_ck check (status in ('queued', 'running', 'succeeded', 'failed')),
    -- a running job records when it started (a job may fail before starting).
    constraint pkd_sync_jobs_started_ck check (status <> 'running' or started_at is not null),
    -- finished <=> finish time recorded.
    constraint pkd_sync_jobs_finished_ck check (
        (status in ('succeeded', 'failed')) = (finished_at is not null)
    ),
    constraint pkd_sync_jobs_finished_after_started_ck check (finished_at is null or finished_at >= started_at),
    constraint pkd_sync_jobs_items_ck check (
        (items_total is null or items_total >= 0)
        and (items_done is null or items_done >= 0)
        and (items_done is null or items_total is null or items_done <= items_total)
    )
);

-- Worker queue (oldest queued first) and job listing by status.
create index pkd_sync_jobs_status_created_ix on sync_jobs (status, created_at);

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
    source          text        not null default 'pkd',
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
    source           text        not null default 'pkd',
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
