"""``report.html`` of a siting study (docs/study.md §3): tables and three figures.

* ``study_capex_cvar.png``: capex against the out-of-sample CVaR_α of the cost, per method,
  with the CVaR's bootstrap 95 % interval;
* ``study_spread.png``: the cost of every test seed, per method (paired seeds joined);
* ``study_probabilities.png``: each DRO method's worst-case probabilities p* of the training
  draws against the empirical 1/N.

Figures use matplotlib's object-oriented API on the Agg canvas, as :mod:`scenarios.report`.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from scenarios.report import _CSS, _empty, _save


def _ok_eval(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[(frame["status"] == "ok") & (frame["role"] == "evaluation")]


def fig_capex_cvar(result: dict[str, Any], path: Path) -> Path:
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    alpha = result["alpha"]
    for i, m in enumerate(result["methods"]):
        oos = m["out_of_sample"]["cost"]
        if not math.isfinite(oos["cvar"]):
            continue
        lo, hi = oos["cvar_ci95"]
        err = None if not math.isfinite(lo) else [[oos["cvar"] - lo], [hi - oos["cvar"]]]
        ax.errorbar([m["capex"]], [oos["cvar"]], yerr=err, fmt="o", capsize=4, color=f"C{i}",
                    label=m["name"])
    ax.set_xlabel("capex [$]")
    ax.set_ylabel(f"out-of-sample CVaR$_{{{alpha:g}}}$ of cost [$]")
    ax.set_title("Capex against out-of-sample tail cost (95 % bootstrap interval)")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def fig_spread(result: dict[str, Any], frame: pd.DataFrame, path: Path) -> Path:
    fig = Figure(figsize=(7, 4.5))
    ev = _ok_eval(frame)
    names = [m["name"] for m in result["methods"]]
    if ev.empty or "cost" not in ev:
        _empty(fig, "Cost over the test seeds", "no evaluation member ran")
        return _save(fig, path)
    ax = fig.add_subplot()
    wide = ev.pivot_table(index="seed", columns="method", values="cost").reindex(columns=names)
    x = np.arange(len(names))
    for _, row in wide.iterrows():
        ax.plot(x, row.to_numpy(float), color="0.75", lw=0.8, zorder=1)
    for i, name in enumerate(names):
        y = wide[name].dropna().to_numpy(float)
        ax.scatter(np.full(y.size, i), y, color=f"C{i}", zorder=2, s=18)
        if y.size:
            ax.hlines(y.mean(), i - 0.25, i + 0.25, color="k", lw=2, zorder=3)
    ax.set_xticks(x, names)
    ax.set_ylabel("out-of-sample cost [$]")
    ax.set_title("Cost per test seed (lines join a seed across methods; bar = mean)")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def fig_probabilities(result: dict[str, Any], path: Path) -> Path:
    fig = Figure(figsize=(7, 4.5))
    dro = [m for m in result["methods"] if m["worst_case_probabilities"]]
    if not dro:
        _empty(fig, "Worst-case probabilities", "no trained method")
        return _save(fig, path)
    ax = fig.add_subplot()
    colour = {x["name"]: f"C{i}" for i, x in enumerate(result["methods"])}  # as the other figures
    n = len(dro[0]["worst_case_probabilities"])
    width = 0.8 / len(dro)
    for i, m in enumerate(dro):
        p = np.asarray(m["worst_case_probabilities"], dtype=float)
        ax.bar(np.arange(p.size) + (i - (len(dro) - 1) / 2) * width, p, width=width,
               label=m["name"], color=colour[m["name"]])
    ax.axhline(1.0 / n, color="k", ls="--", lw=1, label="empirical 1/N")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("training draw")
    ax.set_ylabel("probability")
    ax.set_title("Worst-case probabilities p* against the empirical law")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def _num(x: Any, fmt: str = ".4g") -> str:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return "–"
    return format(v, fmt) if math.isfinite(v) else "–"


def _ci(pair: Any) -> str:
    if not pair or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in pair):
        return "–"
    return f"[{_num(pair[0])}, {_num(pair[1])}]"


def methods_table(result: dict[str, Any]) -> str:
    head = ("<tr><th>method</th><th>capex [$]</th><th>FCMs</th><th>in-sample mean Q per shock event "
            "(empirical law, integer recourse) [$]</th><th>KPI</th><th>mean</th><th>95 % CI</th>"
            f"<th>CVaR<sub>{result['alpha']:g}</sub></th><th>95 % CI</th><th>n</th></tr>")
    body = []
    for m in result["methods"]:
        fcms = ", ".join(f"{p['kind']}@{p['bus']} {p['p_mw']:g} MW"
                         for p in m["siting"]["placements"]) or "none"
        ins = m["in_sample"] or {}
        kpis = list(m["out_of_sample"].items())
        for j, (k, s) in enumerate(kpis):
            first = (f"<td rowspan={len(kpis)}>{html.escape(m['name'])}</td>"
                     f"<td rowspan={len(kpis)} class=num>{_num(m['capex'], ',.0f')}</td>"
                     f"<td rowspan={len(kpis)}>{html.escape(fcms)}</td>"
                     f"<td rowspan={len(kpis)} class=num>"
                     f"{_num(ins.get('nominal_expected_cost_per_event'))}</td>") if j == 0 else ""
            body.append(f"<tr>{first}<td>{k}</td><td class=num>{_num(s['mean'])}</td>"
                        f"<td>{_ci(s['ci95'])}</td><td class=num>{_num(s['cvar'])}</td>"
                        f"<td>{_ci(s['cvar_ci95'])}</td><td class=num>{s['n']}</td></tr>")
    return f"<table><thead>{head}</thead><tbody>{''.join(body)}</tbody></table>"


def comparisons_table(result: dict[str, Any]) -> str:
    rows = result.get("comparisons") or []
    if not rows:
        return '<p class="note">No comparison (SAA or none not among the methods).</p>'
    body = "".join(
        f"<tr><td>{html.escape(c['method'])} − {html.escape(c['against'])}</td>"
        f"<td class=num>{_num(c['mean_diff'])}</td><td>{_ci(c['mean_diff_ci95'])}</td>"
        f"<td class=num>{_num(c['cvar_diff'])}</td><td>{_ci(c['cvar_diff_ci95'])}</td>"
        f"<td class=num>{c['n']}</td></tr>" for c in rows)
    return ("<table><thead><tr><th>paired on the test seeds</th><th>mean cost difference "
            "[$]</th><th>95 % CI</th><th>CVaR difference [$]</th><th>95 % CI</th><th>seeds</th>"
            f"</tr></thead><tbody>{body}</tbody></table>"
            '<p class="note">Negative = the first method cost less. An interval that holds 0 '
            "does not separate the methods.</p>")


def bound_table(result: dict[str, Any]) -> str:
    body = []
    for m in result["methods"]:
        b = m.get("bound")
        if not b:
            continue
        for key, d in b.items():
            if key.endswith("_minus_perfect"):
                body.append(f"<tr><td>{html.escape(m['name'])}</td><td>{key.split('_')[0]}</td>"
                            f"<td class=num>{_num(b['perfect_cost']['mean'])}</td>"
                            f"<td class=num>{_num(d['mean_diff'])}</td><td>{_ci(d['mean_diff_ci95'])}</td>"
                            f"<td class=num>{d['n']}</td></tr>")
    if not body:
        return ('<p class="note">No perfect-foresight runs (run the study with '
                "--perfect-foresight).</p>")
    return ("<table><thead><tr><th>method</th><th>controller</th><th>perfect-foresight MPC "
            "mean cost [$]</th><th>controller − bound, mean [$]</th><th>95 % CI</th><th>seeds"
            f"</th></tr></thead><tbody>{''.join(body)}</tbody></table>")


def write_study_report(out_dir: Path, result: dict[str, Any], frame: pd.DataFrame) -> Path:
    """Write ``report.html`` and its figures into ``out_dir``; return the HTML path."""
    out_dir = Path(out_dir)
    figs = [
        (fig_capex_cvar(result, out_dir / "study_capex_cvar.png"), "Capex against out-of-sample CVaR"),
        (fig_spread(result, frame, out_dir / "study_spread.png"), "Spread over the test seeds"),
        (fig_probabilities(result, out_dir / "study_probabilities.png"),
         "Worst-case against empirical probabilities"),
    ]
    shift = ", ".join(f"{s}.{f} = {v}" for s, d in result["shift"].items() for f, v in d.items())
    meta = {
        "scenario": result["scenario"], "controller": result["controller"],
        "hours per member": f"{result['hours']:g}", "α": f"{result['alpha']:g}",
        "training draws": len(result["train_seeds"]), "test seeds": len(result["test_seeds"]),
        "shift": shift or "none (test law = training law)",
        "members": f"{result['members']} ({result['failed']} failed)",
        "engine": f"{result['engine']['dask']} with {result['engine']['workers']} worker(s)",
    }
    dl = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>" for k, v in meta.items())
    figs_html = "\n".join(f'<h2>{html.escape(t)}</h2><img src="{p.name}" alt="{html.escape(t)}">'
                          for p, t in figs)
    doc = (f"<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8><title>"
           f"{html.escape(result['scenario'])}: siting study</title><style>{_CSS}</style></head>"
           f"<body>\n<h1>{html.escape(result['scenario'])}: siting study</h1>\n<dl>{dl}</dl>\n"
           f"<h2>Methods</h2>\n{methods_table(result)}\n"
           '<p class="note">cost = the scenario\'s Stage-II weights applied to the realised '
           "KPIs (docs/study.md §2). CI: percentile bootstrap, fixed seed.</p>\n"
           f"<h2>Against SAA and against no FCM</h2>\n{comparisons_table(result)}\n"
           f"<h2>Distance to the perfect-foresight bound</h2>\n{bound_table(result)}\n"
           f"{figs_html}\n</body></html>\n")
    path = out_dir / "report.html"
    tmp = out_dir / ".report.html.partial"
    tmp.write_text(doc, encoding="utf-8")
    tmp.replace(path)
    return path
