// The operator console works without script; this keeps an action from
// being sent twice by a double click (a form's button is disabled once the
// form is submitted), and refreshes the stock page's live part while an
// operation runs (its Refresh link does it by hand).
"use strict";

document.addEventListener("submit", (event) => {
  const form = event.target;
  if (!(form instanceof HTMLFormElement) || form.method !== "post") {
    return;
  }
  for (const button of form.querySelectorAll("button[type=submit]")) {
    button.disabled = true;
  }
});

// While the stock page's live part says an operation runs (data-running),
// read the page again every few seconds and put in its new live part: the
// action forms, outside it, keep what the operator typed.
const stockRefreshEvery = 2000;

function refreshStock() {
  const live = document.getElementById("stock-live");
  if (!live || !live.hasAttribute("data-running")) {
    return;
  }
  setTimeout(async () => {
    try {
      const response = await fetch("/console/stock", { credentials: "same-origin", cache: "no-store" });
      if (response.ok) {
        const page = new DOMParser().parseFromString(await response.text(), "text/html");
        const fresh = page.getElementById("stock-live");
        if (fresh) {
          live.replaceWith(document.adoptNode(fresh));
        }
      }
    } catch {
      // The next round tries again; the Refresh link still works.
    }
    refreshStock();
  }, stockRefreshEvery);
}

refreshStock();

document.documentElement.dataset.consoleReady = "1";
