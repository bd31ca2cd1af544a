// The one module that talks to Chirp. Every page calls `chirp`, whose methods carry the names of
// @chirp/sdk's ChirpClient; the models below are what the pages render.

export type Id = string;

// The models and the error have the shapes of @chirp/sdk's.

export interface User {
  readonly userId: Id;
  readonly handle: string;
  readonly displayName: string;
  readonly createdAt: Date | undefined;
  readonly followerCount: number;
  readonly followingCount: number;
}

export interface Media {
  readonly mediaId: Id;
  readonly url: string;
  readonly contentType: string;
  readonly sizeBytes: number;
  readonly width: number;
  readonly height: number;
}

export interface Tweet {
  readonly tweetId: Id;
  readonly userId: Id;
  readonly content: string;
  /** undefined when the tweet is not a reply. */
  readonly replyTo: Id | undefined;
  readonly replyToUserId: Id | undefined;
  readonly conversationId: Id;
  readonly createdAt: Date | undefined;
  readonly editedAt: Date | undefined;
  readonly version: number;
  readonly author: User | undefined;
  readonly media: readonly Media[];
}

export interface TweetVersion {
  readonly version: number;
  readonly content: string;
  readonly createdAt: Date | undefined;
}

export interface Session {
  readonly token: string;
  readonly userId: Id;
}

export interface Relationship {
  readonly following: boolean;
  readonly followedBy: boolean;
}

/** One page of the home timeline; `nextCursor` is null on the last page. */
export interface TweetPage {
  readonly tweets: readonly Tweet[];
  readonly nextCursor: string | null;
}

/** What the API answered instead (a google.rpc.Status), or a network failure (code UNAVAILABLE). */
export class ChirpError extends Error {
  override readonly name = "ChirpError";
  readonly code: string;
  readonly reason: string;
  readonly retryAfterSeconds: number | undefined;

  constructor(init: { code: string; message: string; reason?: string; retryAfterSeconds?: number }) {
    super(init.message);
    this.code = init.code;
    this.reason = init.reason ?? "";
    this.retryAfterSeconds = init.retryAfterSeconds;
  }
}

const CODE_NAMES = [
  "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
  "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",
  "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
];
const CODE_OF_HTTP: Record<number, string> = {
  400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
  409: "ALREADY_EXISTS", 413: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL",
  502: "UNAVAILABLE", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED",
};

type Json = Record<string, unknown>;

function retryAfter(header: string | null): number | undefined {
  if (!header) return undefined;
  const seconds = Number(header);
  if (Number.isFinite(seconds)) return Math.max(0, Math.ceil(seconds));
  const at = Date.parse(header);
  return Number.isNaN(at) ? undefined : Math.max(0, Math.ceil((at - Date.now()) / 1000));
}

function errorFrom(status: number, body: string, retryAfterHeader: string | null): ChirpError {
  let code = CODE_OF_HTTP[status] ?? (status >= 500 ? "UNAVAILABLE" : "UNKNOWN");
  let message = `HTTP ${status}`;
  let reason = "";
  try {
    const parsed = JSON.parse(body) as Json;
    if (typeof parsed.code === "number") code = CODE_NAMES[parsed.code] ?? code;
    if (typeof parsed.message === "string" && parsed.message) message = parsed.message;
    for (const detail of (parsed.details as Json[] | undefined) ?? []) {
      if (String(detail["@type"]).endsWith("google.rpc.ErrorInfo")) reason = String(detail.reason ?? "");
    }
  } catch {
    // Not a Status: keep what the HTTP status says.
  }
  return new ChirpError({ code, message, reason, retryAfterSeconds: retryAfter(retryAfterHeader) });
}

const str = (value: unknown): string => (value === undefined || value === null ? "" : String(value));
const num = (value: unknown): number => Number(value ?? 0) || 0;
const date = (value: unknown): Date | undefined => (value ? new Date(String(value)) : undefined);
const id = (value: unknown): Id => str(value);
const optionalId = (value: unknown): Id | undefined => (str(value) && str(value) !== "0" ? str(value) : undefined);

function toUser(data: Json): User {
  return {
    userId: id(data.user_id),
    handle: str(data.handle),
    displayName: str(data.display_name),
    createdAt: date(data.created_at),
    followerCount: num(data.follower_count),
    followingCount: num(data.following_count),
  };
}

function toTweet(data: Json): Tweet {
  return {
    tweetId: id(data.tweet_id),
    userId: id(data.user_id),
    content: str(data.content),
    replyTo: optionalId(data.reply_to),
    replyToUserId: optionalId(data.reply_to_user_id),
    conversationId: id(data.conversation_id),
    createdAt: date(data.created_at),
    editedAt: date(data.edited_at),
    version: num(data.version) || 1,
    author: data.author ? toUser(data.author as Json) : undefined,
    media: ((data.media as Json[] | undefined) ?? []).map((m) => ({
      mediaId: id(m.media_id),
      url: str(m.url),
      contentType: str(m.content_type),
      sizeBytes: num(m.size_bytes),
      width: num(m.width),
      height: num(m.height),
    })),
  };
}

