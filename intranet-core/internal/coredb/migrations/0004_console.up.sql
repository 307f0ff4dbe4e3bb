-- Console users, sessions (stored by the SM3 digest of the session ID) and the console audit
-- trail (every login, good or bad, and every bill created). Audit rows are only inserted.
CREATE TABLE console_users (
    username        TEXT PRIMARY KEY,
    password_hash   TEXT NOT NULL,
    failed_logins   INTEGER NOT NULL DEFAULT 0,
    locked_until    {{ts}},
    created_at      {{ts}} NOT NULL,
    password_set_at {{ts}} NOT NULL
);
CREATE TABLE console_sessions (
    id_hash      TEXT PRIMARY KEY,
    username     TEXT NOT NULL,
    csrf_token   TEXT NOT NULL,
    created_at   {{ts}} NOT NULL,
    last_seen_at {{ts}} NOT NULL
);
CREATE TABLE console_audit (
    id      {{id}},
    at      {{ts}} NOT NULL,
    actor   TEXT NOT NULL,
    event   TEXT NOT NULL,
    result  TEXT NOT NULL,
    source  TEXT NOT NULL,
    detail  TEXT NOT NULL DEFAULT ''
);
