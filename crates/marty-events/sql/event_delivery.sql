-- Event delivery (marty-events): what the relay and consumers need beyond the initial tables.

-- The relay publishes the events of one ordering key strictly in id order: it only takes a row
-- when no earlier row of its key is still unpublished. This index answers that per key.
create index outbox_key_pending_ix on outbox (event_key, id) where published_at is null;

-- Messages a consumer could not handle after its maximum number of attempts. Parking them
-- (with the error) lets the messages behind them flow; an operator replays or discards them.
create table inbox_parked (
    id           bigint      generated always as identity,
    -- the durable consumer that gave up, e.g. 'pkd-csca'
    consumer     text        not null,
    event_id     uuid,
    subject      text        not null,
    -- the message body as received (it may not even be a valid envelope)
    body         bytea       not null,
    attempts     int         not null,
    last_error   text        not null,
    parked_at    timestamptz not null default now(),
    constraint inbox_parked_pk primary key (id),
    constraint inbox_parked_attempts_ck check (attempts >= 1)
);

create index inbox_parked_parked_at_ix on inbox_parked (parked_at);
