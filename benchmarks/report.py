"""Results out: JSON (everything), Markdown (the tables the READMEs show), PNG (the chart)."""

from __future__ import annotations

import json
from pathlib import Path

LOAD_SCENARIOS = ("header", "subdomain", "jwt", "pins", "tls")
SERIES_ORDER = ("router", "haproxy", "nginx", "router (no token cache)", "router-pure", "floor")
COLORS = {"router": "#2b7bba", "haproxy": "#d9822b", "nginx": "#3a9d5d", "router (no token cache)": "#9bbbd9",
          "router-pure": "#6f5fb0", "floor": "#999999"}


def rows(doc: dict) -> list[dict]:
    """One row per (scenario, system variant) of the load scenarios, with its HAProxy ratios."""
    out = []
    for name in LOAD_SCENARIOS:
        sc = doc["scenarios"].get(name)
        if not sc or "results" not in sc:
            continue
        res = sc["results"]
        for label, r in res.items():
            m = r["median"]
            if name == "pins":
                series, group = r["system"], "pins " + label.split(" ", 1)[1].replace(" pins", "")
            else:
                series, group = label, name
            # The HAProxy row of the same variant (pins: of the same table size).
            base_label = label.replace(r["system"], "haproxy", 1)
            base = res.get(base_label) if base_label != label else None
            base = base or res.get("haproxy")
            row = {"scenario": name, "group": group, "series": series, "label": label, **m,
                   "peak_rss_mib": r["peak_rss_mib"]}
            if base is not None and base is not r:
                bm = base["median"]
                row["rps_vs_haproxy"] = m["rps"] / bm["rps"] if bm.get("rps") else None
                row["cpu_vs_haproxy"] = (m["cpu_us_per_req"] / bm["cpu_us_per_req"]
                                         if bm.get("cpu_us_per_req") else None)
            out.append(row)
    return out


def _f(value, fmt: str, dash: str = "–") -> str:
    return dash if value is None else format(value, fmt)


