// Enroll -> ConfirmEnrollment -> Verify through the installed @totpd/client, as an ES module
// (`import`): compiled by tsc against the package's ESM type declarations, run by Node.
//   node flow-esm.mjs HOST:PORT
import { createHmac, randomUUID } from "node:crypto";
import { createRequire } from "node:module";
import { TotpdClient } from "@totpd/client";

function totp(secretBase32: string, at: number, digits: number, period: number): string {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = "";
  for (const ch of secretBase32) bits += alphabet.indexOf(ch).toString(2).padStart(5, "0");
  const key = Buffer.from((bits.match(/.{8}/g) ?? []).map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(at / period)));
  const mac = createHmac("sha1", key).update(counter).digest();
  const offset = mac[mac.length - 1] & 0x0f;
  const number = mac.readUInt32BE(offset) & 0x7fffffff;
  return String(number % 10 ** digits).padStart(digits, "0");
}

function expect(what: string, got: string, want: string): void {
  if (got !== want) throw new Error(`${what}: got ${got}, want ${want}`);
}

const target = process.argv[2];
const account = `release-check-esm-${randomUUID()}`;
const client = new TotpdClient(target, { insecure: true });
try {
  const e = await client.enroll(account, { label: "release check" });
  const f = e.factor;
  const now = Date.now() / 1000;
  const code = totp(e.secretBase32, now, f.digits, f.periodSeconds);
  expect("confirm", (await client.confirm(account, f.factorId, code)).outcome.result, "VALID");
  expect("verify same code", (await client.verify(account, code)).result, "REPLAYED");
  const next = totp(e.secretBase32, now + f.periodSeconds, f.digits, f.periodSeconds);
  expect("verify next code", (await client.verify(account, next)).result, "VALID");
} finally {
  client.close();
}
const resolved = createRequire(import.meta.url).resolve("@totpd/client");
const esm = import.meta.resolve("@totpd/client");
console.log(`node ESM: import resolved to ${esm} (require would load ${resolved}):`);
console.log("  enroll -> confirm VALID -> verify same code REPLAYED -> verify next code VALID");
