"""The session list and the session page, rendered on the server (plain HTML, inline SVG, no framework).

Everything a page shows lives in its URL (search, sort, page, the open call), so a live refresh and the
browser's back button both keep it.
"""

from __future__ import annotations

from datetime import datetime, timezone
from html import escape
from typing import TYPE_CHECKING
from urllib.parse import quote, urlencode

from tokentrail._money import units_to_decimal
from tokentrail.server._layout import frame, usd
from tokentrail.server._params import RANGES
from tokentrail.server._session import Node, Run, call_view, share_percent, sorted_children, start_us
from tokentrail.server._sessions import SORT_KEYS, SessionListing, SessionPage
from tokentrail.server._svg import fill_chart

if TYPE_CHECKING:
    from tokentrail._record import Record

__all__ = ["TIMELINE_PAGE", "render_run", "render_sessions", "session_href"]

TIMELINE_PAGE = 200  # calls per page of the timeline
NODE_CALLS = 25  # calls listed under one node of the tree (the timeline lists them all)
_SORT_NAMES = {
    "last": "Last call",
    "first": "First call",
    "cost": "Cost",
    "calls": "Calls",
    "tokens": "Tokens",
    "span": "Span",
    "unpriced": "Unpriced",
    "session": "Session",
}


def session_href(session: str, **query: object) -> str:
    """The session page's URL (the id path-quoted, so any text round-trips)."""
    given = {k: v for k, v in query.items() if v is not None}
    return f"/sessions/{quote(session, safe='')}" + (f"?{urlencode(given)}" if given else "")


