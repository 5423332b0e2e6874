/* The job type editor: says while one types whether the settings are valid JSON (the
 * service checks the rest when saving), and formats them on request. */
(function () {
  "use strict";

  function lineOf(text, position) {
    return text.slice(0, position).split("\n").length;
  }

  function watch(area) {
    var status = document.querySelector(area.getAttribute("data-json-editor"));
    var timer = null;
    function check() {
      if (!status) return;
      var text = area.value;
      try {
        var value = JSON.parse(text);
        if (value === null || typeof value !== "object" || Array.isArray(value)) {
          status.textContent = "The settings must be an object: { \"task\": {…} }.";
          status.classList.add("error");
        } else {
          var tasks = Object.keys(value).length;
          status.textContent = "Valid JSON: " + tasks + (tasks === 1 ? " task" : " tasks") +
            ". The settings themselves are checked when you save.";
          status.classList.remove("error");
        }
      } catch (exc) {
        var match = /position (\d+)/.exec(exc.message);
        var where = match ? " (line " + lineOf(text, Number(match[1])) + ")" : "";
        status.textContent = "Not valid JSON yet" + where + ": " + exc.message;
        status.classList.add("error");
      }
    }
    area.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(check, 300);
    });
    check();
  }

  document.querySelectorAll("textarea[data-json-editor]").forEach(watch);

  document.querySelectorAll("[data-format-json]").forEach(function (button) {
    var area = document.querySelector(button.getAttribute("data-format-json"));
    if (!area) return;
    button.hidden = false;
    button.addEventListener("click", function () {
      try {
        area.value = JSON.stringify(JSON.parse(area.value), null, 2);
        area.dispatchEvent(new Event("input"));
      } catch (exc) {
        window.ferry.notice("The settings are not valid JSON, so they cannot be formatted: " +
          exc.message);
      }
      area.focus();
    });
  });
})();
