// Loaxa pages: a little vanilla JavaScript, and every page still works without it.
//  - [data-refresh="url"] regions are re-fetched every data-every seconds (the server renders
//    the fragment, so no page logic is written twice); polling stops when the fragment says
//    it is final ([data-final]; then [data-hide-when-final] hides), pauses while the tab is
//    hidden, and a lost session reloads the page (which leads to the login).
//  - [data-show-when="name=value"] blocks show only while that radio button is chosen.
//  - forms with data-busy disable their button and say so while an upload is converted.
"use strict";

function startRefresh(region) {
  const note = document.querySelector("[data-refresh-note]");
  const every = Math.max(1, parseFloat(region.dataset.every || "5")) * 1000;

  function stamp(ok) {
    if (!note) return;
    note.classList.toggle("alert", !ok);
    const problem = note.querySelector("[data-problem]");
    if (problem) problem.textContent = ok ? "" : " " + (note.dataset.failed || "");
    const updated = note.querySelector("[data-updated]");
    if (ok && updated) {
      updated.textContent = new Date().toLocaleTimeString("vi-VN", {
        timeZone: note.dataset.zone || undefined, hour12: false});
    }
  }

  async function tick() {
    if (document.hidden) { setTimeout(tick, every); return; }
    try {
      const response = await fetch(region.dataset.refresh, {credentials: "same-origin",
                                                             cache: "no-store"});
      if (response.status === 401) { window.location.reload(); return; }
      if (!response.ok) throw new Error(String(response.status));
      region.innerHTML = await response.text();
      stamp(true);
    } catch (err) {
      stamp(false);
    }
    if (region.querySelector("[data-final]")) {
      // Over: nothing left to cancel, nothing more to fetch.
      document.querySelectorAll("[data-hide-when-final]").forEach((el) => { el.hidden = true; });
      return;
    }
    setTimeout(tick, every);
  }

  if (!region.querySelector("[data-final]")) setTimeout(tick, every);
}

function startShowWhen(block) {
  const [name, value] = block.dataset.showWhen.split("=");
  const form = block.closest("form");
  const update = () => {
    const chosen = form.querySelector('input[name="' + name + '"]:checked');
    block.hidden = !(chosen && chosen.value === value);
  };
  form.addEventListener("change", update);
  update();
}

function startBusy(form) {
  form.addEventListener("submit", () => {
    const button = form.querySelector('button[type="submit"]');
    if (!button) return;
    // Disabled after this tick, so the button's own value is still submitted.
    setTimeout(() => { button.disabled = true; button.textContent = form.dataset.busy; }, 0);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-refresh]").forEach(startRefresh);
  document.querySelectorAll("[data-show-when]").forEach(startShowWhen);
  document.querySelectorAll("form[data-busy]").forEach(startBusy);
});
