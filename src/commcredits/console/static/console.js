// Small progressive enhancements; every page works without them.
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  // Radio buttons with data-shows reveal the panel they name and hide the others of the group.
  function syncPanels(group) {
    var radios = document.querySelectorAll('input[type=radio][name="' + group + '"][data-shows]');
    radios.forEach(function (radio) {
      var target = radio.getAttribute("data-shows");
      if (target) {
        var panel = document.getElementById(target);
        if (panel) { panel.hidden = true; }
      }
    });
    radios.forEach(function (radio) {
      var target = radio.getAttribute("data-shows");
      if (radio.checked && target) {
        var panel = document.getElementById(target);
        if (panel) { panel.hidden = false; }
      }
    });
  }
  var groups = {};
  document.querySelectorAll("input[type=radio][data-shows]").forEach(function (radio) {
    groups[radio.name] = true;
    radio.addEventListener("change", function () { syncPanels(radio.name); });
  });
  Object.keys(groups).forEach(syncPanels);

  // A switch with data-toggles shows its fields only while it is on.
  document.querySelectorAll("input[data-toggles]").forEach(function (box) {
    var panel = document.getElementById(box.getAttribute("data-toggles"));
    function sync() { if (panel) { panel.hidden = !box.checked; } }
    box.addEventListener("change", sync);
    sync();
  });

  // "Select all" checkboxes for bulk actions.
  document.querySelectorAll("input[data-select-all]").forEach(function (all) {
    var name = all.getAttribute("data-select-all");
    all.addEventListener("change", function () {
      document.querySelectorAll('input[type=checkbox][name="' + name + '"]').forEach(function (box) {
        box.checked = all.checked;
      });
    });
  });
})();
