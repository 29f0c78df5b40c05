// Starts a real totpd from this repository on a free loopback port:
// python -m totpd serve --dev --listen 127.0.0.1:0 --data-dir D --ready-file F
import { type ChildProcess, spawn } from "node:child_process";
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

export async function startTotpd(): Promise<Server> {
  const dir = mkdtempSync(join(tmpdir(), "totpd-node-"));
  const ready = join(dir, "ready");
  const logPath = join(dir, "server.log");
  const log = openSync(logPath, "w");
  const proc: ChildProcess = spawn(
    python(),
    ["-m", "totpd", "serve", "--dev", "--listen", "127.0.0.1:0", "--data-dir", dir, "--ready-file", ready],
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
