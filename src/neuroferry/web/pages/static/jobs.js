/* The jobs list and a job's page: they refresh themselves while jobs run, and a job's page
 * shows a task's log in place, following it while the task runs.
 *
 * Refreshing fetches the same URL with ?partial=1 (the part of the page that changes) every
 * few seconds while a listed job is pending, queued or running, and not while the tab is
 * hidden; the "Auto-refresh" button turns it off and on (remembered by this browser).
 */
(function () {
  "use strict";

  var PREFERENCE = "ferry.auto-refresh";
  var LOG_SECONDS = 1.5;
  var ACTIVE_TASK = ["pending", "queued", "running", "up_for_retry", "up_for_reschedule"];

  function stored(key) {
    try {
      return window.localStorage.getItem(key);
    } catch (exc) {
      return null;
    }
  }

  function store(key, value) {
    try {
      window.localStorage.setItem(key, value);
    } catch (exc) {
      /* private windows may refuse: the choice then lasts as long as the page */
    }
  }

  /** A selector that finds `element` again in a fresh copy of the page, or null. */
  function locator(element) {
    if (!element || element === document.body) return null;
    if (element.id) return "#" + CSS.escape(element.id);
    var keys = ["href", "data-log", "data-group", "name"];
    for (var i = 0; i < keys.length; i++) {
      var value = element.getAttribute(keys[i]);
      if (value) return element.tagName.toLowerCase() + "[" + keys[i] + '="' + CSS.escape(value) + '"]';
    }
    return null;
  }

  /** Keep the element `selector` up to date while its data-active says "true".
   *  hooks.before(old) runs before a swap and returns what hooks.after(new, kept) needs. */
  function live(selector, hooks) {
    hooks = hooks || {};
    var toggle = document.getElementById("auto-refresh");
    var status = document.getElementById("refresh-status");
    var enabled = stored(PREFERENCE) !== "off";
    var timer = null;
    var busy = false;
    var failed = "";

    function region() {
      return document.querySelector(selector);
    }

    function running() {
      var el = region();
      return Boolean(el) && el.dataset.active === "true";
    }

    function seconds() {
      var el = region();
      return Math.max(1, Number(el && el.dataset.refresh) || 3);
    }

    function show() {
      if (!toggle || !status) return;
      toggle.hidden = false;
      toggle.setAttribute("aria-pressed", enabled ? "true" : "false");
      toggle.textContent = "Auto-refresh: " + (enabled ? "on" : "off");
      var text;
      if (failed) text = failed;
      else if (!running()) text = hooks.idle || "Nothing here is running, so the page stays as it is.";
      else if (enabled) text = "Updates every " + seconds() + " s while jobs run.";
      else text = "Auto-refresh is off: reload the page to see changes.";
      if (status.textContent !== text) status.textContent = text;
    }

    function schedule() {
      clearTimeout(timer);
      timer = null;
      if (enabled && running() && !document.hidden) timer = setTimeout(tick, seconds() * 1000);
      show();
    }

    function partialUrl() {
      var url = new URL(window.location.href);
      url.searchParams.set("partial", "1");
      return url.pathname + url.search;
    }

    async function tick() {
      if (busy) return;
      busy = true;
      try {
        var response = await fetch(partialUrl(), {
          credentials: "same-origin",
          headers: { Accept: "text/html" },
        });
        if (response.redirected && new URL(response.url).pathname === "/sign-in") {
          enabled = false;
          ferry.notice("Your sign-in has ended: reload the page to sign in again.", "warning");
          return;
        }
        if (!response.ok && response.status !== 422) {
          throw new Error("the service answered HTTP " + response.status);
        }
        var page = new DOMParser().parseFromString(await response.text(), "text/html");
        var fresh = page.querySelector(selector);
        if (!fresh) throw new Error("the answer had no " + selector);
        swap(fresh);
        failed = "";
      } catch (exc) {
        failed = "Could not update (" + (exc.message || exc) + "); trying again.";
      } finally {
        busy = false;
        schedule();
      }
    }

    function swap(fresh) {
      var current = region();
      var focused = current.contains(document.activeElement) ? locator(document.activeElement) : null;
      var kept = hooks.before ? hooks.before(current) : null;
      var node = document.importNode(fresh, true);
      current.replaceWith(node);
      if (hooks.after) hooks.after(node, kept);
      if (focused) {
        var again = node.querySelector(focused);
        if (again) again.focus({ preventScroll: true });
      }
    }

    if (toggle) {
      toggle.addEventListener("click", function () {
        enabled = !enabled;
        store(PREFERENCE, enabled ? "on" : "off");
        if (enabled && running()) tick();
        else schedule();
      });
    }
    document.addEventListener("visibilitychange", function () {
      if (document.hidden) {
        clearTimeout(timer);
        timer = null;
      } else if (enabled && running()) {
        tick(); // catch up at once on coming back
      }
    });
    schedule();
    return { refresh: tick, schedule: schedule };
  }

  // -- the jobs list ---------------------------------------------------------------------

  function jobsList() {
    var form = document.querySelector("form.job-filters");
    if (form) {
      // Empty fields are left out of the URL, so that shared links stay short.
      form.addEventListener("submit", function () {
        form.querySelectorAll("input, select").forEach(function (field) {
          if (field.type !== "checkbox" && field.name && field.value === "") field.disabled = true;
        });
      });
      window.addEventListener("pageshow", function () {
        form.querySelectorAll("[disabled]").forEach(function (field) { field.disabled = false; });
      });
    }
    live("#jobs-results", { idle: "No listed job is running, so the list stays as it is." });
  }

  // -- a job's page: instance groups ------------------------------------------------------

  /** This page's address with task `name` added to (or removed from) its open groups. */
  function withGroup(name, open) {
    var url = new URL(window.location.href);
    var names = url.searchParams.getAll("open").filter(function (n) { return n !== name; });
    url.searchParams.delete("open");
    if (open) names.push(name);
    names.forEach(function (n) { url.searchParams.append("open", n); });
    return url.pathname + url.search + url.hash;
  }

  /** Show or hide a mapped task's instances; those of a large task are not in the page
   *  until asked for: then the page is fetched again with the task among its "open" ones. */
  function toggleGroup(button, controller) {
    var open = button.getAttribute("aria-expanded") !== "true";
    var name = button.dataset.group;
    var body = document.getElementById(button.getAttribute("aria-controls"));
    if (!body) return;
    // a large task's instances come with the page only while the address asks for them
    if (body.dataset.lazy === "true") window.history.replaceState(null, "", withGroup(name, open));
    setGroup(button, open);
    if (open && !body.querySelector("tr") && controller) controller.refresh();
  }

  function setGroup(button, open) {
    var body = document.getElementById(button.getAttribute("aria-controls"));
    if (!body) return;
    body.hidden = !open;
    button.setAttribute("aria-expanded", open ? "true" : "false");
    var first = button.firstChild;
    if (first && first.nodeType === Node.TEXT_NODE) {
      first.textContent = first.textContent.replace(/^(Show|Hide)/, open ? "Hide" : "Show");
    }
  }

  // -- a job's page: the log of a task ----------------------------------------------------

  var log = null;

  function taskRow(key) {
    return document.getElementById(key);
  }

  function rowActive(row) {
    return Boolean(row) && ACTIVE_TASK.indexOf(row.dataset.state) >= 0;
  }

  function fileName(row, attempt) {
    var job = window.location.pathname.split("/").pop();
    var index = Number(row.dataset.mapIndex);
    return "job-" + job + "-" + row.dataset.task + (index >= 0 ? "-" + index : "") +
      "-attempt-" + attempt + ".log";
  }

  function logUrl(base, attempt, offset) {
    var url = new URL(base, window.location.origin);
    url.searchParams.set("attempt", String(attempt));
    if (offset) url.searchParams.set("offset", String(offset));
    return url.pathname + url.search;
  }

  function element(tag, props, children) {
    var el = document.createElement(tag);
    Object.keys(props || {}).forEach(function (key) {
      if (key === "text") el.textContent = props[key];
      else if (key === "className") el.className = props[key];
      else el.setAttribute(key, props[key]);
    });
    (children || []).forEach(function (child) { el.append(child); });
    return el;
  }

  function attemptChoices(select, latest, chosen) {
    select.textContent = "";
    for (var n = latest; n >= 1; n--) {
      var option = element("option", { value: String(n), text: n === latest ? n + " (latest)" : String(n) });
      if (n === chosen) option.selected = true;
      select.append(option);
    }
  }

  function closeLog(restoreFocus) {
    if (!log) return;
    clearTimeout(log.timer);
    log.row.remove();
    var row = taskRow(log.key);
    var button = row && row.querySelector(".log-toggle");
    if (button) {
      button.setAttribute("aria-expanded", "false");
      if (restoreFocus) button.focus();
    }
    log = null;
  }

  function openLog(button) {
    var row = button.closest("tr");
    if (log && log.key === row.id) {
      closeLog(true);
      return;
    }
    closeLog(false);
    var latest = Number(button.dataset.attempts) || 1;
    var label = row.dataset.label;
    var title = element("h3", { id: "log-title", text: "Log of " + label });
    var select = element("select", { id: "log-attempt" });
    attemptChoices(select, latest, latest);
    var attemptField = element("div", { className: "field" }, [
      element("label", { for: "log-attempt", text: "Attempt" }),
      select,
    ]);
    var follow = element("input", { type: "checkbox", id: "log-follow" });
    follow.checked = true;
    var followField = element("label", { className: "check", for: "log-follow" }, [
      follow,
      document.createTextNode(" Keep scrolled to the end"),
    ]);
    var download = element("a", { className: "button small", href: "#", text: "Download" });
    var close = element("button", { type: "button", className: "small", text: "Close log" });
    var status = element("span", { className: "help log-status", role: "status" });
    var pre = element("pre", {
      className: "log-text",
      tabindex: "0",
      "aria-labelledby": "log-title",
    });
    var tools = element("div", { className: "log-tools" }, [
      title, attemptField, followField, download, close, status,
    ]);
    var cell = element("td", { colspan: String(row.children.length) }, [tools, pre]);
    var logRow = element("tr", { id: "log-row", className: "log-row" }, [cell]);
    row.after(logRow);
    button.setAttribute("aria-expanded", "true");
    button.setAttribute("aria-controls", "log-row");
    log = {
      key: row.id,
      base: button.dataset.log,
      latest: latest,
      attempt: latest,
      offset: 0,
      decoder: new TextDecoder(),
      timer: null,
      busy: false,
      row: logRow,
      pre: pre,
      select: select,
      follow: follow,
      status: status,
      download: download,
      generation: 0,
    };
    select.addEventListener("change", function () {
      showAttempt(Number(select.value));
    });
    follow.addEventListener("change", function () {
      if (follow.checked) pre.scrollTop = pre.scrollHeight;
    });
    close.addEventListener("click", function () { closeLog(true); });
    showAttempt(latest);
  }

  function showAttempt(attempt) {
    var l = log;
    clearTimeout(l.timer);
    l.timer = null;
    l.attempt = attempt;
    l.offset = 0;
    l.generation += 1;
    l.busy = false; // an answer still on its way for the attempt shown before is dropped
    l.decoder = new TextDecoder();
    l.pre.textContent = "";
    l.download.href = logUrl(l.base, attempt, 0);
    l.download.setAttribute("download", fileName(taskRow(l.key), attempt));
    attemptChoices(l.select, l.latest, attempt);
    l.select.parentNode.hidden = l.latest < 2;
    readLog(l);
  }

  async function readLog(l) {
    if (l !== log || l.busy) return;
    l.busy = true;
    l.timer = null;
    var generation = l.generation;
    var row = taskRow(l.key);
    // whether more may come: read once more after the task has ended, then stop
    var more = l.attempt === l.latest && rowActive(row);
    try {
      var response = await fetch(logUrl(l.base, l.attempt, l.offset), {
        credentials: "same-origin",
        headers: { Accept: "text/plain" },
      });
      if (!response.ok) {
        var detail = "";
        try {
          detail = (await response.json()).detail || "";
        } catch (exc) {
          detail = response.statusText;
        }
        throw new Error(detail || "HTTP " + response.status);
      }
      var data = await response.arrayBuffer();
      if (l !== log || generation !== l.generation) return;
      if (data.byteLength) {
        l.offset += data.byteLength;
        l.pre.append(document.createTextNode(l.decoder.decode(data, { stream: true })));
        if (l.follow.checked) l.pre.scrollTop = l.pre.scrollHeight;
      }
      if (more) {
        l.status.textContent = "Following the log: the task is " + row.dataset.state.replace(/_/g, " ") + ".";
      } else {
        l.status.textContent = (l.offset ? "" : "Nothing was logged. ") +
          (l.attempt === l.latest ? "The task has ended." : "An earlier attempt.");
      }
    } catch (exc) {
      l.status.textContent = "Could not read the log: " + (exc.message || exc);
      more = false;
    } finally {
      if (generation === l.generation) l.busy = false;
    }
    if (more && l === log && generation === l.generation) l.timer = setTimeout(function () { readLog(l); }, LOG_SECONDS * 1000);
  }

  /** After the tasks were refreshed: put the open log back under its row, and follow a
   *  new attempt if it was showing the latest. */
  function keepLog() {
    if (!log) return;
    var row = taskRow(log.key);
    if (!row) {
      closeLog(false);
      return;
    }
    var scroll = log.pre.scrollTop;
    row.after(log.row);
    log.pre.scrollTop = log.follow.checked ? log.pre.scrollHeight : scroll;
    var button = row.querySelector(".log-toggle");
    if (button) {
      button.setAttribute("aria-expanded", "true");
      button.setAttribute("aria-controls", "log-row");
    }
    var latest = Number(row.dataset.attempt) || log.latest;
    if (latest > log.latest) {
      var wasLatest = log.attempt === log.latest;
      log.latest = latest;
      if (wasLatest) showAttempt(latest);
      else attemptChoices(log.select, latest, log.attempt);
      log.select.parentNode.hidden = latest < 2;
    } else if (log.attempt === log.latest && !log.busy && !log.timer && rowActive(row)) {
      readLog(log); // the task runs again (or still): follow it
    }
  }

  function jobPage() {
    var controller = null;
    document.addEventListener("click", function (event) {
      var target = event.target.closest && event.target.closest("button, a.group-toggle");
      if (!target) return;
      if (target.classList.contains("group-toggle")) {
        event.preventDefault();
        toggleGroup(target, controller);
      } else if (target.classList.contains("log-toggle")) {
        openLog(target);
      }
    });
    document.addEventListener("keydown", function (event) {
      if (event.key === "Escape" && log && log.row.contains(document.activeElement)) {
        closeLog(true);
      }
    });
    controller = live("#job-live", {
      idle: "The job has ended, so the page stays as it is.",
      before: function (old) {
        var groups = {};
        old.querySelectorAll(".group-toggle").forEach(function (button) {
          groups[button.dataset.group] = button.getAttribute("aria-expanded") === "true";
        });
        if (log) log.row.remove();
        return groups;
      },
      after: function (fresh, groups) {
        fresh.querySelectorAll(".group-toggle").forEach(function (button) {
          if (button.dataset.group in groups) setGroup(button, groups[button.dataset.group]);
        });
        keepLog();
      },
    });
  }

  if (document.getElementById("jobs-results")) jobsList();
  if (document.getElementById("job-live")) jobPage();
  if (document.getElementById("dropbox-live")) {
    live("#dropbox-live", { idle: "The submission shown has ended, so the page stays as it is." });
  }
})();
