// A minimal sign-in step-up: verify the code a user typed and decide. Digits are
// the app's code; anything else is taken for a recovery code.
//   npm run build:examples && node build/examples/step-up.js 127.0.0.1:50051 alice 123456
//   node build/examples/step-up.js 127.0.0.1:50051 alice k7q2-9xmf-w4c8
// In your own code: import { TotpdClient, TotpdError, ErrorReason } from "@totpd/client";
import { ErrorReason, TotpdClient, TotpdError } from "../src";

async function stepUp(totpd: TotpdClient, accountId: string, code: string): Promise<boolean> {
  try {
    const outcome = await totpd.verify(accountId, code);
    switch (outcome.result) {
      case "VALID":
        console.log("step-up granted");
        return true;
      case "REPLAYED":
        console.log("that code was already used: wait for the next one");
        break;
      case "LOCKED":
        if (outcome.unlockRequired)
          console.log("locked: sign in with a recovery code, or ask support to unlock the account");
        else console.log(`too many attempts: try again in ${outcome.retryAfterSeconds} s`);
        break;
      default:
        console.log(`wrong code, ${outcome.attemptsLeft} attempts left`);
    }
  } catch (err) {
    if (err instanceof TotpdError && err.reason === ErrorReason.ERROR_REASON_MALFORMED_CODE) {
      console.log("a code is digits only, nothing else");
    } else if (err instanceof TotpdError && err.reason === ErrorReason.ERROR_REASON_RATE_LIMITED) {
      console.log(
        `too many failed codes from this service: pause ${(err.retryAfterMs ?? 0) / 1000} s`,
      );
    } else {
      console.log(`cannot verify now: ${err}`);
    }
  }
  return false;
}

/** A recovery code, for a user without their phone: each works once. */
async function recover(totpd: TotpdClient, accountId: string, code: string): Promise<boolean> {
  try {
    const { outcome, status } = await totpd.verifyRecoveryCode(accountId, code);
    switch (outcome.result) {
      case "VALID":
        console.log(`step-up granted; ${status.remaining} recovery codes left`);
        return true;
      case "REPLAYED":
        console.log("that recovery code was already used");
        break;
      case "LOCKED":
        if (outcome.unlockRequired) console.log("locked: ask support to unlock the account");
        else console.log(`too many attempts: try again in ${outcome.retryAfterSeconds} s`);
        break;
      default:
        console.log(`wrong recovery code, ${outcome.attemptsLeft} attempts left`);
    }
  } catch (err) {
    if (err instanceof TotpdError && err.reason === ErrorReason.ERROR_REASON_MALFORMED_CODE) {
      console.log("not a recovery code: 12 letters and digits, as printed");
    } else {
      console.log(`cannot verify now: ${err}`);
    }
  }
  return false;
}

const [target, accountId, code] = process.argv.slice(2);
if (!code) {
  console.error("usage: step-up HOST:PORT ACCOUNT CODE");
  process.exit(2);
}
const totpd = new TotpdClient(target, { insecure: true });
const check = /^[0-9]*$/.test(code) ? stepUp : recover;
check(totpd, accountId, code).then((ok) => {
  totpd.close();
  process.exitCode = ok ? 0 : 1;
});
