// The buyer's pages. The server renders every order state; this script
// only asks the order API whether an order changed and then fetches the
// order's page again, so an order is rendered in one place. Keys are only
// ever sent in request bodies, never in a URL.
"use strict";

(function () {
  const LONG_POLL_SECONDS = 30;
  const MAX_BACKOFF_MS = 60000;

  function announce(text) {
    const region = document.getElementById("announce");
    if (!region) return;
    // Cleared first so the same text twice is announced twice.
    region.textContent = "";
    window.setTimeout(function () { region.textContent = text; }, 50);
  }

  function sleep(ms) {
    return new Promise(function (resolve) { window.setTimeout(resolve, ms); });
  }

  // retryAfterMs reads a Retry-After header in seconds, else uses fallback.
  function retryAfterMs(resp, fallback) {
    const seconds = parseInt(resp.headers.get("Retry-After") || "", 10);
    return seconds > 0 ? seconds * 1000 : fallback;
  }

  async function readJSON(resp) {
    try { return await resp.json(); } catch (e) { return {}; }
  }

  async function postJSON(path, body) {
    return fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
      cache: "no-store",
      credentials: "same-origin",
    });
  }

  function orderPath(id) {
    return "/orders/" + encodeURIComponent(id);
  }

  // fetchOrderSection fetches an order's page and returns its section,
  // without its noscript blocks: parsed here they would be shown.
  async function fetchOrderSection(id) {
    const resp = await fetch(orderPath(id), { cache: "no-store", credentials: "same-origin" });
    const html = await resp.text();
    const doc = new DOMParser().parseFromString(html, "text/html");
    const section = doc.querySelector("section.order");
    if (section) section.querySelectorAll("noscript").forEach(function (el) { el.remove(); });
    return section;
  }

  // enhance shows what works with script only: the Copy all keys buttons.
  function enhance(root) {
    root.querySelectorAll("button[data-copy-all]").forEach(function (b) { b.hidden = false; });
  }

  // replaceSection swaps an order's section for a fresh render, keeping
  // the keyboard focus on the same control when it still exists.
  function replaceSection(old, fresh) {
    const focused = document.activeElement && old.contains(document.activeElement) ? document.activeElement.id : "";
    const adopted = document.importNode(fresh, true);
    old.replaceWith(adopted);
    localizeTimes(adopted);
    enhance(adopted);
    if (focused && document.getElementById(focused)) document.getElementById(focused).focus();
    return adopted;
  }

  // signatureOf is the server's pageSignature of an order API answer.
  function signatureOf(order) {
    return order.status + "|" + order.keys.length + "|" + (order.discord ? order.discord.status : "");
  }

  // waitEnded reports whether the order API has answered 404 (an order
  // it does not know) since notFoundSince for longer than the section's
  // wait-help allows (data-after-seconds); if so it shows the wait-help in
  // place of the spinner: what to check, and how to reach the shop.
  function waitEnded(section, notFoundSince) {
    const help = section.querySelector(".wait-help[data-after-seconds]");
    if (!help || !notFoundSince) return false;
    const limit = parseFloat(help.dataset.afterSeconds);
    if (!(limit >= 0) || Date.now() - notFoundSince < limit * 1000) return false;
    section.querySelectorAll("p.lead .spinner").forEach(function (spinner) { spinner.closest("p").hidden = true; });
    help.hidden = false;
    section.setAttribute("data-wait-ended", "");
    const heading = help.querySelector("h3");
    if (heading) announce(heading.textContent);
    return true;
  }

  // checkAgain asks once more for an order whose wait ended: found, its
  // section is rendered and watched again; else the answer says so.
  async function checkAgain(button) {
    const section = button.closest("section.order");
    const result = button.closest(".wait-help").querySelector(".check-result");
    if (!section || !result) return;
    button.disabled = true;
    result.textContent = "Checking…";
    let resp;
    try {
      resp = await fetch("/v1/orders/" + encodeURIComponent(section.dataset.orderId), { cache: "no-store", credentials: "same-origin" });
    } catch (e) {
      resp = null;
    }
    button.disabled = false;
    if (resp && resp.status === 200) {
      const fresh = await fetchOrderSection(section.dataset.orderId).catch(function () { return null; });
      if (fresh) {
        const adopted = replaceSection(section, fresh);
        const heading = adopted.querySelector("h2");
        if (heading) announce(heading.textContent);
        watchOrder(adopted);
        return;
      }
    }
    const now = new Date().toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
    if (!resp) result.textContent = "Could not reach the shop's server. Check your connection and try again.";
    else if (resp.status === 404) result.textContent = "Checked at " + now + ": still no order at this address.";
    else if (resp.status === 429) result.textContent = "Checked too often from your network. Wait a minute, then try again.";
    else result.textContent = "Could not check right now (error " + resp.status + "). Try again in a few seconds.";
  }

  // watchOrder long-polls the order API until the order is final, and
  // re-renders the section whenever the order changed. An order the API
  // keeps answering 404 for ends its wait (waitEnded).
  async function watchOrder(section) {
    const id = section.dataset.orderId;
    if (!id) return;
    let backoff = 1000;
    let notFoundSince = 0;
    while (section.isConnected && !section.hasAttribute("data-final")) {
      const started = Date.now();
      let resp;
      try {
        resp = await fetch("/v1/orders/" + encodeURIComponent(id) + "?wait=" + LONG_POLL_SECONDS,
          { cache: "no-store", credentials: "same-origin" });
      } catch (e) {
        await sleep(backoff);
        backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
        continue;
      }
      notFoundSince = resp.status === 404 ? (notFoundSince || started) : 0;
      if (resp.status === 404 && waitEnded(section, notFoundSince)) return;
      if (resp.status === 200) {
        const order = await readJSON(resp);
        if (order.keys && signatureOf(order) !== section.dataset.signature) {
          const fresh = await fetchOrderSection(id).catch(function () { return null; });
          if (fresh) {
            section = replaceSection(section, fresh);
            const heading = section.querySelector("h2");
            if (heading) announce(heading.textContent);
          }
          if (!fresh || section.dataset.signature !== signatureOf(order)) {
            // The page could not be rendered as the API answered: try
            // again later rather than at once.
            await sleep(backoff);
            backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
            continue;
          }
        }
        backoff = 1000;
        // A server that answers at once (its waiters all taken) is asked
        // at most once a second.
        await sleep(Math.max(0, 1000 - (Date.now() - started)));
        continue;
      }
      // 404: Stripe's event has not reached the service yet (each unknown
      // lookup costs this client a token, so ask slowly); 429 and 503:
      // wait as told, longer each time.
      const fallback = resp.status === 404 ? 5000 : backoff;
      await sleep(retryAfterMs(resp, fallback));
      backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
    }
  }

  // copyText puts text on the clipboard; where the Clipboard API is
  // refused it selects the text (select) and uses the copy command.
  async function copyText(text, select) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch (e) {
      select();
      try { return document.execCommand("copy"); } catch (e2) { return false; }
    }
  }

  // selectContents selects the text of an element (a key's <output>).
  function selectContents(el) {
    const range = document.createRange();
    range.selectNodeContents(el);
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  // copied tells on the button, and to screen readers, how the copy went.
  function copied(button, ok) {
    const label = button.firstChild;
    if (!button.dataset.label) button.dataset.label = label.textContent;
    label.textContent = ok ? "Copied" : "Select and copy";
    announce(ok ? "Copied" : "Copy failed: the text is selected, press Ctrl+C");
    window.clearTimeout(button._restore);
    button._restore = window.setTimeout(function () { label.textContent = button.dataset.label; }, 2500);
  }

  // copyField copies a key or a loader line (its <output>'s value).
  async function copyField(button) {
    const field = document.getElementById(button.dataset.copy);
    if (!field) return;
    copied(button, await copyText(field.value, function () { selectContents(field); }));
  }

  // copyAll copies every usable key of the button's order, one a line.
  async function copyAll(button) {
    const section = button.closest("section.order");
    if (!section) return;
    const keys = Array.from(section.querySelectorAll(".user-key[data-usable]"), function (el) { return el.value; });
    const text = keys.join("\n");
    copied(button, await copyText(text, function () {
      // Not one element's text: selected in a field of its own, gone once
      // the copy command has run.
      const area = document.createElement("textarea");
      area.className = "visually-hidden";
      area.value = text;
      button.after(area);
      area.select();
      window.setTimeout(function () { area.remove(); }, 0);
    }));
  }

  function formatTime(unix) {
    const months = ["January", "February", "March", "April", "May", "June", "July",
      "August", "September", "October", "November", "December"];
    const d = new Date(unix * 1000);
    const pad = function (n) { return String(n).padStart(2, "0"); };
    return d.getUTCDate() + " " + months[d.getUTCMonth()] + " " + d.getUTCFullYear() + " " +
      pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()) + " UTC";
  }

  // refreshWhileResetting re-renders an order a few times after a reset
  // request, until no key of it waits for its reset any more.
  async function refreshWhileResetting(id) {
    for (let i = 0; i < 10; i++) {
      await sleep(2000);
      const section = document.querySelector('section.order[data-order-id="' + CSS.escape(id) + '"]');
      if (!section) return;
      const fresh = await fetchOrderSection(id).catch(function () { return null; });
      if (!fresh) continue;
      const resetting = fresh.querySelector('[data-hwid-status="queued"]');
      if (!resetting) {
        replaceSection(section, fresh);
        announce("HWID reset done");
        return;
      }
    }
  }

  // refreshWhileLinking re-renders an order while the Discord account its
  // buyer verified is being linked to its keys, until that is done.
  async function refreshWhileLinking(id) {
    for (let i = 0; i < 30; i++) {
      await sleep(2000);
      const section = document.querySelector('section.order[data-order-id="' + CSS.escape(id) + '"]');
      if (!section) return;
      const fresh = await fetchOrderSection(id).catch(function () { return null; });
      if (!fresh) continue;
      if (!fresh.querySelector('[data-discord-status="linking"]')) {
        const adopted = replaceSection(section, fresh);
        const heading = adopted.querySelector(".discord h3");
        if (heading) announce(heading.textContent);
        return;
      }
    }
  }

  // localTime writes a unix time in the buyer's own zone, with the zone's
  // name, e.g. "7 December 2026, 09:00 GMT+9".
  function localTime(date) {
    try {
      return new Intl.DateTimeFormat(undefined, {
        day: "numeric", month: "long", year: "numeric", hour: "2-digit", minute: "2-digit",
        timeZoneName: "short",
      }).format(date);
    } catch (e) {
      return null;
    }
  }

  // localizeTimes turns each <time class="local-time"> (rendered in UTC)
  // into the buyer's local time; the UTC text stays as its title.
  function localizeTimes(root) {
    root.querySelectorAll("time.local-time[datetime]").forEach(localizeTime);
  }

  function localizeTime(el) {
    if (el.dataset.localized) return;
    const d = new Date(el.getAttribute("datetime"));
    if (isNaN(d.getTime())) return;
    const text = localTime(d);
    if (!text) return;
    el.title = el.textContent;
    el.textContent = text;
    el.dataset.localized = "1";
  }

  // timeNode is a <time> of unix seconds, in the buyer's local time.
  function timeNode(unix) {
    const el = document.createElement("time");
    el.className = "local-time";
    el.setAttribute("datetime", new Date(unix * 1000).toISOString());
    el.textContent = formatTime(unix);
    localizeTime(el);
    return el;
  }

  // showResetError shows a failed reset as an alert under the key, with
  // the shop's support contact from the order's own support line.
  function showResetError(button, text) {
    const box = button.closest(".hwid");
    const slot = box.querySelector(".hwid-error-slot");
    const section = button.closest("section.order");
    box.querySelectorAll(".hwid-error").forEach(function (el) { el.remove(); });
    const alert = document.createElement("div");
    alert.className = "notice danger hwid-error";
    alert.setAttribute("role", "alert");
    const p = document.createElement("p");
    p.className = "hwid-error-text";
    p.textContent = text;
    alert.appendChild(p);
    const support = section && section.querySelector("p.support");
    if (support) {
      const help = support.cloneNode(true);
      help.className = "";
      alert.appendChild(help);
    }
    slot.appendChild(alert);
  }

  function clearResetError(button) {
    button.closest(".hwid").querySelectorAll(".hwid-error").forEach(function (el) { el.remove(); });
  }

  // askReset shows the confirmation; only its confirm button sends the
  // reset, which starts the cooldown.
  function askReset(button) {
    const confirm = document.getElementById(button.dataset.confirm);
    if (!confirm) return;
    button.hidden = true;
    confirm.hidden = false;
    confirm.querySelector(".confirm-reset").focus();
  }

  function closeConfirm(confirm) {
    const box = confirm.closest(".hwid");
    const button = box.querySelector("button.reset-hwid");
    confirm.hidden = true;
    button.hidden = false;
    return button;
  }

  async function resetHWID(button) {
    const section = button.closest("section.order");
    const field = document.getElementById(button.dataset.keyInput);
    const result = button.parentElement.querySelector(".hwid-result");
    if (!section || !field || !result) return;
    button.disabled = true;
    clearResetError(button);
    result.textContent = "Requesting an HWID reset…";
    let resp;
    try {
      resp = await postJSON("/v1/orders/" + encodeURIComponent(section.dataset.orderId) + "/reset-hwid",
        { user_key: field.value });
    } catch (e) {
      result.textContent = "";
      showResetError(button, "Could not reach the shop's server. Check your connection and try again.");
      button.disabled = false;
      return;
    }
    const body = await readJSON(resp);
    result.textContent = "";
    switch (resp.status) {
      case 202:
        result.textContent = "HWID reset requested.";
        if (body.next_reset_at) {
          result.append(" The next reset is allowed at ", timeNode(body.next_reset_at), ".");
        }
        refreshWhileResetting(section.dataset.orderId);
        return;
      case 409:
        showResetError(button, "This key's HWID cannot be reset: " + (body.error || "the key is not active") + ".");
        return;
      case 429:
        if (body.code === "cooldown" && body.next_reset_at) {
          result.append("Not yet: the next reset is allowed at ", timeNode(body.next_reset_at), ".");
          return;
        }
        showResetError(button, "Too many requests from your network. Try again in a minute.");
        break;
      case 404:
        showResetError(button, "This key is not part of this order. Reload the page and try again.");
        break;
      default:
        showResetError(button, "The reset could not be requested (error " + resp.status + "). Try again in a few seconds.");
    }
    button.disabled = false;
  }

  document.addEventListener("click", function (event) {
    const button = event.target.closest("button");
    if (!button) return;
    if (button.dataset.copy) copyField(button);
    else if (button.hasAttribute("data-copy-all")) copyAll(button);
    else if (button.classList.contains("check-again")) checkAgain(button);
    else if (button.classList.contains("reset-hwid")) askReset(button);
    else if (button.classList.contains("cancel-reset")) closeConfirm(button.closest(".hwid-confirm")).focus();
    else if (button.classList.contains("confirm-reset")) resetHWID(closeConfirm(button.closest(".hwid-confirm")));
  });

  localizeTimes(document);
  enhance(document);

  // Find my keys.

  async function requestLink(form) {
    const input = form.querySelector('input[type="email"]');
    const status = document.getElementById("lookup-status");
    const button = form.querySelector('button[type="submit"]');
    const email = input.value.trim();
    if (!email || !input.checkValidity()) {
      status.textContent = "Enter the email address you paid with, like name@example.com.";
      input.setAttribute("aria-invalid", "true");
      input.focus();
      return;
    }
    input.removeAttribute("aria-invalid");
    button.disabled = true;
    status.textContent = "Sending…";
    let resp;
    try {
      resp = await postJSON("/v1/key-lookup", { email: email });
    } catch (e) {
      status.textContent = "Could not reach the shop's server. Check your connection and try again.";
      button.disabled = false;
      return;
    }
    const body = await readJSON(resp);
    switch (resp.status) {
      case 202:
        status.textContent = "If this address bought keys, a link to them is on its way. It works for 30 minutes; check your spam folder too.";
        break;
      case 400:
        status.textContent = "That address was refused: " + (body.error || "check it and try again") + ".";
        input.setAttribute("aria-invalid", "true");
        break;
      case 429:
        status.textContent = "Too many requests. Wait a minute and try again.";
        break;
      case 503:
        status.textContent = body.code === "mail_not_configured"
          ? "Keys by email are not available at this shop. Your keys are on your order page; if you lost it, contact the shop's support."
          : "The service is busy right now. Try again in a few seconds.";
        break;
      default:
        status.textContent = "Something went wrong (" + resp.status + "). Try again in a few seconds.";
    }
    button.disabled = false;
  }

  // showMyOrders lists the orders of the emailed link's token. The token
  // is taken out of the address bar at once, so it is neither bookmarked
  // nor shared by accident.
  async function showMyOrders(token) {
    history.replaceState(null, "", location.pathname + location.search);
    const box = document.getElementById("my-orders");
    const status = document.getElementById("my-orders-status");
    const list = document.getElementById("my-orders-list");
    box.hidden = false;
    list.replaceChildren();
    status.textContent = "Loading your orders…";
    let resp;
    try {
      resp = await postJSON("/v1/my-keys", { token: token });
    } catch (e) {
      status.textContent = "Could not reach the shop's server. Reload the page to try again.";
      return;
    }
    const body = await readJSON(resp);
    if (resp.status === 401) {
      status.textContent = "This link has expired or is not valid. Request a new one below.";
      document.getElementById("lookup-email").focus();
      return;
    }
    if (resp.status !== 200 || !Array.isArray(body.orders)) {
      status.textContent = resp.status === 429
        ? "Too many requests. Wait a minute, then reload this page."
        : "Your orders could not be loaded (" + resp.status + "). Reload the page in a few seconds.";
      return;
    }
    if (body.orders.length === 0) {
      status.textContent = "No orders for " + body.email + ".";
      return;
    }
    // Each order is opened with its own short-lived signed link, never
    // with its Checkout Session ID (the answer does not hold it).
    for (const order of body.orders) {
      const section = await fetchOrderSection(order.link_token).catch(function () { return null; });
      if (section) {
        const adopted = document.importNode(section, true);
        list.appendChild(adopted);
        localizeTimes(adopted);
        enhance(adopted);
      }
    }
    status.textContent = body.orders.length === 1
      ? "One order for " + body.email + "."
      : body.orders.length + " orders for " + body.email + ", newest first.";
    const pending = list.querySelectorAll("section.order:not([data-final])");
    pending.forEach(function (section) { watchOrder(section); });
  }

  function start() {
    const single = document.querySelector("main > section.order");
    if (single) watchOrder(single);
    if (single && single.querySelector('[data-discord-status="linking"]')) refreshWhileLinking(single.dataset.orderId);
    const form = document.getElementById("lookup-form");
    if (form) {
      form.addEventListener("submit", function (event) {
        event.preventDefault();
        requestLink(form);
      });
      // A link pasted into a tab already on this page changes only the
      // fragment: that opens it too.
      const openLink = function () {
        const token = new URLSearchParams(location.hash.slice(1)).get("token");
        if (token) showMyOrders(token);
      };
      window.addEventListener("hashchange", openLink);
      openLink();
    }
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
