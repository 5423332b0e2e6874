/* neuroferry pages: plain JavaScript, no build step, no external resources.
 *
 *   ferry.api(method, path, body)      call the REST API as the signed-in user
 *   ferry.confirm(message, options)    ask in a <dialog>; resolves to true or false
 *   ferry.notice(message, kind, opts)  show a message in the page's notice region
 *   ferry.poll(url, seconds, onData, keepGoing)   fetch JSON every N s while it holds
 *   ferry.refresh(selector, seconds, keepGoing)   re-render a part of this page every N s
 *
 * And, for any page: <form data-confirm="Question?"> asks before it is sent (its buttons
 * say data-confirm-yes and data-confirm-no when given), and
 * <button data-copy="#selector"> copies that element's value or text.
 */
(function () {
  "use strict";

  /** The CSRF token of this page's session (from <meta name="csrf-token">). */
  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  /** An error answer of the API: `message` is its `detail`; `problems` lists
   *  `{job, row, field, message}` for a request that was not accepted. */
  function ApiError(status, detail, problems) {
    var error = new Error(detail);
    error.name = "ApiError";
    error.status = status;
    error.detail = detail;
    error.problems = problems || [];
    return error;
  }

  function detailText(detail) {
    if (Array.isArray(detail)) {
      // request validation: one line per field
      return detail
        .map(function (item) {
          var loc = (item.loc || []).slice(1).join(".") || "request";
          return loc + ": " + item.msg;
        })
        .join("; ");
    }
    return detail == null ? "" : String(detail);
  }

  /** Call the REST API as the signed-in user. `path` is under /api/v2 ("/jobs/12")
   *  unless it starts with "/api/". `body`: an object (sent as JSON), FormData (sent as
   *  a form, e.g. a file upload) or nothing. Resolves to the JSON answer (text for
   *  text answers, null for none); rejects with an ApiError. */
  async function api(method, path, body) {
    var url = path.indexOf("/api/") === 0 ? path : "/api/v2" + path;
    var headers = { Accept: "application/json" };
    var token = csrfToken();
    if (token) headers["X-CSRF-Token"] = token;
    var options = { method: method, headers: headers, credentials: "same-origin" };
    if (body instanceof FormData) {
      options.body = body;
    } else if (body !== undefined && body !== null) {
      headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    var response;
    try {
      response = await fetch(url, options);
    } catch (exc) {
      throw ApiError(0, "the service did not answer (" + exc.message + "); try again", []);
    }
    var type = response.headers.get("content-type") || "";
    var data = null;
    if (response.status !== 204) {
      data = type.indexOf("json") >= 0 ? await response.json().catch(function () {
        return null;
      }) : await response.text();
    }
    if (!response.ok) {
      var detail = data && typeof data === "object" ? detailText(data.detail) : String(data || "");
      if (response.status === 401) detail = "your sign-in has ended: reload the page to sign in again";
      throw ApiError(response.status, detail || response.statusText, data && data.problems);
    }
    return data;
  }

  /** Ask `message` in a modal <dialog>; resolves to true if confirmed. Options:
   *  `confirm` and `cancel` (button labels), `danger` (a red confirm button). */
  function confirmDialog(message, options) {
    options = options || {};
    if (typeof HTMLDialogElement === "undefined") {
      return Promise.resolve(window.confirm(message));
    }
    return new Promise(function (resolve) {
      var dialog = document.createElement("dialog");
      dialog.setAttribute("aria-labelledby", "ferry-dialog-message");
      var text = document.createElement("p");
      text.id = "ferry-dialog-message";
      text.className = "dialog-message";
      text.textContent = message;
      var buttons = document.createElement("div");
      buttons.className = "dialog-buttons";
      var cancel = document.createElement("button");
      cancel.type = "button";
      cancel.textContent = options.cancel || "Cancel";
      var ok = document.createElement("button");
      ok.type = "button";
      ok.className = options.danger === false ? "primary" : "danger";
      ok.textContent = options.confirm || "Yes";
      buttons.append(cancel, ok);
      dialog.append(text, buttons);
      document.body.append(dialog);
      var answered = false;
      function answer(value) {
        if (answered) return;
        answered = true;
        dialog.close();
        dialog.remove();
        resolve(value);
      }
      cancel.addEventListener("click", function () { answer(false); });
      ok.addEventListener("click", function () { answer(true); });
      dialog.addEventListener("cancel", function (event) {
        event.preventDefault();
        answer(false);
      });
      dialog.showModal();
      cancel.focus();
    });
  }

  /** Show `message` in the page's notice region (#notices, or `options.region`).
   *  `kind`: error (announced at once, role="alert"), warning, success or info.
   *  `options.problems`: [{job, row, field, message}] listed under it. Returns the box. */
  function notice(message, kind, options) {
    kind = kind || "error";
    options = options || {};
    var region = options.region || document.getElementById("notices") || document.body;
    var box = document.createElement("div");
    box.className = "notice notice-" + kind;
    box.setAttribute("role", kind === "error" ? "alert" : "status");
    var dismiss = document.createElement("button");
    dismiss.type = "button";
    dismiss.className = "small dismiss";
    dismiss.textContent = "Dismiss";
    dismiss.addEventListener("click", function () { box.remove(); });
    var text = document.createElement("p");
    text.textContent = message;
    box.append(dismiss, text);
    var problems = options.problems || [];
    if (problems.length) {
      var list = document.createElement("ul");
      list.className = "problems";
      problems.forEach(function (p) {
        var item = document.createElement("li");
        var where = ["job", "row", "field"]
          .filter(function (k) { return p[k] !== undefined && p[k] !== null; })
          .map(function (k) { return k + " " + p[k]; })
          .join(", ");
        item.textContent = (where ? where + ": " : "") + (p.message || "");
        list.append(item);
      });
      box.append(list);
    }
    region.append(box);
    box.scrollIntoView({ block: "nearest" });
    return box;
  }

  /** Remove every notice from the region (#notices by default). */
  function clearNotices(region) {
    (region || document.getElementById("notices") || document.body)
      .querySelectorAll(".notice")
      .forEach(function (box) { box.remove(); });
  }

  function repeat(step, seconds) {
    var stopped = false;
    var timer = null;
    async function tick() {
      if (stopped) return;
      var again = true;
      if (!document.hidden) {
        try {
          again = await step();
        } catch (exc) {
          notice(exc.message || String(exc), "error");
          again = false;
        }
      }
      if (again && !stopped) timer = setTimeout(tick, seconds * 1000);
    }
    timer = setTimeout(tick, seconds * 1000);
    return function stop() {
      stopped = true;
      clearTimeout(timer);
    };
  }

  /** Every `seconds` (while the tab is visible), GET `url` from the API (as ferry.api)
   *  and call `onData(data)`, for as long as `keepGoing(data)` is true. Returns stop(). */
  function poll(url, seconds, onData, keepGoing) {
    return repeat(async function () {
      var data = await api("GET", url);
      onData(data);
      return keepGoing ? Boolean(keepGoing(data)) : true;
    }, seconds);
  }

  /** Every `seconds`, fetch this page again and replace the element `selector` with its
   *  new version, for as long as `keepGoing(newElement)` is true (e.g. while it says jobs
   *  run: `el => el.dataset.active === "true"`). Skips a round while focus is inside the
   *  element, so that keyboard users do not lose their place. Returns stop(). */
  function refresh(selector, seconds, keepGoing) {
    return repeat(async function () {
      var current = document.querySelector(selector);
      if (!current) return false;
      if (current.contains(document.activeElement) && document.activeElement !== document.body) {
        return true;
      }
      var response = await fetch(location.href, { credentials: "same-origin" });
      if (!response.ok) throw new Error("could not refresh the page (HTTP " + response.status + ")");
      var page = new DOMParser().parseFromString(await response.text(), "text/html");
      var fresh = page.querySelector(selector);
      if (!fresh) return false;
      current.replaceWith(document.importNode(fresh, true));
      return keepGoing ? Boolean(keepGoing(document.querySelector(selector))) : true;
    }, seconds);
  }

  async function copy(button) {
    var target = document.querySelector(button.getAttribute("data-copy"));
    if (!target) return;
    var text = "value" in target ? target.value : target.textContent;
    try {
      await navigator.clipboard.writeText(text);
    } catch (exc) {
      if (target.select) target.select();
      document.execCommand("copy");
    }
    var label = button.textContent;
    button.textContent = "Copied";
    setTimeout(function () { button.textContent = label; }, 2000);
  }

  // Delegated, so that parts replaced by ferry.refresh keep working.
  document.addEventListener("submit", async function (event) {
    var form = event.target;
    var question = form.getAttribute && form.getAttribute("data-confirm");
    if (!question || form.dataset.confirmed === "yes") return;
    event.preventDefault();
    var options = {
      danger: form.dataset.confirmDanger !== "false",
      confirm: form.dataset.confirmYes, // the buttons' labels, if the form names them
      cancel: form.dataset.confirmNo,
    };
    if (await confirmDialog(question, options)) {
      form.dataset.confirmed = "yes";
      form.requestSubmit(event.submitter || undefined);
      delete form.dataset.confirmed;
    }
  });

  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-copy]");
    if (button) copy(button);
  });

  window.ferry = {
    api: api,
    ApiError: ApiError,
    confirm: confirmDialog,
    notice: notice,
    clearNotices: clearNotices,
    poll: poll,
    refresh: refresh,
    csrfToken: csrfToken,
  };
})();
