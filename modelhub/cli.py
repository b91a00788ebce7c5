"""`modelhub`: the command line. The root group reads the settings (options, then `MODELHUB_*`
variables, then defaults) into the context object; the hub's commands come from `hub.cli`, and
`serve`, which needs every part, lives here.

Every user error exits non-zero with one line on stderr, never a traceback.
"""
from __future__ import annotations

import os

import click

import hub.cli
from schemas.errors import InvalidArgument, ModelhubError
from schemas.serving import QUANTIZE_MODES, RUNTIMES
from schemas.settings import ROLES, Settings, describe, load_settings, option_name


# TensorFlow's native log (oneDNN notices, CUDA probing on machines without a GPU) reads like
# failures to newcomers; its errors reach users as exceptions anyway. TF_CPP_MIN_LOG_LEVEL=0
# brings it back.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


class _Group(click.Group):
    """Turns the project's errors (and OS errors on local files) into one-line messages."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ModelhubError as e:
            raise click.ClickException(str(e)) from e
        except OSError as e:
            raise click.ClickException(f"{e.strerror or e}: {e.filename}" if e.filename else str(e)) from e


def setting(name: str, *decls: str, **kwargs):
    """An option for a setting: its help, default and environment variable come from the
    settings schema, and it is None unless given, so the environment and defaults apply."""
    return click.option(*(decls or (option_name(name),)), name, default=None,
                        help=describe(name), **kwargs)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@setting("store")
@setting("hub_url", "--hub")
@click.option("-q", "--quiet", is_flag=True, default=None, help=describe("quiet"))
@click.version_option(package_name="modelhub")
@click.pass_context
def cli(ctx: click.Context, store: str | None, hub_url: str | None, quiet: bool | None) -> None:
    """Publish, fetch, serve and manage versioned TensorFlow SavedModels."""
    ctx.obj = load_settings({"store": store, "hub_url": hub_url, "quiet": quiet})


for command in hub.cli.COMMANDS:
    cli.add_command(command)


@cli.command()
@setting("host")
@setting("port", type=int)
@setting("grpc_port", type=int)
@setting("role", type=click.Choice(ROLES))
@setting("models", metavar="NAME,...")
@click.option("--all", "all_models", is_flag=True,
              help="Serve every model in the registry (the default when --models is not given).")
@setting("model_config", type=click.Path(exists=True, dir_okay=False))
@setting("device")
@setting("memory_budget_mb", type=float)
@setting("poll_seconds", type=float)
@setting("runtime", type=click.Choice(RUNTIMES))
@setting("tflite_quantize", type=click.Choice(QUANTIZE_MODES))
@setting("batching", "--batching/--no-batching")
@setting("max_batch_size", type=int)
@setting("batch_timeout_micros", type=int)
@setting("max_enqueued_batches", type=int)
@setting("num_batch_threads", type=int)
@setting("allowed_batch_sizes", metavar="N,...")
@setting("workers", type=int)
@setting("threads", type=int)
@setting("timeout", type=int)
@setting("graceful_timeout", type=int)
@setting("max_connections", type=int)
@setting("keep_alive", type=float)
@setting("header_timeout", type=float)
@setting("body_timeout", type=float)
@setting("max_header_bytes", type=int)
@setting("max_headers", type=int)
@setting("access_log", "--access-log/--no-access-log")
@setting("confine", "--confine/--no-confine")
@click.pass_context
def serve(ctx: click.Context, all_models: bool, **options) -> None:
    """Run the hub API and/or the prediction APIs (REST and gRPC) on the store."""
    if sum(map(bool, (options["models"], all_models, options["model_config"]))) > 1:
        raise InvalidArgument("give one of --models, --all and --model-config")
    settings: Settings = ctx.obj.replace(**{k: v for k, v in options.items() if v is not None})
    from hub.registry import Registry

    from .rundir import RunDir

    # Before anything imports prometheus_client: the workers count into files of this folder.
    run_dir = RunDir.create(settings.worker_processes)
    try:
        from . import server

        Registry.open(settings.store)  # a bad store fails here, with a one-line message
    except BaseException:
        run_dir.remove()
        raise
    server.run(settings, run_dir)


def main() -> None:
    cli(prog_name="modelhub")


if __name__ == "__main__":
    main()
