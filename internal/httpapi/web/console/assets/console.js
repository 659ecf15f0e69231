// The operator console works without script; this only keeps an action
// from being sent twice by a double click: a form's button is disabled
// once the form is submitted.
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

document.documentElement.dataset.consoleReady = "1";