const SESSION_KEY = "chirp.session";

/** Where the session is kept between page loads. */
export interface TokenStore {
  load(): Session | null;
  save(session: Session | null): void;
}

export const localTokenStore: TokenStore = {
  load() {
    try {
      const saved = JSON.parse(localStorage.getItem(SESSION_KEY) ?? "null") as Session | null;
      return saved && saved.token && saved.userId ? saved : null;
    } catch {
      return null;
    }
  },
  save(session) {
    if (session) localStorage.setItem(SESSION_KEY, JSON.stringify(session));
    else localStorage.removeItem(SESSION_KEY);
  },
};

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    });
  });

const RETRYABLE = new Set(["UNAVAILABLE", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED", "ABORTED", "INTERNAL"]);

export class ChirpClient {
  private session: Session | null;

  constructor(
    private readonly baseUrl = "",
    private readonly tokenStore: TokenStore = localTokenStore,
  ) {
    this.session = tokenStore.load();
  }

  /** The logged-in user's ID, or null. */
  get userId(): Id | null {
    return this.session?.userId ?? null;
  }

  private async request(method: string, path: string, body?: Json, signal?: AbortSignal): Promise<Response> {
    const headers: Record<string, string> = { Accept: "application/json" };
    if (body) headers["Content-Type"] = "application/json";
    if (this.session) headers.Authorization = `Bearer ${this.session.token}`;
    let response: Response;
    try {
      response = await fetch(this.baseUrl + path, {
        method,
        headers,
        body: body ? JSON.stringify(body) : undefined,
        signal,
      });
    } catch (error) {
      if (signal?.aborted) throw error;
      throw new ChirpError({ code: "UNAVAILABLE", message: "Chirp cannot be reached" });
    }
    if (!response.ok) {
      throw errorFrom(response.status, await response.text(), response.headers.get("Retry-After"));
    }
    return response;
  }

  private async json(method: string, path: string, body?: Json): Promise<Json> {
    const response = await this.request(method, path, body);
    const text = await response.text();
    return text.trim() ? (JSON.parse(text) as Json) : {};
  }

  private me(): Id {
    if (!this.session) throw new ChirpError({ code: "UNAUTHENTICATED", message: "log in first" });
    return this.session.userId;
  }

  private async *pages<T>(path: string, key: string, parse: (data: Json) => T, limit = 20): AsyncGenerator<T> {
    let cursor = "";
    do {
      const query = new URLSearchParams({ limit: String(limit) });
      if (cursor) query.set("cursor", cursor);
      const page = await this.json("GET", `${path}?${query}`);
      for (const item of (page[key] as Json[] | undefined) ?? []) yield parse(item);
      cursor = str(page.next_cursor);
    } while (cursor);
  }

  async signUp(handle: string, password: string, displayName = ""): Promise<User> {
    return toUser(await this.json("POST", "/users", { handle, password, display_name: displayName }));
  }

  async logIn(handle: string, password: string): Promise<Session> {
    const data = await this.json("POST", "/sessions", { handle, password });
    this.session = { token: str(data.token), userId: id(data.user_id) };
    this.tokenStore.save(this.session);
    return this.session;
  }

  logOut(): void {
    this.session = null;
    this.tokenStore.save(null);
  }

  async getUser(userId: Id): Promise<User> {
    return toUser(await this.json("GET", `/users/${encodeURIComponent(userId)}`));
  }

  async postTweet(content: string, options: { replyTo?: Id; mediaIds?: Id[] } = {}): Promise<Tweet> {
    const body: Json = { user_id: this.me(), content, idempotency_key: crypto.randomUUID() };
    if (options.replyTo) body.reply_to = options.replyTo;
    if (options.mediaIds?.length) body.media_ids = options.mediaIds;
    return toTweet(await this.json("POST", "/tweets", body));
  }

  async getTweet(tweetId: Id): Promise<Tweet> {
    return toTweet(await this.json("GET", `/tweets/${encodeURIComponent(tweetId)}`));
  }

  async editTweet(tweetId: Id, content: string): Promise<Tweet> {
    return toTweet(await this.json("PATCH", `/tweets/${encodeURIComponent(tweetId)}`, { content }));
  }

  async deleteTweet(tweetId: Id): Promise<void> {
    await this.json("DELETE", `/tweets/${encodeURIComponent(tweetId)}`);
  }

  async versions(tweetId: Id): Promise<TweetVersion[]> {
    const data = await this.json("GET", `/tweets/${encodeURIComponent(tweetId)}/versions`);
    return ((data.versions as Json[] | undefined) ?? []).map((v) => ({
      version: num(v.version),
      content: str(v.content),
      createdAt: date(v.created_at),
    }));
  }

  replies(tweetId: Id): AsyncGenerator<Tweet> {
    return this.pages(`/tweets/${encodeURIComponent(tweetId)}/replies`, "tweets", toTweet);
  }

  userTweets(userId: Id): AsyncGenerator<Tweet> {
    return this.pages(`/users/${encodeURIComponent(userId)}/tweets`, "tweets", toTweet);
  }

  async follow(userId: Id): Promise<void> {
    await this.json("POST", "/follow", { follower_id: this.me(), followee_id: userId });
  }

  async unfollow(userId: Id): Promise<void> {
    await this.json("DELETE", "/follow", { follower_id: this.me(), followee_id: userId });
  }

  followers(userId: Id): AsyncGenerator<User> {
    return this.pages(`/users/${encodeURIComponent(userId)}/followers`, "users", toUser);
  }

  following(userId: Id): AsyncGenerator<User> {
    return this.pages(`/users/${encodeURIComponent(userId)}/following`, "users", toUser);
  }

  async relationship(userId: Id): Promise<Relationship> {
    const data = await this.json("GET", `/users/${this.me()}/relationships/${encodeURIComponent(userId)}`);
    return { following: Boolean(data.following), followedBy: Boolean(data.followed_by) };
  }

  async homeTimelinePage(options: { pageSize?: number; cursor?: string } = {}): Promise<TweetPage> {
    const query = new URLSearchParams({ user_id: this.me(), limit: String(options.pageSize ?? 20) });
    if (options.cursor) query.set("cursor", options.cursor);
    const data = await this.json("GET", `/timeline?${query}`);
    return {
      tweets: ((data.tweets as Json[] | undefined) ?? []).map(toTweet),
      nextCursor: str(data.next_cursor) || null,
    };
  }

  /** New tweets of the home timeline as they are posted; reconnects and resumes after the last one. */
  async *liveTimeline(options: { sinceId?: Id; signal?: AbortSignal } = {}): AsyncGenerator<Tweet> {
    const { signal } = options;
    let sinceId = options.sinceId ?? "";
    let failures = 0;
    const seen = new Set<Id>();
    while (!signal?.aborted) {
      try {
        const query = new URLSearchParams({ user_id: this.me() });
        if (sinceId) query.set("since_id", sinceId);
        const response = await this.request("GET", `/timeline/stream?${query}`, undefined, signal);
        const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value.replace(/\r\n?/g, "\n");
          let end: number;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            const event = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            const data = event
              .split("\n")
              .filter((line) => line.startsWith("data:"))
              .map((line) => line.slice(5).trimStart())
              .join("\n");
            if (!data) continue;
            const parsed = JSON.parse(data) as Json;
            if (parsed.tweet) {
              const tweet = toTweet(parsed.tweet as Json);
              failures = 0;
              if (BigInt(tweet.tweetId) > BigInt(sinceId || "0")) sinceId = tweet.tweetId;
              if (!seen.has(tweet.tweetId)) {
                seen.add(tweet.tweetId);
                yield tweet;
              }
            } else if (typeof parsed.code === "number") {
              throw errorFrom(200, data, null);
            }
          }
        }
      } catch (error) {
        if (signal?.aborted) return;
        if (!(error instanceof ChirpError) || !RETRYABLE.has(error.code)) throw error;
        failures += 1;
        const wait = Math.min(30_000, 500 * 2 ** (failures - 1));
        await sleep(Math.max(wait, (error.retryAfterSeconds ?? 0) * 1000), signal);
        continue;
      }
      await sleep(500, signal);
    }
  }

  /** Uploads a picture straight to the media store with an upload grant; returns its media ID. */
  async uploadMedia(
    blob: Blob,
    contentType: string,
    options: { onProgress?: (sent: number, total: number) => void; signal?: AbortSignal } = {},
  ): Promise<Id> {
    const grant = await this.json("POST", "/media", { content_type: contentType, size_bytes: String(blob.size) });
    const upload = grant.upload as Json;
    const form = new FormData();
    for (const [key, value] of Object.entries((upload.fields as Record<string, string>) ?? {})) {
      form.append(key, value);
    }
    form.append("file", blob);
    await new Promise<void>((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", str(upload.url));
      xhr.upload.onprogress = (event) => options.onProgress?.(event.loaded, event.total || blob.size);
      xhr.onload = () =>
        xhr.status < 300
          ? resolve()
          : reject(errorFrom(xhr.status, xhr.responseText, xhr.getResponseHeader("Retry-After")));
      xhr.onerror = () => reject(new ChirpError({ code: "UNAVAILABLE", message: "the upload failed" }));
      xhr.onabort = () => reject(new DOMException("upload cancelled", "AbortError"));
      options.signal?.addEventListener("abort", () => xhr.abort());
      xhr.send(form);
    });
    options.onProgress?.(blob.size, blob.size);
    return id(grant.media_id);
  }
}

export const chirp = new ChirpClient();
