-- Accounts, sessions, the follow graph and the outbox of follow events
-- (schema created by chirp_core.db.migrate).

CREATE TABLE graph.users (
    user_id bigint PRIMARY KEY CHECK (user_id > 0),
    -- Stored lower-case, so this unique constraint makes handles unique case-insensitively.
    handle text NOT NULL CONSTRAINT users_handle_key UNIQUE CHECK (handle ~ '^[a-z0-9_]{3,30}$'),
    display_name text NOT NULL CHECK (char_length(display_name) BETWEEN 1 AND 50),
    password_hash text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Only the SHA-256 of a bearer token is kept: a leaked table holds no usable token.
CREATE TABLE graph.sessions (
    token_hash bytea PRIMARY KEY CHECK (length(token_hash) = 32),
    user_id bigint NOT NULL REFERENCES graph.users (user_id),
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);

CREATE INDEX sessions_by_user ON graph.sessions (user_id, expires_at);

-- The graph as an adjacency table with both directions indexed, as FlockDB kept it.
CREATE TABLE graph.follows (
    follower_id bigint NOT NULL CONSTRAINT follows_follower_fkey REFERENCES graph.users (user_id),
    followee_id bigint NOT NULL CONSTRAINT follows_followee_fkey REFERENCES graph.users (user_id),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (follower_id, followee_id),
    CHECK (follower_id <> followee_id)
);

-- A user's followers, newest edge first: ListFollowers and StreamFollowerIds.
CREATE INDEX follows_by_followee ON graph.follows (followee_id, created_at DESC, follower_id DESC);
-- The users someone follows, newest edge first: ListFollowing (the primary key has no time order).
CREATE INDEX follows_by_follower ON graph.follows (follower_id, created_at DESC, followee_id DESC);

-- Events for the timeline workers, written in the transaction of the change they describe.
CREATE TABLE graph.outbox (
    id bigserial PRIMARY KEY,
    event_type text NOT NULL CHECK (event_type IN ('followed', 'unfollowed')),
    aggregate_id bigint NOT NULL,
    payload jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);

CREATE INDEX outbox_unpublished ON graph.outbox (id) WHERE published_at IS NULL;
