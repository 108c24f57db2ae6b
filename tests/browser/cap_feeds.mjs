// The CAP feeds page in a real (headless) Chromium, at desktop and phone size: an admin signs
// in, adds a feed with the form (the source chosen from the list), sees it listed with its
// state, and asks for a read now. Run by tests/web/test_cap_feeds_browser.py, which serves
// the head-end on 127.0.0.1 and passes LOAXA_URL, ADMIN, LOAXA_PASSWORD, FEED_URL,
// ARTIFACTS_DIR, CHROMIUM. Prints one JSON line of what it saw; screenshots to ARTIFACTS_DIR.
import { launchChromium, DESKTOP, PHONE } from "./chromium.mjs";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const env = process.env;
const base = env.LOAXA_URL;
const shots = env.ARTIFACTS_DIR;
mkdirSync(shots, { recursive: true });
const browser = await launchChromium();
const seen = { requests: [], walks: {} };
let page;

try {
  for (const [size, viewport] of Object.entries({ desktop: DESKTOP, phone: PHONE })) {
    const context = await browser.newContext({ viewport, locale: "vi-VN" });
    page = await context.newPage();
    page.on("request", (r) => { if (!r.url().startsWith(base)) seen.requests.push(r.url()); });
    page.on("pageerror", (e) => { seen.error = String(e); });
    const saw = seen.walks[size] = {};
    await page.goto(base + "/cap/feeds");
    await page.waitForURL(/\/login/);
    await page.fill('input[name="username"]', env.ADMIN);
    await page.fill('input[name="password"]', env.LOAXA_PASSWORD);
    await page.click('form[action="/login"] button[type="submit"]');
    await page.waitForURL(/\/cap\/feeds$/);
    const id = "kttv-" + size;
    await page.fill('input[name="id"]', id);
    await page.fill('input[name="url"]', env.FEED_URL + "/" + size + ".xml");
    await page.selectOption('select[name="source"]', "kttv-nb");
    await page.fill('input[name="interval_s"]', "300");
    await page.screenshot({ path: join(shots, `cap-feeds-form-${size}.png`), fullPage: true });
    await page.click('form[data-feed-form] button[type="submit"]');
    await page.waitForURL(/\/cap\/feeds$/);
    saw.row = (await page.locator(`tr[data-feed="${id}"]`).innerText()).replace(/\s+/g, " ").trim();
    await page.click(`tr[data-feed="${id}"] button[data-poll]`);
    await page.waitForURL(/polled=/);
    saw.notice = (await page.locator("[data-polled]").innerText()).trim();
    saw.overflow = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth);
    await page.screenshot({ path: join(shots, `cap-feeds-${size}.png`), fullPage: true });
    await context.close();
  }
  console.log(JSON.stringify(seen));
} catch (err) {
  if (page) await page.screenshot({ path: join(shots, "cap-feeds-failure.png"), fullPage: true });
  console.error(err);
  process.exitCode = 1;
} finally {
  await browser.close();
}
