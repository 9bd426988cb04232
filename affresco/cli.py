"""The `affresco` command line: the front door to every subpackage."""

from __future__ import annotations

import typer

from affresco.commands import backfill as backfill_cmd
from affresco.commands import demo as demo_cmd
from affresco.commands import events as events_cmd
from affresco.commands import explain as explain_cmd
from affresco.commands import features as features_cmd
from affresco.commands import infra as infra_cmd
from affresco.commands import models as models_cmd
from affresco.commands import monitor as monitor_cmd
from affresco.commands import predict as predict_cmd
from affresco.commands import process as process_cmd
from affresco.commands import report as report_cmd
from affresco.commands import serve as serve_cmd
from affresco.commands import simulate as simulate_cmd
from affresco.commands import topics as topics_cmd
from affresco.commands import train as train_cmd
from affresco.commands import training as training_cmd

__all__ = ["app", "main"]

app = typer.Typer(
    name="affresco",
    help="Streaming-first, event-sourced ML platform. Every feature, model, prediction and outcome is a Kafka event.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(infra_cmd.app, name="infra")
app.add_typer(topics_cmd.app, name="topics")
app.add_typer(events_cmd.schemas_app, name="schemas")
app.add_typer(features_cmd.app, name="features")
app.add_typer(process_cmd.app, name="process")
app.add_typer(models_cmd.app, name="models")
app.add_typer(monitor_cmd.app, name="monitor")
app.command("produce")(events_cmd.produce)
app.command("tail")(events_cmd.tail)
app.command("simulate")(simulate_cmd.simulate)
app.command("demo")(demo_cmd.demo)
app.command("backfill")(backfill_cmd.backfill)
app.command("consistency")(backfill_cmd.consistency)
app.command("training-set")(training_cmd.training_set)
app.command("train")(train_cmd.train)
app.command("predict-batch")(predict_cmd.predict_batch)
app.command("serve")(serve_cmd.serve)
app.command("explain")(explain_cmd.explain)
app.command("report")(report_cmd.report)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
