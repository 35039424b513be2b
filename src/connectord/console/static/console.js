// The console's only script: progressive enhancement. Every page works without it.
"use strict";

(() => {
  // A discriminated union (auth kind...): show the chosen variant's fields only.
  for (const box of document.querySelectorAll("fieldset[data-choice]")) {
    const select = document.getElementById(box.dataset.choice);
    if (!select) continue;
    const variants = box.querySelectorAll(":scope > fieldset.variant");
    const show = () => {
      for (const variant of variants) variant.hidden = variant.dataset.kind !== select.value;
    };
    select.addEventListener("change", show);
    show();
  }

  // "Select all" on a list page.
  const all = document.querySelector("[data-select-all]");
  if (all) {
    all.hidden = false;
    all.addEventListener("change", () => {
      for (const box of document.querySelectorAll('input[name="ids"]')) box.checked = all.checked;
    });
  }

  // Ask before destructive posts.
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }

  // Copy a value shown once.
  for (const button of document.querySelectorAll("button[data-copy]")) {
    const field = document.getElementById(button.dataset.copy);
    if (!field || !navigator.clipboard) continue;
    button.hidden = false;
    button.addEventListener("click", async () => {
      await navigator.clipboard.writeText(field.value);
      button.textContent = "Copied";
    });
  }

  // "Test before saving" in the background: only the result is swapped in, so what was
  // typed (secrets included) stays in the form. Anything but a result: a normal post.
  const form = document.querySelector("form[data-test-form]");
  if (form) {
    form.addEventListener("submit", async (event) => {
      const button = event.submitter;
      if (!button || button.value !== "test" || form.dataset.plain === "1") return;
      event.preventDefault();
      // Read before the button is disabled: a disabled submitter is left out of the form.
      const body = new URLSearchParams(new FormData(form, button));
      const label = button.textContent;
      button.disabled = true;
      button.textContent = "Testing…";
      try {
        // getAttribute: the buttons named "action" shadow the form's own action property.
        const response = await fetch(form.getAttribute("action"), {
          method: "POST",
          body,
          headers: { "X-Console-Partial": "1" },
          credentials: "same-origin",
        });
        if (response.ok && response.headers.get("X-Console-Partial") === "1") {
          document.getElementById("test-result").innerHTML = await response.text();
          return;
        }
      } catch (error) {
        // The network failed: fall through to a normal post, which tells why.
      } finally {
        button.disabled = false;
        button.textContent = label;
      }
      form.dataset.plain = "1";
      form.requestSubmit(button);
    });
  }

  // A batch's progress: poll until it is over.
  const batch = document.querySelector("[data-batch]");
  if (batch && !("done" in batch.dataset)) {
    const bar = document.getElementById("batch-progress");
    const put = (root, name, text) => {
      const node = root.querySelector(`[data-field="${name}"]`);
      if (node) node.textContent = text;
    };
    const update = (state) => {
      bar.value = state.done;
      put(batch, "done", state.done);
      put(batch, "ok", state.ok);
      put(batch, "failed", state.failed);
      put(batch, "running", state.running ? "" : ` · finished in ${state.seconds.toFixed(1)} s`);
      for (const item of state.items) {
        const row = batch.querySelector(`tr[data-item="${item.connector_id}"]`);
        if (!row) continue;
        const badge = row.querySelector('[data-field="state"] .badge');
        badge.className = `badge state-${item.state}`;
        badge.textContent = item.state === "failed" && item.error_kind ? item.error_kind : item.state;
        put(row, "latency", item.latency_ms === null ? "–" : `${item.latency_ms} ms`);
        put(row, "error", item.error || "");
      }
    };
    const poll = async () => {
      try {
        const response = await fetch(batch.dataset.batch, { credentials: "same-origin" });
        if (!response.ok) return;
        const state = await response.json();
        update(state);
        if (!state.running) return;
      } catch (error) {
        // Try again below.
      }
      window.setTimeout(poll, 700);
    };
    window.setTimeout(poll, 300);
  }
})();
