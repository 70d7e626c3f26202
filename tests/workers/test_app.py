"""`workers.app`: importing it sets nothing up; Celery's first read of the configuration does
(what `celery -A workers.app worker|beat` relies on), once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_CODE = """
import logging, sys
import workers.app as wa
quiet = (not wa.app.configured and 'workers.tasks' not in sys.modules
         and 'monitoring.schedule' not in sys.modules and not logging.getLogger().handlers)
url = wa.app.conf.broker_url  # Celery's first read: start() runs
wa.app.finalize()
tasks = sorted(t for t in wa.app.tasks if not t.startswith('celery.'))
print(quiet, url, sorted(wa.app.conf.beat_schedule), wa.app.conf.task_default_queue, tasks,
      wa.start() is wa.app, bool(logging.getLogger().handlers))
"""


def test_import_is_quiet_and_the_first_configuration_read_starts_the_app(tmp_path: Path) -> None:
    env = {**os.environ, "PRIORWATCH_DATA_DIR": str(tmp_path), "PRIORWATCH_QUEUE_NAME": "q31"}
    done = subprocess.run([sys.executable, "-c", _CODE], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[0] == (
        "True filesystem:// ['monitoring-snapshot', 'priorwatch-sweep'] q31 "
        "['monitoring.snapshot', 'workers.deliver_result', 'workers.process_study', 'workers.sweep'] True True")
