// Signs test webhooks with official Node SDKs: GitHub's @octokit/webhooks-methods
// (also Meta's format: X-Hub-Signature-256: sha256=<hex>) and Shopify's
// @shopify/shopify-api test helpers.
// stdin: JSON list of {scheme, secret, body}; stdout: JSON list of header objects.
import { sign } from "@octokit/webhooks-methods";

const input = JSON.parse(await new Promise((resolve) => {
  let data = "";
  process.stdin.on("data", (c) => (data += c));
  process.stdin.on("end", () => resolve(data));
}));

let shopifyHmac;
const out = [];
for (const r of input) {
  if (r.scheme === "github" || r.scheme === "meta") {
    out.push({ "X-Hub-Signature-256": await sign(r.secret, r.body) });
  } else if (r.scheme === "shopify") {
    shopifyHmac ??= (await import("@shopify/shopify-api/test-helpers")).getHmac;
    out.push({ "X-Shopify-Hmac-Sha256": await shopifyHmac(r.body, r.secret) });
  } else {
    throw new Error(`sign.mjs: unknown scheme ${r.scheme}`);
  }
}
process.stdout.write(JSON.stringify(out));
