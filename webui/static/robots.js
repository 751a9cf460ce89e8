/* pbx-crm robots page: the rule form shows the fields of the chosen condition and action
   only. Without this script every field shows and the server reads the chosen kinds' own. */
(function () {
  "use strict";
  var form = document.querySelector("form.robot-form");
  if (!form) { return; }
  var condition = form.querySelector("#robot-condition");
  var action = form.querySelector("#robot-action");

  function fits(list, value) {
    var kinds = (list || "").split(" ");
    return kinds.indexOf("*") !== -1 || kinds.indexOf(value) !== -1;
  }

  function show() {
    form.querySelectorAll("fieldset.robot-params").forEach(function (fieldset) {
      var wanted = fieldset.dataset.condition !== undefined
        ? fits(fieldset.dataset.condition, condition.value)
        : fits(fieldset.dataset.action, action.value);
      fieldset.classList.toggle("hidden", !wanted);
      fieldset.disabled = !wanted;
    });
  }

  condition.addEventListener("change", show);
  action.addEventListener("change", show);
  show();
}());
