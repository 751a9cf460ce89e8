/* pbx-crm screen-pops: one EventSource on /events per page. A ringing call shows a card, one
   line per fact: the caller's name (when it is not just the number), the number once (or
   "Number withheld"), the deal the CRM has for the call (for a new caller, the Unsorted deal it
   opened), and how the call goes. "Create a deal" is offered only for a number the CRM opened
   no deal for; a withheld caller has nothing to create. "answered" marks who answered;
   "call_ended" / "stopped_ringing" end the card, which then fades after a short while
   (answered calls a little later than missed ones) or can be dismissed. At most MAX_POPS
   cards are shown, the oldest ended one going first; the box sits below the header. A
   "ringing" marked "update" completes a card already shown (the deal the CRM opened after
   the phone started ringing) and never opens one. All words come translated from the
   #screenpops element's data-t-* attributes; call data is only ever set as text. The last
   event id and the open cards live in sessionStorage, so moving to another page neither
   loses a pop nor shows one twice. When the session ends (signed out in another tab,
   deactivated, a new password) the stream's last message is "signed_out": the cards go, the
   stream stops reconnecting, and a note offers to sign in again. A reconnect refused (the
   database not answering, say) gets a note that pops are paused, and the page reconnects by
   itself, less often each time; the note goes once the stream is back. A pop whose deal the
   user may open offers "Add a task" for it (POST /tasks, answered in JSON in the user's
   language, the answer shown in the pop); an ended pop does not fade while its task form is
   open. A later event of the call that hides the deal (another seller answered and owns it
   now) takes the link and "Add a task" away. A "task_due" event is handed to
   static/notices.js as a "pbx-crm:task-due" DOM event. No build step. */
