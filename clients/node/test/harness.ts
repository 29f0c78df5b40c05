// Starts a real totpd from this repository on a free loopback port:
// python -m totpd serve --dev --listen 127.0.0.1:0 --data-dir D --ready-file F
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, openSync, readFileSync, rmSync, closeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

export const repoRoot = process.env.TOTPD_REPO_ROOT ?? resolve(__dirname, "..", "..", "..", "..");

function python(): string {
  if (process.env.TOTPD_PYTHON) return process.env.TOTPD_PYTHON;
  const venv = join(repoRoot, ".venv", "bin", "python");
  return existsSync(venv) ? venv : "python3";
}

export interface Server {
  target: string;
  stop(): Promise<void>;
}

/** Starts totpd with `extraArgs` after the usual flags (e.g. the TLS files). */
export async function startTotpd(extraArgs: string[] = []): Promise<Server> {
  const dir = mkdtempSync(join(tmpdir(), "totpd-node-"));
  const ready = join(dir, "ready");
  const logPath = join(dir, "server.log");
  const log = openSync(logPath, "w");
  const proc: ChildProcess = spawn(
    python(),
    [
      "-m",
      "totpd",
      "serve",
      "--dev",
      "--listen",
      "127.0.0.1:0",
      "--data-dir",
      dir,
      "--ready-file",
      ready,
      ...extraArgs,
    ],
    { cwd: repoRoot, stdio: ["ignore", log, log] },
  );
  let exited = false;
  proc.on("exit", () => (exited = true));
  const stop = async () => {
    if (!exited) {
      proc.kill("SIGTERM");
      for (let i = 0; i < 200 && !exited; i++) await sleep(50);
      if (!exited) proc.kill("SIGKILL");
    }
    closeSync(log);
    rmSync(dir, { recursive: true, force: true });
  };
  const until = Date.now() + 60_000;
  while (Date.now() < until) {
    if (existsSync(ready)) {
      const addr = readFileSync(ready, "utf8").trim();
      if (/^.+:\d+$/.test(addr)) return { target: addr, stop };
    }
    if (exited) break;
    await sleep(50);
  }
  const text = readFileSync(logPath, "utf8");
  await stop();
  throw new Error(`totpd did not start:\n${text}`);
}

/** Throwaway TLS material from the repository's `python -m tests.tls_certs DIR`. */
export interface TlsFiles {
  dir: string;
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
}

export function writeTlsFiles(): TlsFiles {
  const dir = mkdtempSync(join(tmpdir(), "totpd-node-tls-"));
  const run = spawnSync(python(), ["-m", "tests.tls_certs", dir], {
    cwd: repoRoot,
    encoding: "utf8",
  });
  if (run.status !== 0) throw new Error(`tests.tls_certs failed (${run.status}):\n${run.stderr}`);
  return {
    dir,
    ca: join(dir, "ca.pem"),
    serverCert: join(dir, "server.pem"),
    serverKey: join(dir, "server.key"),
    clientCert: join(dir, "client.pem"),
    clientKey: join(dir, "client.key"),
  };
}
