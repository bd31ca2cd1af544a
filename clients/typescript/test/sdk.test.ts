/**
 * The SDK against a live stack (`chirp up`: Envoy in front of the services), over gRPC-Web with
 * Node's fetch, as a browser would call it.
 */

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { create, toBinary } from "@bufbuild/protobuf";
import {
  ChirpClient,
  ChirpError,
  gen,
  memoryTokenStore,
  type Session,
  type Tweet,
  type User,
} from "../dist/index.js";
import { Counter, FlakyNetwork } from "./network.js";
import { png } from "./png.js";
import { startStack, type Stack } from "./stack.js";

const PASSWORD = "correct horse battery";

let stack: Stack;

before(async () => {
  stack = await startStack();
});

after(async () => {
  await stack?.stop();
});

let handles = 0;

/** A fresh handle: the stack lives for the whole file, so every test signs up its own users. */
function handle(name: string): string {
  handles += 1;
  return `${name}_${process.pid % 10_000}_${handles}`;
}

interface Account {
  client: ChirpClient;
  user: User;
  session: Session;
}

async function account(name: string): Promise<Account> {
  const client = new ChirpClient({ baseUrl: stack.url });
  const user = await client.signUp(handle(name), PASSWORD, name);
  const session = await client.logIn(user.handle, PASSWORD);
  return { client, user, session };
}

async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const all: T[] = [];
  for await (const item of items) {
    all.push(item);
  }
  return all;
}

