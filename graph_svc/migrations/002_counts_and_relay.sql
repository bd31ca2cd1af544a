-- Follower and following counts kept in the transaction of each follow and unfollow, and the
-- wake-up of the outbox relay (chirp_core.outbox).

ALTER TABLE graph.users
    ADD COLUMN follower_count integer NOT NULL DEFAULT 0 CHECK (follower_count >= 0),
    ADD COLUMN following_count integer NOT NULL DEFAULT 0 CHECK (following_count >= 0);

UPDATE graph.users u SET
    follower_count = (SELECT count(*) FROM graph.follows f WHERE f.followee_id = u.user_id),
    following_count = (SELECT count(*) FROM graph.follows f WHERE f.follower_id = u.user_id);

-- NOTIFY is delivered when the inserting transaction commits, so the relay wakes exactly when
-- the new rows become visible to it.
CREATE FUNCTION graph.notify_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('graph_outbox', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER outbox_notify AFTER INSERT ON graph.outbox
    FOR EACH STATEMENT EXECUTE FUNCTION graph.notify_outbox();

-- The relay's purge of rows published longer ago than the retention.
CREATE INDEX outbox_published ON graph.outbox (published_at) WHERE published_at IS NOT NULL;
