"""Pid files of the background processes (gateway, Prometheus): a live pid, a reused one, a stale one."""
import os
import subprocess
import sys

from shoprank.serving.processes import pid_in_file, stop_pid_file


def test_a_pid_file_names_a_live_process_only_while_it_runs_and_is_that_program(tmp_path):
    pid_file = tmp_path / "x.pid"
    assert pid_in_file(pid_file) is None  # no file
    pid_file.write_text("not a pid")
    assert pid_in_file(pid_file) is None
    pid_file.write_text(str(os.getpid()))
    assert pid_in_file(pid_file) == os.getpid()
    assert pid_in_file(pid_file, "prometheus") is None  # a reused pid: another program


def test_stop_pid_file_stops_the_process_and_removes_the_file(tmp_path):
    pid_file = tmp_path / "sleeper.pid"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    pid_file.write_text(str(sleeper.pid))
    assert stop_pid_file(pid_file, timeout=10) == sleeper.pid
    assert sleeper.wait(timeout=10) is not None and not pid_file.exists()
    pid_file.write_text(str(sleeper.pid))  # stale: the process is gone
    assert stop_pid_file(pid_file) is None and not pid_file.exists()
