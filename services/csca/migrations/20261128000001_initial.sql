-- CSCA service: initial schema (database `csca`, service id 'csca').
--
-- The Country Signing CA is the root of trust of the national ePassport PKI
-- (ICAO Doc 9303 part 12). This database stores:
--   * csca_keys            - the CSCA's own signing key pairs (private keys are
--                            only ever stored encrypted under a KEK)
--   * certificates         - every certificate the CSCA has issued: CSCA
--                            self-signed and link certificates, Document Signer,
--                            Master List Signer and Deviation List Signer
--                            certificates, with their revocation status
--   * crls                 - the CRLs the CSCA has issued
--   * certificate_requests - CSRs received from the Document Signer service and
--                            the decision taken on each
--   * outbox / outbox_dead_letter / inbox - transactional event plumbing
--                            (relayed to NATS JetStream)
--
-- Domain constraint and index names carry a `csca_` prefix so that the API
-- layer can map violations unambiguously.

-- ---------------------------------------------------------------------------
-- Keys
-- ---------------------------------------------------------------------------

-- Private keys are NEVER stored in clear: encrypted_private_key is always the
-- ciphertext of the PKCS#8 key produced with encryption_scheme under the key
-- encryption key named by key_encryption_key_id (held outside this database).
-- The database cannot verify that, so it is the service's responsibility.
create table csca_keys (
    id                            uuid        not null default gen_random_uuid(),
    -- human/HSM-style label, used by operators and in configuration.
    key_label                     text        not null,
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
    -- window in which the key may sign (PrivateKeyUsagePeriod); enforced by the
    -- service before each signature.
    private_key_usage_not_before  timestamptz,
    private_key_usage_not_after   timestamptz,
    created_at                    timestamptz not null default now(),
    -- once set, the key must not sign anything again.
    retired_at                    timestamptz,
    constraint csca_keys_pk primary key (id),
    constraint csca_keys_label_uk unique (key_label),
    constraint csca_keys_algorithm_ck check (algorithm in ('ecdsa', 'rsa', 'rsassa-pss')),
    constraint csca_keys_usage_period_ck check (
        private_key_usage_not_before is null
        or private_key_usage_not_after is null
        or private_key_usage_not_after > private_key_usage_not_before
    ),
    constraint csca_keys_retired_at_ck check (retired_at is null or retired_at >= created_at)
);

-- ---------------------------------------------------------------------------
-- Certificates
-- ---------------------------------------------------------------------------

create table certificates (
    id                            uuid        not null default gen_random_uuid(),
    kind                          text        not null,
    country_code                  char(2)     not null,
    -- raw INTEGER content octets of the serial number (up to 20 octets); bytea
    -- rather than numeric so it round-trips exactly with the DER.
    serial_number                 bytea       not null,
    -- RFC 4514 string form of the names, as produced by the service.
    subject_dn                    text        not null,
    issuer_dn                     text        not null,
    subject_key_identifier        bytea,
    -- null for self-signed CSCA certificates that omit the extension.
    authority_key_identifier      bytea,
    -- set only for certificates whose private key the CSCA itself holds
    -- (CSCA self-signed and link certificates); null for signer certificates
    -- issued from a CSR, whose keys live in other services.
    key_id                        uuid,
    not_before                    timestamptz not null,
    not_after                     timestamptz not null,
    private_key_usage_not_before  timestamptz,
    private_key_usage_not_after   timestamptz,
    der                           bytea       not null,
    fingerprint_sha256            bytea       not null,
    -- 'expired' is derived from not_after at query time and never stored, so
    -- no job has to flip rows when certificates expire.
    status                        text        not null default 'active',
    revoked_at                    timestamptz,
    -- RFC 5280 CRLReason code.
    revocation_reason             smallint,
    created_at                    timestamptz not null default now(),
    constraint csca_certificates_pk primary key (id),
    constraint csca_certificates_key_fk foreign key (key_id) references csca_keys (id),
    constraint csca_certificates_kind_ck check (
        kind in ('csca', 'link', 'document_signer', 'master_list_signer', 'deviation_list_signer')
    ),
    -- ISO 3166-1 alpha-2, upper case (also rejects the blank padding of char(2)).
    constraint csca_certificates_country_code_ck check (country_code ~ '^[A-Z]{2}$'),
    constraint csca_certificates_serial_len_ck check (octet_length(serial_number) between 1 and 20),
    -- RFC 5280: issuer + serial number identify a certificate.
    constraint csca_certificates_issuer_serial_uk unique (issuer_dn, serial_number),
    -- stricter policy: the CSCA never reuses a serial number across its keys
    -- or issuer name changes.
    constraint csca_certificates_serial_uk unique (country_code, serial_number),
    constraint csca_certificates_fingerprint_uk unique (fingerprint_sha256),
    constraint csca_certificates_fingerprint_len_ck check (octet_length(fingerprint_sha256) = 32),
    constraint csca_certificates_validity_ck check (not_after > not_before),
    constraint csca_certificates_usage_period_ck check (
        private_key_usage_not_before is null
        or private_key_usage_not_after is null
        or private_key_usage_not_after > private_key_usage_not_before
    ),
    constraint csca_certificates_status_ck check (status in ('active', 'revoked')),
    -- revoked status <=> revocation time recorded.
    constraint csca_certificates_revoked_at_ck check ((status = 'revoked') = (revoked_at is not null)),
    -- CRLReason 0..10; 7 is unassigned in RFC 5280.
    constraint csca_certificates_revocation_reason_ck check (
        revocation_reason between 0 and 10 and revocation_reason <> 7
    ),
    -- a reason only makes sense on a revoked certificate.
    constraint csca_certificates_revocation_reason_status_ck check (
        revocation_reason is null or status = 'revoked'
    )
);

