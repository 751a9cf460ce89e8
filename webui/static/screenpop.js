/* pbx-crm screen-pops: one EventSource on /events per page. A ringing call shows a card
   (the caller's deal, or a "new caller" card with a quick-create link); "answered" marks who
   answered; "call_ended" / "stopped_ringing" let the card be dismissed. All words come
   translated from the #screenpops element's data-t-* attributes; call data is only ever set
   as text. The last event id and the open cards live in sessionStorage, so moving to
   another page neither loses a pop nor shows one twice. When the session ends (signed out
   in another tab, deactivated, a new password) the stream's last message is "signed_out":
   the cards go, the stream stops reconnecting, and a note offers to sign in again. A
   reconnect refused for good gets a note to reload the page. No build step. */
(function () {
  "use strict";
  var box = document.getElementById("screenpops");
  if (!box || !window.EventSource) { return; }
  var words = box.dataset;
  var LAST_ID = "pbx_crm.lastEventId";
  var CARDS = "pbx_crm.screenpops";
  var calls = {};  // linkedid -> {data, state, answeredBy}

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

  function render(linkedid) {
    var call = calls[linkedid];
    var card = box.querySelector('[data-linkedid="' + CSS.escape(linkedid) + '"]');
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
    var caller = data.caller || words.tNoNumber;
    card.appendChild(element("p", "pop-kind", data.status === "NEW"
      ? words.tRinging + " · " + words.tNewCaller : words.tRinging));
    card.appendChild(element("p", "pop-caller", data.caller_name
      ? data.caller_name + " · " + caller : caller));
    if (data.deal_id) {
      var link = element("a", "pop-deal", data.deal_title || ("#" + data.deal_id));
      link.href = "/deals/" + encodeURIComponent(data.deal_id);
      card.appendChild(link);
      if (data.contact_name) { card.appendChild(element("p", "pop-contact", data.contact_name)); }
    } else if (data.deal_hidden) {
      card.appendChild(element("p", "pop-note", words.tOtherSeller));
    } else if (data.caller) {
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
    if (call.state === "ended" && call.answeredBy) {
      state = fill(words.tAnsweredBy, "name", call.answeredBy) + " · " + words.tEnded;
    }
    if (state) { card.appendChild(element("p", "pop-state", state)); }
    if (call.state === "ended" || call.state === "stopped") {
      var dismiss = element("button", "pop-dismiss", words.tDismiss);
      dismiss.type = "button";
      dismiss.addEventListener("click", function () {
        delete calls[linkedid];
        save();
        render(linkedid);
      });
      card.appendChild(dismiss);
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
    source.close();  // else it would reconnect, be sent to the sign-in page, and fail quietly
    forget();
    calls = {};
    box.replaceChildren();
    note(words.tSignedOut, words.tSignIn, "/login?next=" + encodeURIComponent(here()));
  }

  function streamLost() {
    // The cards stay, and so does what sessionStorage holds: the page may be going away.
    note(words.tStreamLost, words.tReload, here());
  }

  function handle(kind, event) {
    var data;
    try { data = JSON.parse(event.data); } catch (e) { return; }
    if (event.lastEventId) { store(LAST_ID, event.lastEventId); }
    var linkedid = data.linkedid;
    if (!linkedid) { return; }
    var call = calls[linkedid];
    if (kind === "ringing") {
      calls[linkedid] = call = call || {state: "ringing"};
      call.data = data;
    } else if (!call) {
      return;  // the end of a call this browser never showed
    } else if (kind === "answered") {
      call.state = "answered";
      call.answeredBy = data.answered_by || data.extension || "";
    } else if (kind === "stopped_ringing") {
      if (call.state === "ringing") { call.state = "stopped"; }
    } else if (kind === "call_ended") {
      call.state = "ended";
    }
    save();
    render(linkedid);
  }

  calls = stored(CARDS, {});
  Object.keys(calls).forEach(render);
  // The last event this tab received, else where this page's stream starts.
  var last = stored(LAST_ID, null) || words.position;
  var source = new EventSource("/events" +
                               (last ? "?last_event_id=" + encodeURIComponent(last) : ""));
  ["ringing", "answered", "stopped_ringing", "call_ended"].forEach(function (kind) {
    source.addEventListener(kind, function (event) { handle(kind, event); });
  });
  source.addEventListener("signed_out", signedOut);
  // A reconnect refused for good (the sign-in page instead of a stream, when the session
  // ended while the stream was down; or a proxy's error page): no more pops without a reload.
  source.addEventListener("error", function () {
    if (source.readyState === EventSource.CLOSED) { streamLost(); }
  });
  window.addEventListener("pagehide", function () { source.close(); });
  // The next user of this tab sees none of these pops.
  document.querySelectorAll("form.logout").forEach(function (logout) {
    logout.addEventListener("submit", forget);
  });
}());
