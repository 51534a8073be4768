"""scripts/handoff_latency.py: the ping-pong it times really crosses to another process and back."""
import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "handoff_latency.py"


def _script():
    spec = importlib.util.spec_from_file_location("handoff_latency", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_round_trips_are_timed_once_each_and_sorted():
    times = _script().round_trips(0.0, 20)
    assert len(times) == 20 and times == sorted(times)
    assert times[0] > 0  # a write and a read through another process: never free


def test_work_after_idle_times_each_trip():
    times = _script().work_after_idle(0.0, 5)
    assert len(times) == 5 and times == sorted(times) and times[0] > 0
