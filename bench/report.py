"""The side-by-side table, the checks against the performance budget, and the JSON file."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.load import LoadResult, TtfbResult

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"


@dataclass
class Row:
    scenario: str
    stream: bool
    chunks: int
    concurrency: int
    direct: LoadResult
    gateway: LoadResult
    peers: dict[str, LoadResult] = field(default_factory=dict)  # python -m bench --peers

    @property
    def ratio(self) -> float:
        return self.gateway.rps / self.direct.rps if self.direct.rps else 0.0

    @property
    def added_p50_ms(self) -> float:
        return self.gateway.p50_ms - self.direct.p50_ms

    @property
    def added_p99_ms(self) -> float:
        return self.gateway.p99_ms - self.direct.p99_ms


@dataclass
class Check:
    name: str
    target: str
    measured: str
    ok: bool


def _errors(result: LoadResult) -> str:
    if not result.errors:
        return "0"
    return f"{result.non_2xx} non-2xx + {result.socket_errors} socket"


def table(rows: list[Row]) -> str:
    head = (
        f"{'scenario':<20}{'direct rps':>11}{'gateway rps':>12}{'gw/direct':>10}"
        f"{'direct p50/p99 ms':>19}{'gateway p50/p99 ms':>20}{'added p50/p99 ms':>18}"
        f"  errors direct | gateway"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        d, g = r.direct, r.gateway
        lines.append(
            f"{r.scenario:<20}{d.rps:>11.0f}{g.rps:>12.0f}{r.ratio:>9.1%} "
            f"{d.p50_ms:>10.3f}/{d.p99_ms:<8.3f}{g.p50_ms:>11.3f}/{g.p99_ms:<8.3f}"
            f"{r.added_p50_ms:>+9.3f}/{r.added_p99_ms:<+8.3f}  {_errors(d)} | {_errors(g)}"
        )
    for r in rows:
        if r.chunks >= 100:
            d_cps, g_cps = r.direct.rps * r.chunks, r.gateway.rps * r.chunks
            lines.append(
                f"{r.scenario}: {d_cps:,.0f} chunks/s direct, {g_cps:,.0f} through the gateway "
                f"({1 - r.ratio:.1%} throughput lost; added per chunk at p50 "
                f"{r.added_p50_ms * 1000 / r.chunks:.1f} us)"
            )
    return "\n".join(lines)


def cpu_table(rows: list[Row]) -> str:
    """CPU time per request of the mock and the gateway (they share the machine's cores)."""
    head = f"{'CPU us per request':<20}{'mock (direct)':>14}{'mock (via gw)':>14}{'gateway':>10}"
    lines = [head, "-" * len(head)]
    for r in rows:
        d, g = r.direct.cpu_us, r.gateway.cpu_us
        lines.append(
            f"{r.scenario:<20}{d.get('mock', 0):>14.0f}{g.get('mock', 0):>14.0f}"
            f"{g.get('gateway', 0):>10.0f}"
        )
    return "\n".join(lines)


def ttfb_table(direct: TtfbResult, gateway: TtfbResult) -> str:
    def line(what: str, d50: float, d99: float, g50: float, g99: float) -> str:
        return (
            f"{what:<28}{d50:>8.3f}/{d99:<8.3f}{g50:>9.3f}/{g99:<8.3f}"
            f"{g50 - d50:>+9.3f}/{g99 - d99:<+8.3f}"
        )

    head = f"{'streaming, c1 (Python client)':<28}{'direct p50/p99':>17}{'gateway p50/p99':>18}"
    head += f"{'added p50/p99 ms':>18}"
    return "\n".join(
        [
            head,
            "-" * len(head),
            line(
                "time to first byte (frame)",
                direct.first_frame_p50_ms,
                direct.first_frame_p99_ms,
                gateway.first_frame_p50_ms,
                gateway.first_frame_p99_ms,
            ),
            line(
                "time to first token",
                direct.first_token_p50_ms,
                direct.first_token_p99_ms,
                gateway.first_token_p50_ms,
                gateway.first_token_p99_ms,
            ),
            f"requests: {direct.requests} direct ({direct.errors} errors), "
            f"{gateway.requests} gateway ({gateway.errors} errors)",
        ]
    )


# The performance budget of the project's design (docs/performance.md quotes it).
ADDED_P50_MS, ADDED_P99_MS, ADDED_TTFT_MS = 0.6, 2.0, 0.7
NON_STREAM_SHARE = 0.25  # of the direct call's non-streaming throughput at c64
LONG_STREAM_POINTS = 0.05  # lost by a 1,000-chunk stream beyond what the floor loses
IDLE_RSS_MB = 60


def checks(
    rows: list[Row], ttfb: tuple[TtfbResult, TtfbResult], idle_rss_mb: float | None
) -> list[Check]:
    """The performance budget, as far as this run measures it (the floor's figures
    only with ``--peers``)."""
    out: list[Check] = []
    for r in rows:
        if r.concurrency == 1 and r.chunks < 100:
            out.append(
                Check(
                    f"added latency, {r.scenario}",
                    f"p50 <= {ADDED_P50_MS} ms, p99 <= {ADDED_P99_MS:.0f} ms",
                    f"p50 {r.added_p50_ms:+.3f} ms, p99 {r.added_p99_ms:+.3f} ms",
                    r.added_p50_ms <= ADDED_P50_MS and r.added_p99_ms <= ADDED_P99_MS,
                )
            )
        if r.concurrency >= 64 and not r.stream:
            out.append(
                Check(
                    f"throughput, {r.scenario}",
                    f">= {NON_STREAM_SHARE:.0%} of direct",
                    f"{r.ratio:.1%}",
                    r.ratio >= NON_STREAM_SHARE,
                )
            )
        if r.chunks >= 1000:
            lost = 1 - r.ratio
            floor = r.peers.get("floor")
            if floor is not None and r.direct.rps:
                allowed = 1 - floor.rps / r.direct.rps + LONG_STREAM_POINTS
                target = f"<= the floor's {1 - floor.rps / r.direct.rps:.1%} + 5 points"
            else:
                allowed, target = LONG_STREAM_POINTS, "< 5% (no floor in this run)"
            out.append(
                Check(f"throughput lost, {r.scenario}", target, f"{lost:.1%}", lost <= allowed)
            )
    d, g = ttfb
    added = g.first_token_p50_ms - d.first_token_p50_ms
    out.append(
        Check(
            "added time to first token (p50)",
            f"<= {ADDED_TTFT_MS} ms",
            f"{added:+.3f} ms",
            added <= ADDED_TTFT_MS,
        )
    )
    if idle_rss_mb is not None:
        out.append(
            Check(
                "idle RSS",
                f"<= {IDLE_RSS_MB} MB",
                f"{idle_rss_mb:.1f} MB",
                idle_rss_mb <= IDLE_RSS_MB,
            )
        )
    return out


def least_admission_line(rows: list[Row], ttfb: dict[str, TtfbResult]) -> str | None:
    """What ``floor+redis`` (the floor plus one Redis round trip a request) adds at c1,
    beside the latency budget: what any design that admits in Redis first adds at least."""
    name = "floor+redis"
    parts = [
        f"added p50 {r.peers[name].p50_ms - r.direct.p50_ms:+.3f} ms {r.scenario}"
        for r in rows
        if r.concurrency == 1 and r.chunks < 100 and name in r.peers
    ]
    t, d = ttfb.get(name), ttfb.get("direct")
    if t is not None and d is not None and t.requests:
        parts.append(
            f"added time to first token {t.first_token_p50_ms - d.first_token_p50_ms:+.3f} ms"
        )
    if not parts:
        return None
    return f"{name} (one Redis round trip a request, no other work): " + "; ".join(parts)


def checks_table(found: list[Check]) -> str:
    width = max(len(c.name) for c in found) + 2
    return "\n".join(
        f"{'ok  ' if c.ok else 'MISS'} {c.name:<{width}}{c.measured:<36}(budget {c.target})"
        for c in found
    )


# --- python -m bench --peers: direct, the gateway and every peer in one table -------------


def ok_rps(result: LoadResult) -> float:
    """Requests/s answered 2xx (wrk counts non-2xx answers among its requests)."""
    return (result.requests - result.non_2xx) / result.seconds if result.seconds else 0.0


def peers_table(rows: list[Row], peers: list[str]) -> str:
    """One line per scenario and target; "gateway/this" is the gateway's 2xx rps over the
    target's. A target that answered nothing but errors gets no figures."""
    head = (
        f"{'scenario':<20}{'target':<12}{'rps':>9}{'p50/p99 ms':>19}{'added p50/p99 ms':>20}"
        f"{'of direct':>11}{'gateway/this':>14}  errors"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        d_rps, g_rps = ok_rps(r.direct), ok_rps(r.gateway)
        targets: list[tuple[str, LoadResult | None]] = [
            ("direct", r.direct),
            ("gateway", r.gateway),
        ]
        targets += [(n, r.peers.get(n)) for n in peers]
        for i, (name, res) in enumerate(targets):
            start = f"{r.scenario if i == 0 else '':<20}{name:<12}"
            if res is None:
                lines.append(f"{start}{'not measured':>9}")
                continue
            rps = ok_rps(res)
            if rps == 0:
                why = "every answer an error" if res.requests else "none completed in the cell"
                lines.append(
                    f"{start}{0:>9.0f}{'-':>19}{'-':>20}{'-':>11}{'-':>14}  {_errors(res)} ({why})"
                )
                continue
            a50, a99 = res.p50_ms - r.direct.p50_ms, res.p99_ms - r.direct.p99_ms
            added = "" if name == "direct" else f"{a50:+.3f}/{a99:+.3f}"
            latency = f"{res.p50_ms:.3f}/{res.p99_ms:.3f}"
            versus = "" if name == "gateway" else f"{g_rps / rps:.2f}x"
            lines.append(
                f"{start}{rps:>9.0f}{latency:>19}{added:>20}"
                f"{rps / d_rps if d_rps else 0:>11.1%}{versus:>14}  {_errors(res)}"
            )
    for r in rows:
        if r.chunks >= 100:
            gaps = [("gateway", r.gateway)] + [(n, x) for n, x in r.peers.items()]
            each = ", ".join(
                f"{n} {(x.p50_ms - r.direct.p50_ms) * 1000 / r.chunks:.1f} us"
                if ok_rps(x)
                else f"{n} -"
                for n, x in gaps
            )
            lines.append(f"{r.scenario}: added gap per chunk (added p50 / chunks): {each}")
    return "\n".join(lines)


def peers_ttfb_table(results: dict[str, TtfbResult]) -> str:
    """Time to first frame and first token at c1, per target, added over ``direct``."""
    head = (
        f"{'streaming, c1 (Python client)':<30}{'first frame p50/p99':>21}"
        f"{'first token p50/p99':>21}{'added token p50/p99':>21}  requests"
    )
    lines = [head, "-" * len(head)]
    d = results["direct"]
    for name, t in results.items():
        count = f"{t.requests} ({t.errors} errors)"
        if not t.requests:
            lines.append(f"{name:<30}{'-':>21}{'-':>21}{'-':>21}  {count}")
            continue
        added = t.first_token_p50_ms - d.first_token_p50_ms
        added99 = t.first_token_p99_ms - d.first_token_p99_ms
        lines.append(
            f"{name:<30}{t.first_frame_p50_ms:>12.3f}/{t.first_frame_p99_ms:<8.3f}"
            f"{t.first_token_p50_ms:>12.3f}/{t.first_token_p99_ms:<8.3f}"
            f"{'' if name == 'direct' else f'{added:+.3f}/{added99:+.3f}':>21}  {count}"
        )
    return "\n".join(lines)


def rss_line(peak: dict[str, dict[str, int] | None], idle: dict[str, dict[str, int] | None]) -> str:
    """Peak RSS (VmHWM) of every process, with its idle RSS where measured."""
    parts = []
    for name, rss in peak.items():
        if not rss:
            parts.append(f"{name} -")
            continue
        was = idle.get(name)
        at_idle = f" (idle {was['VmRSS'] / 1024:.1f})" if was else ""
        parts.append(f"{name} {rss['VmHWM'] / 1024:.1f} MB{at_idle}")
    return "peak RSS: " + ", ".join(parts)


def _peer_json(r: Row, result: LoadResult) -> dict[str, Any]:
    ok, d_ok = ok_rps(result), ok_rps(r.direct)
    return {
        **_result_json(result),
        "ok_rps": ok,
        "ratio_to_direct": ok / d_ok if d_ok else None,
        "gateway_over_peer": ok_rps(r.gateway) / ok if ok else None,
        "added_p50_ms": result.p50_ms - r.direct.p50_ms if ok else None,
        "added_p99_ms": result.p99_ms - r.direct.p99_ms if ok else None,
    }


def _result_json(result: LoadResult) -> dict[str, Any]:
    return {**asdict(result), "rps": result.rps, "errors": result.errors}


def to_json(rows: list[Row], **extra: Any) -> dict[str, Any]:
    cells = [
        {
            "scenario": r.scenario,
            "stream": r.stream,
            "chunks": r.chunks,
            "concurrency": r.concurrency,
            "direct": _result_json(r.direct),
            "gateway": _result_json(r.gateway),
            "ratio": r.ratio,
            "added_p50_ms": r.added_p50_ms,
            "added_p99_ms": r.added_p99_ms,
            **({"peers": {n: _peer_json(r, x) for n, x in r.peers.items()}} if r.peers else {}),
        }
        for r in rows
    ]
    return {"scenarios": cells, **extra}


def write_json(data: dict[str, Any], path: Path = RESULTS) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=lambda o: asdict(o)) + "\n")
    return path