def bar_checks(doc: dict) -> list[tuple[str, str, str]]:
    """The project's speed targets (benchmarks/README.md) and issue 8's bar, each as (target, measured, verdict)."""
    checks = []
    sc = doc["scenarios"]
    hdr = sc.get("header", {}).get("ratios", {}).get("router/haproxy", {})
    if hdr:
        cpu, rps = hdr.get("cpu_us_per_req"), hdr.get("rps")
        checks.append(("header routing: CPU/request <= 1.25 x HAProxy", f"{cpu:.2f} x",
                       "met" if cpu is not None and cpu <= 1.25 else "NOT met"))
        checks.append(("header routing: requests/s >= 0.8 x HAProxy", f"{rps:.2f} x",
                       "met" if rps is not None and rps >= 0.8 else "NOT met"))
    sub = sc.get("subdomain", {}).get("ratios", {}).get("router/haproxy", {})
    if sub:
        checks.append(("subdomain routing: CPU/request <= 1.25 x HAProxy", f"{sub['cpu_us_per_req']:.2f} x",
                       "met" if sub["cpu_us_per_req"] <= 1.25 else "NOT met"))
        checks.append(("subdomain routing: requests/s >= 0.8 x HAProxy", f"{sub['rps']:.2f} x",
                       "met" if sub["rps"] >= 0.8 else "NOT met"))
    jwt = sc.get("jwt", {}).get("ratios", {}).get("router/haproxy", {})
    if jwt:
        checks.append(("JWT with token reuse: requests/s > HAProxy verifying each request", f"{jwt['rps']:.2f} x",
                       "met" if jwt["rps"] > 1.0 else "NOT met"))
    pins = sc.get("pins", {}).get("ratios", {})
    for key, r in pins.items():
        if key.startswith("router"):
            checks.append((f"{key.split(': ')[1]} pins: lookups as fast (req/s ratio, CPU/request ratio)",
                           f"{r.get('rps', 0):.2f} x req/s, {r.get('cpu_us_per_req', 0):.2f} x CPU",
                           "met" if r.get("cpu_us_per_req", 9) <= 1.1 else "NOT met"))
            checks.append(("memory growth with the big table < 200 MB", f"{r['rss_growth_mib']:.0f} MiB",
                           "met" if r["rss_growth_mib"] * 1.048576 < 200 else "NOT met"))
    reload = sc.get("reload", {}).get("result")
    if reload and reload.get("served_within_s"):
        slowest = max(reload["served_within_s"])
        failed = reload["reload"]["failed"]
        checks.append((f"reload of the full {reload['pins']:,}-pin table within 2 s, no failed requests "
                       f"(changes {reload.get('gap_s', 0):g} s apart)",
                       f"slowest {slowest:.2f} s, {failed} failed",
                       "met" if slowest <= 2.0 and failed == 0 else "NOT met"))
    stress = sc.get("reload", {}).get("back_to_back")
    if stress and stress.get("served_within_s"):
        served = stress["served_within_s"]
        checks.append(("(stress, no target) the same reloads back to back",
                       f"{min(served):.2f}-{max(served):.2f} s, {stress['reload']['failed']} failed", "–"))
    tls = sc.get("tls", {}).get("ratios", {}).get("router/haproxy", {})
    if tls.get("cpu_us_per_req"):
        checks.append(("keep-alive TLS: CPU/request <= 2 x HAProxy", f"{tls['cpu_us_per_req']:.2f} x",
                       "met" if tls["cpu_us_per_req"] <= 2.0 else "NOT met"))
    hs = sc.get("tls-handshake", {}).get("ratios", {}).get("router/haproxy full")
    if hs:
        # The handshake is OpenSSL's work in every system; the client processes share one
        # core, so per CPU-second is the figure a saturated server would show.
        checks.append(("full TLS handshakes/s >= 0.8 x HAProxy (connections/s; per server CPU-second)",
                       f"{hs['per_second']:.2f} x; {1 / hs['cpu_us_per_conn']:.2f} x",
                       "met" if min(hs["per_second"], 1 / hs["cpu_us_per_conn"]) >= 0.8 else "NOT met"))
    checks += workers_checks(sc.get("workers", {}))
    bodies = sc.get("bodies", {}).get("results", {}).get("router")
    if bodies and "upload" in bodies:
        g = bodies["upload"]["rss_growth_mib"]
        checks.append(("1 GiB upload raises router memory < 50 MB", f"+{g:.1f} MiB",
                       "met" if bodies["upload"]["ok"] and g * 1.048576 < 50 else "NOT met"))
    return checks


def workers_checks(w: dict) -> list[tuple[str, str, str]]:
    checks = []
    scaling = w.get("scaling", {})
    if "router" in scaling:
        r = scaling["router"]["rps_2_over_1"]
        h = scaling.get("haproxy", {}).get("rps_2_over_1")
        # When HAProxy does not scale either, the load side (wrk and the backend on the
        # same cores) is what limits: the run cannot show scaling (benchmarks/README.md).
        bound = h is not None and h < 1.5
        checks.append(("workers: requests/s grow >= 0.9 x per core added (2 workers / 1; "
                       f"{w.get('cpus', '?')} cores shared with wrk and the backend)",
                       f"{r:.2f} x" + (f" (HAProxy nbthread 2 / 1: {h:.2f} x)" if h else ""),
                       "not measurable here: load-side bound" if bound else "met" if r >= 1.9 else "NOT met"))
    two = w.get("memory", {}).get("results", {}).get("2 workers", {})
    if "vs_single_process" in two:
        checks.append((f"workers: {w['memory']['pins']:,} pins, 2 workers + supervisor PSS <= 1.5 x the single "
                       "process", f"{two['vs_single_process']:.2f} x", "met" if two["vs_single_process"] <= 1.5 else "NOT met"))
    kill = w.get("failures", {}).get("kill_9")
    if kill:
        # wrk cannot tell which worker a failed request was on: the figure is bounded by
        # what the killed worker held (tests/process checks the others lose nothing).
        held = kill.get("victim_connections", 0)
        checks.append(("workers: kill -9 of a worker fails only what it had in flight (wrk -c32)",
                       f"{kill['failed']} failed, the killed worker held {held} connections",
                       "met" if kill["failed"] <= held else "NOT met"))
    health = w.get("health", {})
    if health.get("max_down_lag_ms") is not None:
        checks.append(("workers: a health transition reaches every worker within 100 ms",
                       f"{health['max_down_lag_ms']:.0f} ms at most after the supervisor's /stamps showed it "
                       f"({health['transitions']} transitions, 2 workers)",
                       "met" if health["max_down_lag_ms"] <= 100 else "NOT met"))
    take = w.get("failures", {}).get("takeover")
    if take:
        checks.append(("workers: no failed request across a takeover (wrk -c32)",
                       f"{take['failed']} of {take['requests']:,}", "met" if take["failed"] == 0 else "NOT met"))
    return checks


