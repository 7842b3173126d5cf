"""``canarylab probe [URL]``: send traffic, count original vs canary vs failed.

Without a URL, ``--route NAME`` probes that route where the cluster serves it: the
target comes from ``canarylab.kube.resolve()`` (``Target.probe_target``: the sandbox's
gateway and the route's Host header), like the runbooks' and the notebooks' probes.

A live per-second table while it runs, then a summary; ``--json`` prints only one JSON
summary (``total``, ``by_version``, ``failed``, ``rps``, ``latency_ms``) for scripts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click


def probe_url(
    url: str | None,
    headers: tuple[tuple[str, str], ...],
    route: str | None,
    namespace: str | None,
    kubeconfig: str | None,
    context: str | None,
) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The URL and headers to probe: as given, else the route at the cluster's gateway."""
    if url:
        return url, headers
    if not route:
        raise click.UsageError("give a URL, or --route NAME to probe a route of the cluster")
    from canarylab.errors import CanarylabError
    from canarylab.kube import resolve

    try:
        target = resolve(kubeconfig, context).probe_target(
            route=route, namespace=namespace, headers=dict(headers)
        )
    except CanarylabError as err:
        raise click.ClickException(str(err)) from err
    return target.url, tuple(target.headers.items())


def _headers(values: tuple[str, ...], host: str | None) -> tuple[tuple[str, str], ...]:
    out = []
    for value in values:
        name, sep, rest = value.partition(":")
        if not sep or not name.strip():
            raise click.BadParameter(f"{value!r} is not 'Name: value'", param_hint="--header")
        out.append((name.strip(), rest.strip()))
    if host:
        out.append(("Host", host))
    return tuple(out)


@click.command()
@click.argument("url", required=False)
@click.option("--route", help="Without URL: probe this route at the cluster's gateway.")
@click.option("-n", "--namespace", help="The route's namespace (default: the context's).")
@click.option("--kubeconfig", help="Cluster of --route (default: $KUBECONFIG, else the sandbox).")
@click.option("--context", help="Context of --route's kubeconfig.")
@click.option("-d", "--duration", default=10.0, show_default=True, help="Seconds to run.")
@click.option(
    "-r",
    "--rate",
    type=float,
    default=None,
    help="Target requests/s (default: as fast as the connections go).",
)
@click.option("-c", "--connections", default=20, show_default=True, help="Concurrent connections.")
@click.option(
    "-H", "--header", "header", multiple=True, help="Request header 'Name: value' (repeatable)."
)
@click.option(
    "--host", default=None, help="Host header, e.g. web.demo.sandbox for the sandbox gateway."
)
@click.option(
    "--classify-header",
    default="X-Canarylab-Version",
    show_default=True,
    help="Response header naming the version.",
)
@click.option(
    "--body-regex", default=None, help="Classify by body instead (first group, or the whole match)."
)
@click.option(
    "--timeout", default=5.0, show_default=True, help="Seconds before a request is a timeout."
)
@click.option(
    "-n",
    "--requests",
    "max_requests",
    type=int,
    default=None,
    help="Stop after this many requests.",
)
@click.option(
    "--engine", type=click.Choice(["asyncio", "wrk"]), default="asyncio", show_default=True
)
@click.option(
    "--client",
    type=click.Choice(["fast", "aiohttp"]),
    default="fast",
    show_default=True,
    help="HTTP client of the asyncio engine (https:// always uses aiohttp).",
)
@click.option(
    "-o",
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Write samples to a .parquet or .csv file.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON summary and nothing else.")
def probe(
    url: str | None,
    route: str | None,
    namespace: str | None,
    kubeconfig: str | None,
    context: str | None,
    duration: float,
    rate: float | None,
    connections: int,
    header: tuple[str, ...],
    host: str | None,
    classify_header: str,
    body_regex: str | None,
    timeout: float,
    max_requests: int | None,
    engine: str,
    client: str,
    out: Path | None,
    as_json: bool,
) -> None:
    """Send requests to URL (or --route's gateway) and count responses by version and failures."""
    from canarylab.probe import Probe, ProbeResult, ProbeSettings
    from canarylab.probe.loop import run as run_loop

    url, headers = probe_url(url, _headers(header, host), route, namespace, kubeconfig, context)
    try:
        settings = ProbeSettings(
            url=url,
            duration=duration,
            rate=rate,
            connections=connections,
            headers=headers,
            timeout=timeout,
            classify_header=classify_header,
            body_regex=body_regex,
            max_requests=max_requests,
            client=client,  # type: ignore[arg-type]
        )
    except (ValueError, TypeError) as err:
        raise click.BadParameter(str(err)) from err
    result: ProbeResult
    if engine == "wrk":
        from canarylab.probe.wrk import run_wrk

        try:
            result = run_wrk(settings)
        except (ValueError, RuntimeError) as err:
            raise click.ClickException(str(err)) from err
    elif as_json:
        result = run_loop(Probe(settings).run())
    else:
        result = run_loop(_live(Probe(settings)))
    summary = result.summary()
    if out is not None:
        summary["samples_file"] = str(result.write(out))
    if as_json:
        click.echo(json.dumps(summary))
    else:
        _print_summary(summary)


LIVE_ROWS = 20
"""How many (second, version) rows the live table keeps on screen."""


async def _live(probe: Any) -> Any:
    """Run the probe under a live table of the latest seconds, one row per version."""
    from rich import box
    from rich.live import Live
    from rich.table import Table

    rows: list[tuple[str, ...]] = []

    def render() -> Table:
        table = Table(title=f"probe {probe.settings.url}", title_justify="left", box=box.SIMPLE)
        for name in ("second  ", "version", "reqs", "ok", "http_err", "timeout", "conn_err"):
            left = name in ("second  ", "version")
            table.add_column(
                name, justify="left" if left else "right", no_wrap=True, min_width=len(name)
            )
        for name in ("p50 ms", "p99 ms"):  # latency of answered requests
            table.add_column(name, justify="right", no_wrap=True, min_width=len(name))
        for row in rows[-LIVE_ROWS:]:
            table.add_row(*row)
        return table

    with Live(render(), refresh_per_second=4, transient=False) as live:
        async for samples in probe.stream():
            for r in samples.itertuples():
                rows.append(
                    (
                        f"{r.second:%H:%M:%S}",
                        str(r.version),
                        *(
                            str(v)
                            for v in (r.requests, r.ok, r.http_errors, r.timeouts, r.conn_errors)
                        ),
                        *("-" if v != v else f"{v:.1f}" for v in (r.p50_ms, r.p99_ms)),
                    )
                )
            live.update(render())
    return probe.result


def _print_summary(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print()
    total = summary["total"] or 1
    table = Table("version", "responses", "share", "p50 ms", "p95 ms", "p99 ms", title="by version")
    for version, count in summary["by_version"].items():
        lat = summary["latency_ms"].get(version, {})
        table.add_row(
            version,
            str(count),
            f"{100 * count / total:.1f}%",
            *(f"{lat[k]:.1f}" if k in lat else "-" for k in ("p50_ms", "p95_ms", "p99_ms")),
        )
    console.print(table)
    failed = summary["failed"]
    console.print(
        f"total {summary['total']}  rps {summary['rps']}  failed {summary['failed_total']} "
        f"(http_errors {failed['http_errors']}, timeouts {failed['timeouts']}, "
        f"conn_errors {failed['conn_errors']})"
    )
    if "samples_file" in summary:
        console.print(f"samples written to {summary['samples_file']}")
