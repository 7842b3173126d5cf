"""``canarylab demo-app``: run one demo-app process in the foreground.

The sandbox's workload runner starts the same app for every ``canarylab/demo:<tag>``
Deployment; this command is for trying it by hand or running it elsewhere.
"""

from __future__ import annotations

import click


@click.command("demo-app")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True)
@click.option("--tag", default=None, help="Image tag: the version when DEMO_VERSION is unset.")
def demo_app(host: str, port: int, tag: str | None) -> None:
    """Serve '<DEMO_MESSAGE> (version <DEMO_VERSION>)' with an X-Canarylab-Version header.

    Environment: DEMO_MESSAGE, DEMO_VERSION, DEMO_ERROR_RATE (share of 500s),
    DEMO_LATENCY_MS. GET /readyz is the readiness endpoint; SIGTERM drains.
    """
    from canarylab.dataplane import demoapp

    try:
        demoapp.main(host, port, tag)
    except ValueError as err:
        raise click.BadParameter(str(err)) from err
