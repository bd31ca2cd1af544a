-- What the home timelines need from this schema: the wake-up of the outbox relay
-- (chirp_core.outbox), the purge of relayed rows, and the reply rule in the pull timeline.

-- NOTIFY is delivered when the inserting transaction commits, so the relay wakes exactly when
-- the new rows become visible to it.
CREATE FUNCTION tweets.notify_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tweets_outbox', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER outbox_notify AFTER INSERT ON tweets.outbox
    FOR EACH STATEMENT EXECUTE FUNCTION tweets.notify_outbox();

CREATE INDEX outbox_published ON tweets.outbox (published_at) WHERE published_at IS NOT NULL;

-- ListTweetsByAuthors for a home timeline keeps a reply only if the reader follows the user it
-- answers: with reply_to_user_id in the index, the per-author probe stays an index-only scan.
CREATE INDEX tweets_by_author_home ON tweets.tweets (user_id, tweet_id DESC)
    INCLUDE (reply_to_user_id) WHERE deleted_at IS NULL;
DROP INDEX tweets.tweets_by_author;
