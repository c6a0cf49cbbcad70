"""Commands the tests start that start processes of their own (`gov-warehouse run` -> `airflow dags test`
-> a process per task)."""

from __future__ import annotations

import os
import signal
import subprocess


def run_command(args: list[str], *, timeout: float, **kwargs) -> subprocess.CompletedProcess:
    """subprocess.run(args, capture_output=True, text=True), except that a timeout ends the command's whole
    process group: subprocess.run kills the command alone, and its Airflow processes ran on for half an
    hour after the test had given up, slowing every test after it."""
    with subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                          **kwargs) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
    return subprocess.CompletedProcess(args, proc.returncode, out, err)