/** Polls `check` until it returns without throwing (fan-out to timelines is asynchronous). */
async function eventually<T>(check: () => Promise<T>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (error) {
      if (Date.now() > deadline) {
        throw error;
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

async function rejectsWith(call: () => Promise<unknown>): Promise<ChirpError> {
  try {
    await call();
  } catch (error) {
    assert.ok(error instanceof ChirpError, `expected a ChirpError, got ${String(error)}`);
    return error;
  }
  assert.fail("the call succeeded");
}

const ids = (tweets: readonly Tweet[]) => tweets.map((t) => t.tweetId);

test("sign up, log in, the session and log out", async () => {
  const store = memoryTokenStore();
  const client = new ChirpClient({ baseUrl: stack.url, tokenStore: store });
  const name = handle("ada");
  const user = await client.signUp(name, PASSWORD, "Ada Lovelace");
  assert.match(user.userId, /^[1-9][0-9]{9,18}$/);
  assert.equal(user.handle, name);
  assert.equal(user.displayName, "Ada Lovelace");
  assert.ok(user.createdAt instanceof Date && Math.abs(user.createdAt.getTime() - Date.now()) < 60_000);
  assert.equal(client.token, undefined);

  const session = await client.logIn(name, PASSWORD);
  assert.equal(session.userId, user.userId);
  assert.ok(session.token.length >= 20);
  assert.equal(client.token, session.token);
  assert.equal(client.userId, user.userId);
  const minutes = (session.expiresAt!.getTime() - Date.now()) / 60_000;
  assert.ok(minutes > 9 && minutes <= 10, `the access token lasts ${minutes} minutes`);
  const days = (session.refreshExpiresAt!.getTime() - Date.now()) / 86_400_000;
  assert.ok(days > 29 && days <= 30, `the session lasts ${days} days`);
  assert.ok(session.refreshToken && session.refreshToken.length === 43);
  assert.deepEqual(store.get(), session);

  // A second client picks the session up from the store and acts as the same user.
  const again = new ChirpClient({ baseUrl: stack.url, tokenStore: store });
  assert.equal(again.token, session.token);
  const me = await again.getUser(user.userId);
  assert.deepEqual(
    { userId: me.userId, handle: me.handle, displayName: me.displayName, followers: me.followerCount },
    { userId: user.userId, handle: name, displayName: "Ada Lovelace", followers: 0 },
  );

  // A refresh replaces both tokens; the old refresh token is spent.
  const refreshed = await again.refresh();
  assert.notEqual(refreshed.refreshToken, session.refreshToken);
  assert.equal(refreshed.userId, user.userId);
  assert.deepEqual(store.get(), refreshed);

  await again.logOut();
  assert.equal(again.token, undefined);
  assert.equal(store.get(), undefined);
  const error = await rejectsWith(() => again.getUser(user.userId));
  assert.equal(error.code, "UNAUTHENTICATED");
  // Logged out on the server too: the refresh token no longer works.
  const revived = new ChirpClient({ baseUrl: stack.url, token: refreshed.token, userId: user.userId, refreshToken: refreshed.refreshToken });
  const ended = await rejectsWith(() => revived.refresh());
  assert.equal(ended.code, "UNAUTHENTICATED");
  assert.equal(ended.reason, "SESSION_REVOKED");
});

test("an access token the server refuses is refreshed once and the call sent again", async () => {
  const client = new ChirpClient({ baseUrl: stack.url });
  const name = handle("rae");
  const user = await client.signUp(name, PASSWORD);
  const session = await client.logIn(name, PASSWORD);
  // The same session with a broken access token: the server answers 401, the client refreshes.
  const [head, body] = session.token.split(".");
  const broken = new ChirpClient({
    baseUrl: stack.url,
    token: `${head}.${body}.AAAA`,
    userId: user.userId,
    refreshToken: session.refreshToken,
  });
  const calls = await Promise.all([broken.getUser(user.userId), broken.getUser(user.userId), broken.homeTimelinePage()]);
  assert.equal(calls[0].userId, user.userId);
  assert.notEqual(broken.token, `${head}.${body}.AAAA`);
  // The concurrent calls shared one refresh: the session is alive (a second exchange of the
  // first refresh token would have revoked it).
  await broken.refresh();
});

test("post, get, edit, versions and delete a tweet", async () => {
  const { client, user } = await account("bea");
  const posted = await client.postTweet("first draft");
  assert.equal(posted.userId, user.userId);
  assert.equal(posted.content, "first draft");
  assert.equal(posted.version, 1);
  assert.equal(posted.replyTo, undefined);
  assert.equal(posted.conversationId, posted.tweetId);
  assert.equal(posted.editedAt, undefined);

  const got = await client.getTweet(posted.tweetId);
  assert.equal(got.tweetId, posted.tweetId);
  assert.equal(got.content, "first draft");

  const edited = await client.editTweet(posted.tweetId, "second draft");
  assert.equal(edited.tweetId, posted.tweetId);
  assert.equal(edited.content, "second draft");
  assert.equal(edited.version, 2);
  assert.ok(edited.editedAt instanceof Date);
  await client.editTweet(posted.tweetId, "final");

  const versions = await client.versions(posted.tweetId);
  assert.deepEqual(
    versions.map((v) => [v.version, v.content]),
    [
      [1, "first draft"],
      [2, "second draft"],
      [3, "final"],
    ],
  );
  assert.ok(versions.every((v) => v.createdAt instanceof Date));

  await client.deleteTweet(posted.tweetId);
  const gone = await rejectsWith(() => client.getTweet(posted.tweetId));
  assert.equal(gone.code, "NOT_FOUND");
  assert.equal(gone.reason, "TWEET_NOT_FOUND");
});

test("replies, and the replies iterator across pages", async () => {
  const ann = await account("ann");
  const ben = await account("ben");
  const root = await ann.client.postTweet("what should I read?");
  const answers: Tweet[] = [];
  for (const [who, text] of [
    [ben, "Middlemarch"],
    [ann, "thanks!"],
    [ben, "and Dune"],
    [ben, "and Piranesi"],
    [ann, "noted"],
  ] as const) {
    answers.push(await who.client.postTweet(text, { replyTo: root.tweetId }));
  }
  const first = answers[0]!;
  assert.equal(first.replyTo, root.tweetId);
  assert.equal(first.replyToUserId, ann.user.userId);
  assert.equal(first.conversationId, root.tweetId);

  const replies = await collect(ben.client.replies(root.tweetId, { pageSize: 2 }));
  assert.deepEqual(ids(replies), ids(answers)); // oldest first, three pages, nothing twice
  assert.deepEqual(
    replies.map((t) => t.content),
    ["Middlemarch", "thanks!", "and Dune", "and Piranesi", "noted"],
  );
  assert.ok(replies.every((t) => t.replyTo === root.tweetId));

  const mine = await collect(ann.client.userTweets(ann.user.userId, { pageSize: 2 }));
  assert.deepEqual(
    mine.map((t) => t.content),
    ["noted", "thanks!", "what should I read?"],
  );
});

test("follow, unfollow, followers, following and the relationship", async () => {
  const eve = await account("eve");
  const fay = await account("fay");
  const gus = await account("gus");
  await eve.client.follow(fay.user.userId);
  await eve.client.follow(gus.user.userId);
  await fay.client.follow(eve.user.userId);
  await eve.client.follow(gus.user.userId); // following twice is no error

  const handlesOf = (users: readonly User[]) => users.map((u) => u.handle);
  assert.deepEqual(handlesOf(await collect(eve.client.following(eve.user.userId, { pageSize: 1 }))), [
    gus.user.handle,
    fay.user.handle,
  ]);
  assert.deepEqual(handlesOf(await collect(gus.client.followers(eve.user.userId))), [fay.user.handle]);
  assert.deepEqual(handlesOf(await collect(eve.client.followers(gus.user.userId))), [eve.user.handle]);

  assert.deepEqual(await eve.client.relationship(fay.user.userId), {
    userId: eve.user.userId,
    otherUserId: fay.user.userId,
    following: true,
    followedBy: true,
  });
  const withGus = await eve.client.relationship(gus.user.userId);
  assert.deepEqual([withGus.following, withGus.followedBy], [true, false]);
  const profile = await gus.client.getUser(eve.user.userId);
  assert.deepEqual([profile.followerCount, profile.followingCount], [1, 2]);

  await eve.client.unfollow(gus.user.userId);
  assert.deepEqual(handlesOf(await collect(eve.client.following(eve.user.userId))), [fay.user.handle]);
  assert.deepEqual(await collect(eve.client.followers(gus.user.userId)), []);
  const after = await eve.client.relationship(gus.user.userId);
  assert.deepEqual([after.following, after.followedBy], [false, false]);
});

test("the home timeline, page by page with cursors", async () => {
  const ivy = await account("ivy");
  const jon = await account("jon");
  await ivy.client.follow(jon.user.userId);
  const posted: Tweet[] = [];
  for (let n = 1; n <= 7; n++) {
    posted.push(await jon.client.postTweet(`jon ${n}`));
  }
  posted.push(await ivy.client.postTweet("ivy 1"));
  const newestFirst = ids(posted).reverse();
  await eventually(async () => {
    const first = await ivy.client.homeTimelinePage({ pageSize: 1 });
    assert.equal(first.tweets[0]?.tweetId, newestFirst[0]);
  });
  await eventually(async () => {
    const whole = await ivy.client.homeTimelinePage({ pageSize: 100 });
    assert.deepEqual(ids(whole.tweets), newestFirst);
  });

  const pages: string[][] = [];
  let cursor: string | null = null;
  do {
    const page = await ivy.client.homeTimelinePage({ pageSize: 3, cursor });
    assert.ok(page.tweets.length <= 3);
    pages.push(ids(page.tweets));
    cursor = page.nextCursor;
  } while (cursor !== null && pages.length < 10);
  assert.deepEqual(pages.slice(0, 3), [newestFirst.slice(0, 3), newestFirst.slice(3, 6), newestFirst.slice(6, 8)]);
  assert.deepEqual(pages.flat(), newestFirst); // no gap, no duplicate
  assert.equal(cursor, null);

  const timeline = await collect(ivy.client.homeTimeline({ pageSize: 3 }));
  assert.deepEqual(ids(timeline), newestFirst);
  const jons = timeline.filter((t) => t.userId === jon.user.userId);
  assert.ok(jons.every((t) => t.author?.handle === jon.user.handle && t.author.displayName === "jon"));
});

test("the live timeline delivers new tweets and resumes after a dropped stream, without gap or repeat", async () => {
  const kim = await account("kim");
  const lou = await account("lou");
  await kim.client.follow(lou.user.userId);
  const network = new FlakyNetwork();
  const watcher = new ChirpClient({
    baseUrl: stack.url,
    token: kim.session.token,
    userId: kim.user.userId,
    fetch: network.fetch,
  });
  const stop = new AbortController();
  const opened = new Counter();
  const arrived = new Counter();
  const received: Tweet[] = [];
  const drops: (ChirpError | undefined)[] = [];
  const watching = (async () => {
    for await (const tweet of watcher.liveTimeline({
      signal: stop.signal,
      onConnect: () => opened.bump(),
      onDisconnect: (error) => drops.push(error),
    })) {
      received.push(tweet);
      arrived.bump();
    }
  })();
  try {
    await opened.until(1, "stream opened");
    const first = await lou.client.postTweet("live 1");
    await arrived.until(1, "tweet");
    assert.equal(received[0]?.tweetId, first.tweetId);
    assert.equal(received[0]?.author?.handle, lou.user.handle);

    // The connection breaks, and the network stays down while two more tweets are posted.
    network.down();
    network.drop();
    await network.held.until(1, "reconnect attempt");
    const missed = [await lou.client.postTweet("live 2"), await lou.client.postTweet("live 3")];
    await eventually(async () => {
      const page = await kim.client.homeTimelinePage({ pageSize: 2 });
      assert.deepEqual(ids(page.tweets), ids(missed).reverse());
    });
    network.up();
    await opened.until(2, "stream reopened");
    const last = await lou.client.postTweet("live 4");
    await arrived.until(4, "tweet");
    // Anything extra (a repeat) would arrive right behind; give it a moment.
    await new Promise((resolve) => setTimeout(resolve, 500));

    assert.deepEqual(ids(received), [first.tweetId, ...ids(missed), last.tweetId]);
    assert.deepEqual(
      received.map((t) => t.content),
      ["live 1", "live 2", "live 3", "live 4"],
    );
    assert.equal(drops.length, 1);
    assert.ok(drops[0] instanceof ChirpError, `the drop surfaced as ${String(drops[0])}`);
    // The second stream asked for what came after the last tweet seen.
    assert.deepEqual(network.sinceIds, [0n, BigInt(first.tweetId)]);
  } finally {
    stop.abort();
    await watching;
  }
  assert.equal(opened.count, 2);
});

test("media: upload a PNG, tweet it, download the same bytes", async () => {
  const { client, user } = await account("max");
  const image = png(64, 48);
  const progress: [number, number][] = [];
  const mediaId = await client.uploadMedia(image, "image/png", {
    onProgress: (loaded, total) => progress.push([loaded, total]),
  });
  assert.match(mediaId, /^[1-9][0-9]+$/);
  assert.deepEqual(progress.at(-1), [image.byteLength, image.byteLength]);

  const tweet = await client.postTweet("", { mediaIds: [mediaId] });
  assert.equal(tweet.userId, user.userId);
  assert.equal(tweet.content, "");
  assert.equal(tweet.media.length, 1);
  const media = tweet.media[0]!;
  assert.deepEqual(
    { mediaId: media.mediaId, contentType: media.contentType, sizeBytes: media.sizeBytes, width: media.width, height: media.height },
    { mediaId, contentType: "image/png", sizeBytes: image.byteLength, width: 64, height: 48 },
  );
  assert.match(media.url, /^https?:\/\//);
  assert.deepEqual((await client.getTweet(tweet.tweetId)).media, tweet.media);

  const download = await fetch(media.url);
  assert.equal(download.status, 200);
  assert.equal(download.headers.get("content-type"), "image/png");
  assert.deepEqual(new Uint8Array(await download.arrayBuffer()), image);
});

test("errors: no token, and a rejected token sends the app back to log-in", async () => {
  const { user } = await account("ned");
  const anonymous = new ChirpClient({ baseUrl: stack.url });
  const missing = await rejectsWith(() => anonymous.getUser(user.userId));
  assert.equal(missing.code, "UNAUTHENTICATED");
  assert.ok(missing.unauthenticated);
  assert.ok(ChirpError.isUnauthenticated(missing));
  assert.equal(missing.reason, "TOKEN_MISSING");

  const store = memoryTokenStore({ token: "not-a-real-token", userId: user.userId });
  const hook: ChirpError[] = [];
  const stale = new ChirpClient({ baseUrl: stack.url, tokenStore: store, onUnauthenticated: (e) => void hook.push(e) });
  const rejected = await rejectsWith(() => stale.homeTimelinePage());
  assert.equal(rejected.code, "UNAUTHENTICATED");
  assert.equal(rejected.reason, "TOKEN_INVALID");
  assert.deepEqual(hook, [rejected]);
  assert.equal(stale.token, undefined);
  assert.equal(store.get(), undefined);
});

test("errors: someone else's tweet is PERMISSION_DENIED", async () => {
  const oz = await account("oz");
  const pia = await account("pia");
  const tweet = await oz.client.postTweet("mine");
  const edit = await rejectsWith(() => pia.client.editTweet(tweet.tweetId, "yours now"));
  assert.equal(edit.code, "PERMISSION_DENIED");
  assert.equal(edit.reason, "NOT_AUTHOR");
  assert.match(edit.message, /only its author/);
  const remove = await rejectsWith(() => pia.client.deleteTweet(tweet.tweetId));
  assert.equal(remove.code, "PERMISSION_DENIED");
  assert.equal((await oz.client.getTweet(tweet.tweetId)).content, "mine");
});

test("errors: INVALID_ARGUMENT names the field", async () => {
  const { client } = await account("quinn");
  const long = await rejectsWith(() => client.postTweet("x".repeat(281)));
  assert.equal(long.code, "INVALID_ARGUMENT");
  assert.equal(long.reason, "INVALID_FIELD");
  assert.equal(long.field, "content");
  assert.match(long.message, /^content: /);

  const badHandle = await rejectsWith(() => new ChirpClient({ baseUrl: stack.url }).signUp("no", PASSWORD));
  assert.equal(badHandle.code, "INVALID_ARGUMENT");
  assert.equal(badHandle.field, "handle");
});

test("a gRPC-Web error answer reaches the browser with its grpc-status and details", async () => {
  // What every error test above depends on: Envoy passes the service's status through, whether
  // as trailers-only headers or as a trailer frame in the body.
  const { session } = await account("rex");
  const message = toBinary(gen.tweetsV1.GetTweetRequestSchema, create(gen.tweetsV1.GetTweetRequestSchema, { tweetId: 1n }));
  const frame = new Uint8Array(5 + message.length);
  new DataView(frame.buffer).setUint32(1, message.length);
  frame.set(message, 5);
  const response = await fetch(`${stack.url}/chirp.tweets.v1.TweetService/GetTweet`, {
    method: "POST",
    headers: {
      "content-type": "application/grpc-web+proto",
      "x-grpc-web": "1",
      authorization: `Bearer ${session.token}`,
    },
    body: frame,
  });
  const body = new Uint8Array(await response.arrayBuffer());
  const trailer = body.length > 5 && body[0] === 0x80 ? new TextDecoder().decode(body.subarray(5)) : "";
  const status = response.headers.get("grpc-status") ?? /grpc-status:\s*(\d+)/.exec(trailer)?.[1] ?? null;
  assert.equal(response.status, 200);
  assert.equal(
    status,
    "5",
    `no grpc-status in the answer (headers: ${JSON.stringify([...response.headers])}, body: ${body.length} bytes)`,
  );
  assert.ok(response.headers.has("grpc-status-details-bin") || trailer.includes("grpc-status-details-bin"));
});
