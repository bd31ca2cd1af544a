-- Sessions become refresh-token sessions: the client holds a short-lived signed access token
-- (checked by the gateway alone) and an opaque refresh token, stored here only as its SHA-256.
-- The old opaque bearer tokens stop working: their holders log in again.
DROP TABLE graph.sessions;

CREATE TABLE graph.sessions (
    -- The access tokens' `sid` claim.
    session_id bigint PRIMARY KEY CHECK (session_id > 0),
    user_id bigint NOT NULL REFERENCES graph.users (user_id),
    -- The refresh token that works now; each refresh replaces it.
    refresh_hash bytea NOT NULL CONSTRAINT sessions_refresh_hash_key UNIQUE CHECK (length(refresh_hash) = 32),
    created_at timestamptz NOT NULL,
    refreshed_at timestamptz NOT NULL,
    -- When the current refresh token stops working.
    expires_at timestamptz NOT NULL,
    -- Set by logout, or when a refresh token is presented a second time (it was stolen, or the
    -- client is broken): the session's refresh token then fails for good.
    revoked_at timestamptz
);

CREATE INDEX sessions_by_user ON graph.sessions (user_id, expires_at);

-- Refresh tokens already exchanged: presenting one again revokes its session.
CREATE TABLE graph.used_refresh_tokens (
    refresh_hash bytea PRIMARY KEY CHECK (length(refresh_hash) = 32),
    session_id bigint NOT NULL REFERENCES graph.sessions (session_id) ON DELETE CASCADE
);

CREATE INDEX used_refresh_tokens_by_session ON graph.used_refresh_tokens (session_id);
