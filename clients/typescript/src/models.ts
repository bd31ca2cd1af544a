/**
 * The API's resources as plain, immutable-by-convention objects, converted from the generated
 * protobuf messages at the SDK's boundary.
 *
 * IDs are decimal strings ("7290817302528"): the API's IDs are int64 Snowflakes, beyond what a
 * JavaScript number holds exactly, and strings survive JSON, URLs and React keys unchanged. The
 * generated messages carry them as bigint; only this module and the client convert.
 * Timestamps are `Date`s. A field the server leaves out takes the default documented here.
 */

import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import type * as tweetsPb from "./gen/chirp/tweets/v1/tweets_pb.js";
import type * as usersPb from "./gen/chirp/users/v1/users_pb.js";

/** An account's public profile. */
export interface User {
  readonly userId: string;
  readonly handle: string;
  /** The name shown next to the handle; the handle when none was given at sign-up. */
  readonly displayName: string;
  /** When the account was created; undefined if the server left it out. */
  readonly createdAt: Date | undefined;
  /** How many users follow this one; 0 where only the profile is sent (a tweet's author). */
  readonly followerCount: number;
  /** How many users this one follows; 0 where only the profile is sent. */
  readonly followingCount: number;
}

/** An image or a video attached to a tweet. */
export interface Media {
  readonly mediaId: string;
  /** Where to download it (the CDN); the URL never changes. */
  readonly url: string;
  /** image/jpeg, image/png, image/gif, image/webp or video/mp4. */
  readonly contentType: string;
  readonly sizeBytes: number;
  /** Pixels; 0 for a video. */
  readonly width: number;
  readonly height: number;
}

/** A tweet at its latest version. */
export interface Tweet {
  readonly tweetId: string;
  /** The author's ID. */
  readonly userId: string;
  /** Up to 280 code points; may be empty when the tweet has media. */
  readonly content: string;
  /** The tweet this one replies to; undefined when it is not a reply. */
  readonly replyTo: string | undefined;
  /** The author of the tweet replied to; undefined when it is not a reply. */
  readonly replyToUserId: string | undefined;
  /** The first tweet of the conversation (the tweet's own ID when it is not a reply). */
  readonly conversationId: string;
  readonly createdAt: Date | undefined;
  /** When the tweet was last edited; undefined when never edited. */
  readonly editedAt: Date | undefined;
  /** 1 for a tweet never edited, then 2, 3, ... */
  readonly version: number;
  /** The author's profile: filled in timelines, undefined from the tweet calls. */
  readonly author: User | undefined;
  /** Attached images or video, in the order given when posting. */
  readonly media: readonly Media[];
}

/** One version of a tweet's content. */
export interface TweetVersion {
  readonly version: number;
  readonly content: string;
  readonly createdAt: Date | undefined;
}

/** A login: the access token (short-lived), the refresh token that gets the next one, and whose they are. */
export interface Session {
  readonly token: string;
  readonly userId: string;
  /** When the access token stops working (minutes from its issue); undefined if unknown. */
  readonly expiresAt?: Date | undefined;
  /** Exchanged for new tokens by the client when the access token is about to expire. */
  readonly refreshToken?: string | undefined;
  /** When the refresh token stops working (the session lasts 30 days past its last refresh). */
  readonly refreshExpiresAt?: Date | undefined;
}

/** Both directions of the follow edge between `userId` and `otherUserId`. */
export interface Relationship {
  readonly userId: string;
  readonly otherUserId: string;
  /** userId follows otherUserId. */
  readonly following: boolean;
  /** otherUserId follows userId. */
  readonly followedBy: boolean;
}

/** One page of a list. `nextCursor` is null on the last page. */
export interface TweetPage {
  readonly tweets: readonly Tweet[];
  readonly nextCursor: string | null;
}

const DECIMAL = /^[0-9]{1,19}$/;
const MAX_INT64 = (1n << 63n) - 1n;

/** An ID as the generated messages want it; throws TypeError for anything but a decimal string. */
export function toBigId(id: string, name = "id"): bigint {
  if (typeof id !== "string" || !DECIMAL.test(id)) {
    throw new TypeError(`${name} must be a decimal ID string, not ${JSON.stringify(id)}`);
  }
  const value = BigInt(id);
  if (value > MAX_INT64) {
    throw new TypeError(`${name} is out of range: ${id}`);
  }
  return value;
}

/** An ID as the SDK hands it out. */
export function fromBigId(id: bigint): string {
  return id.toString();
}

function optionalId(id: bigint): string | undefined {
  return id === 0n ? undefined : id.toString();
}

function date(timestamp: Timestamp | undefined): Date | undefined {
  return timestamp === undefined ? undefined : timestampDate(timestamp);
}

export function userFrom(user: usersPb.User): User {
  return {
    userId: fromBigId(user.userId),
    handle: user.handle,
    displayName: user.displayName,
    createdAt: date(user.createdAt),
    followerCount: user.followerCount,
    followingCount: user.followingCount,
  };
}

export function mediaFrom(media: tweetsPb.Media): Media {
  return {
    mediaId: fromBigId(media.mediaId),
    url: media.url,
    contentType: media.contentType,
    sizeBytes: Number(media.sizeBytes),
    width: media.width,
    height: media.height,
  };
}

export function tweetFrom(tweet: tweetsPb.Tweet): Tweet {
  return {
    tweetId: fromBigId(tweet.tweetId),
    userId: fromBigId(tweet.userId),
    content: tweet.content,
    replyTo: optionalId(tweet.replyTo),
    replyToUserId: optionalId(tweet.replyToUserId),
    conversationId: fromBigId(tweet.conversationId),
    createdAt: date(tweet.createdAt),
    editedAt: date(tweet.editedAt),
    version: tweet.version,
    author: tweet.author === undefined ? undefined : userFrom(tweet.author),
    media: tweet.media.map(mediaFrom),
  };
}

export function versionFrom(version: tweetsPb.TweetVersion): TweetVersion {
  return { version: version.version, content: version.content, createdAt: date(version.createdAt) };
}

export function sessionFrom(session: usersPb.CreateSessionResponse | usersPb.RefreshSessionResponse): Session {
  return {
    token: session.token,
    userId: fromBigId(session.userId),
    expiresAt: date(session.expiresAt),
    refreshToken: session.refreshToken || undefined,
    refreshExpiresAt: date(session.refreshTokenExpiresAt),
  };
}
