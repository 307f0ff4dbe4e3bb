-- Durable tasks: every outbound call to a partner. One row per (kind, task_key); a worker
-- claims a due row by setting status running with a lease; a crashed worker's lease runs out
-- and the task is claimed again. request_id is sent on every attempt (idempotency at the
-- partner).
CREATE TABLE tasks (
    id           {{id}},
    kind         TEXT NOT NULL,
    task_key     TEXT NOT NULL,
    request_id   TEXT NOT NULL,
    payload      TEXT NOT NULL,
    status       TEXT NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_run_at  {{ts}} NOT NULL,
    lease_until  {{ts}},
    claim_token  TEXT NOT NULL DEFAULT '',
    last_error   TEXT NOT NULL DEFAULT '',
    created_at   {{ts}} NOT NULL,
    updated_at   {{ts}} NOT NULL,
    done_at      {{ts}}
);
CREATE UNIQUE INDEX tasks_kind_key ON tasks (kind, task_key);
CREATE INDEX tasks_due ON tasks (status, next_run_at);
