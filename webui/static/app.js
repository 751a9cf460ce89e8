/* pbx-crm board: drag cards between columns, "show more", filters. No build step.
   Every request carries the page's CSRF token; the server answers moves with JSON. */
(function () {
  "use strict";
  var main = document.querySelector("main");
  var csrf = main ? main.dataset.csrf : "";
  var board = document.getElementById("board");
  var message = document.getElementById("board-message");

  function say(text) {
    if (!message) { return; }
    message.textContent = text || "";
    message.classList.toggle("hidden", !text);
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
        say("");
        return;
      }
      say(payload.error || "The move was refused.");
      if (payload.deal) {
        // Someone else moved it first: show the deal where it really is now.
        card.dataset.version = payload.deal.version;
        var actual = column(payload.deal.stage_id);
        if (actual) { actual.insertBefore(card, actual.firstChild); } else { card.remove(); }
      } else {
        putBack(evt);
      }
    }).catch(function () {
      card.classList.remove("moving");
      putBack(evt);
      say("The server could not be reached; the card is back where it was.");
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
