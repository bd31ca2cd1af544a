"""The home timeline's reply rule, one table checked against its owner (timeline_svc.visibility) and
each implementation of it: the Lua on the real Redis (lib.lua's reply_ok, and read.lua over a
built timeline) and the SQL of the pull path (ListTweetsByAuthors with home_user_id, through the
real graph and tweets services on PostgreSQL)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources

import pytest
import pytest_asyncio

from chirp.tweets.v1 import tweets_pb2
from chirp_app.stack import Stack
from chirp_core.redis_client import RedisClient
from chirp_core.rpc import downstream_channel
from chirp_core.snowflake import lowest_id_at
from tests.helpers.api import Api, as_user
from tests.helpers.fanout import open_redis_of, store_of
from tests.helpers.graph import follow
from tests.helpers.tweets import post
from timeline_svc.models import Entry
from timeline_svc.pull import PullTimeline
from timeline_svc.storage import RawPage
from timeline_svc.upstreams import GrpcFollowGraph, GrpcTweetStore
from timeline_svc.visibility import in_home_timeline, reply_reaches

# The people of each case: the reader, the tweet's author and the user the tweet answers.
READER, AUTHOR, ANSWERED = "reader", "author", "answered"


@dataclass(frozen=True)
class Case:
    name: str
    author: str  # READER or AUTHOR
    answers: str | None  # whose tweet it replies to: None (not a reply), READER, AUTHOR or ANSWERED
    follows: frozenset[str]  # whom the reader follows, among AUTHOR and ANSWERED
    visible: bool

    def ids(self, users: dict[str, int]) -> tuple[int, int, int, set[int]]:
        """reader, author, reply_to_user (0: not a reply), and whom the reader follows."""
        reply_to_user = users[self.answers] if self.answers else 0
        return users[READER], users[self.author], reply_to_user, {users[name] for name in self.follows}


def case(name: str, author: str, answers: str | None, follows: set[str], visible: bool) -> Case:
    return Case(name, author, answers, frozenset(follows), visible)


CASES = [
    case("a followee's tweet", AUTHOR, None, {AUTHOR}, True),
    case("a stranger's tweet", AUTHOR, None, set(), False),
    case("the reader's own tweet", READER, None, set(), True),
    case("a reply to someone the reader follows", AUTHOR, ANSWERED, {AUTHOR, ANSWERED}, True),
    case("a reply to someone the reader does not follow", AUTHOR, ANSWERED, {AUTHOR}, False),
    case("a reply to the reader", AUTHOR, READER, {AUTHOR}, True),
    case("a self-thread", AUTHOR, AUTHOR, {AUTHOR}, True),
    case("the reader's own reply to someone they do not follow", READER, ANSWERED, set(), True),
    case("a stranger's reply to someone the reader follows", AUTHOR, ANSWERED, {ANSWERED}, False),
    case("a stranger's reply to the reader", AUTHOR, READER, set(), False),
    case("a stranger's self-thread", AUTHOR, AUTHOR, set(), False),
]
NUMBERED = {READER: 101, AUTHOR: 202, ANSWERED: 303}


@pytest.mark.parametrize("rule", CASES, ids=[c.name for c in CASES])
def test_the_rule(rule: Case) -> None:
    reader, author, reply_to_user, follows = rule.ids(NUMBERED)
    assert in_home_timeline(reader, author, reply_to_user, follows) is rule.visible


@pytest_asyncio.fixture(loop_scope="session")
async def redis_client(stack: Stack) -> AsyncIterator[RedisClient]:
    client = open_redis_of(stack.settings)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.mark.parametrize("rule", CASES, ids=[c.name for c in CASES])
async def test_lib_lua_reply_ok(rule: Case, redis_client: RedisClient) -> None:
    reader, author, reply_to_user, follows = rule.ids(NUMBERED)
    following = f"test:reply-rule:{uuid.uuid4().hex}"
    await redis_client.sadd(following, "0", *follows)
    library = resources.files("timeline_svc").joinpath("lua", "lib.lua").read_text()
    script = library + "\nreturn reply_ok(KEYS[1], ARGV[1], ARGV[2], ARGV[3]) and 1 or 0"
    try:
        answer = await redis_client.eval(script, 1, following, reader, author, reply_to_user)
    finally:
        await redis_client.delete(following)
    assert bool(answer) is reply_reaches(reader, author, reply_to_user, follows)
    if author in follows and author != reader:  # then the table's answer is the reply rule's
        assert bool(answer) is rule.visible


@pytest.mark.parametrize("rule", CASES, ids=[c.name for c in CASES])
async def test_read_lua(rule: Case, redis_client: RedisClient) -> None:
    reader, author, reply_to_user, follows = rule.ids(NUMBERED)
    store = store_of(redis_client, namespace=f"test-rule-{uuid.uuid4().hex[:8]}", cap=10)
    tweet_id = lowest_id_at(datetime.now(UTC)) + 1
    try:
        assert await store.begin_build(reader)
        await store.finish_build(reader, follows, [Entry(tweet_id, author, reply_to_user)], 0)
        page = await store.read(reader, max_id=0, min_id=0, want=10, merge_celebrities=False)
        assert isinstance(page, RawPage)
        assert (tweet_id in [e.tweet_id for e in page.entries]) is rule.visible
    finally:
        await redis_client.delete(store.timeline_key(reader), store.following_key(reader))


@pytest_asyncio.fixture(loop_scope="session")
async def pull(stack: Stack) -> AsyncIterator[PullTimeline]:
    graph_channel = downstream_channel(stack.address("graph"), 10)
    tweets_channel = downstream_channel(stack.address("tweets"), 10)
    try:
        yield PullTimeline(GrpcFollowGraph(graph_channel), GrpcTweetStore(tweets_channel))
    finally:
        await graph_channel.close(None)
        await tweets_channel.close(None)


@pytest.mark.parametrize("rule", CASES, ids=[c.name for c in CASES])
async def test_list_tweets_by_authors_sql(rule: Case, api: Api, pull: PullTimeline) -> None:
    users = {name: (await api.new_user()).user_id for name in (READER, AUTHOR, ANSWERED)}
    for name in rule.follows:
        await follow(api, users[READER], users[name])
    reply_to = (await post(api, users[rule.answers], "answered")).tweet_id if rule.answers else 0
    request = tweets_pb2.CreateTweetRequest(user_id=users[rule.author], content="the case", reply_to=reply_to)
    tweet = await api.tweets.CreateTweet(request, metadata=as_user(users[rule.author]))
    reader, author, reply_to_user, follows = rule.ids(users)
    assert (tweet.user_id, tweet.reply_to_user_id) == (author, reply_to_user)

    home = await pull.home_tweets(reader, max_id=0, min_id=0, limit=100)

    assert (tweet.tweet_id in [t.tweet_id for t in home]) is rule.visible
    assert in_home_timeline(reader, author, reply_to_user, follows) is rule.visible
