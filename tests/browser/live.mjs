// "Phát trực tiếp" in a real (headless) Chromium whose microphone is a WAV file (Chromium's
// fake capture device plays MIC_WAV in a loop): log in, open /live, pick one village, go live,
// see the level meter move and every receiver of the village report playing, talk a while,
// press "Dừng" and see them all stopped; go live again and close the tab: the session must
// end within 5 s. Screenshots go to ARTIFACTS_DIR.
//
// Run by tests/web/test_live_page.py, which starts the broker, the head-end and the receivers
// and checks what the receivers' sinks played; it passes through the environment:
//   LOAXA_URL, LOAXA_USER, LOAXA_PASSWORD, MIC_WAV, ZONE_ID, ZONE_SIZE, ARTIFACTS_DIR, CHROMIUM
import { launchChromium } from "./chromium.mjs";
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

async function waitForDevices(page, state, count, timeout) {
  await page.waitForFunction(
    ([s, n]) => document.querySelectorAll(`[data-devices] li[data-state="${s}"]`).length === n,
    [state, count], { timeout, polling: 100 });
}

const browser = await launchChromium([
  "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
  `--use-file-for-fake-audio-capture=${env.MIC_WAV}`, "--autoplay-policy=no-user-gesture-required",
]);
let page;
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 },
                                             locale: "vi-VN" });
  await context.grantPermissions(["microphone"], { origin: base });
  page = await context.newPage();
  page.on("console", (msg) => console.log("page:", msg.text()));

  await page.goto(base + "/live");
  await page.waitForURL(/\/login/);
  await page.fill('input[name="username"]', env.LOAXA_USER);
  await page.fill('input[name="password"]', env.LOAXA_PASSWORD);
  await page.click('form[action="/login"] button[type="submit"]');
  await page.waitForURL(/\/live$/);
  step("logged in, on /live");
  await page.check(`input[name="zones"][value="${env.ZONE_ID}"]`);
  await page.screenshot({ path: join(shots, "live.png"), fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 });  // a phone, from here on
  await page.screenshot({ path: join(shots, "live-phone.png"), fullPage: true });

  await page.click("[data-start]");
  await page.waitForSelector('#live[data-state="live"]', { timeout: 15000 });
  step("on air");
  await page.waitForFunction(
    () => Number(document.querySelector("[data-level]").getAttribute("aria-valuenow")) > 5,
    null, { timeout: 5000, polling: 50 });
  step("the level meter moves");
  await waitForDevices(page, "playing", zoneSize, 15000);
  step(`${zoneSize} receivers of ${env.ZONE_ID} playing`);
  await page.waitForTimeout(4000);  // talk
  await page.screenshot({ path: join(shots, "live-on-air.png"), fullPage: true });
  const sent = await page.evaluate(() => window.loaxaLive.sentBytes());
  step(`sent ${sent} bytes of PCM`);

  await page.click("[data-stop]");
  await page.waitForSelector('#live[data-state="ended"]', { timeout: 5000 });
  await waitForDevices(page, "cancelled", zoneSize, 8000);
  step("stopped on every receiver");
  await page.screenshot({ path: join(shots, "live-ended.png"), fullPage: true });

  // Again, and this time the operator closes the tab while on air.
  await page.click("[data-start]");
  await page.waitForSelector('#live[data-state="live"]', { timeout: 15000 });
  await waitForDevices(page, "playing", zoneSize, 15000);
  const id = await page.evaluate(() => document.getElementById("live").dataset.liveId);
  const closed = Date.now();
  await page.close();
  page = null;
  const api = context.request;
  for (;;) {
    const detail = await (await api.get(`${base}/api/v1/live/${id}`)).json();
    if (detail.state === "ended") {
      step(`tab closed: session ended (${detail.reason}) after ${Date.now() - closed} ms`);
      if (detail.reason !== "socket-closed") throw new Error("ended by " + detail.reason);
      break;
    }
    if (Date.now() - closed > 5000) throw new Error("still live 5 s after the tab closed");
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
} catch (err) {
  if (page) await page.screenshot({ path: join(shots, "live-failure.png"), fullPage: true });
  console.error(err);
  process.exitCode = 1;
} finally {
  await browser.close();
}