def workers_lines(w: dict) -> list[str]:
    if not w or "results" not in w:
        return [] if not w else ["", f"## Workers: not measured ({w.get('failed') or w.get('skipped')})"]
    lines = ["", f"## Workers ({w['description']})", "",
             "| system | req/s | CPU µs/req | user + sys µs | p99 ms | CPU share per process | errors |",
             "|---|---:|---:|---:|---:|---|---:|"]
    for label, r in w["results"].items():
        m = r["median"]
        shares = r["rounds"][-1].get("cpu_share") if r["rounds"] else None
        lines.append(f"| {label} | {m['rps']:,.0f} | {m['cpu_us_per_req']:.1f} | {_f(m.get('user_us_per_req'), '.0f')} + "
                     f"{_f(m.get('sys_us_per_req'), '.0f')} | {m['p99_ms']:.2f} | "
                     f"{' / '.join(f'{x:.2f}' for x in shares) if shares and len(shares) > 1 else '–'} | "
                     f"{m.get('errors', 0):.0f} |")
    for name, s in w.get("scaling", {}).items():
        lines.append(f"\n{name}: 2 / 1 = {s['rps_2_over_1']:.2f} x requests/s, {s['cpu_per_req_2_over_1']:.2f} x CPU "
                     "per request.")
    bal = w.get("balance")
    if bal:
        ka, cp = bal["keep_alive"], bal["connection_per_request"]
        lines += ["", "Balance over 2 workers accepting on one socket (CPU shares: supervisor, worker 0, worker 1): "
                  f"keep-alive, {sum(ka['connections_per_worker'])} connections split "
                  f"{' / '.join(map(str, ka['connections_per_worker']))}, CPU {' / '.join(map(str, ka['cpu_share']))}; "
                  f"a new connection per request ({cp['rps']:,} req/s), CPU {' / '.join(map(str, cp['cpu_share']))}."]
    mem = w.get("memory")
    if mem and mem.get("results"):
        lines += ["", f"Memory with {mem['pins']:,} pins (PSS from /proc/PID/smaps_rollup, summed over the router's "
                  f"processes; the single process is {mem['single_process_code']}):", "",
                  "| router | processes | PSS MiB idle | PSS MiB after load | per process | ÷ single process |",
                  "|---|---:|---:|---:|---|---:|"]
        for label, r in mem["results"].items():
            lines.append(f"| {label} | {r['processes']} | {r['pss_mib_idle']:.0f} | {r['pss_mib_loaded']:.0f} | "
                         f"{' / '.join(f'{x:.0f}' for x in r['pss_mib_per_process'])} | "
                         f"{_f(r.get('vs_single_process'), '.2f')} |")
    fails = w.get("failures")
    if fails:
        lines += ["", "| under wrk -c32 | requests | failed | wrk errors | |", "|---|---:|---:|---|---|"]
        k = fails.get("kill_9")
        if k:
            lines.append(f"| kill -9 of one of 2 workers | {k['requests']:,} | {k['failed']} | {k['errors']} | "
                         f"the killed worker held {k.get('victim_connections', '?')} of the "
                         f"{k.get('victim_connections', 0) + k.get('other_connections', 0)} connections (what it had "
                         f"in flight is lost with it); replaced in {_f(k.get('replaced_within_s'), '.3f')} s |")
        t = fails.get("takeover")
        if t:
            lines.append(f"| serve --takeover | {t['requests']:,} | {t['failed']} | {t['errors']} | "
                         f"old router gone {_f(t.get('old_gone_after_s'), '.1f')} s after the new one started |")
    health = w.get("health")
    if health and "results" in health:
        lines += ["", f"Health transitions (`{health['command']}`): a backend marked down was given no request by "
                  f"either worker later than {health['max_down_lag_ms']} ms after the supervisor's /stamps showed it "
                  f"down; back up, each worker first gave it a request within {health['max_up_lag_ms']} ms (that "
                  "includes the balancer's choice between the two backends)."]
    return lines


