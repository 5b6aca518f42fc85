-- Seed 001's Supabase table: one row per Whop member, kept up to date by
-- the membership events (see ../README.md). `user_id` is the upsert's key,
-- so it needs a unique index; the router never writes `id` or `created_at`.
CREATE TABLE IF NOT EXISTS member_activity (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id          text NOT NULL UNIQUE,
    membership_id    text,
    company_id       text,
    email            text,
    username         text,
    joined_at        timestamptz,
    status           text NOT NULL DEFAULT 'active',
    engagement_score integer NOT NULL DEFAULT 100,
    total_sessions   integer NOT NULL DEFAULT 0,
    last_active      timestamptz,
    expired_at       timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now()
);
