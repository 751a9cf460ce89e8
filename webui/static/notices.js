/* pbx-crm notices: messages shown where the user looks, whatever the scroll.

   window.pbxCrmNotify(text, kind) shows a short message in the fixed #notices box (kind
   "error" stays longer and is announced at once); the board uses it for a refused move whose
   card is not on the page. Click-to-call forms (POST /deals/<id>/call) are sent in the
   background: the answer, "your phone rings now" or why the call was not placed, is written
   next to the button, in the user's language (the server words it). Texts are only ever set
   as text; the words of this script come from #notices' data-t-* attributes. No build step. */
(function () {
  "use strict";
  var box = document.getElementById("notices");
  if (!box) { return; }
  var words = box.dataset;
  var SHOW_MS = 8000;  // an ordinary notice
  var ERROR_MS = 15000;  // a refusal
  var MAX_NOTICES = 3;
  var main = document.querySelector("main");
  var csrf = main ? main.dataset.csrf : "";

  function notify(text, kind) {
    var note = document.createElement("p");
    note.className = "notice " + (kind || "info");
    note.setAttribute("role", kind === "error" ? "alert" : "status");
    var line = document.createElement("span");
    line.textContent = text;
    note.appendChild(line);
    var close = document.createElement("button");
    close.type = "button";
    close.className = "notice-close";
    close.textContent = "×";
    close.setAttribute("aria-label", words.tClose);
    close.addEventListener("click", function () { note.remove(); });
    note.appendChild(close);
    box.appendChild(note);
    while (box.children.length > MAX_NOTICES) { box.firstElementChild.remove(); }
    window.setTimeout(function () { note.remove(); }, kind === "error" ? ERROR_MS : SHOW_MS);
    return note;
  }
  window.pbxCrmNotify = notify;

  // The message next to a Call button: one per form, replaced by the next click's.
  function callStatus(form, text, kind) {
    var status = form.nextElementSibling;
    if (!status || !status.classList.contains("call-status")) {
      status = document.createElement("p");
      form.parentNode.insertBefore(status, form.nextSibling);
    }
    status.className = "call-status " + kind;
    status.setAttribute("role", kind === "error" ? "alert" : "status");
    status.textContent = text;
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!window.fetch || !form.matches || !form.matches('form[action$="/call"]')) { return; }
    event.preventDefault();
    var button = form.querySelector("button[type=submit]");
    if (button) { button.disabled = true; }
    fetch(form.action, {
      method: "POST", body: new FormData(form), credentials: "same-origin",
      headers: {"Accept": "application/json", "X-CSRF-Token": csrf}
    }).then(function (response) {
      return response.json();
    }).then(function (payload) {
      if (payload.ok) { callStatus(form, payload.message, "ok"); }
      else { callStatus(form, payload.error || words.tUnreachable, "error"); }
    }).catch(function () {
      callStatus(form, words.tUnreachable, "error");
    }).then(function () {
      if (button) { button.disabled = false; }
    });
  });
}());
