// mfad portal: small enhancements that need a script. A button marked data-print prints the page
// (the print stylesheet leaves only what matters); without a script it stays hidden and the
// browser's own Print does the same.
(function () {
  "use strict";
  document.querySelectorAll("[data-print]").forEach(function (button) {
    button.hidden = false;
    button.addEventListener("click", function () { window.print(); });
  });
})();
