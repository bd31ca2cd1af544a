/**
 * ChirpClient: the public API of Chirp over gRPC-Web, through Envoy (the URL `chirp up` prints),
 * the same way in a browser and in Node.js (18+: global fetch).
 */

import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { GraphService } from "./gen/chirp/graph/v1/graph_pb.js";
import { TimelineService } from "./gen/chirp/timeline/v1/timeline_pb.js";
import { TweetService } from "./gen/chirp/tweets/v1/tweets_pb.js";
import { UserService } from "./gen/chirp/users/v1/users_pb.js";
import { ChirpError, toChirpError, type GrpcCodeName } from "./errors.js";
import {
  fromBigId,
  sessionFrom,
  toBigId,
  tweetFrom,
  userFrom,
  versionFrom,
  type Relationship,
  type Session,
  type Tweet,
  type TweetPage,
  type TweetVersion,
  type User,
} from "./models.js";
import type { TokenStore } from "./token-store.js";
import { asBlob, postForm, type FetchFn, type UploadProgress } from "./upload.js";

export interface ChirpClientOptions {
  /** Envoy's URL, e.g. "http://127.0.0.1:8080"; in a web app served by Envoy, `location.origin`. */
  baseUrl: string;
  /** An access token from an earlier logIn (pass userId with it, and refreshToken to keep it fresh). */
  token?: string | undefined;
  /** The refresh token of that logIn. */
  refreshToken?: string | undefined;
  /** The token's user: calls made as the logged-in user (follow, home timeline, ...) need it. */
  userId?: string | undefined;
  /** The fetch to use; globalThis.fetch by default. */
  fetch?: FetchFn | undefined;
  /**
   * Keeps the session across page loads: read when the client is created (unless `token` is
   * given), written by logIn, cleared by logOut and when the server rejects the token.
   */
  tokenStore?: TokenStore | undefined;
  /**
   * Called when a call that carried a token fails with UNAUTHENTICATED and a refresh does not cure
   * it (the session expired or was revoked), after the client has forgotten the session; typically
   * sends the user to log-in.
   * The failed call still throws its ChirpError.
   */
  onUnauthenticated?: ((error: ChirpError) => void | Promise<void>) | undefined;
  /** Deadline of each unary call, in milliseconds (default 30,000; 0: none). */
  timeoutMs?: number | undefined;
}

export interface PageOptions {
  /** Items per page asked of the server: 1 to 100 (default 20). Not a total: `break` to stop. */
  pageSize?: number | undefined;
}

export interface PostTweetOptions {
  /** The tweet this one replies to. */
  replyTo?: string | undefined;
  /** Uploaded media (uploadMedia), up to 4, in display order; with media the content may be "". */
  mediaIds?: readonly string[] | undefined;
  /** The same key from the same author returns the first tweet instead of posting twice. */
  idempotencyKey?: string | undefined;
}

export interface HomeTimelinePageOptions extends PageOptions {
  /** The nextCursor of the previous page; omitted (or null) for the first page. */
  cursor?: string | null | undefined;
}

/** How liveTimeline reopens a dropped stream. */
export interface ReconnectPolicy {
  /** The first wait after a failed attempt; it doubles with each failure (default 500). */
  initialDelayMs: number;
  /** The longest wait (default 30,000). */
  maxDelayMs: number;
  /**
   * Consecutive failed attempts after which the last error is thrown (default 8; Infinity: never).
   * An attempt fails when the stream cannot be opened, or ends within stableAfterMs without a tweet.
   */
  maxFailures: number;
  /** A stream that lasted this long (or delivered a tweet) resets the failure count (default 10,000). */
  stableAfterMs: number;
  /** Reopen a stream that has been silent this long (default 0: never). */
  idleTimeoutMs: number;
  /** Randomise each wait between half and all of it (default true). */
  jitter: boolean;
}

export const DEFAULT_RECONNECT: Readonly<ReconnectPolicy> = Object.freeze({
  initialDelayMs: 500,
  maxDelayMs: 30_000,
  maxFailures: 8,
  stableAfterMs: 10_000,
  idleTimeoutMs: 0,
  jitter: true,
});

