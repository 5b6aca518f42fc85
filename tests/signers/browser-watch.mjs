// Keeps the admin dashboard open in headless Chromium for SECONDS, signed
// in, so a benchmark measures ingest with a live dashboard polling the
// API. Waits for the admin listener to come up first.
//
// usage: node browser-watch.mjs ADMIN_URL TOKEN SECONDS
import { chromium } from "playwright-core";

const [adminUrl, token, seconds] = process.argv.slice(2);
const until = Date.now() + Number(seconds) * 1000;
const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox"] });
try {
  const page = await browser.newPage();
  for (;;) {
    try { await page.goto(adminUrl); break; } catch { if (Date.now() > until) process.exit(1); await new Promise((r) => setTimeout(r, 200)); }
  }
  await page.fill("#token", token);
  await page.click("#login button");
  await page.waitForSelector("#routes tbody tr", { timeout: 30000 });
  let refreshes = 0;
  while (Date.now() < until) {
    await page.waitForFunction((prev) => document.getElementById("updated").textContent !== prev,
      await page.textContent("#updated"), { timeout: 10000 }).then(() => refreshes++, () => {});
  }
  console.log(JSON.stringify({ refreshes }));
} finally {
  await browser.close();
}
