// Table tools of the report: filter layers by text, hide ops, show only changed diff rows,
// show the diff's drifted statistics.
// Reads and toggles classes only; never writes markup.
(function () {
  "use strict";
  function rows(id) {
    var table = document.getElementById(id);
    return table ? Array.prototype.slice.call(table.tBodies[0].rows) : [];
  }
  function apply(id) {
    var search = document.querySelector('.filter[data-table="' + id + '"]');
    var ops = document.querySelector('.hide-ops[data-table="' + id + '"]');
    var changes = document.querySelector('.only-changes[data-table="' + id + '"]');
    var text = search ? search.value.trim().toLowerCase() : "";
    rows(id).forEach(function (tr) {
      var cell = tr.querySelector("td.layer");
      var hide = (text !== "" && !(cell && cell.textContent.toLowerCase().indexOf(text) >= 0)) ||
        (ops && ops.checked && tr.classList.contains("op")) ||
        (changes && changes.checked && (tr.classList.contains("st-same") ||
          tr.classList.contains("gap")));
      tr.classList.toggle("hidden", Boolean(hide));
    });
  }
  document.querySelectorAll(".tools input").forEach(function (input) {
    var id = input.getAttribute("data-table");
    input.addEventListener("input", function () {
      if (input.classList.contains("show-drift")) {
        document.getElementById(id).classList.toggle("show-drift", input.checked);
      } else {
        apply(id);
      }
    });
  });
})();
