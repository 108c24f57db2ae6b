// An operator's session in a real (headless) Chromium, driven by playwright-core:
// log in, see the receivers online, upload a bulletin and broadcast it to one village now,
// watch the receivers report playing then played; open the emergency page, confirm, see every
// receiver playing, stop it. Screenshots go to ARTIFACTS_DIR.
//
// Run by tests/web/test_browser.py, which starts the broker, the head-end and the receivers
// and passes everything through the environment:
//   LOAXA_URL, LOAXA_USER, LOAXA_PASSWORD, BULLETIN_WAV, EMERGENCY_WAV, ZONE_ID, ZONE_SIZE,
//   TOTAL, ARTIFACTS_DIR, CHROMIUM (default /usr/bin/chromium)
import { launchChromium } from "./chromium.mjs";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const env = process.env;
const base = env.LOAXA_URL;
const zoneSize = Number(env.ZONE_SIZE);
const total = Number(env.TOTAL);
const shots = env.ARTIFACTS_DIR;
mkdirSync(shots, { recursive: true });

const started = Date.now();
function step(text) {
  console.log(`[${((Date.now() - started) / 1000).toFixed(1)} s] ${text}`);
}

// How many rows of the live table are in a state (the page re-renders them every 1.5-5 s).
async function waitForRows(page, selector, count, timeout) {
  await page.waitForFunction(
    ([sel, n]) => document.querySelectorAll(sel).length === n, [selector, count],
    { timeout, polling: 200 });
}

const browser = await launchChromium();
let page;
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 },
                                             locale: "vi-VN" });
  page = await context.newPage();

  // 1. Log in: any page sends us to the login form first, then back.
  await page.goto(base + "/receivers");
  await page.waitForURL(/\/login/);
  await page.fill('input[name="username"]', env.LOAXA_USER);
  await page.fill('input[name="password"]', env.LOAXA_PASSWORD);
  await page.click('form[action="/login"] button[type="submit"]');
  await page.waitForURL(/\/receivers$/);
  step("logged in");

  // 2. The receivers ("Cụm loa"), all online.
  await waitForRows(page, 'tr[data-online="1"]', total, 20000);
  await page.screenshot({ path: join(shots, "receivers.png"), fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 });  // a phone
  await page.screenshot({ path: join(shots, "receivers-phone.png"), fullPage: true });
  await page.setViewportSize({ width: 1280, height: 900 });
  step(`receivers page: ${total} online`);

  // 3. Upload a recording and broadcast it to one village, now.
  await page.goto(base + "/broadcasts/new");
  await page.setViewportSize({ width: 390, height: 844 });
  await page.screenshot({ path: join(shots, "broadcast-new-phone.png"), fullPage: true });
  await page.setViewportSize({ width: 1280, height: 900 });
  await page.setInputFiles('input[name="file"]', env.BULLETIN_WAV);
  await page.fill('input[name="title"]', "Bản tin thử nghiệm");
  await page.check('input[name="target"][value="zones"]');
  await page.check(`input[name="zones"][value="${env.ZONE_ID}"]`);
  await page.check('input[name="when"][value="now"]');
  await page.check('input[name="priority"][value="normal"]');
  await page.click('form[action="/broadcasts/new"] button[type="submit"]');
  await page.waitForURL(/\/broadcasts\/b[0-9a-f]+$/, { timeout: 30000 });
  step("bulletin sent: " + page.url());
  const rows = await page.locator("#live tr[data-device]").count();
  if (rows !== zoneSize) throw new Error(`broadcast page lists ${rows} receivers, expected ${zoneSize}`);

  // 4. The receivers' own reports: playing, then played.
  await waitForRows(page, '#live tr[data-state="playing"]', zoneSize, 30000);
  step(`bulletin playing on ${zoneSize} receivers`);
  await page.screenshot({ path: join(shots, "broadcast-playing.png"), fullPage: true });
  await waitForRows(page, '#live tr[data-state="played"]', zoneSize, 40000);
  step(`bulletin played on ${zoneSize} receivers (proof of play)`);

  // 5. Emergency: the form, the confirmation (what will happen, to how many), confirm.
  await page.click("a.emergency-link");
  await page.waitForURL(/\/emergency$/);
  await page.screenshot({ path: join(shots, "emergency.png"), fullPage: true });
  await page.setInputFiles('input[name="file"]', env.EMERGENCY_WAV);
  await page.fill('input[name="title"]', "Cảnh báo bão khẩn cấp");
  await page.check('input[name="target"][value="all"]');
  await page.click('form[action="/emergency"] button[type="submit"]');
  await page.waitForSelector("[data-confirm]", { timeout: 30000 });
  const summary = await page.textContent("[data-confirm-summary]");
  if (!summary.includes(`${total} cụm loa`)) throw new Error("confirmation says: " + summary);
  await page.screenshot({ path: join(shots, "emergency-confirm.png"), fullPage: true });
  step("confirmation: " + summary.trim());
  await page.click("[data-confirm]");
  await page.waitForURL(/\/emergency\/b[0-9a-f]+$/);  // the emergency's own page
  const emergencyUrl = page.url();
  await waitForRows(page, '#live tr[data-state="playing"]', total, 20000);
  await page.screenshot({ path: join(shots, "emergency-playing.png"), fullPage: true });
  step(`emergency playing on ${total} receivers`);

  // The receivers page shows what each one is playing.
  await page.goto(base + "/receivers");
  await page.waitForFunction((n) => document.querySelectorAll("a.playing").length === n, total,
                             { timeout: 15000 });
  await page.screenshot({ path: join(shots, "receivers-emergency.png"), fullPage: true });

  // 6. Stop it everywhere.
  await page.goto(emergencyUrl);
  await page.click("[data-cancel]");
  await page.waitForSelector('[data-broadcast-state="cancelled"]', { timeout: 15000 });
  await waitForRows(page, '#live tr[data-state="playing"]', 0, 15000);
  step("emergency stopped on every receiver");
  console.log("OK");
} catch (err) {
  console.error("FAILED: " + (err && err.stack || err));
  if (page) {
    await page.screenshot({ path: join(shots, "failure.png"), fullPage: true }).catch(() => {});
    console.error("page was " + page.url());
  }
  process.exitCode = 1;
} finally {
  await browser.close();
}
