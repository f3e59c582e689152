-- SummarizeCertificates counts every certificate by country, kind, validity and revocation.
-- With this covering index the count reads the index (about 60 bytes a certificate) instead
-- of the table's rows (each with its DER), so it stays cheap at tens of thousands.
create index csca_certificates_summary_ix
    on certificates (country_code, kind)
    include (not_before, not_after, status, revoked_at);
