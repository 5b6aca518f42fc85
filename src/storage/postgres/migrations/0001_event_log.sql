-- The event log: events with their raw bodies, and one row per delivery.
CREATE TABLE router_events (
    id          bigserial PRIMARY KEY,
    route       text    NOT NULL,
    event_type  text    NOT NULL,
    event_id    text,
    -- The provider's id when the route dedups on it: unique per route.
    dedup_id    text,
    event_time  text,
    received_ms bigint  NOT NULL,
    -- Path params, query and (redacted) headers, as JSON text.
    meta        text    NOT NULL,
    body        bytea   NOT NULL,
    deliveries  integer NOT NULL,
    UNIQUE (route, dedup_id)
);

CREATE TABLE router_deliveries (
    event         bigint  NOT NULL REFERENCES router_events (id) ON DELETE CASCADE,
    idx           integer NOT NULL,
    rule          integer NOT NULL,
    target        integer NOT NULL,
    rule_name     text    NOT NULL,
    sink          text    NOT NULL,
    order_key     text,
    status        text    NOT NULL,
    attempts      integer NOT NULL,
    -- When the next attempt is due (ms since the epoch); NULL once closed.
    due_ms        bigint,
    last_error    text,
    attempts_log  jsonb   NOT NULL,
    -- The instance holding the delivery, and until when (ms): after that
    -- any instance may claim it (the holder died).
    claimed_by    text,
    claimed_until bigint,
    PRIMARY KEY (event, idx)
);

-- The due queue, per sink, oldest first: what a claim walks.
CREATE INDEX router_deliveries_due ON router_deliveries (sink, due_ms, event, idx) WHERE due_ms IS NOT NULL;
-- The next due time over all sinks (the dispatcher's sleep).
CREATE INDEX router_deliveries_next ON router_deliveries (due_ms) WHERE due_ms IS NOT NULL;
-- The open deliveries of one ordering key, oldest first.
CREATE INDEX router_deliveries_order ON router_deliveries (sink, order_key, event, idx)
    WHERE due_ms IS NOT NULL AND order_key IS NOT NULL;
-- Failed deliveries, for retries and `events list --status failed`.
CREATE INDEX router_deliveries_failed ON router_deliveries (event) WHERE status = 'failed';
-- Retention walks old events by receipt time.
CREATE INDEX router_events_received ON router_events (received_ms);
