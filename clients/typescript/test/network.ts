/**
 * A fetch in front of the real one that can break the live timeline's connections the way a
 * network does: `drop()` fails every open stream mid-body, and while `down()` new streams wait
 * until `up()`.
 */

import { fromBinary } from "@bufbuild/protobuf";
import { gen } from "../dist/index.js";

const STREAM_PATH = "/chirp.timeline.v1.TimelineService/StreamHomeTimeline";

/** Counts something and lets a test wait until it has happened n times. */
export class Counter {
  private value = 0;
  private waiting: { n: number; resolve: () => void }[] = [];

  get count(): number {
    return this.value;
  }

  bump(): void {
    this.value += 1;
    this.waiting = this.waiting.filter((waiter) => {
      if (this.value >= waiter.n) {
        waiter.resolve();
        return false;
      }
      return true;
    });
  }

  async until(n: number, what: string, timeoutMs = 15_000): Promise<void> {
    if (this.value >= n) {
      return;
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      new Promise<void>((resolve) => this.waiting.push({ n, resolve })),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out waiting for ${what} #${n} (at ${this.value})`)), timeoutMs);
      }),
    ]).finally(() => clearTimeout(timer));
  }
}

interface OpenStream {
  controller: ReadableStreamDefaultController<Uint8Array>;
  reader: ReadableStreamDefaultReader<Uint8Array>;
}

export class FlakyNetwork {
  /** The since_id of each StreamHomeTimeline request, in order. */
  readonly sinceIds: bigint[] = [];
  /** Stream requests held back while the network is down. */
  readonly held = new Counter();
  private open: OpenStream[] = [];
  private gate: Promise<void> | undefined;
  private release: (() => void) | undefined;

  readonly fetch: typeof globalThis.fetch = async (input, init) => {
    const url = typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
    if (!url.endsWith(STREAM_PATH)) {
      return globalThis.fetch(input, init);
    }
    const body = init?.body;
    if (body instanceof Uint8Array) {
      // One gRPC-Web frame: a flag byte, a 4-byte length, the request message.
      const request = fromBinary(gen.timelineV1.StreamHomeTimelineRequestSchema, body.subarray(5));
      this.sinceIds.push(request.sinceId);
    }
    if (this.gate !== undefined) {
      this.held.bump();
      await this.gate;
    }
    const response = await globalThis.fetch(input, init);
    if (response.body === null) {
      return response;
    }
    const reader = response.body.getReader();
    let entry: OpenStream | undefined;
    const relay = new ReadableStream<Uint8Array>({
      start: (controller) => {
        entry = { controller, reader };
        this.open.push(entry);
      },
      pull: async (controller) => {
        try {
          const next = await reader.read();
          if (next.done) {
            controller.close();
          } else {
            controller.enqueue(next.value);
          }
        } catch (error) {
          try {
            controller.error(error);
          } catch {
            // already failed by drop()
          }
        }
      },
      cancel: async (reason) => {
        this.open = this.open.filter((stream) => stream !== entry);
        await reader.cancel(reason);
      },
    });
    return new Response(relay, { status: response.status, statusText: response.statusText, headers: response.headers });
  };

  /** Every open stream fails as a broken connection would; the real connections are closed. */
  drop(): void {
    const streams = this.open;
    this.open = [];
    for (const stream of streams) {
      stream.controller.error(new TypeError("network connection lost"));
      void stream.reader.cancel().catch(() => undefined);
    }
  }

  /** New streams wait until up(). */
  down(): void {
    this.gate ??= new Promise<void>((resolve) => {
      this.release = resolve;
    });
  }

  up(): void {
    this.release?.();
    this.gate = undefined;
    this.release = undefined;
  }
}