def markdown(doc: dict) -> str:
    m = doc["machine"]
    s = doc["settings"]
    lines = [
        f"# stamp-router benchmark results",
        "",
        f"- Date: {doc['date']}",
        f"- Command: `{doc['command']}`",
        f"- Machine: {m['cpu_model']}, {m['cores']} cores, {m['mem_mib']} MiB, Linux {m['kernel']}",
        f"- Load: wrk {s['threads']} thread, {s['connections']} keep-alive connections, {s['duration']:g} s per "
        f"round, {s['rounds']} rounds alternating the systems, medians shown; {s['pinning']}",
        f"- Versions: {doc['versions']}",
        f"- Code: commit {doc['git']['commit']}"
        + (" plus uncommitted changes under router/" if doc["git"]["router_uncommitted_changes"] else ""),
        f"- Load average at start: {doc['loadavg_start']}, at end: {doc.get('loadavg_end', '?')}",
    ]
    failed = {n: sc["failed"] for n, sc in doc["scenarios"].items() if isinstance(sc, dict) and "failed" in sc}
    if failed:
        lines += ["", "Scenarios that failed: " + "; ".join(f"{n}: {why}" for n, why in failed.items())]
    if rows(doc):
        lines += ["", "## Routing under load", "",
                  "| scenario | system | req/s | p50 ms | p99 ms | p99.9 ms | CPU µs/req | user + sys µs | peak RSS MiB | req/s ÷ HAProxy | CPU ÷ HAProxy | spread req/s |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows(doc):
        errs = f" ({r['errors']:.0f} errors)" if r.get("errors") else ""
        lines.append(
            f"| {r['group']} | {r['series']}{errs} | {r['rps']:,.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
            f"{r['p999_ms']:.2f} | {r['cpu_us_per_req']:.1f} | "
            f"{_f(r.get('user_us_per_req'), '.0f')} + {_f(r.get('sys_us_per_req'), '.0f')} | {r['peak_rss_mib']:.0f} | "
            f"{_f(r.get('rps_vs_haproxy'), '.2f')} | {_f(r.get('cpu_vs_haproxy'), '.2f')} | "
            f"{_f(r.get('rps_spread'), '.0%')} |")
    checks = bar_checks(doc)
    if checks:
        lines += ["", "## Against the targets", "", "| target | measured | |", "|---|---|---|"]
        lines += [f"| {t} | {v} | {ok} |" for t, v, ok in checks]
    pins = doc["scenarios"].get("pins")
    if pins and pins.get("ratios"):
        lines += ["", "## Pin table size", "", "| system | req/s ratio big/100 | CPU ratio big/100 | RSS growth MiB | start-up with big table s |",
                  "|---|---:|---:|---:|---:|"]
        for key, r in pins["ratios"].items():
            lines.append(f"| {key} | {_f(r.get('rps'), '.2f')} | {_f(r.get('cpu_us_per_req'), '.2f')} | "
                         f"{r['rss_growth_mib']:.0f} | {r['startup_s_big']:.1f} |")
    bodies = doc["scenarios"].get("bodies")
    if bodies and bodies.get("results"):
        lines += ["", f"## {bodies['description']}", "",
                  "| system | direction | ok | MiB/s | RSS before MiB | RSS peak MiB | growth MiB | proxy CPU s/GiB |",
                  "|---|---|---|---:|---:|---:|---:|---:|"]
        for name, r in bodies["results"].items():
            for d in ("upload", "download"):
                if d in r:
                    x = r[d]
                    lines.append(f"| {name} | {d} | {'yes' if x['ok'] else 'NO'} | {x['mib_s']:.0f} | "
                                 f"{x['rss_before_mib']:.0f} | {x['rss_peak_mib']:.0f} | {x['rss_growth_mib']:.1f} | "
                                 f"{x['cpu_s_per_gib']:.2f} |")
    lines += handshake_lines(doc)
    sysc = doc["scenarios"].get("syscalls")
    if sysc and sysc.get("results"):
        lines += ["", "## System calls per request (strace -c, header routing)", "",
                  "| system | total | per request |", "|---|---:|---|"]
        for name, r in sysc["results"].items():
            lines.append(f"| {name} | {r['total_per_request']:.2f} | "
                         + ", ".join(f"{k} {v:.2f}" for k, v in r["per_request"].items()) + " |")
    reload = doc["scenarios"].get("reload")
    if reload:
        lines += ["", "## Latency during full table reloads (benchmarks/reload_latency.py)", ""]
        if reload.get("result") is None:
            lines.append(f"Not measured: {reload.get('skipped', 'no result')}.")
        for key in ("result", "back_to_back"):
            r = reload.get(key)
            if r is None:
                continue
            served = r.get("served_within_s") or []
            command = reload.get(f"command_{key}", reload.get("command"))
            lines += ([] if key == "result" else ["", "Back to back (stress: the next change as soon as the last is "
                                                      "served; no target):", ""]) + [
                      f"`{command}`: {r['pins']:,} pins, {r['client']} at up to {r['rate']:.0f} req/s "
                      f"over {r['connections']} connections, {r['duration_s']:g} s per phase; {r['reloads']} reloads "
                      f"during the reload phase, change to served in "
                      + (f"{min(served):.2f}-{max(served):.2f} s" if served else "–")
                      + f"; {r['rejected_reloads']:.0f} rejected; router RSS {r['router_rss_mb']['start']} MB at start, "
                      f"{r['router_rss_mb']['end']} MB at the end.", "",
                      "| phase | requests | failed | p50 ms | p99 ms | p99.9 ms | max ms |", "|---|---:|---:|---:|---:|---:|---:|"]
            for phase in ("quiet", "reload"):
                x = r[phase]
                lines.append(f"| {phase} | {x['requests']:,} | {x['failed']} | {x['p50']:.2f} | {x['p99']:.2f} | "
                             f"{x['p999']:.2f} | {x['max']:.1f} |")
    lines += workers_lines(doc["scenarios"].get("workers"))
    lines += profile_lines(doc)
    notes = [n for sc in doc["scenarios"].values() if isinstance(sc, dict) for n in sc.get("notes", [])]
    if notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def handshake_lines(doc: dict) -> list[str]:
    hs = doc["scenarios"].get("tls-handshake")
    if not hs or not hs.get("results"):
        return []
    lines = ["", f"## New TLS connections per second ({hs['description']})", "",
             f"`{hs['command']}` against each system, rounds alternating, medians shown.", "",
             "| system | handshake | conn/s | CPU µs/conn | user + sys µs | conn per CPU-second | proxy core % | "
             "resumed | errors | conn/s ÷ HAProxy | CPU ÷ HAProxy |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in hs["results"].items():
        for mode in ("full", "resumed"):
            if mode not in r:
                continue
            m = r[mode]["median"]
            base = hs["results"].get("haproxy", {}).get(mode, {}).get("median") if name != "haproxy" else None
            lines.append(
                f"| {name} | {mode} | {m['per_second']:,.0f} | {m['cpu_us_per_conn']:.0f} | "
                f"{m['user_us_per_conn']:.0f} + {m['sys_us_per_conn']:.0f} | {_f(m.get('per_cpu_second'), ',.0f')} | "
                f"{100 * m['cpu_util']:.0f} | {m['resumed_share']:.0%} | {m['errors']} | "
                f"{_f(base and m['per_second'] / base['per_second'], '.2f')} | "
                f"{_f(base and m['cpu_us_per_conn'] / base['cpu_us_per_conn'], '.2f')} |")
    return lines


def profile_lines(doc: dict) -> list[str]:
    lines: list[str] = []
    prof = doc["scenarios"].get("profile")
    if prof:
        lines += ["", "## Where the router's CPU goes (py-spy)", ""]
        if "skipped" in prof:
            lines.append(f"Not profiled: {prof['skipped']}.")
        for mode, p in prof.items():
            if not isinstance(p, dict) or "self_by_function" not in p:
                continue
            lines += [f"### {mode} routing: {p['samples']} samples, {p.get('rps_while_sampled', '?')} req/s while "
                      f"sampled (flame graph `results/{p['flamegraph']}`)", "",
                      "| % | self time by function (C included) | | % | by innermost router line (its C callees included) |",
                      "|---:|---|---|---:|---|"]
            for a, b in zip(p["self_by_function"][:12], p["self_by_line"][:12]):
                lines.append(f"| {a['percent']} | `{a['entry']}` | | {b['percent']} | `{b['entry']}` |")
            # Frames on every stack (main, the loop's run) say nothing: left out.
            inclusive = [a for a in p["inclusive_by_function"] if a["percent"] < 99][:10]
            lines += ["", "| inclusive % | function |", "|---:|---|"]
            lines += [f"| {a['percent']} | `{a['entry']}` |" for a in inclusive]
            lines.append("")
    return lines


def summary_table(doc: dict) -> str:
    """The compact table for the top-level README."""
    lines = ["| scenario | system | req/s | p99 ms | p99.9 ms | CPU µs/req | peak RSS MiB | req/s ÷ HAProxy | CPU ÷ HAProxy |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows(doc):
        lines.append(f"| {r['group']} | {r['series']} | {r['rps']:,.0f} | {r['p99_ms']:.2f} | {r['p999_ms']:.2f} | "
                     f"{r['cpu_us_per_req']:.1f} | {r['peak_rss_mib']:.0f} | {_f(r.get('rps_vs_haproxy'), '.2f')} | "
                     f"{_f(r.get('cpu_vs_haproxy'), '.2f')} |")
    return "\n".join(lines) + "\n"


def chart(doc: dict, path: Path) -> str | None:
    """Grouped bars: req/s, CPU per request and p99 for each scenario and system."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install -e '.[bench]'): no chart"
    data = rows(doc)
    if not data:
        return "no load results to chart"
    groups = list(dict.fromkeys(r["group"] for r in data))
    series = [s for s in SERIES_ORDER if any(r["series"] == s for r in data)]
    panels = (("rps", "requests per second (higher is better)"),
              ("cpu_us_per_req", "proxy CPU µs per request (lower is better)"),
              ("p99_ms", "p99 latency, ms (lower is better)"))
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    width = 0.8 / max(1, len(series))
    for ax, (key, title) in zip(axes, panels):
        for i, s in enumerate(series):
            xs, ys = [], []
            for g, group in enumerate(groups):
                for r in data:
                    if r["group"] == group and r["series"] == s:
                        xs.append(g + (i - (len(series) - 1) / 2) * width)
                        ys.append(r[key])
            ax.bar(xs, ys, width, label=s, color=COLORS.get(s))
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels(groups, rotation=20, ha="right", fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    m, s = doc["machine"], doc["settings"]
    fig.suptitle(f"stamp-router vs HAProxy vs nginx, one worker each — {doc['date']}, {m['cores']} cores "
                 f"({m['cpu_model']}), wrk -c{s['connections']} -t{s['threads']}, median of {s['rounds']}x{s['duration']:g}s",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None