export interface LiveTimelineOptions {
  /** The newest tweet already shown: the tweets after it come first. Default: only new tweets. */
  sinceId?: string | undefined;
  /** Ends the iteration (quietly, without an error) when aborted. */
  signal?: AbortSignal | undefined;
  /** Called each time a stream is open and its starting point fixed: no tweet after this is missed. */
  onConnect?: (() => void) | undefined;
  /** Called when a stream ended or failed and is about to be reopened after `delayMs`. */
  onDisconnect?: ((error: ChirpError | undefined, delayMs: number) => void) | undefined;
  reconnect?: Partial<ReconnectPolicy> | undefined;
}

export interface UploadMediaOptions {
  /** Upload progress in bytes (in a browser, as the bytes go; with fetch, at the start and the end). */
  onProgress?: UploadProgress | undefined;
  signal?: AbortSignal | undefined;
}

// gRPC codes after which reopening the live stream may succeed; a network failure is UNKNOWN.
const RETRYABLE: ReadonlySet<GrpcCodeName> = new Set<GrpcCodeName>([
  "UNAVAILABLE",
  "RESOURCE_EXHAUSTED",
  "DEADLINE_EXCEEDED",
  "ABORTED",
  "INTERNAL",
  "UNKNOWN",
  "CANCELLED",
]);

/** The IDs most recently yielded by the live timeline, so that none is yielded twice. */
class RecentIds {
  private readonly ids = new Set<bigint>();
  constructor(private readonly capacity: number) {}

  /** False when the ID was seen already. */
  add(id: bigint): boolean {
    if (this.ids.has(id)) {
      return false;
    }
    this.ids.add(id);
    if (this.ids.size > this.capacity) {
      const oldest = this.ids.values().next();
      if (!oldest.done) {
        this.ids.delete(oldest.value);
      }
    }
    return true;
  }
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) {
      resolve();
      return;
    }
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}

function limit(pageSize: number | undefined): number {
  if (pageSize === undefined) {
    return 0;
  }
  if (!Number.isInteger(pageSize) || pageSize < 1) {
    throw new RangeError(`pageSize must be a positive integer, not ${pageSize}`);
  }
  return pageSize;
}

// An access token is refreshed this long before it expires (at most a fifth of its lifetime).
const REFRESH_MARGIN_MS = 30_000;

/** Milliseconds an access token lives, from its own iat and exp claims; undefined if unreadable. */
function tokenLifetime(session: Session): number | undefined {
  try {
    const payload = session.token.split(".")[1];
    if (payload === undefined) {
      return undefined;
    }
    const text = atob(payload.replace(/-/g, "+").replace(/_/g, "/"));
    const claims = JSON.parse(text) as { iat?: unknown; exp?: unknown };
    if (typeof claims.iat !== "number" || typeof claims.exp !== "number") {
      return undefined;
    }
    return (claims.exp - claims.iat) * 1000;
  } catch {
    return undefined;
  }
}

export class ChirpClient {
  readonly baseUrl: string;
  private session: Session | undefined;
  private readonly store: TokenStore | undefined;
  private readonly onUnauthenticated: ChirpClientOptions["onUnauthenticated"];
  private readonly fetchFn: FetchFn;
  private readonly users: Client<typeof UserService>;
  private readonly graph: Client<typeof GraphService>;
  private readonly tweets: Client<typeof TweetService>;
  private readonly timeline: Client<typeof TimelineService>;
  // The refresh in flight: calls that find the access token expiring share it, since a refresh
  // token exchanged twice ends the session.
  private refreshing: Promise<void> | undefined;
  // Date.now() after which the access token is refreshed before use (set at log-in and refresh).
  private refreshAfter: number | undefined;

  constructor(options: ChirpClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.store = options.tokenStore;
    this.onUnauthenticated = options.onUnauthenticated;
    const custom = options.fetch;
    // Called as a plain function: a browser's fetch throws "Illegal invocation" when called as a method.
    this.fetchFn = (input, init) => (custom ?? globalThis.fetch)(input, init);
    if (options.token !== undefined) {
      this.session = { token: options.token, userId: options.userId ?? "", refreshToken: options.refreshToken };
    } else {
      const stored = this.store?.get();
      this.session = stored ?? undefined;
    }
    const bearer: Interceptor = (next) => (request) => {
      const token = this.session?.token;
      if (token) {
        request.header.set("Authorization", `Bearer ${token}`);
      }
      return next(request);
    };
    const transport = createGrpcWebTransport({
      baseUrl: this.baseUrl,
      fetch: this.fetchFn,
      interceptors: [bearer],
      defaultTimeoutMs: options.timeoutMs ?? 30_000,
    });
    this.users = createClient(UserService, transport);
    this.graph = createClient(GraphService, transport);
    this.tweets = createClient(TweetService, transport);
    this.timeline = createClient(TimelineService, transport);
  }

