-- How far each item of an unfinished backfill got, so that re-running the same
-- backfill resumes instead of starting over; and the OAuth token pair, which
-- rotates on every refresh and must survive the process that obtained it.

CREATE TABLE IF NOT EXISTS backfill_progress (
    range_from  timestamptz NOT NULL,
    range_to    timestamptz NOT NULL,
    item_id     text        NOT NULL,
    metric      text        NOT NULL,
    unit        text        NOT NULL CHECK (unit IN ('hour', 'day')),
    -- every bucket of the range before this one is stored; same encoding as
    -- harvest_progress.settled_until
    done_until  timestamptz NOT NULL,
    PRIMARY KEY (range_from, range_to, item_id, metric, unit)
);

CREATE TABLE IF NOT EXISTS oauth_tokens (
    client_id     text        PRIMARY KEY,
    access_token  text        NOT NULL,
    refresh_token text        NOT NULL,
    -- when the access token stops working, by the API's expires_in
    expires_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

COMMENT ON COLUMN harvest_runs.status IS
    'running; ok; partial (some items failed); failed; interrupted (SIGINT or '
    'SIGTERM); abandoned (the process died, found by the next run)';
