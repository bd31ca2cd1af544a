"""The timeline service's Redis formats that are not under a namespace, and what it reads of the
tweets service's.

The tweet cache (`tweet_key`) holds hydrated tweets, shared by every namespace; a tombstone marks
an edited or deleted tweet, which readers treat as a miss and never write over (SET NX), so a
reader that fetched the old version just before the change cannot put it back. It expires after
TOMBSTONE_SECONDS, longer than any read in flight.

Right after its commits the tweets service writes two keys of its own (tweets_svc/signals.py),
best effort, for read-your-writes before the outbox events reach the workers:
  chirp:tweets:changed:{tweet}  the tweet was edited or deleted a moment ago: the timeline serves
                                no cached copy of it and writes a tombstone instead (cache_put.lua)
  chirp:tweets:last:{author}    the author's newest tweet ID: a read that does not find it in the
                                author's own timeline fetches their newest tweets from PostgreSQL
The timeline reads them; it never writes them. They are the tweets service's contract, like its
events, so the tweets service knows nothing of the timeline's formats.

The braces are literal: a Redis Cluster hash tag, which puts a tweet's cache entry beside its
changed marker, and an author's last post beside the keys of their own timeline.
"""

from __future__ import annotations

TOMBSTONE = b"-"
TOMBSTONE_SECONDS = 60
TWEET_KEY_PREFIX = "chirp:tw:"
# Written by the tweets service (tweets_svc/signals.py).
CHANGED_KEY_PREFIX = "chirp:tweets:changed:"
LAST_POST_KEY_PREFIX = "chirp:tweets:last:"
MEMBER_BYTES = 24


def tweet_key(tweet_id: int) -> str:
    return f"{TWEET_KEY_PREFIX}{{{tweet_id}}}"


def changed_key(tweet_id: int) -> str:
    return f"{CHANGED_KEY_PREFIX}{{{tweet_id}}}"


def last_post_key(user_id: int) -> str:
    return f"{LAST_POST_KEY_PREFIX}{{{user_id}}}"


def timeline_member(tweet_id: int, author_id: int, reply_to_user_id: int) -> bytes:
    """How a tweet travels between the timeline service and its Lua scripts (lua/lib.lua keeps it
    in 16 bytes, the reply's target aside): its ID, its author and the author of the tweet it
    answers (0 when none), each 8 bytes big-endian, which the read path needs to apply the follow
    and reply rules."""
    return tweet_id.to_bytes(8, "big") + author_id.to_bytes(8, "big") + reply_to_user_id.to_bytes(8, "big")


def parse_member(member: bytes) -> tuple[int, int, int]:
    """timeline_member's ID, author and replied-to user."""
    if len(member) != MEMBER_BYTES:
        raise ValueError(f"a timeline entry is {MEMBER_BYTES} bytes (got {len(member)})")
    return (
        int.from_bytes(member[:8], "big"),
        int.from_bytes(member[8:16], "big"),
        int.from_bytes(member[16:], "big"),
    )
