// The one module that talks to Chirp: @chirp/sdk's ChirpClient (gRPC-Web through Envoy, on the
// origin that served the app), with the session kept in localStorage across page loads.
import { ChirpClient, ChirpError, localStorageTokenStore } from "@chirp/sdk";

export { ChirpError };
export type { Media, Relationship, Session, Tweet, TweetPage, TweetVersion, User } from "@chirp/sdk";
export type Id = string;

/** Fired (as "ended") when the server rejects the session's token: the client has forgotten it. */
export const session = new EventTarget();

export const chirp = new ChirpClient({
  baseUrl: location.origin,
  tokenStore: localStorageTokenStore("chirp.session"),
  onUnauthenticated: (error) => {
    session.dispatchEvent(new CustomEvent("ended", { detail: error }));
  },
});
