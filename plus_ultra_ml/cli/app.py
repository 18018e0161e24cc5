"""The `plus-ultra` typer application: the only place commands are registered.

Command modules import their heavy dependencies inside the command functions, so `--help` is fast.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="plus-ultra",
    help="SQLite candles -> validated panel -> features -> models -> PPO -> honest walk-forward.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)


@app.callback()
def main() -> None:
    """Plus Ultra: an honest trading-agent pipeline over a SQLite candle database."""

from plus_ultra_ml.cli import fixture_commands  # noqa: E402  (light: heavy imports live in the command)

app.command("fixture", context_settings={"allow_extra_args": True})(fixture_commands.fixture)

# --- data (plus_ultra_ml/cli/data_commands.py) ---
from plus_ultra_ml.cli import data_commands  # noqa: E402

app.command("validate")(data_commands.validate)
app.command("ingest")(data_commands.ingest)
app.command("regimes")(data_commands.regimes)
app.command("migrate")(data_commands.migrate)

# --- pipeline (plus_ultra_ml/cli/pipeline_commands.py) ---
from plus_ultra_ml.cli import pipeline_commands  # noqa: E402

app.command("outputs")(pipeline_commands.outputs)
app.command("sql")(pipeline_commands.sql)

# --- models (plus_ultra_ml/cli/models_commands.py) ---
from plus_ultra_ml.cli import models_commands  # noqa: E402

app.command("profile")(models_commands.profile)

# --- features (plus_ultra_ml/cli/features_commands.py) ---
from plus_ultra_ml.cli import features_commands  # noqa: E402

app.add_typer(features_commands.features_app, name="features")

# --- training (plus_ultra_ml/cli/training_commands.py) ---
from plus_ultra_ml.cli import training_commands  # noqa: E402

app.command("pretrain")(training_commands.pretrain)
app.command("train")(training_commands.train)
app.command("lineage")(training_commands.lineage)

# --- evaluation (plus_ultra_ml/cli/evaluation_commands.py) ---
from plus_ultra_ml.cli import evaluation_commands  # noqa: E402

app.command("report")(evaluation_commands.report)

from plus_ultra_ml.cli import walkforward_commands  # noqa: E402

app.command("walkforward")(walkforward_commands.walkforward)

# --- rl (plus_ultra_ml/cli/rl_commands.py) ---
from plus_ultra_ml.cli import rl_commands  # noqa: E402

app.command("finetune")(rl_commands.finetune)

# --- serving (plus_ultra_ml/cli/serve_commands.py) ---
from plus_ultra_ml.cli import serve_commands  # noqa: E402

app.command("serve")(serve_commands.serve)
app.command("predict")(serve_commands.predict)
app.command("promote")(serve_commands.promote)
