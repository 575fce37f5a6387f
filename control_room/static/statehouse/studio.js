/*
 * The Studio's JSON fields ([data-json-field]): while typing, a value that is not JSON
 * is said under the field (the server checks the value against the graph's schema and
 * says every error when the form is sent).
 */
(function () {
  "use strict";
  Array.prototype.forEach.call(document.querySelectorAll("[data-json-field]"), function (field) {
    var note = document.getElementById(field.getAttribute("data-json-note"));
    if (!note) return;
    function check() {
      var text = field.value.trim();
      var problem = "";
      if (text) {
        try {
          JSON.parse(text);
        } catch (error) {
          problem = "Not JSON yet: " + error.message;
        }
      }
      note.textContent = problem;
      note.hidden = !problem;
      if (problem) field.setAttribute("aria-invalid", "true");
      else if (!field.hasAttribute("data-server-errors")) field.removeAttribute("aria-invalid");
    }
    field.addEventListener("input", check);
  });
})();
