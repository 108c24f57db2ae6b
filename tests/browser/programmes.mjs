// The programme pages in a real (headless) Chromium: an editor writes a weekly programme
// (chime, a recording from the library, a text added with "Thêm một phần"), saves and submits
// it; a leader approves it from the approvals inbox; the week's calendar shows it; a programme
// that aired shows its proof of play. Walked
// once at desktop size and once at phone size. Run by tests/web/test_programme_browser.py,
// which serves the head-end on 127.0.0.1 and passes, through the environment:
//   LOAXA_URL, EDITOR, LEADER, LOAXA_PASSWORD, MEDIA_ID, ZONE_ID, PROOF_ID (a programme that
//   aired, for its proof of play), ARTIFACTS_DIR, CHROMIUM
// It prints one JSON line of what it saw; screenshots go to ARTIFACTS_DIR.
import { launchChromium } from "./chromium.mjs";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const env = process.env;
const base = env.LOAXA_URL;
const shots = env.ARTIFACTS_DIR;
mkdirSync(shots, { recursive: true });
const SIZES = {
  desktop: { viewport: { width: 1280, height: 900 }, time: "05:30", title: "Phát thanh buổi sáng" },
  phone: { viewport: { width: 390, height: 844 }, time: "17:30", title: "Phát thanh buổi chiều" },
};

const browser = await launchChromium();
const seen = { requests: [], walks: {} };
let page;

async function login(user) {
  await page.goto(base + "/programmes");
  await page.waitForURL(/\/login/);
  await page.fill('input[name="username"]', user);
  await page.fill('input[name="password"]', env.LOAXA_PASSWORD);
  await page.click('form[action="/login"] button[type="submit"]');
  await page.waitForURL(/\/programmes$/);
}

async function logout() {
  await page.click('form[action="/logout"] button[type="submit"]');
  await page.waitForURL(/\/login/);
}

const overflows = () => page.evaluate(() => document.documentElement.scrollWidth >
                                              window.innerWidth);

try {
  for (const [size, walk] of Object.entries(SIZES)) {
    const context = await browser.newContext({ viewport: walk.viewport, locale: "vi-VN" });
    page = await context.newPage();
    page.on("request", (r) => { if (!r.url().startsWith(base)) seen.requests.push(r.url()); });
    page.on("pageerror", (e) => { seen.error = String(e); });
    const saw = seen.walks[size] = {};

    // The editor: a new programme.
    await login(env.EDITOR);
    await page.click('a[href="/programmes/new"]');
    await page.waitForURL(/\/programmes\/new$/);
    await page.fill('input[name="title"]', walk.title);
    const rows = page.locator("li[data-segment]:visible");
    saw.rowsShown = await rows.count();
    // Row 1 is the opening chime already; row 2: the recording from the library.
    await rows.nth(1).locator('select[name="seg_kind"]').selectOption("media");
    await rows.nth(1).locator('select[name="seg_media"]').selectOption(env.MEDIA_ID);
    // One more segment, added by the button: a text read aloud in the southern voice.
    await page.click("[data-add-segment]");
    saw.rowsAfterAdd = await rows.count();
    const added = rows.nth(saw.rowsShown);
    await added.locator('select[name="seg_kind"]').selectOption("text");
    saw.textFieldsOnly = await added.evaluate((row) => Array.from(
      row.querySelectorAll("[data-for-kind]")).filter((el) => !el.hidden).map(
      (el) => el.dataset.forKind));
    await added.locator('textarea[name="seg_text"]').fill(
      "Thông báo: ngày mai cắt điện từ 7 giờ đến 11 giờ để sửa đường dây.");
    await added.locator('select[name="seg_voice"]').selectOption("south");
    await page.check('input[name="target"][value="zones"]');
    await page.check(`input[name="zones"][value="${env.ZONE_ID}"]`);
    await page.check('input[name="when"][value="weekly"]');
    await page.fill('input[name="at_time"]', walk.time);
    saw.formOverflow = await overflows();
    await page.screenshot({ path: join(shots, `programme-new-${size}.png`), fullPage: true });
    await page.click('button[name="action"][value="submit"]');
    await page.waitForURL(/\/programmes\/p[0-9a-f]+$/);
    saw.id = page.url().split("/").pop();
    saw.stateAfterSubmit = await page.getAttribute("[data-programme-state]",
                                                   "data-programme-state");
    saw.when = (await page.textContent("[data-when]")).trim();
    await page.screenshot({ path: join(shots, `programme-submitted-${size}.png`),
                            fullPage: true });
    await logout();

    // The leader: the approvals inbox, approve with a comment.
    await login(env.LEADER);
    await page.click('a[href="/programmes/approvals"]');
    await page.waitForURL(/\/programmes\/approvals$/);
    const card = page.locator(`section[data-programme="${saw.id}"]`);
    await card.locator('form[action$="/approve"] input[name="comment"]').fill("Đồng ý phát.");
    saw.inboxOverflow = await overflows();
    await page.screenshot({ path: join(shots, `programme-approvals-${size}.png`),
                            fullPage: true });
    await card.locator("[data-approve]").click();
    await page.waitForURL(/\/programmes\/approvals$/);
    await page.goto(base + "/programmes/" + saw.id);
    saw.stateAfterApproval = await page.getAttribute("[data-programme-state]",
                                                     "data-programme-state");
    saw.review = (await page.textContent("[data-review-comment]")).trim();
    await page.screenshot({ path: join(shots, `programme-approved-${size}.png`),
                            fullPage: true });

    // The week: the programme on its days.
    await page.goto(base + "/programmes");
    saw.calendarEntries = await page.locator(
      `li[data-programme="${saw.id}"][data-state="approved"]`).count();
    saw.firstDayIsToday = await page.evaluate(() =>
      document.querySelector("section.day").classList.contains("today"));
    saw.calendarOverflow = await overflows();
    await page.screenshot({ path: join(shots, `programmes-week-${size}.png`), fullPage: true });

    // A programme that aired: its proof of play.
    await page.goto(base + "/programmes/" + env.PROOF_ID);
    saw.proof = (await page.textContent("[data-played]")).trim();
    saw.misses = await page.locator("ul.misses li").count();
    saw.proofOverflow = await overflows();
    await page.locator("ul.proofs").scrollIntoViewIfNeeded();
    await page.screenshot({ path: join(shots, `programme-proof-${size}.png`), fullPage: true });
    await context.close();
  }
  console.log(JSON.stringify(seen));
} catch (err) {
  if (page) await page.screenshot({ path: join(shots, "programmes-failure.png"), fullPage: true });
  console.error(err);
  process.exitCode = 1;
} finally {
  await browser.close();
}
