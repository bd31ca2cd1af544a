/**
 * One error class for everything the SDK throws on a failed call: `ChirpError`, with the gRPC
 * status code's name, the message, and the `google.rpc.ErrorInfo` the server attached.
 */

import { Code, ConnectError } from "@connectrpc/connect";
import { BadRequestSchema, ErrorInfoSchema } from "./gen/google/rpc/error_details_pb.js";

/** The canonical gRPC status codes, by name (google.rpc.Code). */
export type GrpcCodeName =
  | "OK"
  | "CANCELLED"
  | "UNKNOWN"
  | "INVALID_ARGUMENT"
  | "DEADLINE_EXCEEDED"
  | "NOT_FOUND"
  | "ALREADY_EXISTS"
  | "PERMISSION_DENIED"
  | "RESOURCE_EXHAUSTED"
  | "FAILED_PRECONDITION"
  | "ABORTED"
  | "OUT_OF_RANGE"
  | "UNIMPLEMENTED"
  | "INTERNAL"
  | "UNAVAILABLE"
  | "DATA_LOSS"
  | "UNAUTHENTICATED";

const CODE_NAMES: readonly GrpcCodeName[] = [
  "OK",
  "CANCELLED",
  "UNKNOWN",
  "INVALID_ARGUMENT",
  "DEADLINE_EXCEEDED",
  "NOT_FOUND",
  "ALREADY_EXISTS",
  "PERMISSION_DENIED",
  "RESOURCE_EXHAUSTED",
  "FAILED_PRECONDITION",
  "ABORTED",
  "OUT_OF_RANGE",
  "UNIMPLEMENTED",
  "INTERNAL",
  "UNAVAILABLE",
  "DATA_LOSS",
  "UNAUTHENTICATED",
];

/** The name of a gRPC status code number; UNKNOWN for a number outside the table. */
export function codeName(code: number): GrpcCodeName {
  return CODE_NAMES[code] ?? "UNKNOWN";
}

export interface ChirpErrorInit {
  code: GrpcCodeName;
  message: string;
  reason?: string | undefined;
  metadata?: Readonly<Record<string, string>> | undefined;
  retryAfterSeconds?: number | undefined;
  cause?: unknown;
}

/**
 * A call failed. `code` is the gRPC code's name ("NOT_FOUND"), `message` the server's message,
 * `reason` the ErrorInfo reason ("TWEET_NOT_FOUND"; "" when the server sent none) and `metadata`
 * the ErrorInfo metadata. `retryAfterSeconds` is set when rate limited (RESOURCE_EXHAUSTED).
 * A network failure is code UNAVAILABLE or UNKNOWN with the underlying error as `cause`.
 */
export class ChirpError extends Error {
  override readonly name = "ChirpError";
  readonly code: GrpcCodeName;
  readonly reason: string;
  readonly metadata: Readonly<Record<string, string>>;
  readonly retryAfterSeconds: number | undefined;

  constructor(init: ChirpErrorInit) {
    super(init.message, init.cause === undefined ? undefined : { cause: init.cause });
    this.code = init.code;
    this.reason = init.reason ?? "";
    this.metadata = Object.freeze({ ...(init.metadata ?? {}) });
    this.retryAfterSeconds = init.retryAfterSeconds;
  }

  /** The token is missing, unknown or expired: the user has to log in (again). */
  get unauthenticated(): boolean {
    return this.code === "UNAUTHENTICATED";
  }

  /** The request field the server blamed (INVALID_ARGUMENT), when it said which. */
  get field(): string | undefined {
    return this.metadata["field"];
  }

  /** Whether `error` is a ChirpError for a missing, unknown or expired token. */
  static isUnauthenticated(error: unknown): error is ChirpError {
    return error instanceof ChirpError && error.unauthenticated;
  }
}

/** A google.rpc.Status as JSON: what Envoy and the rate-limit service answer with themselves. */
interface StatusJson {
  code?: unknown;
  message?: unknown;
  details?: unknown;
}

function statusJson(text: string): StatusJson | undefined {
  if (!text.startsWith("{")) {
    return undefined;
  }
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as StatusJson) : undefined;
  } catch {
    return undefined;
  }
}

function errorInfoJson(details: unknown): { reason: string; metadata: Record<string, string> } | undefined {
  if (!Array.isArray(details)) {
    return undefined;
  }
  for (const detail of details as unknown[]) {
    if (typeof detail !== "object" || detail === null) {
      continue;
    }
    const record = detail as Record<string, unknown>;
    if (record["@type"] !== "type.googleapis.com/google.rpc.ErrorInfo") {
      continue;
    }
    const metadata: Record<string, string> = {};
    const raw = record["metadata"];
    if (typeof raw === "object" && raw !== null) {
      for (const [key, value] of Object.entries(raw as Record<string, unknown>)) {
        metadata[key] = String(value);
      }
    }
    return { reason: typeof record["reason"] === "string" ? record["reason"] : "", metadata };
  }
  return undefined;
}

function seconds(value: string | null | undefined): number | undefined {
  if (value === null || value === undefined || !/^\s*\d+(\.\d+)?\s*$/.test(value)) {
    return undefined;
  }
  return Number(value);
}

/** The ChirpError for anything a call threw (a ConnectError, a network error, ...). */
export function toChirpError(error: unknown): ChirpError {
  if (error instanceof ChirpError) {
    return error;
  }
  const connect = ConnectError.from(error);
  let code = codeName(connect.code);
  let message = connect.rawMessage;
  let reason = "";
  let metadata: Record<string, string> = {};

  const info = connect.findDetails(ErrorInfoSchema)[0];
  if (info !== undefined) {
    reason = info.reason;
    metadata = { ...info.metadata };
  }
  const violation = connect.findDetails(BadRequestSchema)[0]?.fieldViolations[0];
  if (violation !== undefined && metadata["field"] === undefined) {
    metadata["field"] = violation.field;
  }
  // Envoy and the rate-limit service answer some calls themselves (no token, rate limited, no route):
  // over gRPC-Web their google.rpc.Status JSON body becomes grpc-message, under an HTTP status.
  const status = statusJson(message);
  if (status !== undefined) {
    if (typeof status.code === "number") {
      code = codeName(status.code);
    }
    if (typeof status.message === "string") {
      message = status.message;
    }
    const fromJson = errorInfoJson(status.details);
    if (fromJson !== undefined && reason === "") {
      reason = fromJson.reason;
      metadata = { ...fromJson.metadata, ...metadata };
    }
  }
  const retryAfter = seconds(connect.metadata.get("retry-after")) ?? seconds(metadata["retry_after_seconds"]);
  if (message === "HTTP 429" || (retryAfter !== undefined && code === "UNAVAILABLE")) {
    code = "RESOURCE_EXHAUSTED"; // a 429 without a Status body: the rate limit, not an outage
  }
  if (connect.code === Code.Canceled && code === "CANCELLED" && message === "") {
    message = "the call was cancelled";
  }
  return new ChirpError({
    code,
    message,
    reason,
    metadata,
    retryAfterSeconds: code === "RESOURCE_EXHAUSTED" ? retryAfter : undefined,
    cause: error,
  });
}
