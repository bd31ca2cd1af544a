-- Media: uploads granted to a user, then bound to one tweet; and the queue of objects to delete.

-- A tweet may have media and no text. has_media is set once, when the tweet is created.
ALTER TABLE tweets.tweets ADD COLUMN has_media boolean NOT NULL DEFAULT false;
DO $$
DECLARE
    text_required text;
BEGIN
    -- 001 left this CHECK unnamed: find it by its definition.
    SELECT conname INTO STRICT text_required FROM pg_constraint
    WHERE conrelid = 'tweets.tweets'::regclass AND contype = 'c'
        AND pg_get_constraintdef(oid) LIKE '%deleted_at IS NOT NULL%content <> %';
    EXECUTE format('ALTER TABLE tweets.tweets DROP CONSTRAINT %I', text_required);
END $$;
ALTER TABLE tweets.tweets ADD CONSTRAINT tweets_content_or_media
    CHECK (deleted_at IS NOT NULL OR content <> '' OR has_media);

CREATE TABLE tweets.media (
    media_id bigint PRIMARY KEY,
    user_id bigint NOT NULL CHECK (user_id > 0),
    -- Random and never reused: the object's name in the store and the tail of its CDN URL.
    object_key text NOT NULL UNIQUE,
    content_type text NOT NULL
        CHECK (content_type IN ('image/jpeg', 'image/png', 'image/gif', 'image/webp', 'video/mp4')),
    size_bytes bigint NOT NULL CHECK (size_bytes > 0),
    -- pending: granted, maybe uploaded; attached: bound to tweet_id for good.
    state text NOT NULL CHECK (state IN ('pending', 'attached')),
    tweet_id bigint REFERENCES tweets.tweets (tweet_id),
    -- The place in the tweet, 0 to 3, and the pixel size read from the file (0 for a video).
    position smallint CHECK (position BETWEEN 0 AND 3),
    width integer NOT NULL DEFAULT 0 CHECK (width >= 0),
    height integer NOT NULL DEFAULT 0 CHECK (height >= 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    attached_at timestamptz,
    CHECK ((state = 'attached') = (tweet_id IS NOT NULL AND position IS NOT NULL AND attached_at IS NOT NULL))
);

CREATE UNIQUE INDEX media_by_tweet ON tweets.media (tweet_id, position) WHERE tweet_id IS NOT NULL;
-- The janitor's scan for uploads never attached.
CREATE INDEX media_pending ON tweets.media (created_at) WHERE state = 'pending';

-- Objects to delete from the store, written in the transaction that lets go of them (a tweet's
-- delete, the janitor's expiry of an upload) and worked off by the tweets service's media
-- janitor: at least once, and deleting an object already gone is a no-op.
CREATE TABLE tweets.media_outbox (
    id bigserial PRIMARY KEY,
    event_type text NOT NULL CHECK (event_type IN ('media_deleted')),
    media_id bigint NOT NULL,
    object_key text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    -- A claimed row is hidden until then; a janitor that dies mid-way leaves it to the next one.
    available_at timestamptz NOT NULL DEFAULT now(),
    attempts integer NOT NULL DEFAULT 0
);

CREATE INDEX media_outbox_available ON tweets.media_outbox (available_at, id);
