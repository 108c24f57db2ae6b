// The content library in a real (headless) Chromium: an operator uploads a recording several
// minutes long from the library page; the page answers at once and the job's panel shows the
// conversion's progress (the <progress> bar, refreshed by loaxa.js) until the recording is
// ready; the list then shows it. Walked at desktop and at phone size, each with its own file.
// Run by tests/web/test_library_browser.py, which serves the head-end on 127.0.0.1 and
// passes, through the environment:
//   LOAXA_URL, OPERATOR, LOAXA_PASSWORD, FILE_DESKTOP, FILE_PHONE, ARTIFACTS_DIR, CHROMIUM
// It prints one JSON line of what it saw; screenshots go to ARTIFACTS_DIR.
import { launchChromium } from "./chromium.mjs";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const env = process.env;
const base = env.LOAXA_URL;
const shots = env.ARTIFACTS_DIR;
mkdirSync(shots, { recursive: true });
const SIZES = {
  desktop: { viewport: { width: 1280, height: 900 }, file: env.FILE_DESKTOP, title: "Bản tin sáng thứ Hai" },
  phone: { viewport: { width: 390, height: 844 }, file: env.FILE_PHONE, title: "Thông báo lịch tiêm chủng" },
};

const browser = await launchChromium();
const seen = { requests: [], walks: {} };
let page;

try {
  for (const [size, walk] of Object.entries(SIZES)) {
    const context = await browser.newContext({ viewport: walk.viewport, locale: "vi-VN" });
    page = await context.newPage();
    page.on("request", (r) => { if (!r.url().startsWith(base)) seen.requests.push(r.url()); });
    page.on("pageerror", (e) => { seen.error = String(e); });
    const saw = seen.walks[size] = { progress: [] };

    await page.goto(base + "/library");
    await page.waitForURL(/\/login/);
    await page.fill('input[name="username"]', env.OPERATOR);
    await page.fill('input[name="password"]', env.LOAXA_PASSWORD);
    await page.click('form[action="/login"] button[type="submit"]');
    await page.waitForURL(/\/library$/);

    await page.setInputFiles('input[name="file"]', walk.file);
    await page.fill('input[name="title"]', walk.title);
    const sent = Date.now();
    await page.click('form[action="/library/uploads"] button[type="submit"]');
    await page.waitForURL(/\/library\?job=j[0-9a-f]+$/);
    saw.answeredMs = Date.now() - sent;
    saw.job = new URL(page.url()).searchParams.get("job");

    // Watch the panel until the job is over, noting each progress value shown.
    let shot = false;
    for (let i = 0; i < 1200; i++) {
      const state = await page.getAttribute("#job [data-job]", "data-state");
      if (state === "done" || state === "failed") { saw.state = state; break; }
      const value = await page.locator("#job [data-job] progress").getAttribute("value").catch(() => null);
      if (value !== null && saw.progress.at(-1) !== Number(value)) saw.progress.push(Number(value));
      if (!shot && Number(value) > 0) {
        await page.screenshot({ path: join(shots, `library-progress-${size}.png`), fullPage: true });
        saw.stage = (await page.locator("#job [data-job] p.muted").innerText()).trim();
        shot = true;
      }
      await page.waitForTimeout(200);
    }
    saw.panel = (await page.locator("#job [data-job]").innerText()).trim();
    await page.click("#job [data-job] a[href^='/library#']");
    await page.waitForURL(/\/library#m[0-9a-f]+$/);
    const row = page.locator("tr[data-media]", { hasText: walk.title });
    saw.row = (await row.innerText()).replace(/\s+/g, " ").trim();
    saw.overflow = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth);
    await page.screenshot({ path: join(shots, `library-${size}.png`), fullPage: true });
    await context.close();
  }
  console.log(JSON.stringify(seen));
} catch (err) {
  if (page) await page.screenshot({ path: join(shots, "library-failure.png"), fullPage: true });
  console.error(err);
  process.exitCode = 1;
} finally {
  await browser.close();
}
