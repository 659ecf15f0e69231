// The operator console works without script; this keeps an action from
// being sent twice by a double click (a form's button is disabled once the
// form is submitted), and refreshes the live part of the stock page while
// an operation runs and of a delivery's page while it is pending (their
// Refresh links do it by hand).
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

// While a page's live part says something runs (data-running: a stock
// operation, a pending delivery), read the page again every few seconds
// and put in its new live part: the action forms, outside it, keep what
// the operator typed.
const liveRefreshEvery = 2000;

function refreshLive(id, url) {
  const live = document.getElementById(id);
  if (!live || !live.hasAttribute("data-running")) {
    return;
  }
  setTimeout(async () => {
    try {
      const response = await fetch(url, { credentials: "same-origin", cache: "no-store" });
      if (response.ok) {
        const page = new DOMParser().parseFromString(await response.text(), "text/html");
        const fresh = page.getElementById(id);
        if (fresh) {
          live.replaceWith(document.adoptNode(fresh));
        }
      }
    } catch {
      // The next round tries again; the Refresh link still works.
    }
    refreshLive(id, url);
  }, liveRefreshEvery);
}

refreshLive("stock-live", "/console/stock");
refreshLive("delivery-live", location.pathname);

document.documentElement.dataset.consoleReady = "1";