  /** The access token, if logged in. */
  get token(): string | undefined {
    return this.session?.token;
  }

  /** The logged-in user's ID, if known. */
  get userId(): string | undefined {
    return this.session?.userId || undefined;
  }

  // Accounts and sessions.

  /** Create an account (no token needed). The display name defaults to the handle. */
  signUp(handle: string, password: string, displayName = ""): Promise<User> {
    return this.call(async () => userFrom(await this.users.createUser({ handle, password, displayName })));
  }

  /**
   * Log in: later calls act as this user, and refresh its access token by themselves; the session
   * goes to the tokenStore, if any.
   */
  logIn(handle: string, password: string): Promise<Session> {
    return this.call(async () => {
      const session = sessionFrom(await this.users.createSession({ handle, password }));
      this.remember(session);
      return session;
    });
  }

  /** Exchange the refresh token for new tokens now (calls do it by themselves when needed). */
  async refresh(): Promise<Session> {
    while (this.refreshing !== undefined) {
      await this.refreshing.catch(() => undefined);
    }
    const refreshToken = this.session?.refreshToken;
    if (!refreshToken) {
      throw new ChirpError({ code: "UNAUTHENTICATED", message: "no refresh token: log in first" });
    }
    this.refreshing = this.exchange(refreshToken);
    try {
      await this.refreshing;
    } finally {
      this.refreshing = undefined;
    }
    return this.session!;
  }

  /**
   * Forget the session here and in the tokenStore, and end it on the server: its refresh token
   * stops working. (The access token itself works until it expires, a few minutes at most.)
   */
  async logOut(): Promise<void> {
    const token = this.session?.token;
    this.session = undefined;
    this.refreshAfter = undefined;
    this.store?.clear();
    if (token) {
      try {
        await this.users.deleteSession({}, { headers: { Authorization: `Bearer ${token}` } });
      } catch {
        // Logged out here already; an expired access token cannot end the session, which then
        // ends with its refresh token.
      }
    }
  }

  getUser(userId: string): Promise<User> {
    return this.call(async () => userFrom(await this.users.getUser({ userId: toBigId(userId, "userId") })));
  }

  // Tweets.

  postTweet(content: string, options: PostTweetOptions = {}): Promise<Tweet> {
    return this.call(async () => {
      const request = {
        userId: this.me(),
        content,
        replyTo: options.replyTo === undefined ? 0n : toBigId(options.replyTo, "replyTo"),
        idempotencyKey: options.idempotencyKey ?? "",
        mediaIds: (options.mediaIds ?? []).map((id) => toBigId(id, "mediaIds")),
      };
      return tweetFrom(await this.tweets.createTweet(request));
    });
  }

  getTweet(tweetId: string): Promise<Tweet> {
    return this.call(async () => tweetFrom(await this.tweets.getTweet({ tweetId: toBigId(tweetId, "tweetId") })));
  }

  /** Replace the content (author only); the earlier versions stay readable with versions(). */
  editTweet(tweetId: string, content: string): Promise<Tweet> {
    return this.call(async () =>
      tweetFrom(await this.tweets.editTweet({ tweetId: toBigId(tweetId, "tweetId"), content })),
    );
  }

  /** Delete a tweet, its history and its media (author only). */
  deleteTweet(tweetId: string): Promise<void> {
    return this.call(async () => {
      await this.tweets.deleteTweet({ tweetId: toBigId(tweetId, "tweetId") });
    });
  }

  /** Every version of a tweet, oldest first; the last is the current content. */
  versions(tweetId: string): Promise<TweetVersion[]> {
    return this.call(async () => {
      const response = await this.tweets.listTweetVersions({ tweetId: toBigId(tweetId, "tweetId") });
      return response.versions.map(versionFrom);
    });
  }

