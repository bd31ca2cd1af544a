/**
 * @chirp/sdk: Chirp's public API over gRPC-Web, for browsers and Node.js.
 *
 *     const chirp = new ChirpClient({ baseUrl: "http://127.0.0.1:8080" });
 *     await chirp.logIn("ada", "correct horse");
 *     for await (const tweet of chirp.homeTimeline()) console.log(tweet.content);
 *
 * IDs are decimal strings; the generated messages (bigint IDs) stay inside the SDK, but are
 * exported under `gen` for code that needs them.
 */

export {
  ChirpClient,
  DEFAULT_RECONNECT,
  type ChirpClientOptions,
  type HomeTimelinePageOptions,
  type LiveTimelineOptions,
  type PageOptions,
  type PostTweetOptions,
  type ReconnectPolicy,
  type UploadMediaOptions,
} from "./client.js";
export { ChirpError, codeName, type ChirpErrorInit, type GrpcCodeName } from "./errors.js";
export type { Media, Relationship, Session, Tweet, TweetPage, TweetVersion, User } from "./models.js";
export {
  localStorageTokenStore,
  memoryTokenStore,
  webStorageTokenStore,
  type StorageLike,
  type TokenStore,
} from "./token-store.js";
export type { UploadProgress } from "./upload.js";
export * as gen from "./generated.js";
