// The receiver page's charts and the map without tiles, in a real (headless) Chromium on a
// desktop and a phone. Run by tests/web/test_telemetry_pages.py, which serves the head-end on
// 127.0.0.1 with a month of one receiver's telemetry and passes, through the environment:
//   LOAXA_URL, LOAXA_USER, LOAXA_PASSWORD, DEVICE, PLACED (receivers with coordinates),
//   ARTIFACTS_DIR, CHROMIUM (default /usr/bin/chromium)
// It prints one JSON line of what it saw; screenshots go to ARTIFACTS_DIR.
import { DESKTOP, PHONE, launchChromium } from "./chromium.mjs";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const env = process.env;
const base = env.LOAXA_URL;
const shots = env.ARTIFACTS_DIR;
mkdirSync(shots, { recursive: true });

const browser = await launchChromium();
const seen = { requests: [] };
let page;
try {
  const context = await browser.newContext({ viewport: DESKTOP, locale: "vi-VN" });
  page = await context.newPage();
  // Everything must come from the head-end itself: a commune PC has no internet.
  page.on("request", (r) => { if (!r.url().startsWith(base)) seen.requests.push(r.url()); });
  page.on("pageerror", (e) => { seen.error = String(e); });

  await page.goto(base + "/receivers/" + env.DEVICE + "?span=week");
  await page.waitForURL(/\/login/);
  await page.fill('input[name="username"]', env.LOAXA_USER);
  await page.fill('input[name="password"]', env.LOAXA_PASSWORD);
  await page.click('form[action="/login"] button[type="submit"]');
  await page.waitForURL(/\/receivers\/[^/?]+\?span=week$/);

  // The week's charts: each an SVG image with its label, a line of the mean.
  seen.charts = await page.$$eval("figure.chart svg[role=img]", (svgs) => svgs.map((s) => ({
    label: s.getAttribute("aria-label"), lines: s.querySelectorAll("polyline.mean").length,
    width: s.getBoundingClientRect().width,
    points: Array.from(s.querySelectorAll("polyline.mean")).reduce(
      (n, l) => n + l.getAttribute("points").split(" ").length, 0) })));
  await page.screenshot({ path: join(shots, "receiver-week.png"), fullPage: true });
  await page.setViewportSize(PHONE);
  seen.phoneOverflow = await page.evaluate(() => document.documentElement.scrollWidth >
                                                 window.innerWidth);
  await page.screenshot({ path: join(shots, "receiver-week-phone.png"), fullPage: true });
  await page.locator("figure.chart").first().screenshot({
    path: join(shots, "receiver-chart-phone.png") });
  await page.setViewportSize(DESKTOP);
  for (const span of ["day", "month"]) {
    await page.goto(base + "/receivers/" + env.DEVICE + "?span=" + span);
    seen[span] = await page.$$eval("figure.chart", (f) => f.length);
    await page.screenshot({ path: join(shots, "receiver-" + span + ".png"), fullPage: true });
  }

  // The map without tiles: Leaflet from /static, one dot per placed receiver, villages.
  await page.goto(base + "/map");
  await page.waitForSelector(`[data-map][data-drawn="${env.PLACED}"]`, { timeout: 10000 });
  seen.map = await page.evaluate(() => ({
    dots: document.querySelectorAll("#map path.leaflet-interactive").length,
    villages: Array.from(document.querySelectorAll("#map .village-label")).map(
      (v) => v.textContent),
    tiles: document.querySelectorAll("#map img.leaflet-tile").length,
    fills: Array.from(document.querySelectorAll("#map path.leaflet-interactive")).map(
      (p) => p.getAttribute("fill")),
  }));
  await page.screenshot({ path: join(shots, "map.png"), fullPage: true });
  await page.setViewportSize(PHONE);
  await page.reload();  // as a phone opens it: the map fits the villages to its width
  await page.waitForSelector(`[data-map][data-drawn="${env.PLACED}"]`, { timeout: 10000 });
  seen.mapPhoneOverflow = await page.evaluate(() => document.documentElement.scrollWidth >
                                                    window.innerWidth);
  await page.screenshot({ path: join(shots, "map-phone.png"), fullPage: true });
  console.log(JSON.stringify(seen));
} catch (err) {
  if (page) await page.screenshot({ path: join(shots, "telemetry-failure.png"), fullPage: true });
  console.error(err);
  process.exitCode = 1;
} finally {
  await browser.close();
}
