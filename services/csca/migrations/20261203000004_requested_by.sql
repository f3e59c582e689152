-- Who caused each change, as the caller's verified certificate names it (marty://operator/<name>
-- for an operator's CreateCsca, RolloverCsca, RevokeCertificate or IssueCrl; the requesting
-- service for a certificate issued from its CSR; "csca scheduler" for a CRL renewed on time):
-- the audit trail of the CSCA's changes, in the same row and transaction as the change.
-- Nullable: rows written before this migration have no record of it.
alter table certificates
    add column requested_by text,
    add column revoked_by   text;

alter table crls
    add column requested_by text;
