/* Sort a table by a column: a header click sets the address hash (#sort=KEY, #sort=-KEY for
   descending), and the hash sorts every table of the page that has that column. */
(function () {
  function value(cell) {
    var v = cell.getAttribute("data-sort");
    return v === null ? cell.textContent.trim() : v;
  }
  function sortTable(table, key, descending) {
    var heads = table.tHead.rows[0].cells, index = -1, numeric = false;
    for (var i = 0; i < heads.length; i++) {
      heads[i].removeAttribute("aria-sort");
      if (heads[i].getAttribute("data-key") === key) {
        index = i;
        numeric = heads[i].getAttribute("data-type") === "num";
      }
    }
    if (index < 0) return;
    var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = value(a.cells[index]), y = value(b.cells[index]), order;
      if (numeric) {
        x = x === "" ? -Infinity : parseFloat(x);
        y = y === "" ? -Infinity : parseFloat(y);
        order = x < y ? -1 : x > y ? 1 : 0;
      } else {
        order = x.localeCompare(y);
      }
      return descending ? -order : order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
    heads[index].setAttribute("aria-sort", descending ? "descending" : "ascending");
    table.setAttribute("data-sorted", (descending ? "-" : "") + key);
  }
  function fromHash() {
    var match = /sort=(-?)([A-Za-z0-9_-]+)/.exec(window.location.hash);
    if (!match) return;
    var tables = document.querySelectorAll("table.sortable");
    for (var i = 0; i < tables.length; i++) sortTable(tables[i], match[2], match[1] === "-");
  }
  document.addEventListener("DOMContentLoaded", function () {
    var heads = document.querySelectorAll("table.sortable th[data-key]");
    for (var i = 0; i < heads.length; i++) {
      heads[i].addEventListener("click", function (event) {
        var key = event.currentTarget.getAttribute("data-key");
        var table = event.currentTarget.closest("table");
        var now = table.getAttribute("data-sorted");
        window.location.hash = "sort=" + (now === key ? "-" : "") + key;
      });
    }
    fromHash();
  });
  window.addEventListener("hashchange", fromHash);
})();
