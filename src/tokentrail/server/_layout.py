"""The frame every dashboard page shares: inline CSS, the navigation, and the live refresh.

Live pages poll a small JSON endpoint (`data-pulse`); when its answer changes, the page fetches itself
again and swaps the `#live` region in place (no reload: forms, scroll and focus stay; `<details>` keep
their open state). Without JavaScript the pages are complete, only not live. No external URL is used.
"""

from __future__ import annotations

from html import escape

__all__ = ["CSS", "LIVE_SCRIPT", "frame", "usd"]

CSS = """
body{font:14px system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{background:#1d2330;color:#fff;padding:12px 24px;display:flex;gap:32px;align-items:center}
h1{font-size:18px;margin:0}nav a{color:#fff;margin-right:16px}nav a[aria-current]{font-weight:bold}
main{padding:16px 24px;display:grid;gap:16px;max-width:1200px}#live{display:grid;gap:16px}
section{background:#fff;border:1px solid #dde1e8;border-radius:6px;padding:12px 16px}
h2{font-size:15px;margin:0 0 8px}form{display:flex;gap:12px;flex-wrap:wrap;align-items:end}
label{display:flex;flex-direction:column;font-size:12px;color:#445}
.figures{display:flex;gap:32px;flex-wrap:wrap}.figure b{display:block;font-size:22px}
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:3px 8px;border-bottom:1px solid #eee}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
a{color:#1f4fb5}a:focus,summary:focus,button:focus,select:focus,input:focus{outline:3px solid #f0a020}
.bar{fill:#3b6fd8}.other-base{fill:#e07b24}.other-hatch{fill:#8a3a00}.axis{stroke:#8a8fa0}.tick,.label,.value{font-size:11px;fill:#3a4050}
.fill{fill:none;stroke:#3b6fd8;stroke-width:1.5}.limit{stroke:#b4461b;stroke-dasharray:4 3}
.warnmark{fill:#b4461b}meter{width:140px}.muted{color:#5c6170}.warn{color:#a8401a}
.tree ul{list-style:none;padding-left:20px;margin:2px 0}.tree summary{cursor:pointer}
.span{display:block;height:10px;background:#3b6fd8;min-width:2px}.lane{background:#eef1f6;width:240px}
.ttft{display:block;height:10px;background:#1d2330}dl{display:grid;grid-template-columns:max-content 1fr;
gap:2px 16px}dt{color:#445}dd{margin:0}.pager{display:flex;gap:16px;margin-top:8px}
.skip{position:absolute;left:-9999px}.skip:focus{left:8px;top:8px;background:#fff;color:#1d2330;padding:4px}
"""

LIVE_SCRIPT = """
(function () {
  var live = document.getElementById("live");
  if (!live || !live.dataset.pulse || !window.fetch) return;
  var every = Number(live.dataset.every || 2000), last = null;
  function swap(html) {
    var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("live");
    if (!fresh) return;
    var open = {}, shut = {};
    live.querySelectorAll("details[id]").forEach(function (d) { (d.open ? open : shut)[d.id] = 1; });
    var focused = document.activeElement && document.activeElement.id;
    live.innerHTML = fresh.innerHTML;
    live.querySelectorAll("details[id]").forEach(function (d) {
      if (open[d.id]) d.open = true; else if (shut[d.id]) d.open = false;
    });
    if (focused && document.getElementById(focused)) document.getElementById(focused).focus();
    live.dataset.updates = String(Number(live.dataset.updates || 0) + 1);
    var note = document.getElementById("live-note");
    if (note) note.textContent = "Updated " + new Date().toLocaleTimeString();
  }
  function tick() {
    fetch(live.dataset.pulse, {cache: "no-store", credentials: "same-origin"})
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (text) {
        if (text === null) return;
        var changed = last !== null && text !== last;
        last = text;
        if (changed) {
          return fetch(location.href, {cache: "no-store", credentials: "same-origin"})
            .then(function (r) { return r.ok ? r.text() : null; })
            .then(function (html) { if (html) swap(html); });
        }
      })
      .catch(function () {})
      .then(function () { setTimeout(tick, every); });
  }
  tick();
})();
"""

_PAGES = (("/", "Overview"), ("/sessions", "Sessions"), ("/budgets", "Budgets"))


def usd(value: object) -> str:
    """A dollar amount for display: 4 decimals (6 below a cent), exact value kept in titles elsewhere."""
    from decimal import Decimal

    amount = Decimal(str(value))
    if not amount:
        return "$0"
    return f"${amount:,.6f}" if abs(amount) < Decimal("0.01") else f"${amount:,.4f}"


def frame(title: str, current: str, controls: str, body: str, pulse: str | None, every_ms: int) -> str:
    """A whole page: header and navigation, `controls` (never swapped), and `body` in the live region."""
    links = "".join(
        f'<a href="{href}"{" aria-current=page" if href == current else ""}>{name}</a>'
        for href, name in _PAGES
    )
    live = f' data-pulse="{escape(pulse)}" data-every="{every_ms}"' if pulse else ""
    note = (
        '<p id="live-note" class="muted" aria-live="polite">Live: updates as calls arrive.</p>'
        if pulse
        else ""
    )
    script = f"<script>{LIVE_SCRIPT}</script>" if pulse else ""
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)} · tokentrail</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<link rel="icon" href="data:,"><style>{CSS}</style></head><body>'
        '<a class="skip" href="#content">Skip to content</a>'
        f'<header><h1>tokentrail</h1><nav aria-label="Pages">{links}</nav></header>'
        f'<main id="content">{controls}{note}<div id="live"{live}>{body}</div></main>{script}</body></html>'
    )
