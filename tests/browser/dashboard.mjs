// The dashboard (home page) and a remote action on the receiver page, in a real (headless)
// Chromium at desktop and phone size, against the head-end with simulated receivers. Run by
// tests/web/test_dashboard_browser.py, which passes, through the environment:
//   LOAXA_URL, LOAXA_USER, LOAXA_PASSWORD (a technician), DEVICE (the receiver acted on),
//   OPERATOR_TOKEN, MEDIA_ID, ZONE_ID (a broadcast this script starts through the API while
//   the dashboard is open, to see the page update itself, then an emergency), ARTIFACTS_DIR,
//   CHROMIUM
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

function board() {
  const counts = {};
  document.querySelectorAll("[data-count]").forEach((el) => {
    counts[el.dataset.count] = Number(el.textContent); });
  const villages = {};
  document.querySelectorAll("tr[data-village]").forEach((tr) => {
    const row = {};
    tr.querySelectorAll("td[data-state]").forEach((td) => {
      row[td.dataset.state] = Number(td.textContent); });
    villages[tr.dataset.village] = row;
  });
  return { h1: document.querySelector("h1").textContent, counts, villages,
           playing: Array.from(document.querySelectorAll("[data-playing]")).map(
             (li) => li.textContent.replace(/\s+/g, " ").trim()) };
}

const overflows = () => document.documentElement.scrollWidth > window.innerWidth;

let page;
try {
  const context = await browser.newContext({ viewport: DESKTOP, locale: "vi-VN" });
  page = await context.newPage();
  page.on("request", (r) => { if (!r.url().startsWith(base)) seen.requests.push(r.url()); });
  page.on("pageerror", (e) => { seen.error = String(e); });

  // The home page, after the login.
  await page.goto(base + "/");
  await page.waitForURL(/\/login/);
  await page.fill('input[name="username"]', env.LOAXA_USER);
  await page.fill('input[name="password"]', env.LOAXA_PASSWORD);
  await page.click('form[action="/login"] button[type="submit"]');
  await page.waitForURL(base + "/");
  seen.before = await page.evaluate(board);

  // A broadcast starts while the page is open: the page shows it by itself (no reload).
  const sent = await fetch(base + "/api/v1/broadcasts", {
    method: "POST",
    headers: { "Authorization": "Bearer " + env.OPERATOR_TOKEN,
               "Content-Type": "application/json" },
    body: JSON.stringify({ media_id: env.MEDIA_ID, targets: { zones: [env.ZONE_ID] },
                           priority: "normal" }) });
  if (sent.status !== 201) throw new Error("broadcast: " + sent.status + await sent.text());
  seen.broadcast = (await sent.json()).id;
  await page.waitForSelector(`li[data-playing="${seen.broadcast}"]`, { timeout: 30000 });
  seen.after = await page.evaluate(board);
  await page.screenshot({ path: join(shots, "dashboard.png"), fullPage: true });
  await page.setViewportSize(PHONE);
  seen.phoneOverflow = await page.evaluate(overflows);
  await page.screenshot({ path: join(shots, "dashboard-phone.png"), fullPage: true });
  await page.setViewportSize(DESKTOP);

  // Remote actions: identify, then a volume, each confirmed by the receiver on the page.
  await page.goto(base + "/receivers/" + env.DEVICE);
  await page.click('button[data-action="identify"]');
  await page.waitForURL(/#actions$/);
  await page.waitForSelector('tr[data-kind="identify"][data-state="done"]', { timeout: 20000 });
  await page.fill('input[name="vol"]', "40");
  await page.click('button[data-action="volume"]');
  await page.waitForSelector('tr[data-kind="volume"][data-state="done"]', { timeout: 20000 });
  seen.commands = await page.$$eval("tr[data-command]", (rows) => rows.map((tr) => ({
    kind: tr.dataset.kind, state: tr.dataset.state,
    text: tr.textContent.replace(/\s+/g, " ").trim() })));
  await page.locator("#actions").screenshot({ path: join(shots, "receiver-actions.png") });
  await page.setViewportSize(PHONE);
  seen.actionsPhoneOverflow = await page.evaluate(overflows);
  await page.locator("#actions").screenshot({ path: join(shots, "receiver-actions-phone.png") });
  await page.setViewportSize(DESKTOP);

  // An emergency: the dashboard puts it first, in red, and plays it on every receiver.
  const alarm = await fetch(base + "/api/v1/emergency", {
    method: "POST",
    headers: { "Authorization": "Bearer " + env.OPERATOR_TOKEN,
               "Content-Type": "application/json" },
    body: JSON.stringify({ media_id: env.MEDIA_ID }) });
  if (alarm.status !== 201) throw new Error("emergency: " + alarm.status + await alarm.text());
  seen.emergency = (await alarm.json()).id;
  await page.goto(base + "/");
  await page.waitForSelector(`li[data-emergency="${seen.emergency}"]`);
  await page.waitForSelector(`li[data-playing="${seen.emergency}"]`, { timeout: 30000 });
  seen.during = await page.evaluate(board);
  await page.screenshot({ path: join(shots, "dashboard-emergency.png"), fullPage: true });
  await page.setViewportSize(PHONE);
  await page.screenshot({ path: join(shots, "dashboard-emergency-phone.png"), fullPage: true });
  await page.setViewportSize(DESKTOP);

  // The same dashboard in English.
  await page.goto(base + "/lang/en?next=/");
  await page.waitForURL(base + "/");
  seen.english = await page.evaluate(board);
  await page.screenshot({ path: join(shots, "dashboard-en.png"), fullPage: true });
  console.log(JSON.stringify(seen));
} catch (err) {
  if (page) await page.screenshot({ path: join(shots, "dashboard-failure.png"), fullPage: true });
  console.error(err);
  process.exitCode = 1;
} finally {
  await browser.close();
}
