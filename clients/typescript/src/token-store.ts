/** Where a ChirpClient keeps its login between page loads (or not at all). */

import type { Session } from "./models.js";

/**
 * Persistence for the session (token and user ID). `get` is read once, when the client is
 * created; `set` after each log-in; `clear` on log-out and when the server rejects the token.
 */
export interface TokenStore {
  get(): Session | null | undefined;
  set(session: Session): void;
  clear(): void;
}

/** The minimal part of the Web Storage API the stores below use (localStorage, sessionStorage). */
export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

interface StoredSession {
  token: string;
  userId: string;
  expiresAt?: string;
  refreshToken?: string;
  refreshExpiresAt?: string;
}

/**
 * A TokenStore in Web Storage, as JSON under `key`: `localStorageTokenStore()` in a browser keeps
 * the user logged in across reloads. A stored session that can no longer be refreshed (past the
 * refresh token's expiry, or without one past the access token's) is not returned.
 */
export function webStorageTokenStore(storage: StorageLike, key = "chirp.session"): TokenStore {
  return {
    get(): Session | null {
      const text = storage.getItem(key);
      if (text === null) {
        return null;
      }
      try {
        const stored = JSON.parse(text) as Partial<StoredSession>;
        if (typeof stored.token !== "string" || typeof stored.userId !== "string") {
          return null;
        }
        const expiresAt = typeof stored.expiresAt === "string" ? new Date(stored.expiresAt) : undefined;
        const refreshToken = typeof stored.refreshToken === "string" ? stored.refreshToken : undefined;
        const refreshExpiresAt =
          typeof stored.refreshExpiresAt === "string" ? new Date(stored.refreshExpiresAt) : undefined;
        const usableUntil = refreshToken === undefined ? expiresAt : refreshExpiresAt;
        if (usableUntil !== undefined && usableUntil.getTime() <= Date.now()) {
          storage.removeItem(key);
          return null;
        }
        const session: Session = { token: stored.token, userId: stored.userId, expiresAt };
        return refreshToken === undefined ? session : { ...session, refreshToken, refreshExpiresAt };
      } catch {
        return null;
      }
    },
    set(session: Session): void {
      const stored: StoredSession = { token: session.token, userId: session.userId };
      if (session.expiresAt !== undefined) {
        stored.expiresAt = session.expiresAt.toISOString();
      }
      if (session.refreshToken !== undefined) {
        stored.refreshToken = session.refreshToken;
      }
      if (session.refreshExpiresAt !== undefined) {
        stored.refreshExpiresAt = session.refreshExpiresAt.toISOString();
      }
      storage.setItem(key, JSON.stringify(stored));
    },
    clear(): void {
      storage.removeItem(key);
    },
  };
}

/** `webStorageTokenStore(globalThis.localStorage, key)`; throws where there is no localStorage. */
export function localStorageTokenStore(key = "chirp.session"): TokenStore {
  const storage = (globalThis as { localStorage?: StorageLike }).localStorage;
  if (storage === undefined) {
    throw new Error("localStorage is not available here; use webStorageTokenStore() with a storage of your own");
  }
  return webStorageTokenStore(storage, key);
}

/** A TokenStore in memory: what the client does without one, made explicit (tests, Node.js). */
export function memoryTokenStore(initial?: Session): TokenStore {
  let session: Session | undefined = initial;
  return {
    get: () => session,
    set: (value: Session) => {
      session = value;
    },
    clear: () => {
      session = undefined;
    },
  };
}