  /** The direct replies to a tweet, oldest first, page after page. */
  replies(tweetId: string, options: PageOptions = {}): AsyncGenerator<Tweet, void, undefined> {
    const id = toBigId(tweetId, "tweetId");
    const size = limit(options.pageSize);
    return this.pages(async (cursor) => {
      const page = await this.tweets.listReplies({ tweetId: id, limit: size, cursor });
      return { items: page.tweets.map(tweetFrom), nextCursor: page.nextCursor };
    });
  }

  /** A user's tweets, newest first, page after page. */
  userTweets(userId: string, options: PageOptions = {}): AsyncGenerator<Tweet, void, undefined> {
    const id = toBigId(userId, "userId");
    const size = limit(options.pageSize);
    return this.pages(async (cursor) => {
      const page = await this.timeline.getUserTimeline({ userId: id, limit: size, cursor });
      return { items: page.tweets.map(tweetFrom), nextCursor: page.nextCursor };
    });
  }

  // Media.

  /**
   * Upload an image or a video (image/jpeg, image/png, image/gif, image/webp, video/mp4) and return
   * its media ID for postTweet's mediaIds: an upload grant from Chirp, then the bytes straight to
   * the object store.
   */
  uploadMedia(data: Blob | Uint8Array, contentType: string, options: UploadMediaOptions = {}): Promise<string> {
    return this.call(async () => {
      const file = asBlob(data, contentType);
      const grant = await this.tweets.createMediaUpload(
        { contentType, sizeBytes: BigInt(file.size) },
        options.signal === undefined ? {} : { signal: options.signal },
      );
      if (grant.upload === undefined) {
        throw new ChirpError({ code: "INTERNAL", message: "the upload grant has no upload form" });
      }
      await postForm(
        {
          url: grant.upload.url,
          fields: grant.upload.fields,
          file,
          onProgress: options.onProgress,
          signal: options.signal,
        },
        this.fetchFn,
        true,
      );
      return fromBigId(grant.mediaId);
    });
  }

  // The follow graph.

  follow(followeeId: string): Promise<void> {
    return this.call(async () => {
      await this.graph.follow({ followerId: this.me(), followeeId: toBigId(followeeId, "followeeId") });
    });
  }

  unfollow(followeeId: string): Promise<void> {
    return this.call(async () => {
      await this.graph.unfollow({ followerId: this.me(), followeeId: toBigId(followeeId, "followeeId") });
    });
  }

  /** The users following userId, newest edge first. */
  followers(userId: string, options: PageOptions = {}): AsyncGenerator<User, void, undefined> {
    const id = toBigId(userId, "userId");
    const size = limit(options.pageSize);
    return this.pages(async (cursor) => {
      const page = await this.graph.listFollowers({ userId: id, limit: size, cursor });
      return { items: page.users.map(userFrom), nextCursor: page.nextCursor };
    });
  }

  /** The users userId follows, newest edge first. */
  following(userId: string, options: PageOptions = {}): AsyncGenerator<User, void, undefined> {
    const id = toBigId(userId, "userId");
    const size = limit(options.pageSize);
    return this.pages(async (cursor) => {
      const page = await this.graph.listFollowing({ userId: id, limit: size, cursor });
      return { items: page.users.map(userFrom), nextCursor: page.nextCursor };
    });
  }

  /** Whether the logged-in user follows otherId, and whether otherId follows them. */
  relationship(otherId: string): Promise<Relationship> {
    return this.call(async () => {
      const userId = this.me();
      const otherUserId = toBigId(otherId, "otherId");
      const answer = await this.graph.getRelationship({ userId, otherUserId });
      return {
        userId: fromBigId(userId),
        otherUserId: fromBigId(otherUserId),
        following: answer.following,
        followedBy: answer.followedBy,
      };
    });
  }

  // Timelines.

  /** The logged-in user's home timeline, newest first, page after page. */
  homeTimeline(options: PageOptions = {}): AsyncGenerator<Tweet, void, undefined> {
    const size = limit(options.pageSize);
    return this.pages(async (cursor) => {
      const page = await this.homeTimelinePage({ pageSize: size || undefined, cursor });
      return { items: page.tweets, nextCursor: page.nextCursor ?? "" };
    });
  }

  /** One page of the home timeline; pass its nextCursor back for the next (null: the last page). */
  homeTimelinePage(options: HomeTimelinePageOptions = {}): Promise<TweetPage> {
    return this.call(async () => {
      const page = await this.timeline.getHomeTimeline({
        userId: this.me(),
        limit: limit(options.pageSize),
        cursor: options.cursor ?? "",
      });
      return { tweets: page.tweets.map(tweetFrom), nextCursor: page.nextCursor || null };
    });
  }

