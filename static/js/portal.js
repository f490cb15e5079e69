// The portal's script (the Content-Security-Policy allows no inline script). Every page works without it;
// it adds the phone menu, copy buttons, the file filter and a few conveniences.
(function () {
  "use strict";

  // The language switcher submits on change.
  document.querySelectorAll("form.lang select").forEach(function (select) {
    select.addEventListener("change", function () { select.form.submit(); });
  });

  // Phone navigation: the "Menu" button opens and closes the links; Escape closes them.
  var toggle = document.querySelector(".menu-toggle");
  var nav = document.getElementById("site-nav");
  if (toggle && nav) {
    toggle.hidden = false;
    var setOpen = function (open) {
      nav.classList.toggle("open", open);
      toggle.setAttribute("aria-expanded", open ? "true" : "false");
    };
    toggle.addEventListener("click", function () { setOpen(!nav.classList.contains("open")); });
    document.addEventListener("keydown", function (event) {
      if (event.key === "Escape" && nav.classList.contains("open")) { setOpen(false); toggle.focus(); }
    });
  }

  // Copy buttons on code blocks (components/code.html).
  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    return new Promise(function (resolve, reject) {
      var area = document.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.className = "visually-hidden";
      document.body.appendChild(area);
      area.select();
      var ok = document.execCommand("copy");
      document.body.removeChild(area);
      if (ok) { resolve(); } else { reject(new Error("copy refused")); }
    });
  }
  document.querySelectorAll("button.copy").forEach(function (button) {
    var block = button.closest(".code");
    var code = block && block.querySelector("pre code");
    var status = block && block.querySelector(".copy-status");
    if (!code) { return; }
    button.hidden = false;
    var label = button.textContent;
    button.addEventListener("click", function () {
      copyText(code.textContent).then(function () {
        button.textContent = button.dataset.copied;
        button.classList.add("copied");
        if (status) { status.textContent = button.dataset.copied; }
        setTimeout(function () {
          button.textContent = label;
          button.classList.remove("copied");
          if (status) { status.textContent = ""; }
        }, 2000);
      }, function () {
        // Clipboard refused: select the text so Ctrl+C copies it.
        var range = document.createRange();
        range.selectNodeContents(code);
        var selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
      });
    });
  });

  // File lists: a filter box shows only matching paths, opening the groups that have matches.
  document.querySelectorAll(".files").forEach(function (box) {
    var input = box.querySelector("input.filter");
    var counter = box.querySelector(".filter-count");
    if (!input) { return; }
    box.querySelector(".filter-row").hidden = false;
    var rows = Array.prototype.slice.call(box.querySelectorAll("tr[data-path]"));
    var groups = Array.prototype.slice.call(box.querySelectorAll("details"));
    var openAtStart = groups.map(function (d) { return d.open; });
    input.addEventListener("input", function () {
      var query = input.value.trim().toLowerCase();
      var shown = 0;
      rows.forEach(function (row) {
        var match = !query || row.dataset.path.toLowerCase().indexOf(query) !== -1;
        row.hidden = !match;
        if (match) { shown += 1; }
      });
      groups.forEach(function (group, i) {
        var any = group.querySelector("tr[data-path]:not([hidden])") !== null;
        group.hidden = Boolean(query) && !any;
        group.open = query ? any : openAtStart[i];
      });
      if (counter) {
        counter.textContent = query ? counter.dataset.template.replace("{n}", shown) : "";
      }
    });
  });

  // A box that scrolls inside the page (a wide table on a phone) must be reachable from the keyboard.
  function focusableScrollers() {
    document.querySelectorAll(".table-wrap, main table, .license-text, .model-card table").forEach(function (el) {
      var scrolls = el.scrollWidth > el.clientWidth + 1 || el.scrollHeight > el.clientHeight + 1;
      if (scrolls && !el.hasAttribute("tabindex")) {
        el.setAttribute("tabindex", "0");
        el.dataset.scrollFocus = "1";
      } else if (!scrolls && el.dataset.scrollFocus) {
        el.removeAttribute("tabindex");
        delete el.dataset.scrollFocus;
      }
    });
  }
  focusableScrollers();
  window.addEventListener("resize", focusableScrollers);
  document.querySelectorAll("details").forEach(function (d) { d.addEventListener("toggle", focusableScrollers); });

  // A form sent back with errors: focus its summary (GOV.UK's error-summary pattern), whose links focus their field.
  var summary = document.getElementById("error-summary");
  if (summary) {
    summary.focus();
    summary.addEventListener("click", function (event) {
      var link = event.target.closest("a[href^='#']");
      var field = link && document.getElementById(link.getAttribute("href").slice(1));
      if (!field) { return; }
      event.preventDefault();
      field.focus();
      var box = field.closest(".field") || field;
      box.scrollIntoView({ block: "start" });
    });
  }

  // Text with a minimum length: its characters are counted as they are typed.
  document.querySelectorAll("textarea[data-count-min]").forEach(function (area) {
    var counter = document.getElementById(area.id + "_count");
    if (!counter) { return; }
    var min = parseInt(area.dataset.countMin, 10);
    counter.hidden = false;
    var update = function () {
      var n = area.value.trim().length;
      counter.textContent = counter.dataset.template.replace("{n}", n) + (n < min ? " · " + counter.dataset.short : "");
      counter.classList.toggle("short", n < min);
      counter.dataset.count = String(n);
    };
    area.addEventListener("input", update);
    update();
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
