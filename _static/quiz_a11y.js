// The quizzes (jupyterquiz, drawn by JavaScript) made usable by keyboard and screen reader.
// jupyterquiz's own markup has no labels and no live feedback. This adds, to every quiz:
// - each question is a group named by its text;
// - each multiple-choice answer is its own radio button and Tab stop (jupyterquiz puts a
//   question's answers in one radio group, where the arrow keys would choose every answer they
//   pass over); Space or Enter chooses the focused answer; only the last chosen stays checked;
// - a numeric answer's box is labelled by its "Type numeric answer here:" label;
// - the feedback is a polite live region (role status): a screen reader reads it out.
// Enter and Space on an answer stop there: JupyterLab's notebook would otherwise take Enter as
// "edit this cell".
// The book loads this file on every page (Jupyter Book adds every .js in _static); in
// JupyterLab, llmlab.quiz.show_quiz puts it into the quiz's output. Checked by
// tests/test_quiz_browser.py and tests/test_jupyterlab.py (keyboard) and tests/test_a11y.py.
(function () {
  "use strict";
  if (window.llmlabQuizA11y) return;

  function enhance(root) {
    root.querySelectorAll(".Quiz:not([data-llmlab-a11y])").forEach(function (box) {
      box.setAttribute("data-llmlab-a11y", "1");
      var question = box.querySelector('[id^="quizQn"]');
      var feedback = box.querySelector(".Feedback");
      box.setAttribute("role", "group");
      if (question) box.setAttribute("aria-labelledby", question.id);
      if (feedback) {
        feedback.setAttribute("role", "status");
        feedback.setAttribute("aria-live", "polite");
        feedback.setAttribute("aria-atomic", "true");
      }
      box.querySelectorAll("input.Input-text").forEach(function (input) {
        var label = box.querySelector("label.InpLabel");
        if (label) label.htmlFor = input.id;
        if (question) input.setAttribute("aria-describedby", question.id);
        // jupyterquiz blurs the box once an answer is checked: the keyboard focus would fall
        // back to the top of the page. It stays, with the answer, for another try.
        input.blur = function () {};
      });
      var radios = Array.prototype.slice.call(
        box.querySelectorAll('label.MCButton input[type="radio"]'));
      radios.forEach(function (input) {
        input.name = input.id;
        input.addEventListener("keydown", function (event) {
          if (event.key !== "Enter" && event.key !== " ") return;
          event.preventDefault();
          event.stopPropagation();
          input.click();
        });
        input.addEventListener("change", function () {
          radios.forEach(function (other) {
            if (other !== input) other.checked = false;
          });
        });
      });
    });
  }
  window.llmlabQuizA11y = enhance;

  // A quiz drawn later (JupyterLab draws outputs as cells run): enhanced within a few seconds.
  window.llmlabQuizA11yWhenDrawn = function (id) {
    (function poll(tries) {
      var root = document.getElementById(id);
      if (root && root.querySelector(".Quiz")) return enhance(root);
      if (tries < 150) setTimeout(function () { poll(tries + 1); }, 100);
    })(0);
  };

  function all() { enhance(document); }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", all);
  } else {
    all();
  }
  window.addEventListener("load", all);
})();
