"""The index of the latent dashboards: one row per page, searchable and sortable by a
little vanilla JS that writes the (escaped JSON) data with ``textContent`` only."""

from __future__ import annotations

import html
from typing import Any

from interp.report.htmlkit import json_scalar, script_json
from interp.report.page import dashboard_page
from interp.report.sweepdata import LatentTable, Point


def index_entry(
    point: Point, latent: int, table: LatentTable, row: int, why: str, scorers: list[str]
) -> dict[str, Any]:
    entry = {
        "href": f"{point.point_id}/{latent}.html",
        "dictionary": point.sae_id,
        "layer": point.layer,
        "latent": latent,
        "chosen": why,
        "status": json_scalar(table.text("status")[row]),
        "explanation": json_scalar(table.text("explanation")[row]),
        "n_active_tokens": json_scalar(table.number("n_active_tokens")[row]),
    }
    for s in scorers:
        entry[s] = json_scalar(table.score(s)[row])
    return entry


def index_page(entries: list[dict[str, Any]], scorers: list[str]) -> str:
    """The searchable, sortable table of every latent page (data as escaped JSON)."""
    columns = ["dictionary", "layer", "latent", "chosen", "status", *scorers,
               "n_active_tokens", "explanation"]  # fmt: skip
    data = script_json({"columns": columns, "rows": entries})
    head = "".join(f'<th data-col="{html.escape(c)}">{html.escape(c)}</th>' for c in columns)
    body = (
        '<h1>Latent dashboards</h1><p><input id="q" type="search" placeholder="search '
        'explanations, dictionaries, status..." size="50"> <span id="count"></span></p>'
        f'<table id="latents"><thead><tr>{head}</tr></thead><tbody></tbody></table>'
        f'<script type="application/json" id="data">{data}</script><script>{INDEX_JS}</script>'
    )
    return dashboard_page("Latent dashboards", body)


INDEX_JS = """
(function () {
  var data = JSON.parse(document.getElementById('data').textContent);
  var cols = data.columns, rows = data.rows, sortCol = null, sortDir = 1;
  var tbody = document.querySelector('#latents tbody'), q = document.getElementById('q');
  function cell(row, c) {
    var td = document.createElement('td'), v = row[c];
    if (c === 'latent') {
      var a = document.createElement('a'); a.href = row.href; a.textContent = String(v);
      td.appendChild(a);
    } else {
      td.textContent = v === null || v === undefined ? '' :
        (typeof v === 'number' && !Number.isInteger(v) ? v.toFixed(3) : String(v));
    }
    return td;
  }
  function cmp(a, b) {
    var x = a[sortCol], y = b[sortCol];
    if (x === null || x === undefined) return 1;
    if (y === null || y === undefined) return -1;
    if (typeof x === 'number' && typeof y === 'number') return (x - y) * sortDir;
    return String(x).localeCompare(String(y)) * sortDir;
  }
  function render() {
    var needle = q.value.toLowerCase(), shown = rows.filter(function (r) {
      return !needle || cols.some(function (c) {
        return r[c] !== null && String(r[c]).toLowerCase().indexOf(needle) >= 0;
      });
    });
    if (sortCol !== null) shown.sort(cmp);
    tbody.textContent = '';
    shown.forEach(function (r) {
      var tr = document.createElement('tr');
      cols.forEach(function (c) { tr.appendChild(cell(r, c)); });
      tbody.appendChild(tr);
    });
    document.getElementById('count').textContent = shown.length + ' of ' + rows.length + ' latents';
  }
  document.querySelectorAll('#latents th').forEach(function (th) {
    th.addEventListener('click', function () {
      var c = th.getAttribute('data-col');
      sortDir = sortCol === c ? -sortDir : (typeof rows[0] === 'object' &&
        typeof rows[0][c] === 'number' ? -1 : 1);
      sortCol = c;
      document.querySelectorAll('#latents th').forEach(function (h) { h.className = ''; });
      th.className = sortDir > 0 ? 'asc' : 'desc';
      render();
    });
  });
  q.addEventListener('input', render);
  render();
})();
"""