-- List queries: filter by country and kind, ordered by expiry.
create index csca_certificates_country_kind_not_after_ix on certificates (country_code, kind, not_after);
-- "Expiring soon" queries: active certificates whose not_after is near.
create index csca_certificates_status_not_after_ix on certificates (status, not_after);
-- Chain building: find the issuer by authority key identifier = SKI.
create index csca_certificates_ski_ix on certificates (subject_key_identifier);
-- Certificates signed by / bound to a given key (FK lookups, key retirement).
create index csca_certificates_key_ix on certificates (key_id) where key_id is not null;

-- ---------------------------------------------------------------------------
-- CRLs
-- ---------------------------------------------------------------------------

create table crls (
    id             uuid          not null default gen_random_uuid(),
    country_code   char(2)       not null,
    -- CSCA key that signed the CRL.
    issuer_key_id  uuid          not null,
    -- CRLNumber: non-negative INTEGER of at most 20 octets (RFC 5280 5.2.3),
    -- i.e. < 2^159; numeric because it must be compared and incremented.
    crl_number     numeric(48,0) not null,
    this_update    timestamptz   not null,
    next_update    timestamptz   not null,
    der            bytea         not null,
    created_at     timestamptz   not null default now(),
    constraint csca_crls_pk primary key (id),
    constraint csca_crls_issuer_key_fk foreign key (issuer_key_id) references csca_keys (id),
    constraint csca_crls_country_code_ck check (country_code ~ '^[A-Z]{2}$'),
    constraint csca_crls_crl_number_ck check (
        crl_number >= 0 and crl_number < 730750818665451459101842416358141509827966271488
    ),
    constraint csca_crls_update_ck check (next_update > this_update),
    -- CRL numbers are monotonically increasing per CSCA; this unique index also
    -- serves "latest CRL" (order by crl_number desc limit 1).
    constraint csca_crls_number_uk unique (country_code, crl_number)
);

create index csca_crls_issuer_key_ix on crls (issuer_key_id);

-- ---------------------------------------------------------------------------
-- Certificate requests
-- ---------------------------------------------------------------------------

-- CSRs received from the Document Signer service (PKCS#10) and their outcome.
create table certificate_requests (
    id                uuid        not null default gen_random_uuid(),
    -- authenticated identity of the requesting service/operator.
    requester         text        not null,
    -- certificate kind requested; CSCA and link certificates are never issued
    -- from an external CSR.
    kind              text        not null,
    csr_der           bytea       not null,
    status            text        not null default 'pending',
    -- the issued certificate, once status = 'issued'.
    certificate_id    uuid,
    rejection_reason  text,
    created_at        timestamptz not null default now(),
    decided_at        timestamptz,
    constraint csca_certificate_requests_pk primary key (id),
    constraint csca_certificate_requests_certificate_fk foreign key (certificate_id) references certificates (id),
    constraint csca_certificate_requests_kind_ck check (
        kind in ('document_signer', 'master_list_signer', 'deviation_list_signer')
    ),
    constraint csca_certificate_requests_status_ck check (status in ('pending', 'issued', 'rejected')),
    -- issued <=> a certificate is linked.
    constraint csca_certificate_requests_issued_ck check ((status = 'issued') = (certificate_id is not null)),
    -- a rejection must say why.
    constraint csca_certificate_requests_rejected_ck check (status <> 'rejected' or rejection_reason is not null),
    -- decided_at is set exactly when the request leaves 'pending'.
    constraint csca_certificate_requests_decided_ck check ((status = 'pending') = (decided_at is null)),
    -- one CSR yields at most one certificate, and vice versa.
    constraint csca_certificate_requests_certificate_uk unique (certificate_id)
);

-- Review queue: pending requests, oldest first.
create index csca_certificate_requests_status_created_ix on certificate_requests (status, created_at);

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
    source          text        not null default 'csca',
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
    source           text        not null default 'csca',
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
