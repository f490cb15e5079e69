// The portal's only script (the Content-Security-Policy allows no inline script).
(function () {
  "use strict";
  // The language switcher submits on change.
  document.querySelectorAll("form.lang select").forEach(function (select) {
    select.addEventListener("change", function () { select.form.submit(); });
  });
  // A grant page with a batch being issued polls until it is ready, then reloads.
  var progress = document.getElementById("batch-progress");
  if (progress) {
    (function poll() {
      fetch(progress.dataset.statusUrl, { credentials: "same-origin" })
        .then(function (r) { return r.json(); })
        .then(function (d) { if (d.pending) { setTimeout(poll, 1000); } else { window.location.reload(); } })
        .catch(function () { setTimeout(poll, 3000); });
    })();
  }
})();
