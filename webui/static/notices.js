/* pbx-crm notices: messages shown where the user looks, whatever the scroll.

   window.pbxCrmNotify(text, kind) shows a short message in the fixed #notices box (kind
   "error" stays longer and is announced at once); the board uses it for a refused move whose
   card is not on the page. Click-to-call forms (POST /deals/<id>/call) are sent in the
   background: the answer, "your phone rings now" or why the call was not placed, is written
   next to the button, in the user's language (the server words it). A task that falls due
   (the stream's "task_due" event, handed over by static/screenpop.js as a "pbx-crm:task-due"
   DOM event) gets a notice with a link to its deal that stays until closed, across pages of
   this tab (sessionStorage). Texts are only ever set as text; the words of this script come
   from #notices' data-t-* attributes. No build step. */
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

  // options: link {href, text} after the text; sticky (stays until closed); onClose.
  function notify(text, kind, options) {
    options = options || {};
    var note = document.createElement("p");
    note.className = "notice " + (kind || "info");
    note.setAttribute("role", kind === "error" ? "alert" : "status");
    var line = document.createElement("span");
    line.textContent = text;
    if (options.link) {
      var link = document.createElement("a");
      link.className = "notice-link";
      link.href = options.link.href;
      link.textContent = options.link.text;
      line.appendChild(document.createTextNode(" "));
      line.appendChild(link);
    }
    note.appendChild(line);
    var close = document.createElement("button");
    close.type = "button";
    close.className = "notice-close";
    close.textContent = "×";
    close.setAttribute("aria-label", words.tClose);
    close.addEventListener("click", function () {
      note.remove();
      if (options.onClose) { options.onClose(); }
    });
    note.appendChild(close);
    box.appendChild(note);
    while (box.children.length > MAX_NOTICES) { box.firstElementChild.remove(); }
    if (!options.sticky) {
      window.setTimeout(function () { note.remove(); }, kind === "error" ? ERROR_MS : SHOW_MS);
    }
    return note;
  }
  window.pbxCrmNotify = notify;

  // --- task reminders ------------------------------------------------------------------

  var REMINDERS = "pbx_crm.reminders";

  function reminders() {
    try { return JSON.parse(window.sessionStorage.getItem(REMINDERS)) || []; }
    catch (e) { return []; }
  }

  function keepReminders(list) {
    try { window.sessionStorage.setItem(REMINDERS, JSON.stringify(list)); } catch (e) { /* off */ }
  }

  function fill(template, values) {
    return Object.keys(values).reduce(function (text, name) {
      return text.split("{" + name + "}").join(values[name]);
    }, String(template || ""));
  }

  // The task as the pages name it: a callback task by its number and missed calls.
  function taskTitle(task) {
    if (task.task_kind === "callback" && task.phone) {
      var missed = Number(task.missed_calls || 1);
      // The plural form was rendered with NUM_MARK for its count (see _notices.html).
      return missed > 1 ? fill(words.tCallBackMissed, {number: task.phone})
        .split(words.numMark).join(String(missed)) : fill(words.tCallBack, {number: task.phone});
    }
    return task.title || "";
  }

  function dueTime(task) {
    if (!task.due_at || !window.Intl) { return ""; }
    try {
      return new Intl.DateTimeFormat(words.locale || undefined, {
        dateStyle: "medium", timeStyle: "short", timeZone: words.timeZone || undefined
      }).format(new Date(task.due_at));
    } catch (e) { return ""; }
  }

  function showReminder(task) {
    var text = fill(words.tTaskDue, {title: taskTitle(task)});
    var due = dueTime(task);
    if (due) { text += " · " + due; }
    var linkText = "#" + task.deal_id + (task.deal_title ? " " + task.deal_title : "");
    var note = notify(text, "reminder", {
      sticky: true,
      link: {href: "/deals/" + encodeURIComponent(task.deal_id), text: linkText},
      onClose: function () {
        keepReminders(reminders().filter(function (kept) { return kept.task_id !== task.task_id; }));
      }
    });
    note.dataset.taskId = task.task_id;
  }

  document.addEventListener("pbx-crm:task-due", function (event) {
    var task = event.detail || {};
    if (!task.deal_id || box.querySelector('.notice[data-task-id="' + Number(task.task_id) + '"]')) {
      return;
    }
    keepReminders(reminders().filter(function (kept) { return kept.task_id !== task.task_id; })
      .concat([task]).slice(-MAX_NOTICES));
    showReminder(task);
  });
  reminders().forEach(showReminder);
  document.querySelectorAll("form.logout").forEach(function (logout) {
    logout.addEventListener("submit", function () {
      try { window.sessionStorage.removeItem(REMINDERS); } catch (e) { /* off */ }
    });
  });

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
