-- Passport Engine: what the running service needs beyond the initial schema.
--
-- trust_cache: the trust material of one country as the PKD last returned it (CSCA and link
-- certificates, CRLs, DER), with the PKD's version of it. Verification uses it while fresh,
-- and when the PKD cannot be reached (the report says so); `csca.crl.issued` and
-- `csca.certificate.revoked` events delete the country's entry.
create table trust_cache (
    country_code   char(2)     not null,
    version        text        not null,
    certificates   bytea[]     not null,
    crls           bytea[]     not null,
    fetched_at     timestamptz not null default now(),
    expires_at     timestamptz not null,
    constraint pe_trust_cache_pk primary key (country_code),
    constraint pe_trust_cache_country_ck check (country_code ~ '^[A-Z]{2}$'),
    constraint pe_trust_cache_expiry_ck check (expires_at > fetched_at)
);

-- Listing passports newest first (ListPassports pages by issue time and id).
create index pe_passports_issued_ix on passports (issued_at desc, id desc);

-- Verification finds a passport issued here by its EF.SOD's digest.
create index pe_passports_sod_sha256_ix on passports (sha256(ef_sod));