(function () {
  "use strict";
  var FADE_ANSWERED_MS = 8000;  // an answered call's card stays this long after it ended
  var FADE_MISSED_MS = 4000;  // a missed (or stopped) one, this long
  var FADING_MS = 600;  // the fade itself (.pop-fading in app.css)
  var MAX_POPS = 3;
  // A stream refused reconnects after this long, doubled each time up to RETRY_MAX_MS.
  var RETRY_FIRST_MS = 3000;
  var RETRY_MAX_MS = 60000;
  // A pop the AMI listener showed before the CRM recorded the call ("recorded": false) may
  // learn, a moment later, the deal the CRM opens for it: "Create a deal" waits this long.
  var CREATE_DELAY_MS = 2500;
  // Statuses whose number the CRM has no deal for, and could open one.
  var CREATABLE = {NEW: true, UNKNOWN: true, FOUND: true};
  var box = document.getElementById("screenpops");
  if (!box || !window.EventSource) { return; }
  var words = box.dataset;
  var LAST_ID = "pbx_crm.lastEventId";
  var CARDS = "pbx_crm.screenpops";
  var calls = {};  // linkedid -> {data, state, answeredBy, seq, endedAt}
  var timers = {};  // linkedid -> the timeout that fades its card
  var taskForms = {};  // linkedid -> its "Add a task" block, kept across redraws (typed text)
  var held = {};  // linkedid -> true while its task form is open: the card does not fade
  var seq = 0;
  var main = document.querySelector("main");
  var csrf = main ? main.dataset.csrf : "";

  function stored(key, fallback) {
    try { return JSON.parse(window.sessionStorage.getItem(key)) || fallback; }
    catch (e) { return fallback; }
  }

  function store(key, value) {
    try { window.sessionStorage.setItem(key, JSON.stringify(value)); } catch (e) { /* full */ }
  }

  function element(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  function fill(template, name, value) {
    return template.replace("{" + name + "}", value);
  }

  function digits(text) { return String(text || "").replace(/[^0-9]/g, ""); }

  function withheld(data) {
    // ANONYMOUS, or what a trunk sends for no number ("anonymous", "unknown", nothing).
    return data.status === "ANONYMOUS" || !digits(data.caller);
  }

  function cardOf(linkedid) {
    return box.querySelector('[data-linkedid="' + CSS.escape(linkedid) + '"]');
  }

  function render(linkedid) {
    var call = calls[linkedid];
    var card = cardOf(linkedid);
    if (!call) { if (card) { card.remove(); } return; }
    if (!card) {
      card = element("section", "pop");
      card.dataset.linkedid = linkedid;
      box.prepend(card);
    }
    card.replaceChildren();
    var data = call.data;
    card.dataset.state = call.state;
    card.dataset.status = data.status || "";
    var hidden = withheld(data);
    card.appendChild(element("p", "pop-kind", words.tRinging));
    if (!hidden && (data.status === "NEW" || data.status === "UNKNOWN")) {
      card.appendChild(element("p", "pop-new", words.tNewCaller));
    }
    var name = data.caller_name || data.contact_name || "";
    if (name && digits(name) !== digits(data.caller)) {  // a name, not the number again
      card.appendChild(element("p", "pop-name", name));
    }
    card.appendChild(element("p", "pop-caller", hidden ? words.tNoNumber : data.caller));
    if (data.deal_id) {
      var title = data.deal_title || "";
      if (data.status === "NEW") {
        title = words.tNewDeal;  // the one the CRM opened for this call
      } else if (!title || (digits(data.caller) && digits(title).indexOf(digits(data.caller)) >= 0)) {
        title = fill(words.tDealNumber, "id", data.deal_id);  // "Call from <the number>"
      }
      var link = element("a", "pop-deal", title);
      link.href = "/deals/" + encodeURIComponent(data.deal_id);
      card.appendChild(link);
      card.appendChild(taskForm(linkedid, data.deal_id));
    } else if (data.deal_hidden) {
      card.appendChild(element("p", "pop-note", words.tOtherSeller));
    } else if (!hidden && CREATABLE[data.status] && createLater(linkedid)) {
      var create = element("a", "button primary pop-create", words.tCreate);
      var query = new URLSearchParams({phone: data.caller,
                                       title: fill(words.tCallFrom, "number", data.caller)});
      if (data.caller_name) { query.set("contact_name", data.caller_name); }
      create.href = "/deals/new?" + query.toString();
      card.appendChild(create);
    }
    var state = {ringing: "", answered: words.tAnswered, stopped: words.tStopped,
                 ended: words.tEnded}[call.state] || "";
    if (call.answeredBy) { state = fill(words.tAnsweredBy, "name", call.answeredBy); }
    if (state) { card.appendChild(element("p", "pop-state", state)); }
    if (call.state === "ended" && call.answeredBy) {
      card.appendChild(element("p", "pop-state", words.tEnded));
    }
    if (ended(call)) {
      var dismiss = element("button", "pop-dismiss", words.tDismiss);
      dismiss.type = "button";
      dismiss.addEventListener("click", function () { forgetCall(linkedid); });
      card.appendChild(dismiss);
      fadeLater(linkedid);
    }
  }

  function field(type, name, label) {
    var input = element("input", "pop-task-" + name);
    input.type = type;
    input.name = name;
    input.setAttribute("aria-label", label);
    input.title = label;
    return input;
  }

  // "Add a task" for the pop's deal: a button that opens a short form, and the answer.
  function taskForm(linkedid, dealId) {
    var block = taskForms[linkedid];
    if (block && block.dataset.dealId === String(dealId)) { return block; }
    block = element("div", "pop-task");
    block.dataset.dealId = dealId;
    var open = element("button", "pop-task-open", words.tAddTask);
    open.type = "button";
    var form = element("form", "pop-task-form");
    form.hidden = true;
    var title = field("text", "title", words.tTaskTitle);
    title.placeholder = words.tTaskTitle;
    title.required = true;
    title.maxLength = 200;
    form.appendChild(title);
    form.appendChild(field("date", "due", words.tDue));
    form.appendChild(field("time", "due_time", words.tTime));
    var save = element("button", "pop-task-save", words.tSave);
    save.type = "submit";
    var cancel = element("button", "pop-task-cancel", words.tCancel);
    cancel.type = "button";
    form.appendChild(save);
    form.appendChild(cancel);
    var answer = element("p", "pop-task-answer");
    answer.setAttribute("role", "status");
    block.appendChild(open);
    block.appendChild(form);
    block.appendChild(answer);

    function show(on) {
      form.hidden = !on;
      open.hidden = on;
      if (on) { hold(linkedid); title.focus(); } else { release(linkedid); }
    }
    open.addEventListener("click", function () { answer.textContent = ""; show(true); });
    cancel.addEventListener("click", function () { show(false); });
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var body = new FormData(form);
      body.append("csrf_token", csrf);
      body.append("deal_id", dealId);
      save.disabled = true;
      fetch("/tasks", {
        method: "POST", body: body, credentials: "same-origin",
        headers: {"Accept": "application/json", "X-CSRF-Token": csrf}
      }).then(function (response) {
        return response.json();
      }).then(function (payload) {
        if (payload.ok) {
          answer.className = "pop-task-answer ok";
          answer.textContent = fill(words.tTaskAdded, "title", payload.task.title);
          form.reset();
          show(false);
        } else {
          answer.className = "pop-task-answer error";
          answer.textContent = payload.error || words.tUnreachable;
        }
      }).catch(function () {
        answer.className = "pop-task-answer error";
        answer.textContent = words.tUnreachable;
      }).then(function () { save.disabled = false; });
    });
    taskForms[linkedid] = block;
    return block;
  }

  // An open task form keeps its card; once closed, an ended card fades as usual from then.
  function hold(linkedid) {
    held[linkedid] = true;
    window.clearTimeout(timers[linkedid]);
    delete timers[linkedid];
    var card = cardOf(linkedid);
    if (card) { card.classList.remove("pop-fading"); }
  }

  function release(linkedid) {
    delete held[linkedid];
    var call = calls[linkedid];
    if (call && ended(call)) {
      call.endedAt = Date.now();
      save();
      fadeLater(linkedid);
    }
  }

  // True when "Create a deal" may show now; else the card is drawn again when it may.
  function createLater(linkedid) {
    var call = calls[linkedid];
    var wait = call.data.recorded === false
      ? CREATE_DELAY_MS - (Date.now() - (call.seq || 0)) : 0;
    if (wait <= 0) { return true; }
    window.setTimeout(function () { if (calls[linkedid]) { render(linkedid); } }, wait);
    return false;
  }

  function ended(call) { return call.state === "ended" || call.state === "stopped"; }

  function forgetCall(linkedid) {
    window.clearTimeout(timers[linkedid]);
    delete timers[linkedid];
    delete taskForms[linkedid];
    delete held[linkedid];
    delete calls[linkedid];
    save();
    render(linkedid);
  }

  // An ended card fades: answered calls after FADE_ANSWERED_MS, the others sooner. The time
  // counts from the end, across pages (endedAt is stored with the card).
  function fadeLater(linkedid) {
    var call = calls[linkedid];
    if (timers[linkedid] || !call || held[linkedid]) { return; }
    if (!call.endedAt) { call.endedAt = Date.now(); save(); }
    var wait = (call.answeredBy ? FADE_ANSWERED_MS : FADE_MISSED_MS) - (Date.now() - call.endedAt);
    timers[linkedid] = window.setTimeout(function () {
      var card = cardOf(linkedid);
      if (card) { card.classList.add("pop-fading"); }
      timers[linkedid] = window.setTimeout(function () { forgetCall(linkedid); }, FADING_MS);
    }, Math.max(0, wait));
  }

  // At most MAX_POPS cards: the oldest ended one goes first, then the oldest.
  function keepFew() {
    var ids = Object.keys(calls);
    while (ids.length > MAX_POPS) {
      var byAge = ids.slice().sort(function (a, b) {
        return (calls[a].seq || 0) - (calls[b].seq || 0);
      });
      var done = byAge.filter(function (id) { return ended(calls[id]); });
      var gone = done.length ? done[0] : byAge[0];
      forgetCall(gone);
      ids = Object.keys(calls);
    }
  }

  function save() { store(CARDS, calls); }

  function forget() {
    try {
      window.sessionStorage.removeItem(CARDS);
      window.sessionStorage.removeItem(LAST_ID);
    } catch (e) { /* storage off */ }
  }

  function note(text, label, href) {
    if (box.querySelector(".pop-stopped")) { return; }
    var card = element("section", "pop pop-stopped");
    card.setAttribute("role", "alert");
    card.appendChild(element("p", "pop-note", text));
    var link = element("a", "button primary", label);
    link.href = href;
    card.appendChild(link);
    box.prepend(card);
  }

  function here() { return window.location.pathname + window.location.search; }

  function signedOut() {
    signedOff = true;
    source.close();  // else it would reconnect, be sent to the sign-in page, and fail quietly
    forget();
    Object.keys(timers).forEach(function (id) { window.clearTimeout(timers[id]); });
    timers = {};
    calls = {};
    box.replaceChildren();
    note(words.tSignedOut, words.tSignIn, "/login?next=" + encodeURIComponent(here()));
  }

  function streamLost() {
    // The cards stay, and so does what sessionStorage holds: the page may be going away.
    note(words.tStreamLost, words.tReload, here());
    var shown = box.querySelector(".pop-stopped");
    if (shown) { shown.classList.add("pop-lost"); }
  }

  function connect() {
    // The last event this tab received, else where this page's stream starts.
    var last = stored(LAST_ID, null) || words.position;
    source = new EventSource("/events" +
                             (last ? "?last_event_id=" + encodeURIComponent(last) : ""));
    ["ringing", "answered", "stopped_ringing", "call_ended"].forEach(function (kind) {
      source.addEventListener(kind, function (event) { handle(kind, event); });
    });
    source.addEventListener("signed_out", signedOut);
    // A task fallen due: static/notices.js shows it (with its deal).
    source.addEventListener("task_due", function (event) {
      var data;
      try { data = JSON.parse(event.data); } catch (e) { return; }
      if (event.lastEventId) { store(LAST_ID, event.lastEventId); }
      document.dispatchEvent(new CustomEvent("pbx-crm:task-due", {detail: data}));
    });
    source.addEventListener("open", function () {
      retryMs = RETRY_FIRST_MS;
      var lost = box.querySelector(".pop-lost");
      if (lost) { lost.remove(); }
    });
    // A reconnect refused (the database not answering, a proxy's error page, the sign-in
    // page when the session ended while the stream was down): the browser gives up, so the
    // page says pops are paused and tries again itself, less often each time.
    source.addEventListener("error", function () {
      if (source.readyState !== EventSource.CLOSED || signedOff) { return; }
      streamLost();
      window.setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
    });
  }

  function handle(kind, event) {
    var data;
    try { data = JSON.parse(event.data); } catch (e) { return; }
    if (event.lastEventId) { store(LAST_ID, event.lastEventId); }
    var linkedid = data.linkedid;
    if (!linkedid) { return; }
    var call = calls[linkedid];
    if (kind === "ringing" && data.update) {
      if (!call) { return; }  // completes a card shown, never opens one
      call.data = data;
    } else if (kind === "ringing") {
      calls[linkedid] = call = call || {state: "ringing", seq: Date.now() + (seq++ / 1000)};
      call.data = data;
    } else if (!call) {
      return;  // the end of a call this browser never showed
    } else if (kind === "answered") {
      if (call.state !== "ended") { call.state = "answered"; }  // a late answer reopens nothing
      call.answeredBy = data.answered_by || data.extension || "";
    } else if (kind === "stopped_ringing") {
      if (call.state === "ringing") { call.state = "stopped"; }
    } else if (kind === "call_ended") {
      call.state = "ended";
    }
    if (kind !== "ringing" && data.deal_hidden && call.data.deal_id) {
      // The deal went to another seller (their answer took the Unsorted deal): the server
      // no longer names it to this user, so the card no longer links to it nor offers a task.
      call.data.deal_id = null;
      call.data.deal_title = null;
      call.data.contact_name = null;
      call.data.deal_hidden = true;
      delete taskForms[linkedid];
      if (held[linkedid]) { release(linkedid); }
    } else if (kind !== "ringing" && data.deal_id && !call.data.deal_id) {
      // The deal the CRM opened for this call, named by how the call went on.
      call.data.deal_id = data.deal_id;
      call.data.deal_title = data.deal_title;
      call.data.deal_hidden = data.deal_hidden;
    }
    save();
    render(linkedid);
    keepFew();
  }

  calls = stored(CARDS, {});
  Object.keys(calls).sort(function (a, b) {
    return (calls[a].seq || 0) - (calls[b].seq || 0);  // the newest ends on top
  }).forEach(render);
  keepFew();
  var source = null;
  var retryMs = RETRY_FIRST_MS;
  var signedOff = false;
  connect();
  window.addEventListener("pagehide", function () { signedOff = true; source.close(); });
  // The next user of this tab sees none of these pops.
  document.querySelectorAll("form.logout").forEach(function (logout) {
    logout.addEventListener("submit", forget);
  });
}());
