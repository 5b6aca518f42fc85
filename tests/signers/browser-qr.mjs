// Headless Chromium (Debian's, driven by playwright-core) opens seed 003's
// session page, posts a `qr` webhook to the router, and waits for the QR
// image to appear through the page's live stream. Saves a screenshot.
//
// usage: node browser-qr.mjs PAGE_URL ROUTER_BASE TOKEN SCREENSHOT
import { chromium } from "playwright-core";

const [pageUrl, base, token, screenshot] = process.argv.slice(2);
const session = new URL(pageUrl).searchParams.get("session");
const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox"] });
try {
  const page = await browser.newPage();
  await page.goto(pageUrl);
  // The stream is open once the page shows the view's first state.
  await page.waitForFunction(() => document.getElementById("status").textContent.startsWith("no session"), null, { timeout: 10000 });
  const posted = Date.now();
  const res = await fetch(`${base}/api/whatsapp/webhook/${session}`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    body: JSON.stringify({ event: "qr", data: { qr: "1@browser-test,QrStUvWxYz==,1234567890==" } }),
  });
  if (res.status !== 200) throw new Error(`webhook answered ${res.status}`);
  await page.waitForSelector('#qr img[src^="data:image/png;base64,"]', { timeout: 5000 });
  const shown = Date.now() - posted;
  const status = await page.textContent("#status");
  await page.screenshot({ path: screenshot });
  console.log(JSON.stringify({ status, ms_from_webhook_to_image: shown }));
} finally {
  await browser.close();
}
