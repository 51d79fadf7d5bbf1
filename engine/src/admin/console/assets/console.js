// edgeward console: the little script there is. Pages work without it.
"use strict";
(function () {
  // The dashboard reloads itself every 10 seconds while it is visible and
  // nobody is typing in it.
  if (document.body && document.body.querySelector("[data-refresh]")) {
    setInterval(function () {
      var active = document.activeElement;
      var typing = active && (active.tagName === "INPUT" || active.tagName === "SELECT");
      if (!document.hidden && !typing) {
        window.location.reload();
      }
    }, 10000);
  }
  // Buttons that delete or end something ask first.
  document.addEventListener("submit", function (event) {
    var button = event.submitter;
    var question = button && button.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
    }
  });
})();
