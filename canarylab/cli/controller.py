"""``canarylab controller`` and ``canarylab install-crds``."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option(
    "--kubeconfig",
    type=click.Path(dir_okay=False),
    help="Cluster to manage (default: $KUBECONFIG, else the sandbox).",
)
@click.option(
    "-n", "--namespace", "namespaces", multiple=True, help="Watch only this namespace (repeatable)."
)
@click.option(
    "-A",
    "--all-namespaces",
    is_flag=True,
    help="Watch every namespace (the default when no --namespace).",
)
@click.option(
    "--metrics-port", type=int, default=None, help="Serve Prometheus metrics on this port."
)
@click.option(
    "--liveness", default=None, help="Liveness endpoint, e.g. http://0.0.0.0:8080/healthz."
)
@click.option(
    "-l",
    "--selector",
    default="",
    help="Serve only CanaryDeployments with these labels, e.g. shard=a (key=value[,key=value]).",
)
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def controller(
    kubeconfig: str | None,
    namespaces: tuple[str, ...],
    all_namespaces: bool,
    metrics_port: int | None,
    liveness: str | None,
    selector: str,
    verbose: bool,
) -> None:
    """Run the CanaryDeployment controller (kopf, standalone) until interrupted.

    Several controllers share a cluster by namespace (--namespace) or by label
    (--selector); their shards must not overlap.
    """
    from canarylab.operator.run import run

    if all_namespaces and namespaces:
        raise click.UsageError("use either --namespace or --all-namespaces, not both")
    run(kubeconfig, namespaces, metrics_port, liveness, verbose, parse_selector(selector))


def parse_selector(text: str) -> dict[str, str]:
    """``key=value[,key=value]`` (equality only) as a dict; a clear error otherwise."""
    pairs: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, eq, value = part.partition("=")
        if part.startswith(("!", "-")) or "!=" in part or not eq or not key.strip():
            raise click.BadParameter(
                f"{part!r}: only key=value pairs are supported (e.g. shard=a)",
                param_hint="--selector",
            )
        pairs[key.strip()] = value.strip()
    return pairs


def crd_files() -> list[Path]:
    """The CRD manifests shipped with canarylab."""
    return sorted((Path(__file__).resolve().parents[1] / "crds").glob("*.yaml"))


@click.command("install-crds")
@click.option(
    "--kubeconfig",
    type=click.Path(dir_okay=False),
    help="Target cluster (default: $KUBECONFIG, else the sandbox).",
)
def install_crds(kubeconfig: str | None) -> None:
    """Create or update the CanaryDeployment CRD in the target cluster."""
    import yaml
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    from canarylab import kube

    api = kube.api_client(kubeconfig)
    ext = client.ApiextensionsV1Api(api)
    for path in crd_files():
        doc = yaml.safe_load(path.read_text())
        name = doc["metadata"]["name"]
        try:
            ext.create_custom_resource_definition(doc)
            click.echo(f"created {name}")
        except ApiException as err:
            if err.status != 409:
                raise click.ClickException(
                    f"could not create {name}: {err.reason} ({err.body})"
                ) from err
            doc["metadata"]["resourceVersion"] = ext.read_custom_resource_definition(
                name
            ).metadata.resource_version
            ext.replace_custom_resource_definition(name, doc)
            click.echo(f"updated {name}")
