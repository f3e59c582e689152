-- PKD service: what the running service needs beyond the initial schema.
--
-- * certificates and CRLs may also come from an LDIF download of the ICAO PKD;
-- * the time a certificate was revoked, when an event or a CRL says so;
-- * the issuer certificate a stored certificate was verified against (null for
--   self-signed CSCAs and for master-list entries, which the list's signature covers).

alter table certificates drop constraint pkd_certificates_source_ck;
alter table certificates add constraint pkd_certificates_source_ck
    check (source in ('local_event', 'master_list', 'manual_import', 'ldif'));
alter table crls drop constraint pkd_crls_source_ck;
alter table crls add constraint pkd_crls_source_ck
    check (source in ('local_event', 'master_list', 'manual_import', 'ldif'));

alter table certificates add column revoked_at timestamptz;
alter table certificates add column verified_by uuid
    constraint pkd_certificates_verified_by_fk references certificates (id);

-- Trust material by country and kind is the hot read; CRLs by country likewise.
create index pkd_crls_country_ix on crls (country_code, this_update desc);
