/**
 * What needs no server: reading errors as Envoy sends them over gRPC-Web (the answers below are
 * copied from a live stack), the token stores, and argument checks.
 */

import assert from "node:assert/strict";
import { test } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { ChirpClient, ChirpError, memoryTokenStore, webStorageTokenStore, type StorageLike } from "../dist/index.js";
import { toChirpError } from "../dist/errors.js";

const RATE_LIMITED_STATUS = JSON.stringify({
  code: 8,
  message: "rate limit exceeded: sign-ups and logins per IP (2 per hour); retry in 922 s",
  details: [
    {
      "@type": "type.googleapis.com/google.rpc.ErrorInfo",
      reason: "RATE_LIMITED",
      domain: "chirp.dev",
      metadata: { limit: "sign-ups and logins per IP", retry_after_seconds: "922" },
    },
  ],
});

test("a rate-limited call (HTTP 429, the Status JSON in grpc-message) is RESOURCE_EXHAUSTED with its wait", () => {
  // connect-web reads a non-200 gRPC-Web answer by its HTTP status (429: UNAVAILABLE).
  const thrown = new ConnectError(RATE_LIMITED_STATUS, Code.Unavailable, new Headers({ "retry-after": "922" }));
  const error = toChirpError(thrown);
  assert.equal(error.code, "RESOURCE_EXHAUSTED");
  assert.equal(error.message, "rate limit exceeded: sign-ups and logins per IP (2 per hour); retry in 922 s");
  assert.equal(error.reason, "RATE_LIMITED");
  assert.equal(error.metadata["limit"], "sign-ups and logins per IP");
  assert.equal(error.retryAfterSeconds, 922);
  assert.equal(error.cause, thrown);
});

test("a bare HTTP 429 with Retry-After is still RESOURCE_EXHAUSTED with its wait", () => {
  const error = toChirpError(new ConnectError("HTTP 429", Code.Unavailable, new Headers({ "retry-after": "932" })));
  assert.equal(error.code, "RESOURCE_EXHAUSTED");
  assert.equal(error.retryAfterSeconds, 932);
});

test("Envoy's token denial is UNAUTHENTICATED with its reason", () => {
  const body = JSON.stringify({
    code: 16,
    message: "the token is not valid",
    details: [{ "@type": "type.googleapis.com/google.rpc.ErrorInfo", reason: "TOKEN_INVALID", domain: "chirp.dev" }],
  });
  const error = toChirpError(new ConnectError(body, Code.Unauthenticated));
  assert.equal(error.code, "UNAUTHENTICATED");
  assert.equal(error.message, "the token is not valid");
  assert.equal(error.reason, "TOKEN_INVALID");
  assert.ok(error.unauthenticated && ChirpError.isUnauthenticated(error));
  assert.equal(error.retryAfterSeconds, undefined);
  assert.ok(!ChirpError.isUnauthenticated(new Error("no")));
});

test("an outage stays UNAVAILABLE, without a wait", () => {
  const error = toChirpError(new ConnectError("upstream connect error", Code.Unavailable));
  assert.deepEqual([error.code, error.message, error.retryAfterSeconds], ["UNAVAILABLE", "upstream connect error", undefined]);
});

test("a web-storage token store keeps the session as JSON and drops an expired one", async () => {
  const items = new Map<string, string>();
  const storage: StorageLike = {
    getItem: (key) => items.get(key) ?? null,
    setItem: (key, value) => void items.set(key, value),
    removeItem: (key) => void items.delete(key),
  };
  const store = webStorageTokenStore(storage, "k");
  assert.equal(store.get(), null);
  const expiresAt = new Date(Date.now() + 60_000);
  store.set({ token: "t", userId: "42", expiresAt });
  assert.deepEqual(JSON.parse(items.get("k")!), { token: "t", userId: "42", expiresAt: expiresAt.toISOString() });
  assert.deepEqual(store.get(), { token: "t", userId: "42", expiresAt });
  const client = new ChirpClient({ baseUrl: "http://127.0.0.1:9", tokenStore: store });
  assert.deepEqual([client.token, client.userId], ["t", "42"]);
  await client.logOut();
  assert.equal(items.size, 0);

  store.set({ token: "old", userId: "42", expiresAt: new Date(Date.now() - 1) });
  assert.equal(store.get(), null);
  assert.equal(items.size, 0);

  // With a refresh token, the session lasts as long as the refresh token: an expired access token
  // is refreshed by the client, not a reason to log in again.
  const refreshExpiresAt = new Date(Date.now() + 86_400_000);
  const refreshable = { token: "old", userId: "42", expiresAt: new Date(Date.now() - 1), refreshToken: "r", refreshExpiresAt };
  store.set(refreshable);
  assert.deepEqual(store.get(), refreshable);
  store.set({ ...refreshable, refreshExpiresAt: new Date(Date.now() - 1) });
  assert.equal(store.get(), null);
});

test("IDs are decimal strings; anything else is a TypeError before any request", async () => {
  const client = new ChirpClient({ baseUrl: "http://127.0.0.1:9", tokenStore: memoryTokenStore() });
  await assert.rejects(() => client.getTweet("12a"), TypeError);
  await assert.rejects(() => client.getUser("99999999999999999999"), TypeError);
  await assert.rejects(() => client.getTweet(12 as unknown as string), TypeError);
  assert.throws(() => client.replies("-1"), TypeError);
  assert.throws(() => client.followers("1", { pageSize: 0 }), RangeError);
  const noUser = new ChirpClient({ baseUrl: "http://127.0.0.1:9", token: "t" });
  await assert.rejects(() => noUser.follow("1"), /token but no userId/);
});

test("a server that cannot be reached is a ChirpError", async () => {
  const client = new ChirpClient({ baseUrl: "http://127.0.0.1:9" });
  const error = await client.getUser("1").then(
    () => assert.fail("reached port 9"),
    (e: unknown) => e,
  );
  assert.ok(error instanceof ChirpError);
  assert.ok(["UNAVAILABLE", "UNKNOWN"].includes(error.code), error.code);
});
