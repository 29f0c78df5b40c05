// `npm run build` helper: `clean` empties dist/ (no stale file reaches `npm pack`); `mark`
// tells Node which module system each build is, since package.json sets no "type".
const fs = require("node:fs");
const path = require("node:path");

const dist = path.join(__dirname, "..", "dist");
const step = process.argv[2];
if (step === "clean") {
  fs.rmSync(dist, { recursive: true, force: true });
} else if (step === "mark") {
  fs.writeFileSync(path.join(dist, "cjs", "package.json"), '{ "type": "commonjs" }\n');
  fs.writeFileSync(path.join(dist, "esm", "package.json"), '{ "type": "module" }\n');
} else {
  console.error("usage: node scripts/dist-layout.cjs clean|mark");
  process.exit(2);
}
