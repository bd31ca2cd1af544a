/**
 * A live Chirp stack for the tests: `chirp up` (embedded PostgreSQL and Redis, the services and
 * Envoy) in a temporary folder, every port chosen by the system, rate limits off.
 */

import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { createServer } from "node:net";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

// clients/typescript/dist-test/ -> the repository root.
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
const READY = /^chirp: ready in \S+s at (http:\/\/\S+)/;
const START_TIMEOUT_MS = 90_000;
const STOP_TIMEOUT_MS = 30_000;

export interface Stack {
  /** Envoy's URL: gRPC-Web, REST and the media store. */
  url: string;
  stop(): Promise<void>;
}

/** A TCP port free on 127.0.0.1 right now. */
function freePort(): Promise<number> {
  return new Promise((found, failed) => {
    const server = createServer();
    server.once("error", failed);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => (typeof address === "object" && address ? found(address.port) : failed(new Error("no port"))));
    });
  });
}

export async function startStack(): Promise<Stack> {
  // Envoy's port is chosen here, not by `--http-port 0`: the media upload and download URLs the
  // services hand out are built from the configured port, and would say :0.
  const httpPort = await freePort();
  const dataDir = mkdtempSync(join(tmpdir(), "chirp-sdk-test-"));
  const python = process.env["CHIRP_PYTHON"] || "python3";
  const args = [
    "-m",
    "chirp_app.cli",
    "up",
    "--data-dir",
    dataDir,
    "--http-port",
    String(httpPort),
    "--graph-port",
    "0",
    "--tweets-port",
    "0",
    "--timeline-port",
    "0",
    "--auth-port",
    "0",
    "--metrics-port",
    "off",
    "--rate-limits",
    "off",
    "--log-level",
    "WARNING",
  ];
  // Envoy's access log goes to a file: by default it opens /dev/stdout, which fails (ENXIO) when
  // stdout is the socket Node's child_process gives a child.
  // CHIRP_JWKS_PORT: the graph service's key set (JWKS) for Envoy, on a free port too.
  const env = { ...process.env, CHIRP_ENVOY_ACCESS_LOG: join(dataDir, "envoy-access.log"), CHIRP_JWKS_PORT: "0" };
  const child = spawn(python, args, { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
  const output: string[] = [];
  const remember = (line: string) => {
    output.push(line);
    if (output.length > 200) {
      output.shift();
    }
  };
  createInterface({ input: child.stderr! }).on("line", remember);
  const exited = new Promise<number | null>((done) => child.once("exit", (code) => done(code)));

  const url = await new Promise<string>((found, failed) => {
    const timer = setTimeout(
      () => failed(new Error(`chirp up was not ready in ${START_TIMEOUT_MS} ms:\n${output.join("\n")}`)),
      START_TIMEOUT_MS,
    );
    createInterface({ input: child.stdout! }).on("line", (line) => {
      remember(line);
      const ready = READY.exec(line);
      if (ready?.[1]) {
        clearTimeout(timer);
        found(ready[1]);
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      failed(new Error(`chirp up exited (${code}) before it was ready:\n${output.join("\n")}`));
    });
  }).catch(async (error: unknown) => {
    await stopChild(child, exited);
    rmSync(dataDir, { recursive: true, force: true });
    throw error;
  });

  return {
    url,
    async stop() {
      await stopChild(child, exited);
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

async function stopChild(child: ChildProcess, exited: Promise<number | null>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) {
    return;
  }
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), STOP_TIMEOUT_MS);
  await exited;
  clearTimeout(timer);
}
