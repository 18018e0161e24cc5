"""Nightly schedule, new-candle sensor (one run per data version, cursor survives restarts), failure alert."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import dagster as dg

from plus_ultra_assets import schedules, sensors
from plus_ultra_assets.assets import market
from plus_ultra_ml.config import AutomationConfig


def test_nightly_schedule_runs_the_production_line_at_the_configured_time():
    schedule = schedules.nightly_retrain(AutomationConfig(nightly_cron="30 3 * * *", timezone="Europe/Paris"))
    assert schedule.cron_schedule == "30 3 * * *" and schedule.execution_timezone == "Europe/Paris"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    context = dg.build_schedule_context(scheduled_execution_time=dt.datetime(2026, 1, 2, 3, 30))
    requests = schedule.evaluate_tick(context).run_requests
    assert len(requests) == 1 and schedule.job_name == "production_line"


def _append_candle(db_path, symbol="AAA"):
    with sqlite3.connect(db_path) as connection:
        last, close = connection.execute(
            "SELECT timestamp, close FROM series WHERE symbol = ? ORDER BY timestamp DESC LIMIT 1", (symbol,)).fetchone()
        nxt = (dt.datetime.strptime(last, "%Y-%m-%dT%H:%M:%SZ") + dt.timedelta(minutes=15)).strftime("%Y-%m-%dT%H:%M:%SZ")
        connection.execute("INSERT INTO series(timestamp, symbol, open, high, low, close, volume) VALUES (?,?,?,?,?,?,?)",
                           (nxt, symbol, close, close * 1.001, close * 0.999, close, 1000.0))


def _tick(sensor, instance, resources, cursor):
    resources = {k: v for k, v in resources.items() if k != "parquet_io"}
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources) as context:
        result = sensor(context)
        return result, context.cursor


def test_one_run_per_new_data_version_and_none_without_change(small_market, resources_for, tmp_path):
    db = tmp_path / "live.db"
    with sqlite3.connect(small_market) as src, sqlite3.connect(db) as dst:
        src.backup(dst)
    resources = resources_for(db)
    sensor = sensors.new_candles_sensor(AutomationConfig())
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    with dg.instance_for_test() as instance:
        result, cursor = _tick(sensor, instance, resources, None)
        (first,) = result.run_requests
        assert first.job_name == "refresh_features"
        (observation,) = result.asset_events
        assert observation.tags["dagster/data_version"] == cursor
        quiet, cursor = _tick(sensor, instance, resources, cursor)
        assert isinstance(quiet, dg.SkipReason)
        _append_candle(db)
        result, restarted_cursor = _tick(sensor, instance, resources, cursor)  # a new context: a restart
        (fresh,) = result.run_requests
        assert fresh.run_key != first.run_key
        assert fresh.tags[sensors.DATA_VERSION_TAG] == restarted_cursor
        again, _ = _tick(sensor, instance, resources, restarted_cursor)
        assert isinstance(again, dg.SkipReason)


def test_retraining_on_new_candles_when_configured(small_market, resources_for):
    sensor = sensors.new_candles_sensor(AutomationConfig(retrain_on_new_candles=True))
    with dg.instance_for_test() as instance:
        resources = resources_for(small_market)
        result, _ = _tick(sensor, instance, resources, None)
        assert result.run_requests[0].job_name == "production_line"


def test_no_run_when_the_panel_already_reflects_the_database(small_market, resources_for):
    resources = resources_for(small_market)
    sensor = sensors.new_candles_sensor(AutomationConfig())
    with dg.instance_for_test() as instance:
        dg.materialize([market.market_db, market.market_panel], resources=resources, instance=instance)
        result, _ = _tick(sensor, instance, resources, None)
        assert isinstance(result, dg.SkipReason)


def test_failure_alert_posts_to_the_webhook():
    received = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    @dg.op
    def explode():
        raise RuntimeError("boom")

    @dg.job
    def doomed():
        explode()

    alert = sensors.run_failure_alert(AutomationConfig(failure_webhook=f"http://127.0.0.1:{server.server_port}/hook"))
    try:
        with dg.instance_for_test() as instance:
            result = doomed.execute_in_process(instance=instance, raise_on_error=False)
            failure = [e for e in result.all_events if e.event_type_value == "PIPELINE_FAILURE"
                       or e.event_type_value == "RUN_FAILURE"][0]
            context = dg.build_run_status_sensor_context(
                sensor_name="run_failure_alert", dagster_event=failure, dagster_instance=instance,
                dagster_run=result.dagster_run).for_run_failure()
            alert(context)
    finally:
        server.shutdown()
    assert received and received[0]["run_id"] == result.run_id and received[0]["job"] == "doomed"
