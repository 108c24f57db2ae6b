// The programme editor (templates/programme_form.html): each segment row shows only the
// fields of its kind, unused rows wait hidden until "add a segment" shows one (or a copy),
// and [data-show-when-any="when=a,b"] blocks show while one of those radio buttons is chosen. Without JavaScript every field
// shows and two blank rows are there to add segments; the form works the same.
"use strict";

function showKind(row) {
  const kind = row.querySelector('select[name="seg_kind"]').value;
  row.dataset.kind = kind;
  row.querySelectorAll("[data-for-kind]").forEach((el) => {
    el.hidden = el.dataset.forKind !== kind;
  });
}

function startSegments(list, button) {
  const wire = (row) => {
    row.querySelector('select[name="seg_kind"]').addEventListener("change", () => showKind(row));
    showKind(row);
  };
  const rows = Array.from(list.querySelectorAll("[data-segment]"));
  const blank = rows[rows.length - 1].cloneNode(true);
  rows.forEach(wire);
  // The unused rows wait hidden (they submit "not used"); the button shows the next one.
  rows.filter((row) => !row.dataset.kind).forEach((row) => { row.hidden = true; });
  button.hidden = false;
  button.addEventListener("click", () => {
    let row = list.querySelector("[data-segment][hidden]");
    if (!row) {
      row = blank.cloneNode(true);
      row.querySelectorAll("select").forEach((s) => { s.selectedIndex = 0; });
      row.querySelectorAll("textarea").forEach((t) => { t.value = ""; });
      list.appendChild(row);
      wire(row);
    }
    row.hidden = false;
    row.querySelector("select").focus();
  });
}

function startShowWhenAny(block) {
  const [name, values] = block.dataset.showWhenAny.split("=");
  const form = block.closest("form");
  const update = () => {
    const chosen = form.querySelector('input[name="' + name + '"]:checked');
    block.hidden = !(chosen && values.split(",").includes(chosen.value));
  };
  form.addEventListener("change", update);
  update();
}

document.addEventListener("DOMContentLoaded", () => {
  const list = document.querySelector("ol.segments");
  const button = document.querySelector("[data-add-segment]");
  if (list && button) startSegments(list, button);
  document.querySelectorAll("[data-show-when-any]").forEach(startShowWhenAny);
});
