// Headless Chromium (Debian's, driven by playwright-core) opens the admin
// dashboard, is refused with a wrong token, signs in with the right one,
// finds the failed delivery of event EVENT_ID, clicks Retry, and waits until
// the event shows as delivered. Saves screenshots of both states.
//
// usage: node browser-dashboard.mjs ADMIN_URL TOKEN EVENT_ID ROUTE SCREENSHOT_DIR
import { chromium } from "playwright-core";

const [adminUrl, token, eventId, route, shots] = process.argv.slice(2);
const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox"] });
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const external = [];
  page.on("request", (req) => { if (!req.url().startsWith(adminUrl)) external.push(req.url()); });
  await page.goto(adminUrl);

  await page.fill("#token", "not-the-token");
  await page.click("#login button");
  await page.waitForFunction(() => document.getElementById("login-error").textContent.includes("refused"), null, { timeout: 5000 });

  await page.fill("#token", token);
  await page.click("#login button");
  const failedRow = `#failed tbody tr[data-event="${eventId}"]`;
  await page.waitForSelector(`${failedRow} button.retry`, { timeout: 10000 });
  await page.waitForSelector(`#routes tbody tr[data-route="${route}"]`);
  await page.waitForSelector(`#chart polyline[data-route="${route}"]`);
  const failedCount = await page.textContent(`#routes tbody tr[data-route="${route}"] td:nth-child(11)`);
  await page.screenshot({ path: `${shots}/dashboard-failed.png`, fullPage: true });

  await page.click(`${failedRow} button.retry`);
  const status = `#events tbody tr[data-event="${eventId}"] td.status`;
  await page.waitForFunction((sel) => document.querySelector(sel)?.textContent === "delivered", status, { timeout: 10000 });
  await page.waitForSelector(failedRow, { state: "detached", timeout: 10000 });

  await page.click(`#events tbody tr[data-event="${eventId}"]`);
  await page.waitForFunction(() => (document.getElementById("payload")?.textContent || "").includes("evt_browser"), null, { timeout: 5000 });
  await page.screenshot({ path: `${shots}/dashboard-delivered.png`, fullPage: true });
  console.log(JSON.stringify({ status: await page.textContent(status), failed_before: failedCount, external_requests: external }));
} finally {
  await browser.close();
}
