/* The Submit page: a spreadsheet is checked as soon as it is chosen (or dropped on the
 * upload box), and the preview below is replaced by the server's, without leaving the page.
 * Without JavaScript the "Check the file" button does the same with a page load. */
(function () {
  "use strict";

  var form = document.getElementById("upload-form");
  if (!form) return;
  var input = form.querySelector('input[type="file"]');
  var status = document.getElementById("check-status");
  var checking = false;

  function say(text) {
    if (status) status.textContent = text;
  }

  async function check() {
    if (checking || !input.files || !input.files.length) return;
    checking = true;
    var file = input.files[0];
    say("Checking " + file.name + "…");
    form.setAttribute("aria-busy", "true");
    try {
      var response = await fetch(form.action, {
        method: "POST",
        body: new FormData(form),
        credentials: "same-origin",
        headers: { "X-CSRF-Token": window.ferry.csrfToken(), Accept: "text/html" },
      });
      if (response.redirected && response.url.indexOf("/sign-in") >= 0) {
        location.href = response.url;
        return;
      }
      var page = new DOMParser().parseFromString(await response.text(), "text/html");
      var fresh = page.getElementById("preview");
      if (!fresh) {
        var reason = page.querySelector(".notice-error p");
        throw new Error(reason ? reason.textContent : "HTTP " + response.status);
      }
      document.getElementById("preview").replaceWith(document.importNode(fresh, true));
      say(fresh.getAttribute("data-summary") || "Checked " + file.name + ".");
    } catch (exc) {
      say("");
      window.ferry.notice("The file could not be checked: " + (exc.message || exc) + ". Try again.");
    } finally {
      checking = false;
      form.removeAttribute("aria-busy");
    }
  }

  input.addEventListener("change", check);
  form.addEventListener("submit", function (event) {
    event.preventDefault(); // stay on the page, with the chosen file
    check();
  });

  // "View JSON" opens the job's JSON in a dialog instead of inside its table cell
  document.addEventListener("click", function (event) {
    var summary = event.target.closest && event.target.closest("#preview .json-view > summary");
    if (!summary || typeof HTMLDialogElement === "undefined") return;
    event.preventDefault();
    var details = summary.parentElement;
    var dialog = document.createElement("dialog");
    dialog.className = "json-dialog";
    dialog.setAttribute("aria-labelledby", "json-dialog-title");
    var title = document.createElement("h2");
    title.id = "json-dialog-title";
    title.textContent = details.getAttribute("data-title") || "JSON";
    var text = details.querySelector("pre").cloneNode(true);
    text.id = "json-dialog-text";
    var buttons = document.createElement("div");
    buttons.className = "dialog-buttons";
    var copy = document.createElement("button");
    copy.type = "button";
    copy.textContent = "Copy";
    copy.setAttribute("data-copy", "#json-dialog-text");
    var close = document.createElement("button");
    close.type = "button";
    close.className = "primary";
    close.textContent = "Close";
    close.addEventListener("click", function () { dialog.close(); });
    buttons.append(copy, close);
    dialog.append(title, text, buttons);
    dialog.addEventListener("close", function () {
      dialog.remove();
      summary.focus();
    });
    document.body.append(dialog);
    dialog.showModal();
    close.focus();
  });

  ["dragenter", "dragover"].forEach(function (name) {
    form.addEventListener(name, function (event) {
      event.preventDefault();
      form.classList.add("dragging");
    });
  });
  ["dragleave", "dragend"].forEach(function (name) {
    form.addEventListener(name, function () { form.classList.remove("dragging"); });
  });
  form.addEventListener("drop", function (event) {
    event.preventDefault();
    form.classList.remove("dragging");
    var files = event.dataTransfer && event.dataTransfer.files;
    if (files && files.length) {
      input.files = files;
      check();
    }
  });
})();
