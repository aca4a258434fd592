# Streams one JSON object per line to stdout for the Thinkube installer's runner:
# play and task starts, per-host results (ok, changed, failed, unreachable, skipped),
# loop items and the final stats. Selected with ANSIBLE_STDOUT_CALLBACK=thinkube_json.
from __future__ import annotations

import json
import sys
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
    name: thinkube_json
    type: stdout
    short_description: one JSON object per line, for the Thinkube installer
    description: Streams play, task, result and stats events as JSON lines.
"""


def _msg(result):
    r = result._result
    # A command module's generic message says less than the command's own words.
    if r.get("msg") == "non-zero return code" and str(r.get("stderr") or "").strip():
        return str(r["stderr"]).strip()[-2000:]
    # A module that crashed: its own error output says why, "MODULE FAILURE" does not.
    if str(r.get("msg") or "").startswith("MODULE FAILURE") and str(r.get("module_stderr") or "").strip():
        return "MODULE FAILURE: " + str(r["module_stderr"]).strip()[-2000:]
    for key in ("msg", "stderr", "reason", "exception"):
        value = r.get(key)
        if value:
            return str(value).strip()[-2000:]
    if r.get("rc") not in (None, 0):
        return "exited with code %s" % r.get("rc")
    return ""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "thinkube_json"

    def _emit(self, event, **fields):
        fields["event"] = event
        fields["time"] = time.time()
        sys.stdout.write(json.dumps(fields, default=str) + "\n")
        sys.stdout.flush()

    def _result(self, event, result, **extra):
        task = result._task
        self._emit(
            event,
            host=result._host.get_name(),
            task=task.get_name() if task else None,
            action=getattr(task, "action", None),
            msg=_msg(result),
            rc=result._result.get("rc"),
            **extra,
        )

    def v2_playbook_on_start(self, playbook):
        self._emit("playbook_start", playbook=getattr(playbook, "_file_name", None))

    def v2_playbook_on_play_start(self, play):
        self._emit("play_start", play=play.get_name())

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._emit("task_start", task=task.get_name(), action=task.action)

    def v2_playbook_on_handler_task_start(self, task):
        self._emit("task_start", task=task.get_name(), action=task.action, handler=True)

    def v2_runner_on_ok(self, result):
        changed = bool(result._result.get("changed"))
        self._result("changed" if changed else "ok", result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._result("failed", result, ignore_errors=bool(ignore_errors))

    def v2_runner_on_unreachable(self, result):
        self._result("unreachable", result)

    def v2_runner_on_skipped(self, result):
        self._result("skipped", result)

    def v2_runner_item_on_ok(self, result):
        self._result("item_ok", result, item=str(result._result.get("item")))

    def v2_runner_item_on_failed(self, result):
        self._result("item_failed", result, item=str(result._result.get("item")))

    def v2_runner_item_on_skipped(self, result):
        self._result("item_skipped", result, item=str(result._result.get("item")))

    def v2_playbook_on_stats(self, stats):
        hosts = {}
        for host in sorted(stats.processed.keys()):
            hosts[host] = stats.summarize(host)
        self._emit("stats", hosts=hosts)
