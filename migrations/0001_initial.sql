-- Hourly and daily contact counts per item, the runs that wrote them, and
-- how far each item's settled history reaches.

CREATE TABLE IF NOT EXISTS item_hourly (
    item_id    text        NOT NULL,
    metric     text        NOT NULL CHECK (metric IN ('questions', 'phone_views')),
    hour       timestamptz NOT NULL,
    total      integer     NOT NULL CHECK (total >= 0),
    -- false while the API may still revise the count (the bucket is younger
    -- than [harvest] settle_hours when fetched)
    settled    boolean     NOT NULL,
    -- when the stored total and settled flag were last written
    fetched_at timestamptz NOT NULL,
    PRIMARY KEY (item_id, metric, hour)
);

CREATE TABLE IF NOT EXISTS item_daily (
    item_id    text        NOT NULL,
    metric     text        NOT NULL CHECK (metric IN ('questions', 'phone_views')),
    -- the calendar date written in the API's bucket label
    day        date        NOT NULL,
    total      integer     NOT NULL CHECK (total >= 0),
    settled    boolean     NOT NULL,
    fetched_at timestamptz NOT NULL,
    PRIMARY KEY (item_id, metric, day)
);

CREATE TABLE IF NOT EXISTS harvest_runs (
    run_id        bigserial   PRIMARY KEY,
    kind          text        NOT NULL CHECK (kind IN ('harvest', 'backfill')),
    range_from    timestamptz,
    range_to      timestamptz,
    metrics       text[]      NOT NULL,
    units         text[]      NOT NULL,
    items         integer     NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT now(),
    ended_at      timestamptz,
    -- running, ok, partial (some items failed), failed, interrupted
    status        text        NOT NULL DEFAULT 'running',
    requests      integer     NOT NULL DEFAULT 0,
    retries       integer     NOT NULL DEFAULT 0,
    rows_inserted bigint      NOT NULL DEFAULT 0,
    rows_changed  bigint      NOT NULL DEFAULT 0,
    -- {"item id": "reason"} for every item that could not be fetched
    failed_items  jsonb       NOT NULL DEFAULT '{}'::jsonb,
    error         text
);

-- Every bucket of (item, metric, unit) before settled_until was fetched by a
-- harvest and settled; the next harvest starts there at the latest. For the
-- day unit the instant is midnight UTC of the first date not yet settled.
CREATE TABLE IF NOT EXISTS harvest_progress (
    item_id       text        NOT NULL,
    metric        text        NOT NULL,
    unit          text        NOT NULL CHECK (unit IN ('hour', 'day')),
    settled_until timestamptz NOT NULL,
    PRIMARY KEY (item_id, metric, unit)
);
