/* A drop-box group's page: the upload form sends each chosen file to the group's inputs/
 * or configs/ through the drop-box files API (PUT, one request a file, as the signed-in
 * user with the page's CSRF token), then shows the page again with the new files.
 * A file larger than the service reads in one request (max_request_bytes) is refused
 * before anything is sent, naming it.
 */
(function () {
  "use strict";

  function sizeText(bytes) {
    var units = [["GiB", 1 << 30], ["MiB", 1 << 20], ["KiB", 1 << 10]];
    for (var i = 0; i < units.length; i++) {
      if (bytes >= units[i][1]) return (bytes / units[i][1]).toFixed(1).replace(/\.0$/, "") + " " + units[i][0];
    }
    return bytes + " bytes";
  }

  async function put(form, folder, file) {
    var url = form.dataset.upload + encodeURIComponent(folder) + "/" + encodeURIComponent(file.name) +
      "?group=" + encodeURIComponent(form.dataset.group);
    var response;
    try {
      response = await fetch(url, {
        method: "PUT",
        credentials: "same-origin",
        headers: {
          "Content-Type": "application/octet-stream",
          "X-CSRF-Token": window.ferry.csrfToken(),
          Accept: "application/json",
        },
        body: file,
      });
    } catch (exc) {
      throw new Error(file.name + ": the service did not answer (" + exc.message + "); try again");
    }
    if (response.ok) return;
    var detail = "";
    try {
      var data = await response.json();
      detail = typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail);
    } catch (exc) {
      detail = response.statusText;
    }
    if (response.status === 401) detail = "your sign-in has ended: reload the page to sign in again";
    throw new Error(file.name + ": " + detail + " (HTTP " + response.status + ")");
  }

  function uploadForm(form) {
    var input = form.querySelector("#f-files");
    var error = form.querySelector("#f-files-error");
    var status = form.querySelector("#upload-status");
    var button = form.querySelector("button[type=submit]");

    function fail(message) {
      error.textContent = "Files: " + message;
      error.hidden = false;
      input.setAttribute("aria-invalid", "true");
      status.textContent = "";
    }

    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      error.hidden = true;
      input.removeAttribute("aria-invalid");
      var files = Array.prototype.slice.call(input.files || []);
      var folder = (form.querySelector("input[name=to]:checked") || {}).value || "inputs";
      if (!files.length) return fail("choose one or more files to upload");
      var most = Number(form.dataset.maxBytes);
      var large = files.filter(function (f) { return f.size > most; });
      if (large.length) {
        return fail(large.map(function (f) { return f.name + " has " + sizeText(f.size); }).join(", ") +
          ": at most " + sizeText(most) + " a file can be uploaded here (setting max_request_bytes); " +
          "copy larger files to the store with its own tools. Nothing was uploaded.");
      }
      button.disabled = true;
      var done = 0;
      try {
        for (var i = 0; i < files.length; i++) {
          status.textContent = "Uploading " + files[i].name + " (" + (i + 1) + " of " + files.length + ")…";
          await put(form, folder, files[i]);
          done += 1;
        }
      } catch (exc) {
        button.disabled = false;
        return fail(exc.message + (done ? " (" + done + " uploaded before it)" : ""));
      }
      status.textContent = "Uploaded " + done + " file(s) to " + folder + "/.";
      window.location.assign(form.dataset.page + "&uploaded=" + done + "&to=" + encodeURIComponent(folder));
    });
  }

  var form = document.getElementById("upload-form");
  if (form) uploadForm(form);
})();
