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
    source          text        not null default '{service}',
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
    source           text        not null default '{service}',
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
