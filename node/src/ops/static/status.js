// wms-node status page: refreshes the page in place every 10 s. When the node does not
// answer, the last page stays and a banner says since when contact is lost, instead of the
// browser's error page. Without JavaScript the page refreshes itself (<noscript> meta).
(function () {
  "use strict";
  var EVERY = 10000;
  var lostSince = null;
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function clock(d) { return pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds()); }
  function banner(text) {
    var b = document.getElementById("lost");
    if (!b) {
      b = document.createElement("p");
      b.id = "lost";
      b.className = "failing";
      b.setAttribute("role", "alert");
      document.body.insertBefore(b, document.body.firstChild);
    }
    b.textContent = text;
  }
  function lost() {
    if (lostSince === null) { lostSince = new Date(); }
    var mins = Math.floor((Date.now() - lostSince.getTime()) / 60000);
    banner((document.documentElement.getAttribute("data-lost") || "Lost contact with the node since") +
      " " + clock(lostSince) + (mins > 0 ? " (" + mins + " min)" : "") + ".");
  }
  function poll() {
    var ctl = typeof AbortController === "function" ? new AbortController() : null;
    var timer = ctl ? setTimeout(function () { ctl.abort(); }, EVERY - 1000) : null;
    fetch("/", { cache: "no-store", signal: ctl ? ctl.signal : undefined })
      .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.text(); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        document.title = doc.title;
        document.body.replaceWith(document.adoptNode(doc.body));
        lostSince = null;
      })
      .catch(lost)
      .then(function () { if (timer) { clearTimeout(timer); } setTimeout(poll, EVERY); });
  }
  setTimeout(poll, EVERY);
})();