  /**
   * The logged-in user's new home-timeline tweets as they arrive, oldest first, until `signal`
   * aborts or the loop breaks. A dropped stream is reopened with backoff (ReconnectPolicy) from
   * the newest tweet seen, so none is missed and none is yielded twice. Errors a retry cannot fix
   * (UNAUTHENTICATED, PERMISSION_DENIED, ...) are thrown at once, and the last error once the
   * policy gives up.
   */
  async *liveTimeline(options: LiveTimelineOptions = {}): AsyncGenerator<Tweet, void, undefined> {
    const policy: ReconnectPolicy = { ...DEFAULT_RECONNECT };
    for (const [key, value] of Object.entries(options.reconnect ?? {})) {
      if (value !== undefined) {
        Object.assign(policy, { [key]: value });
      }
    }
    const outer = options.signal;
    const me = this.me();
    let lastSeen = options.sinceId === undefined ? 0n : toBigId(options.sinceId, "sinceId");
    const seen = new RecentIds(2_000);
    let failures = 0;
    let refreshedFor401 = false;
    while (!outer?.aborted) {
      await this.freshen();
      const sentWith = this.session?.token;
      const attempt = new AbortController();
      const stop = () => attempt.abort(outer?.reason);
      outer?.addEventListener("abort", stop, { once: true });
      let idle: ReturnType<typeof setTimeout> | undefined;
      let idled = false;
      const watch = () => {
        if (policy.idleTimeoutMs > 0) {
          clearTimeout(idle);
          idle = setTimeout(() => {
            idled = true;
            attempt.abort();
          }, policy.idleTimeoutMs);
        }
      };
      let openedAt: number | undefined;
      let delivered = false;
      let failure: ChirpError | undefined;
      try {
        watch();
        const stream = this.timeline.streamHomeTimeline(
          { userId: me, sinceId: lastSeen },
          {
            signal: attempt.signal,
            timeoutMs: 0,
            onHeader: () => {
              openedAt = Date.now();
              options.onConnect?.();
            },
          },
        );
        for await (const response of stream) {
          watch();
          const tweet = response.tweet;
          if (tweet === undefined || !seen.add(tweet.tweetId)) {
            continue;
          }
          delivered = true;
          refreshedFor401 = false;
          if (tweet.tweetId > lastSeen) {
            lastSeen = tweet.tweetId;
          }
          yield tweetFrom(tweet);
        }
      } catch (thrown) {
        if (outer?.aborted) {
          return;
        }
        if (!idled) {
          const error = toChirpError(thrown);
          if (error.unauthenticated && this.session?.refreshToken && !refreshedFor401) {
            refreshedFor401 = true;
            if (await this.refreshFrom(sentWith)) {
              continue;
            }
          }
          if (!RETRYABLE.has(error.code)) {
            await this.unauthenticated(error);
            throw error;
          }
          failure = error;
        }
      } finally {
        clearTimeout(idle);
        outer?.removeEventListener("abort", stop);
        attempt.abort();
      }
      if (outer?.aborted) {
        return;
      }
      const stable = idled || delivered || (openedAt !== undefined && Date.now() - openedAt >= policy.stableAfterMs);
      failures = stable ? 0 : failures + 1;
      if (failures >= policy.maxFailures) {
        throw failure ?? new ChirpError({ code: "UNAVAILABLE", message: "the live timeline keeps ending as soon as it opens" });
      }
      const delay = this.backoff(policy, failures, failure);
      options.onDisconnect?.(failure, delay);
      await sleep(delay, outer);
    }
  }

  // Plumbing.

  private backoff(policy: ReconnectPolicy, failures: number, failure: ChirpError | undefined): number {
    if (failures === 0) {
      return 0; // a stream that worked for a while and ended: reopen at once
    }
    let delay = Math.min(policy.maxDelayMs, policy.initialDelayMs * 2 ** (failures - 1));
    if (policy.jitter) {
      delay *= 0.5 + Math.random() / 2;
    }
    if (failure?.retryAfterSeconds !== undefined) {
      delay = Math.max(delay, failure.retryAfterSeconds * 1000);
    }
    return Math.round(delay);
  }

