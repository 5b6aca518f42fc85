-- The table the PostgreSQL sink benchmark writes (scripts/bench-postgres.sh).
DROP TABLE IF EXISTS bench_customers;
CREATE TABLE bench_customers (
  id       text PRIMARY KEY,
  email    text,
  name     text,
  balance  bigint,
  currency text,
  created  timestamptz,
  livemode boolean,
  metadata jsonb
);
