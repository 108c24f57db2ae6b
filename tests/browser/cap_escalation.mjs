// Issue 12 acceptance 5 in a real (headless) Chromium, driven by playwright-core: an operator
// sees a CAP alert waiting for confirmation on the emergency page, confirms it with one click,
// watches each receiver's state (one receiver's link is black-holed: it is listed as not
// confirmed and re-sent, then it comes back and plays), and stops it. Screenshots (desktop and
// phone) go to ARTIFACTS_DIR.
//
// Run by tests/web/test_cap_browser.py, which starts the broker, the head-end and the receivers,
// posts the alert from a warning source, cuts and restores the silent receiver's link, and
// passes everything through the environment:
//   LOAXA_URL, LOAXA_USER, LOAXA_PASSWORD, ZONE_SIZE, SILENT (the black-holed receiver's id),
//   HEADLINE, ARTIFACTS_DIR, CHROMIUM (default /usr/bin/chromium)
import { DESKTOP, PHONE, launchChromium } from "./chromium.mjs";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const env = process.env;
const base = env.LOAXA_URL;
const zoneSize = Number(env.ZONE_SIZE);
const shots = env.ARTIFACTS_DIR;
mkdirSync(shots, { recursive: true });

const started = Date.now();
function step(text) {
  console.log(`[${((Date.now() - started) / 1000).toFixed(1)} s] ${text}`);
}

async function waitForRows(page, selector, count, timeout) {
  await page.waitForFunction(
    ([sel, n]) => document.querySelectorAll(sel).length === n, [selector, count],
    { timeout, polling: 200 });
}

// Desktop then phone, back to desktop.
async function shoot(page, name) {
  await page.screenshot({ path: join(shots, name + ".png"), fullPage: true });
  await page.setViewportSize(PHONE);
  await page.screenshot({ path: join(shots, name + "-phone.png"), fullPage: true });
  await page.setViewportSize(DESKTOP);
}

const browser = await launchChromium();
let page;
try {
  const context = await browser.newContext({ viewport: DESKTOP, locale: "vi-VN" });
  page = await context.newPage();

  // 1. Log in, straight to the emergency page.
  await page.goto(base + "/emergency");
  await page.waitForURL(/\/login/);
  await page.fill('input[name="username"]', env.LOAXA_USER);
  await page.fill('input[name="password"]', env.LOAXA_PASSWORD);
  await page.click('form[action="/login"] button[type="submit"]');
  await page.waitForURL(/\/emergency$/);
  step("logged in");

  // 2. The CAP alert waits for an operator: headline, where, why, one button.
  await page.waitForSelector("[data-cap-alert]", { timeout: 10000 });
  const queued = await page.textContent("[data-queued-cap]");
  if (!queued.includes(env.HEADLINE) || !queued.includes("Cảnh báo CAP chờ xác nhận")) {
    throw new Error("queued alert shows: " + queued);
  }
  await shoot(page, "cap-queued");
  step("queued CAP alert on the emergency page");

  // 3. One click: it airs; the emergency's own page follows it.
  await page.click("[data-confirm-cap]");
  await page.waitForURL(/\/emergency\/b[0-9a-f]+$/, { timeout: 60000 });
  const alertUrl = page.url();
  step("confirmed: " + alertUrl);
  const rows = await page.locator("#live tr[data-device]").count();
  if (rows !== zoneSize) throw new Error(`page lists ${rows} receivers, expected ${zoneSize}`);

  // 4. Every receiver but the silent one plays; the silent one is listed, then re-sent.
  await waitForRows(page, '#live tr[data-state="playing"]', zoneSize - 1, 30000);
  step(`playing on ${zoneSize - 1} receivers`);
  await page.waitForFunction(
    (id) => {
      const li = document.querySelector(`[data-unconfirmed-device="${id}"]`);
      return li && Number(li.dataset.resends) >= 1;
    }, env.SILENT, { timeout: 30000, polling: 200 });
  const late = await page.textContent("[data-unconfirmed]");
  if (!late.includes("chưa xác nhận sau 10 giây") || !late.includes("đã tự động gửi lại")) {
    throw new Error("unconfirmed list says: " + late);
  }
  await shoot(page, "cap-unconfirmed");
  step("silent receiver listed and re-sent: " + late.replace(/\s+/g, " ").trim());

  // 5. Its link comes back (the test restores it): it confirms and plays.
  await waitForRows(page, '#live tr[data-state="playing"]', zoneSize, 40000);
  await page.waitForSelector("[data-unconfirmed]", { state: "detached", timeout: 10000 });
  await shoot(page, "cap-playing");
  step(`playing on all ${zoneSize} receivers`);

  // 6. Stop it everywhere from the page.
  await page.goto(alertUrl);
  await page.click("[data-cancel]");
  await page.waitForSelector('[data-broadcast-state="cancelled"]', { timeout: 15000 });
  await waitForRows(page, '#live tr[data-state="cancelled"]', zoneSize, 15000);
  await shoot(page, "cap-cancelled");
  step("cancelled on every receiver");

  console.log("OK");
} catch (err) {
  console.error("FAILED: " + (err && err.stack || err));
  if (page) {
    await page.screenshot({ path: join(shots, "cap-failure.png"), fullPage: true }).catch(() => {});
    console.error("page was " + page.url());
  }
  process.exitCode = 1;
} finally {
  await browser.close();
}