  /** The logged-in user's ID for calls made on their behalf; 0 (the server says UNAUTHENTICATED) when logged out. */
  private me(): bigint {
    const session = this.session;
    if (session === undefined) {
      return 0n;
    }
    if (!session.userId) {
      throw new TypeError("the client has a token but no userId: pass userId with token, or call logIn()");
    }
    return toBigId(session.userId, "userId");
  }

  /**
   * Run a call: with the access token refreshed first when it is about to expire, and once more
   * (then run again) when the server refuses the token.
   */
  private async call<T>(run: () => Promise<T>, retried = false): Promise<T> {
    await this.freshen();
    const sentWith = this.session?.token;
    try {
      return await run();
    } catch (thrown) {
      if (thrown instanceof TypeError || thrown instanceof RangeError) {
        throw thrown; // a bad argument, caught before anything was sent
      }
      const error = toChirpError(thrown);
      if (error.unauthenticated && !retried && sentWith !== undefined && this.session?.refreshToken) {
        if (await this.refreshFrom(sentWith)) {
          return this.call(run, true);
        }
      }
      await this.unauthenticated(error);
      throw error;
    }
  }

  private remember(session: Session): void {
    this.session = session;
    this.store?.set(session);
    // From this clock's receipt time, so that a client whose clock is off still refreshes in time.
    const lifetime = tokenLifetime(session);
    this.refreshAfter =
      lifetime === undefined ? undefined : Date.now() + lifetime - Math.min(REFRESH_MARGIN_MS, lifetime / 5);
  }

  /** Refresh before a call when the access token expires within a fifth of its life (30 s at most). */
  private async freshen(): Promise<void> {
    const session = this.session;
    if (session?.refreshToken === undefined) {
      return;
    }
    let deadline = this.refreshAfter;
    if (deadline === undefined) {
      // A session from the tokenStore: go by the server's expiry.
      const lifetime = tokenLifetime(session);
      if (lifetime === undefined || session.expiresAt === undefined) {
        return;
      }
      deadline = session.expiresAt.getTime() - Math.min(REFRESH_MARGIN_MS, lifetime / 5);
    }
    if (Date.now() >= deadline) {
      await this.refreshFrom(session.token);
    }
  }

  /**
   * Exchange the refresh token unless the session already moved past the `stale` access token (a
   * refresh in flight or done meanwhile). Whether the client has a session afterwards; a refused
   * refresh forgets it.
   */
  private async refreshFrom(stale: string | undefined): Promise<boolean> {
    while (this.refreshing !== undefined) {
      await this.refreshing.catch(() => undefined);
    }
    const session = this.session;
    if (session === undefined) {
      return false;
    }
    if (session.token !== stale) {
      return true;
    }
    const refreshToken = session.refreshToken;
    if (!refreshToken) {
      return false;
    }
    this.refreshing = this.exchange(refreshToken);
    try {
      await this.refreshing;
      return true;
    } catch {
      return this.session !== undefined && this.session.token !== stale;
    } finally {
      this.refreshing = undefined;
    }
  }

  /** RefreshSession: both tokens replaced; a refused refresh token forgets the session. */
  private async exchange(refreshToken: string): Promise<void> {
    try {
      this.remember(sessionFrom(await this.users.refreshSession({ refreshToken })));
    } catch (thrown) {
      const error = toChirpError(thrown);
      if (error.unauthenticated || error.code === "INVALID_ARGUMENT") {
        this.session = undefined;
        this.refreshAfter = undefined;
        this.store?.clear();
        await this.onUnauthenticated?.(error);
      }
      throw error;
    }
  }

  /** An UNAUTHENTICATED answer that no refresh cured: forget the session and tell the app. */
  private async unauthenticated(error: ChirpError): Promise<void> {
    if (!error.unauthenticated || this.session === undefined) {
      return;
    }
    this.session = undefined;
    this.refreshAfter = undefined;
    this.store?.clear();
    await this.onUnauthenticated?.(error);
  }

  private async *pages<T>(
    page: (cursor: string) => Promise<{ items: readonly T[]; nextCursor: string }>,
  ): AsyncGenerator<T, void, undefined> {
    let cursor = "";
    do {
      const answer = await this.call(() => page(cursor));
      yield* answer.items;
      cursor = answer.nextCursor;
    } while (cursor);
  }
}
