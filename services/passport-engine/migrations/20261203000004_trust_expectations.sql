-- Passport Engine: what the PKD's trust material must show before the engine caches it again.
--
-- The engine and the PKD consume the CSCA's events independently. When `csca.crl.issued` or a
-- CSCA's `csca.certificate.revoked` reaches the engine first, a verification right after would
-- fetch the PKD's material from before the event and could cache it for the whole TTL. Each
-- such event therefore records here what the material must contain (a CRL of that country
-- with at least this number, or this certificate marked revoked); material that does not is
-- neither cached nor trusted (the verdict is INDETERMINATE until the PKD has caught up), and
-- the expectations it meets are deleted. An expectation unmet for two minutes is dropped (an
-- event is not authenticated yet, and a forged one must not silence a country for good).
create table trust_expectations (
    id                   bigint      generated always as identity,
    country_code         char(2)     not null,
    min_crl_number       numeric(48,0),
    -- the authority key identifier of that CRL (any key of the country when null).
    crl_authority_key    bytea,
    revoked_fingerprint  bytea,
    -- the event that announced it, for diagnostics.
    event_id             uuid        not null,
    announced_at         timestamptz not null default now(),
    constraint pe_trust_expectations_pk primary key (id),
    constraint pe_trust_expectations_country_ck check (country_code ~ '^[A-Z]{2}$'),
    constraint pe_trust_expectations_what_ck check (
        (min_crl_number is null) <> (revoked_fingerprint is null)
    ),
    constraint pe_trust_expectations_fingerprint_len_ck check (
        revoked_fingerprint is null or octet_length(revoked_fingerprint) = 32
    )
);

create index pe_trust_expectations_country_ix on trust_expectations (country_code);
