/* pbx-crm board: drag cards between columns, "show more", filters. No build step.
   While a card is dragged, the Won and Lost stages wait in a bar at the bottom of the window
   (#drop-bar): a drop there is the same move as a drop on their column (Lost asks why). A
   column folds to a strip from its header button (a strip still takes drops); which columns
   are folded is kept per user in localStorage. An Unsorted card's waiting clock
   (.callback-wait[data-since]) ticks every second, from the server's clock (#board's
   data-now), and turns late past data-callback-target seconds.
   Every request carries the page's CSRF token; the server answers moves with JSON. A refused
   move is explained on the card itself, which goes where the server says the deal is and is
   brought into view; a move refused because someone else moved the deal meanwhile says so in
   words (the deal's version is the page's business, not the user's). The words come from
   #board's data-t-* attributes, translated. */
(function () {
  "use strict";
  var main = document.querySelector("main");
  var csrf = main ? main.dataset.csrf : "";
  var board = document.getElementById("board");
  var words = board ? board.dataset : {};

  function fill(template, name, value) {
    return String(template || "").replace("{" + name + "}", value);
  }

  // The refusal on the card, in view; a card no longer on this board gets a notice instead.
  function refused(card, text) {
    if (!card.isConnected) {
      if (window.pbxCrmNotify) { window.pbxCrmNotify(text, "error"); }
      return;
    }
    var note = card.querySelector(".card-refusal");
    if (!note) {
      note = document.createElement("p");
      note.className = "card-refusal";
      note.setAttribute("role", "alert");
      card.appendChild(note);
    }
    note.textContent = text;
    card.classList.add("refused");
    card.scrollIntoView({block: "nearest", inline: "nearest"});
  }

  function unrefused(card) {
    var note = card.querySelector(".card-refusal");
    if (note) { note.remove(); }
    card.classList.remove("refused");
  }

  function stageName(deal) {
    var heading = board.querySelector('section.column[data-stage-id="' + deal.stage_id + '"] h2');
    return heading ? heading.textContent : deal.stage;
  }

  function column(stageId) {
    return board.querySelector('ul.cards[data-stage-id="' + stageId + '"]');
  }

  function updateTotals(totals) {
    board.querySelectorAll("section.column").forEach(function (section) {
      var total = totals[section.dataset.stageId] || {count: 0, money: null};
      section.querySelector(".totals .count").textContent = total.count;
      if (total.money !== null) { section.querySelector(".totals .money").textContent = total.money; }
    });
  }

  function putBack(evt) {
    evt.from.insertBefore(evt.item, evt.from.children[evt.oldIndex] || null);
  }

  function move(evt) {
    var card = evt.item;
    // A column's list, or a drop target of the bar: both say their stage and its kind.
    var target = evt.to.closest("section.column") || evt.to;
    var dropped = evt.to.classList.contains("drop-target");
    var body = new FormData();
    body.append("csrf_token", csrf);
    body.append("version", card.dataset.version);
    body.append("stage_id", target.dataset.stageId);
    if (board.dataset.owner) { body.append("owner", board.dataset.owner); }
    if (target.dataset.kind === "lost") {
      var reason = window.prompt(board.dataset.lostPrompt || "Why was the deal lost?");
      if (!reason) { putBack(evt); return; }
      body.append("lost_reason", reason);
    }
    card.classList.add("moving");
    unrefused(card);
    fetch("/deals/" + card.dataset.dealId + "/move", {
      method: "POST", body: body, credentials: "same-origin",
      headers: {"Accept": "application/json", "X-CSRF-Token": csrf}
    }).then(function (response) {
      return response.json().then(function (payload) { return [response, payload]; });
    }).then(function (answer) {
      var response = answer[0], payload = answer[1];
      card.classList.remove("moving");
      if (response.ok) {
        card.dataset.version = payload.deal.version;
        if (dropped) {  // from the bar to the top of its column
          var list = column(target.dataset.stageId);
          if (list) { list.insertBefore(card, list.firstChild); } else { card.remove(); }
        }
        var take = card.querySelector("form.take");
        if (take && target.dataset.unsorted !== "yes") { take.remove(); }
        updateTotals(payload.totals);
        return;
      }
      var text = payload.error || words.tMoveRefused;
      if (payload.deal) {
        if (String(payload.deal.version) !== String(card.dataset.version)) {
          // Someone else changed the deal first: say so, and where it is now.
          text = fill(words.tMovedMeanwhile, "stage", stageName(payload.deal));
        }
        card.dataset.version = payload.deal.version;
        var actual = column(payload.deal.stage_id);
        if (actual) { actual.insertBefore(card, actual.firstChild); } else { card.remove(); }
      } else {
        putBack(evt);
      }
      refused(card, text);
    }).catch(function () {
      card.classList.remove("moving");
      putBack(evt);
      refused(card, words.tUnreachable);
    });
  }

  function showMore(button) {
    var params = new URLSearchParams({after: button.dataset.after});
    if (board.dataset.owner) { params.set("owner", board.dataset.owner); }
    button.disabled = true;
    fetch("/board/column/" + button.dataset.stageId + "?" + params, {credentials: "same-origin"})
      .then(function (response) { return response.text(); })
      .then(function (html) {
        var list = column(button.dataset.stageId);
        list.insertAdjacentHTML("beforeend", html);
        var marker = list.querySelector(".more-marker");
        if (marker) {
          button.dataset.after = marker.dataset.more;
          marker.remove();
          button.disabled = false;
        } else {
          button.remove();
        }
      });
  }

  // --- folded columns, per user ------------------------------------------------------

  var FOLDED = "pbx_crm.board.folded." + (board ? board.dataset.user : "");

  function folded() {
    try { return JSON.parse(window.localStorage.getItem(FOLDED)) || []; }
    catch (e) { return []; }
  }

  function fold(section, on) {
    section.classList.toggle("collapsed", on);
    var toggle = section.querySelector(".column-toggle");
    var label = on ? words.tExpand : words.tCollapse;
    toggle.setAttribute("aria-expanded", on ? "false" : "true");
    toggle.setAttribute("aria-label", label);
    toggle.title = label;
  }

  function toggleFold(section) {
    var on = !section.classList.contains("collapsed");
    fold(section, on);
    var ids = folded().filter(function (id) { return id !== section.dataset.stageId; });
    if (on) { ids.push(section.dataset.stageId); }
    try { window.localStorage.setItem(FOLDED, JSON.stringify(ids)); } catch (e) { /* off */ }
  }

  // --- the waiting clocks of Unsorted cards ---------------------------------------------

  var skew = 0;  // the server's clock less this browser's
  if (board && board.dataset.now) {
    var serverNow = Date.parse(board.dataset.now);
    if (!isNaN(serverNow)) { skew = serverNow - Date.now(); }
  }

  function two(n) { return (n < 10 ? "0" : "") + n; }

  function clock(seconds) {  // as _card.html writes it: h:mm:ss, days before it past a day
    var time = Math.floor(seconds % 86400 / 3600) + ":" + two(Math.floor(seconds % 3600 / 60)) +
      ":" + two(seconds % 60);
    if (seconds < 86400) { return time; }
    return fill(fill(words.tDays, "days", Math.floor(seconds / 86400)), "time", time);
  }

  function tick() {
    var now = Date.now() + skew;
    var target = Number(words.callbackTarget || 0);
    board.querySelectorAll(".callback-wait[data-since]").forEach(function (wait) {
      var since = Date.parse(wait.dataset.since);
      if (isNaN(since)) { return; }
      var seconds = Math.max(0, Math.floor((now - since) / 1000));
      var timer = wait.querySelector(".timer");
      if (timer) { timer.textContent = clock(seconds); }
      wait.classList.toggle("late", target > 0 && seconds > target);
    });
  }

  if (board) {
    var foldedIds = folded();
    board.querySelectorAll("section.column").forEach(function (section) {
      fold(section, foldedIds.indexOf(section.dataset.stageId) >= 0);
    });
    board.addEventListener("click", function (event) {
      var toggle = event.target.closest("button.column-toggle");
      if (toggle) { toggleFold(toggle.closest("section.column")); }
    });
    tick();
    window.setInterval(tick, 1000);
  }

  // --- dragging ----------------------------------------------------------------------------

  var dropBar = document.getElementById("drop-bar");

  function dragging(on) {
    document.body.classList.toggle("dragging", on);
    if (dropBar) { dropBar.setAttribute("aria-hidden", on ? "false" : "true"); }
  }

  if (board && window.Sortable) {
    board.querySelectorAll("ul.cards").forEach(function (list) {
      window.Sortable.create(list, {
        group: "board", animation: 120, draggable: ".card", filter: "form, button",
        preventOnFilter: false, delay: 150, delayOnTouchOnly: true,
        onStart: function () { dragging(true); },
        onEnd: function (evt) {
          dragging(false);
          if (evt.from !== evt.to) { move(evt); }
        }
      });
    });
    if (dropBar) {
      dropBar.querySelectorAll("ul.drop-target").forEach(function (list) {
        window.Sortable.create(list, {group: {name: "board", pull: false}, sort: false,
                                      draggable: ".card"});
      });
    }
    board.addEventListener("click", function (event) {
      var button = event.target.closest("button.show-more");
      if (button) { showMore(button); }
    });
  }

  var filters = document.getElementById("filters");
  if (filters) {
    filters.querySelectorAll("select").forEach(function (select) {
      select.addEventListener("change", function () { filters.submit(); });
    });
  }
})();
