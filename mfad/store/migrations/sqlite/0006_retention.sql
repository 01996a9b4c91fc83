-- Pruning in bounded batches: find the oldest rows of the tables that unauthenticated
-- requests add to (failure buckets) and of the audit trail by time, without a scan.
CREATE INDEX source_buckets_updated ON source_buckets(updated_at);
CREATE INDEX audit_at ON audit(at);
