// What every browser walk shares: Debian's headless Chromium started the same way, and the
// two screen sizes the pages are checked at.
import { chromium } from "playwright-core";

export const DESKTOP = { width: 1280, height: 900 };
export const PHONE = { width: 390, height: 844 };

// ``extraArgs``: e.g. the fake microphone of the live page's walk.
export function launchChromium(extraArgs = []) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", ...extraArgs],
  });
}
