import { ChirpError } from "./api";

const FIELD_NAMES: Record<string, string> = {
  handle: "Handle",
  password: "Password",
  display_name: "Display name",
  content: "Text",
  media_ids: "Pictures",
  size_bytes: "Picture",
  content_type: "Picture",
};

const REASONS: Record<string, string> = {
  BAD_CREDENTIALS: "Wrong handle or password.",
  HANDLE_TAKEN: "That handle is taken. Pick another one.",
  TOKEN_EXPIRED: "Your session has expired. Log in again.",
  TOKEN_INVALID: "Your session has ended. Log in again.",
  NOT_AUTHOR: "Only the author can change this tweet.",
  MEDIA_TOO_LARGE: "That picture is too large (at most 8 MB).",
  MEDIA_TYPE_NOT_ALLOWED: "Only JPEG, PNG, GIF and WebP pictures can be posted.",
  MEDIA_UNAVAILABLE: "A picture did not finish uploading. Remove it and add it again.",
  MEDIA_UPLOAD_FAILED: "The picture could not be uploaded. Remove it and try again.",
  TWEET_NOT_FOUND: "This tweet does not exist or was deleted.",
  USER_NOT_FOUND: "There is no such user.",
};

function sentence(text: string): string {
  const trimmed = text.trim();
  if (!trimmed) return "Something went wrong.";
  const capital = trimmed[0].toUpperCase() + trimmed.slice(1);
  return /[.!?]$/.test(capital) ? capital : `${capital}.`;
}

/** What to tell the person about a failed action, in a sentence. */
export function describeError(error: unknown): string {
  if (error instanceof ChirpError) {
    if (error.code === "RESOURCE_EXHAUSTED" || error.retryAfterSeconds !== undefined) {
      const seconds = error.retryAfterSeconds;
      return seconds !== undefined && seconds > 0
        ? `Too many requests. Try again in ${seconds} s.`
        : "Too many requests. Try again in a moment.";
    }
    if (REASONS[error.reason]) return REASONS[error.reason];
    if (error.code === "INVALID_ARGUMENT") {
      const match = /^([a-z_]+): (.*)$/s.exec(error.message);
      if (match) return sentence(`${FIELD_NAMES[match[1]] ?? match[1]} ${match[2]}`);
      return sentence(error.message);
    }
    if (error.code === "UNAUTHENTICATED") return "Log in to do that.";
    if (error.code === "PERMISSION_DENIED") return "You are not allowed to do that.";
    if (error.code === "NOT_FOUND") return "Not found: it does not exist or was deleted.";
    if (error.code === "UNAVAILABLE" || error.code === "DEADLINE_EXCEEDED") {
      return "Chirp cannot be reached right now. Check your connection and try again.";
    }
    if (error.code === "UNKNOWN" || error.code === "INTERNAL" || error.code === "DATA_LOSS") {
      return "Something went wrong on Chirp's side. Try again.";
    }
    return sentence(error.message);
  }
  if (error instanceof Error && error.name === "AbortError") return "Cancelled.";
  return "Something went wrong. Try again.";
}
