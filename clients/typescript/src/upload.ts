/**
 * The second step of a media upload: the file, as an HTML-form (multipart/form-data) POST, straight
 * to the object store's presigned URL. No bearer token goes with it: the grant's signed policy is
 * the permission. XMLHttpRequest where there is one (a browser: upload progress events), else fetch.
 */

import { ChirpError } from "./errors.js";

/** Bytes sent so far and the total, as the upload goes. */
export type UploadProgress = (loaded: number, total: number) => void;

export interface FormPost {
  url: string;
  /** Every field of the grant, sent as it is, before the file. */
  fields: Readonly<Record<string, string>>;
  file: Blob;
  onProgress?: UploadProgress | undefined;
  signal?: AbortSignal | undefined;
}

export type FetchFn = typeof globalThis.fetch;

export function asBlob(data: Blob | Uint8Array, contentType: string): Blob {
  if (data instanceof Blob) {
    return data.type === contentType ? data : new Blob([data], { type: contentType });
  }
  // A copy into a plain ArrayBuffer: a view of a SharedArrayBuffer is no BlobPart.
  const bytes = new Uint8Array(data.byteLength);
  bytes.set(data);
  return new Blob([bytes.buffer], { type: contentType });
}

function form(post: FormPost): FormData {
  const body = new FormData();
  for (const [name, value] of Object.entries(post.fields)) {
    body.append(name, value);
  }
  body.append("file", post.file, "upload");
  return body;
}

function uploadError(status: number, text: string, cause?: unknown): ChirpError {
  const code =
    status === 0 || status >= 500
      ? "UNAVAILABLE"
      : status === 403
        ? "PERMISSION_DENIED"
        : status === 400
          ? "INVALID_ARGUMENT"
          : "UNKNOWN";
  const detail = text.trim().slice(0, 300);
  return new ChirpError({
    code,
    message:
      status === 0
        ? `media upload failed: ${detail}`
        : `media upload refused (HTTP ${status})${detail ? `: ${detail}` : ""}`,
    reason: "MEDIA_UPLOAD_FAILED",
    cause,
  });
}

interface XhrLike {
  open(method: string, url: string): void;
  send(body: FormData): void;
  abort(): void;
  status: number;
  responseText: string;
  upload: { onprogress: ((event: { loaded: number; total: number; lengthComputable: boolean }) => void) | null };
  onload: (() => void) | null;
  onerror: (() => void) | null;
  onabort: (() => void) | null;
}

type XhrConstructor = new () => XhrLike;

/** The XMLHttpRequest constructor, where there is one (browsers, web workers). */
export function xhrConstructor(): XhrConstructor | undefined {
  return (globalThis as { XMLHttpRequest?: XhrConstructor }).XMLHttpRequest;
}

function postWithXhr(Xhr: XhrConstructor, post: FormPost): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const xhr = new Xhr();
    const onAbort = () => xhr.abort();
    const done = () => post.signal?.removeEventListener("abort", onAbort);
    xhr.open("POST", post.url);
    const onProgress = post.onProgress;
    if (onProgress !== undefined) {
      // Only when asked for: a cross-origin upload with a progress listener needs a CORS preflight.
      xhr.upload.onprogress = (event) => {
        onProgress(event.loaded, event.lengthComputable ? event.total : post.file.size);
      };
    }
    xhr.onload = () => {
      done();
      if (xhr.status >= 200 && xhr.status < 300) {
        post.onProgress?.(post.file.size, post.file.size);
        resolve();
      } else {
        reject(uploadError(xhr.status, xhr.responseText));
      }
    };
    xhr.onerror = () => {
      done();
      reject(uploadError(0, "network error"));
    };
    xhr.onabort = () => {
      done();
      reject(new ChirpError({ code: "CANCELLED", message: "media upload cancelled" }));
    };
    post.signal?.addEventListener("abort", onAbort, { once: true });
    xhr.send(form(post));
  });
}

async function postWithFetch(fetch: FetchFn, post: FormPost): Promise<void> {
  post.onProgress?.(0, post.file.size);
  let response: Response;
  try {
    response = await fetch(post.url, { method: "POST", body: form(post), signal: post.signal ?? null });
  } catch (error) {
    if (post.signal?.aborted) {
      throw new ChirpError({ code: "CANCELLED", message: "media upload cancelled", cause: error });
    }
    throw uploadError(0, error instanceof Error ? error.message : String(error), error);
  }
  const text = await response.text();
  if (!response.ok) {
    throw uploadError(response.status, text);
  }
  post.onProgress?.(post.file.size, post.file.size);
}

/** POST the form: with XMLHttpRequest when `useXhr` and one exists, else with `fetch`. */
export function postForm(post: FormPost, fetch: FetchFn, useXhr: boolean): Promise<void> {
  const Xhr = useXhr ? xhrConstructor() : undefined;
  return Xhr !== undefined ? postWithXhr(Xhr, post) : postWithFetch(fetch, post);
}
