"""Which tweets belong in a reader's home timeline: the one statement of the rule.

A reader's home timeline holds their own tweets and those of the users they follow, except
replies: a reply reaches a reader who follows the user it answers, or is that user, or when it
answers its own author (a self-thread); a tweet that is not a reply reaches every follower.

Every path that applies the rule implements this module and says so, and
tests/timeline_svc/test_reply_rule.py checks each against one table:
  the fan-out workers (timeline_svc.fanout) and the live stream (timeline_svc.service) call it;
  lua/lib.lua's reply_ok and lua/read.lua, follow.lua and backfill.lua implement it in Redis;
  the tweets service's ListTweetsByAuthors with home_user_id implements it in SQL (the pull path).
"""

from __future__ import annotations

from collections.abc import Container


def reaches_every_follower(author: int, reply_to_user: int) -> bool:
    """Not a reply (reply_to_user 0), or a reply to its own author: no follow decides."""
    return reply_to_user in (0, author)


def reply_reaches(reader: int, author: int, reply_to_user: int, following: Container[int]) -> bool:
    """Whether a tweet by `author` answering `reply_to_user` (0: not a reply) reaches `reader`,
    who follows `following` (only whether it holds reply_to_user matters)."""
    return (
        reaches_every_follower(author, reply_to_user) or reply_to_user == reader or reply_to_user in following
    )


def in_home_timeline(reader: int, author: int, reply_to_user: int, following: Container[int]) -> bool:
    """Whether the tweet is in the reader's home timeline: their own always, a followed user's by
    the reply rule, anyone else's never."""
    return author == reader or (
        author in following and reply_reaches(reader, author, reply_to_user, following)
    )
