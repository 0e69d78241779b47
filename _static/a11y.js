// Accessible names and roles for markup the book's theme and extensions write (WCAG 2.1 AA,
// checked by axe-core in tests/test_a11y.py). Jupyter Book adds every .js file in _static to
// every page. Each fix names the package whose markup it mends; the pages work without it.
(function () {
  "use strict";

  function fix() {
    // pydata-sphinx-theme: the sidebar's collapsible sections are <summary> elements holding
    // only a chevron icon. Name each after the page whose sub-pages it shows or hides.
    document.querySelectorAll("nav.bd-docs-nav li > details > summary").forEach(function (s) {
      if (s.textContent.trim() || s.hasAttribute("aria-label")) return;
      var link = s.closest("li").querySelector(":scope > a");
      var title = link ? link.textContent.trim() : "this section";
      s.setAttribute("aria-label", "Sub-pages of " + title);
    });

    // MyST-NB: a folded cell's <summary> is labelled "Toggle hidden content" while it shows
    // "Show code cell source": a speech user says what they see. Its visible text names it.
    document.querySelectorAll("details.hide > summary[aria-label]").forEach(function (s) {
      if (s.textContent.trim()) s.removeAttribute("aria-label");
    });

    // sphinx-togglebutton: the chevron button of a collapsed admonition (exercise solutions)
    // says "Toggle hidden content"; name it after the box it opens.
    document.querySelectorAll("button.toggle-button[aria-label]").forEach(function (b) {
      var title = b.closest(".admonition-title");
      var text = title ? title.textContent.trim() : "";
      if (text) b.setAttribute("aria-label", "Show or hide: " + text);
    });

    // pydata-sphinx-theme: the search button is labelled "Search" but shows "Search Ctrl+K";
    // without the label its name is what it shows.
    document.querySelectorAll("button.search-button__button[aria-label]").forEach(function (b) {
      var visible = b.innerText.replace(/\s+/g, " ").trim();
      if (visible && visible.indexOf(b.getAttribute("aria-label")) !== 0) return;
      if (visible) b.removeAttribute("aria-label");
    });

    // pydata-sphinx-theme: the primary sidebar (the book's title and its table of contents)
    // is a plain <div>, so the title is outside every landmark. It is the book's navigation.
    document.querySelectorAll("div.bd-sidebar-primary:not([role])").forEach(function (d) {
      d.setAttribute("role", "navigation");
      d.setAttribute("aria-label", "Book");
    });

    // docutils: the bibliography is <div role="list"> whose entries carry the deprecated
    // role doc-biblioentry, not listitem.
    document.querySelectorAll('[role="list"] > [role="doc-biblioentry"]').forEach(function (e) {
      e.setAttribute("role", "listitem");
    });
  }

  // pydata-sphinx-theme: the colour-mode button is labelled "Color mode" while it shows the
  // icon of the current mode, titled "Light", "Dark" or "System Settings". Its name says both,
  // and follows the mode as the reader changes it.
  function modeLabel() {
    var mode = document.documentElement.dataset.mode || "auto";
    document.querySelectorAll(".theme-switch-button").forEach(function (b) {
      var icon = b.querySelector('[data-mode="' + mode + '"]');
      if (!icon) return;
      var title = icon.getAttribute("title") || (icon.querySelector("title") || {}).textContent;
      if (title) b.setAttribute("aria-label", "Color mode: " + title.trim());
    });
  }
  new MutationObserver(modeLabel).observe(document.documentElement, {
    attributes: true,
    attributeFilter: ["data-mode"],
  });

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", fix);
  } else {
    fix();
  }
  // sphinx-togglebutton adds its buttons on DOMContentLoaded too, maybe after this script.
  window.addEventListener("load", fix);
  window.addEventListener("load", modeLabel);
  document.addEventListener("DOMContentLoaded", modeLabel);
})();
