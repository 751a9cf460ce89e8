/* pbx-crm board: drag cards between columns, "show more", filters. No build step.
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
    var target = evt.to.closest("section.column");
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

  if (board && window.Sortable) {
    board.querySelectorAll("ul.cards").forEach(function (list) {
      window.Sortable.create(list, {
        group: "board", animation: 120, draggable: ".card", filter: "form, button",
        preventOnFilter: false, delay: 150, delayOnTouchOnly: true,
        onEnd: function (evt) { if (evt.from !== evt.to) { move(evt); } }
      });
    });
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