def _when(timestamp_us: int) -> str:
    return datetime.fromtimestamp(timestamp_us / 1_000_000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _seconds(ms: float | None) -> str:
    if ms is None:
        return "—"
    return f"{ms / 1000:,.2f} s" if ms >= 1000 else f"{ms:,.0f} ms"


# -- the list ------------------------------------------------------------------------------------------


def _list_query(listing: SessionListing, range_name: str | None, **changes: object) -> str:
    values: dict[str, object] = {
        "q": listing.search or None,
        "range": range_name,
        "sort": listing.sort,
        "order": "desc" if listing.descending else "asc",
        "offset": listing.offset or None,
    }
    values.update(changes)
    return "/sessions?" + urlencode({k: v for k, v in values.items() if v is not None})


def _list_controls(listing: SessionListing, range_name: str | None) -> str:
    ranges = "".join(
        f'<option value="{name}"{" selected" if name == range_name else ""}>{name}</option>'
        for name in RANGES
    )
    sorts = "".join(
        f'<option value="{key}"{" selected" if key == listing.sort else ""}>{_SORT_NAMES[key]}</option>'
        for key in SORT_KEYS
    )
    orders = "".join(
        f'<option value="{value}"{" selected" if (value == "desc") == listing.descending else ""}>{name}</option>'
        for value, name in (("desc", "Descending"), ("asc", "Ascending"))
    )
    return (
        '<section aria-labelledby="find"><h2 id="find">Find sessions</h2>'
        '<form method="get" action="/sessions" id="session-filters" role="search">'
        f'<label for="q">Session or agent contains<input type="search" name="q" id="q" '
        f'value="{escape(listing.search or "")}"></label>'
        f'<label for="f-range">Active in<select name="range" id="f-range">'
        f"{ranges}</select></label>"
        f'<label for="f-sort">Sort by<select name="sort" id="f-sort">{sorts}</select></label>'
        f'<label for="f-order">Order<select name="order" id="f-order">{orders}</select></label>'
        '<button type="submit" id="apply">Apply</button></form></section>'
    )


_OTHER_HEAD = (
    '<th scope="col" class="num" title="requests, searches, durations, pages, … beside the tokens">Other</th>'
)


def _header_link(listing: SessionListing, range_name: str | None, key: str, numeric: bool) -> str:
    descending = not listing.descending if key == listing.sort else key != "session"
    href = _list_query(listing, range_name, sort=key, order="desc" if descending else "asc", offset=None)
    state = ""
    if key == listing.sort:
        state = f' aria-sort="{"descending" if listing.descending else "ascending"}"'
    cls = ' class="num"' if numeric else ""
    return f'<th scope="col"{cls}{state}><a href="{escape(href)}">{_SORT_NAMES[key]}</a></th>'


def render_sessions(page: SessionPage, listing: SessionListing, range_name: str | None, every_ms: int) -> str:
    """The session list: search form, a sortable table (an "Other" column, the part of the cost not paid
    for tokens, when some session on the page has one), pages."""
    other = any(row.non_token_units for row in page.rows)
    heads = [
        _header_link(listing, range_name, "session", False),
        _header_link(listing, range_name, "cost", True),
        *((_OTHER_HEAD,) if other else ()),
        _header_link(listing, range_name, "calls", True),
        _header_link(listing, range_name, "tokens", True),
        _header_link(listing, range_name, "span", True),
        '<th scope="col">Agents</th>',
        _header_link(listing, range_name, "unpriced", True),
        _header_link(listing, range_name, "first", False),
        _header_link(listing, range_name, "last", False),
    ]
    rows = []
    for row in page.rows:
        agents = ", ".join(row.agents) or "—"
        unpriced = f'<span class="warn">{row.unpriced_calls:,}</span>' if row.unpriced_calls else "0"
        cost = "unpriced" if row.calls == row.unpriced_calls else usd(units_to_decimal(row.cost_units))
        other_cell = ""
        if other:
            part = "—" if row.calls == row.unpriced_calls else usd(units_to_decimal(row.non_token_units))
            other_cell = (
                f'<td class="num non-token" title="${units_to_decimal(row.non_token_units)}">{part}</td>'
            )
        rows.append(
            f'<tr data-session="{escape(row.session)}"><td><a class="session-link" '
            f'href="{escape(session_href(row.session))}">{escape(row.session)}</a></td>'
            f'<td class="num" title="${units_to_decimal(row.cost_units)}">{cost}</td>{other_cell}'
            f'<td class="num">{row.calls:,}</td><td class="num">{row.total_tokens:,}</td>'
            f'<td class="num">{_seconds(row.span_ms)}</td><td>{escape(agents)}</td>'
            f'<td class="num">{unpriced}</td><td>{_when(row.first_us)}</td><td>{_when(row.last_us)}</td></tr>'
        )
    body = "".join(rows) or '<tr><td colspan="9" class="muted">No sessions match.</td></tr>'
    shown = (
        f"{listing.offset + 1:,}–{listing.offset + len(page.rows):,} of {page.total:,}" if page.rows else "0"
    )
    pager = []
    if listing.offset > 0:
        back = max(listing.offset - listing.limit, 0)
        pager.append(
            f'<a id="prev" href="{escape(_list_query(listing, range_name, offset=back or None))}">Previous</a>'
        )
    if listing.offset + listing.limit < page.total:
        ahead = listing.offset + listing.limit
        pager.append(f'<a id="next" href="{escape(_list_query(listing, range_name, offset=ahead))}">Next</a>')
    table = (
        f'<section aria-labelledby="list-title"><h2 id="list-title">Sessions <span id="session-count" '
        f'class="muted">({shown})</span></h2><table id="sessions"><caption class="skip">Sessions, '
        f"sorted by {_SORT_NAMES[listing.sort].lower()}</caption><thead><tr>{''.join(heads)}</tr></thead>"
        f'<tbody>{body}</tbody></table><nav class="pager" aria-label="Pages of sessions">{"".join(pager)}</nav>'
        "</section>"
    )
    pulse = "/api/pulse"
    return frame("Sessions", "/sessions", _list_controls(listing, range_name), table, pulse, every_ms)


# -- one session ----------------------------------------------------------------------------------------


def _figures(run: Run) -> str:
    root = run.root
    records = run.records
    span = (records[-1].timestamp_us - run.first_start_us) / 1000
    agents = sorted({r.agent for r in records if r.agent is not None})
    figures = [
        ("run-cost", "Cost (priced calls)", usd(units_to_decimal(root.cost_units))),
        ("run-calls", "Calls", f"{root.call_count:,}"),
        ("run-tokens", "Tokens", f"{root.total_tokens:,}"),
        ("run-span", "Duration", _seconds(span)),
        ("run-agents", "Agents", str(len(agents))),
        ("run-unpriced", "Unpriced calls", f"{root.unpriced_calls:,}"),
    ]
    if root.non_token_units:  # requests, searches, durations, pages, … beside the tokens
        figures.insert(1, ("run-non-token", "Other than tokens", usd(units_to_decimal(root.non_token_units))))
    cells = "".join(
        f'<div class="figure">{escape(title)}<b id="{ident}">{escape(text)}</b></div>'
        for ident, title, text in figures
    )
    span_text = f"{_when(records[0].timestamp_us)} – {_when(records[-1].timestamp_us)} UTC"
    return (
        f'<section id="run-totals" aria-labelledby="totals-title"><h2 id="totals-title">Totals</h2>'
        f'<div class="figures">{cells}</div><p class="muted">{escape(span_text)}; agents: '
        f"{escape(', '.join(agents) or 'none')}</p></section>"
    )


def _call_link(run: Run, index: int, text: str) -> str:
    href = session_href(run.session, call=f"{run.records[index].id:032x}", page=None)
    return f'<a class="call-link" href="{escape(href)}#call">{escape(text)}</a>'


def _call_label(record: Record, index: int) -> str:
    cost = "unpriced" if record.cost_units is None else usd(units_to_decimal(record.cost_units))
    return f"#{index + 1} {record.model or '(no model)'} · {cost}"


def _node(run: Run, node: Node, depth: int) -> str:
    total = run.root.cost_units
    share = share_percent(node.cost_units, total)
    unpriced = f', <span class="warn">{node.unpriced_calls} unpriced</span>' if node.unpriced_calls else ""
    head = (
        f'<span class="node-name">{escape(node.name)}</span> — '
        f'<span class="node-cost" title="${units_to_decimal(node.cost_units)}">{usd(units_to_decimal(node.cost_units))}</span>'
        f' (<span class="node-share">{share:.2f}%</span>), {node.call_count:,} calls{unpriced}'
    )
    items = [f"<li>{_node(run, child, depth + 1)}</li>" for child in sorted_children(node)]
    for index in node.calls[:NODE_CALLS]:
        items.append(f"<li>{_call_link(run, index, _call_label(run.records[index], index))}</li>")
    if len(node.calls) > NODE_CALLS:
        items.append(f'<li class="muted">… {len(node.calls) - NODE_CALLS:,} more calls in the timeline</li>')
    ident = (
        "node-" + "-".join(quote(part, safe="") for part in node.path).replace("%", "_")
        if node.path
        else "node-root"
    )
    is_open = " open" if depth < 2 else ""
    return (
        f'<details id="{escape(ident)}"{is_open}><summary>{head}</summary><ul>{"".join(items)}</ul></details>'
    )


def _tree(run: Run) -> str:
    return (
        '<section id="tree" class="tree" aria-labelledby="tree-title"><h2 id="tree-title">Run tree: '
        "node path or agent → calls, each with its subtree's exact cost and share</h2>"
        f"{_node(run, run.root, 0)}</section>"
    )


def _context(run: Run) -> str:
    fills = [fill.fraction for fill in run.fills]
    marks = [(index, str(warning)) for index, warning in run.warnings]
    known = sum(1 for f in fills if f is not None)
    chart = fill_chart("chart-context", fills, run.thresholds, marks, "Context-window fill per call")
    items = "".join(
        f"<li>{_call_link(run, index, f'call #{index + 1}')}: {escape(str(warning))}</li>"
        for index, warning in run.warnings
    )
    warnings = (
        f'<ul id="context-warnings">{items}</ul>'
        if items
        else '<p id="context-warnings" class="muted">No context warnings.</p>'
    )
    note = f"Prompt tokens over the model's window; known for {known:,} of {len(fills):,} calls."
    return (
        f'<section id="context" aria-labelledby="context-title"><h2 id="context-title">Context-window fill</h2>'
        f'<p class="muted">{escape(note)}</p>{chart}<h3>Warnings the context monitor raised</h3>{warnings}</section>'
    )


def _timeline(run: Run, page: int) -> str:
    records = run.records
    first = run.first_start_us
    end = max(record.timestamp_us for record in records)
    total = max(end - first, 1)
    pages = max((len(records) + TIMELINE_PAGE - 1) // TIMELINE_PAGE, 1)
    page = min(max(page, 1), pages)
    other = run.root.non_token_units != 0  # an "Other" column when some call of the run has such a charge
    rows = []
    for index in range((page - 1) * TIMELINE_PAGE, min(page * TIMELINE_PAGE, len(records))):
        record = records[index]
        started = start_us(record)
        left = (started - first) * 100 / total
        width = max((record.timestamp_us - started) * 100 / total, 0.0)
        ttft = ""
        if record.ttft_ms is not None and record.duration_ms:
            ttft = f'<span class="ttft" style="width:{min(record.ttft_ms / record.duration_ms, 1) * 100:.1f}%"></span>'
        bar = (
            f'<div class="lane" aria-hidden="true"><span class="span" style="margin-left:{left:.2f}%;'
            f'width:{width:.2f}%">{ttft}</span></div>'
        )
        cost = "unpriced" if record.cost_units is None else usd(units_to_decimal(record.cost_units))
        if other:
            part = "—" if record.cost_units is None else usd(units_to_decimal(record.non_token_units))
            cost += f'</td><td class="num non-token">{part}'
        rows.append(
            f"<tr><td class=num>{index + 1}</td><td>+{_seconds((started - first) / 1000)}</td>"
            f"<td>{bar}</td><td class=num>{_seconds(record.duration_ms)}</td>"
            f"<td class=num>{_seconds(record.ttft_ms)}</td><td>{escape(record.agent or '—')}</td>"
            f"<td>{escape(record.model or '—')}</td><td class=num>{record.usage.total_tokens:,}</td>"
            f"<td class=num>{cost}</td><td>{_call_link(run, index, f'call #{index + 1} details')}</td></tr>"
        )
    head = (
        '<tr><th scope="col" class=num>#</th><th scope="col">Start</th><th scope="col">When (bar: call, '
        'dark: to first token)</th><th scope="col" class=num>Duration</th><th scope="col" class=num>First token'
        '</th><th scope="col">Agent</th><th scope="col">Model</th><th scope="col" class=num>Tokens</th>'
        '<th scope="col" class=num>Cost</th>'
        + (_OTHER_HEAD if other else "")
        + '<th scope="col">Detail</th></tr>'
    )
    pager = []
    if page > 1:
        pager.append(
            f'<a href="{escape(session_href(run.session, page=page - 1))}#timeline">Earlier calls</a>'
        )
    if page < pages:
        pager.append(
            f'<a id="timeline-next" href="{escape(session_href(run.session, page=page + 1))}#timeline">Later calls</a>'
        )
    return (
        f'<section id="timeline" aria-labelledby="timeline-title"><h2 id="timeline-title">Timeline '
        f'<span class="muted">(page {page} of {pages})</span></h2><table id="timeline-table"><thead>{head}'
        f'</thead><tbody>{"".join(rows)}</tbody></table><nav class="pager" aria-label="Pages of the timeline">'
        f"{''.join(pager)}</nav></section>"
    )


def _detail(run: Run, index: int) -> str:
    view = call_view(run.records[index], run, index)
    fields = [
        ("Call id", view["id"]),
        ("Started", view["started"]),
        ("Ended", view["ended"]),
        ("Duration", _seconds(view["duration_ms"])),
        ("Time to first token", _seconds(view["ttft_ms"])),
        ("Model", view["model"] or "—"),
        ("Provider", view["provider"] or "—"),
        ("Agent", view["agent"] or "—"),
        ("Node path", "/".join(view["path"]) or "—"),
        ("User", view["user"] or "—"),
        ("Tool", view["tool"] or "—"),
        ("Tags", ", ".join(view["tags"]) or "—"),
        ("Status", view["status"] + (f" ({view['reason']})" if view["reason"] else "")),
        (
            "Our cost",
            "unpriced: " + (view["unpriced_reason"] or "")
            if view["cost_usd"] is None
            else "$" + view["cost_usd"],
        ),
        (
            "Of which not tokens (requests, searches, durations, pages, …)",
            "—" if view["non_token_cost_usd"] is None else "$" + view["non_token_cost_usd"],
        ),
        (
            "Provider-reported cost",
            "—" if view["provider_cost_usd"] is None else "$" + view["provider_cost_usd"],
        ),
        (
            "Difference (provider − ours)",
            "—" if view["cost_difference_usd"] is None else "$" + view["cost_difference_usd"],
        ),
        ("Catalog version", view["catalog_version"] or "—"),
        ("Price rule", _rule_text(view["price_rule"])),
        ("Request context", ", ".join(f"{k}={v}" for k, v in (view["context"] or {}).items()) or "—"),
        (
            "Context window",
            "unknown" if view["context_window"] is None else f"{view['context_window']:,} tokens",
        ),
        ("Context fill", "unknown" if view["context_fill"] is None else f"{view['context_fill']:.1%}"),
        (
            "Pre-call input estimate",
            "—" if view["estimated_input_tokens"] is None else f"{view['estimated_input_tokens']:,}",
        ),
    ]
    items = "".join(f"<dt>{escape(name)}</dt><dd>{escape(str(value))}</dd>" for name, value in fields)
    units = "".join(
        f'<tr><th scope="row">{escape(name)}</th><td class="num">{value:,}</td></tr>'
        for name, value in view["units"].items()
    )
    units_table = (
        f'<table id="call-units"><caption>Tokens and other units (non-zero)</caption>'
        f'<thead><tr><th scope="col">Unit</th><th scope="col" class="num">Count</th></tr></thead><tbody>{units}</tbody></table>'
    )
    close = f'<a href="{escape(session_href(run.session))}">Close</a>'
    return (
        f'<section id="call" aria-labelledby="call-title"><h2 id="call-title">Call #{index + 1} '
        f"{escape(view['model'] or '')}</h2><dl>{items}</dl>{units_table}<p>{close}</p></section>"
    )


def _rule_text(rule: dict[str, object] | None) -> str:
    if rule is None:
        return "—"
    prices = rule.get("prices") or {}
    listed = ", ".join(f"{k} {v}" for k, v in prices.items()) if isinstance(prices, dict) else ""
    variant = rule.get("variant") or []
    extra = f"; variant {variant}" if variant else ""
    dated = f" from {rule['price_date']}" if rule.get("price_date") else ""
    return f"{rule['provider']}/{rule['model']}{dated} ({rule['source']}){extra}: {listed or 'no per-unit prices'}"


def render_run(run: Run, call: str | None, page: int, every_ms: int) -> str:
    """The session page: totals, the call asked for (if any), tree, context fill, timeline."""
    sections = [_figures(run)]
    index = run.find(call) if call else None
    if call and index is None:
        sections.append(
            '<section id="call"><h2>Call</h2><p class="warn">No such call in this session.</p></section>'
        )
    elif index is not None:
        sections.append(_detail(run, index))
    sections += [_tree(run), _context(run), _timeline(run, page)]
    title = f"Session {run.session}"
    controls = f'<h2 class="skip">{escape(title)}</h2><p><a href="/sessions">← All sessions</a> · <b id="session-id">{escape(run.session)}</b></p>'
    pulse = "/api/pulse?" + urlencode({"session": run.session})
    return frame(title, "/sessions", controls, "".join(sections), pulse, every_ms)
