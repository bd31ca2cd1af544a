-- Tweets, their edit history and the outbox of tweet events (schema created by chirp_core.db.migrate).

CREATE TABLE tweets.tweets (
    tweet_id bigint PRIMARY KEY,
    user_id bigint NOT NULL CHECK (user_id > 0),
    -- Blanked when the tweet is deleted; the row stays so replies keep their parent.
    content text NOT NULL CHECK (char_length(content) <= 280),
    reply_to bigint REFERENCES tweets.tweets (tweet_id),
    reply_to_user_id bigint,
    conversation_id bigint NOT NULL,
    version integer NOT NULL DEFAULT 1 CHECK (version >= 1),
    created_at timestamptz NOT NULL,
    edited_at timestamptz,
    deleted_at timestamptz,
    -- Kept after a delete, so a retried create cannot bring the tweet back.
    idempotency_key text CHECK (char_length(idempotency_key) BETWEEN 1 AND 64),
    CHECK ((reply_to IS NULL) = (reply_to_user_id IS NULL)),
    CHECK (deleted_at IS NOT NULL OR content <> '')
);

CREATE UNIQUE INDEX tweets_user_idempotency_key
    ON tweets.tweets (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL;

-- A user's timeline and the pull home timeline (ListTweetsByAuthors).
CREATE INDEX tweets_by_author ON tweets.tweets (user_id, tweet_id DESC) WHERE deleted_at IS NULL;

CREATE INDEX tweets_replies ON tweets.tweets (reply_to, tweet_id)
    WHERE deleted_at IS NULL AND reply_to IS NOT NULL;

CREATE TABLE tweets.tweet_versions (
    tweet_id bigint NOT NULL REFERENCES tweets.tweets (tweet_id),
    version integer NOT NULL CHECK (version >= 1),
    content text NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (tweet_id, version)
);

-- Events for the timeline workers, written in the transaction of the change they describe.
CREATE TABLE tweets.outbox (
    id bigserial PRIMARY KEY,
    event_type text NOT NULL CHECK (event_type IN ('tweet_created', 'tweet_edited', 'tweet_deleted')),
    aggregate_id bigint NOT NULL,
    payload jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);

CREATE INDEX outbox_unpublished ON tweets.outbox (id) WHERE published_at IS NULL;
