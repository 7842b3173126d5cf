"""``canarylab demo``: the main job of ``make demo``, run on the local sandbox."""

from __future__ import annotations

import time

import click
from rich.console import Console
from rich.table import Table

from canarylab.sandbox import Sandbox


@click.command()
@click.option("--keep", is_flag=True, help="Leave the sandbox running afterwards.")
def demo(keep: bool) -> None:
    """Sandbox up, show the nodes, make a Deployment ready, sandbox down."""
    from kubernetes import client, config

    console = Console()
    started = time.monotonic()
    sb = Sandbox(progress=lambda message: console.log(message))
    sb.up()
    try:
        api = config.new_client_from_config(config_file=str(sb.kubeconfig))
        core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
        nodes = Table("node", "ready", "kubelet")
        for node in core.list_node().items:
            ready = next(c.status for c in node.status.conditions if c.type == "Ready")
            nodes.add_row(node.metadata.name, ready, node.status.node_info.kubelet_version)
        console.print(nodes)
        labels = {"app": "hello"}
        body = {
            "metadata": {"name": "hello", "labels": labels},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "app", "image": "canarylab/demo:v1"}]},
                },
            },
        }
        apps.create_namespaced_deployment("default", body)
        t0 = time.monotonic()
        with console.status("waiting for Deployment hello to be ready…"):
            while (
                apps.read_namespaced_deployment_status("hello", "default").status.ready_replicas
                or 0
            ) < 3:
                if time.monotonic() - t0 > 60:
                    raise click.ClickException("Deployment hello did not become ready in 60 s")
                time.sleep(0.2)
        console.print(f"Deployment hello: 3/3 ready in {time.monotonic() - t0:.1f}s")
        apps.delete_namespaced_deployment("hello", "default")
    finally:
        if not keep:
            sb.down()
    console.print(f"demo finished in {time.monotonic() - started:.1f}s")
