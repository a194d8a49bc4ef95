"""`manage.py automation_status [--account ID_OR_NAME] [--watch]`: whether the automations engine
keeps up (automations.status.automation_status_read)."""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand

from automations.status import AutomationStatus, automation_status_read
from convertkit.commands import account_find


def status_lines(status: AutomationStatus) -> list[str]:
    lines = [
        f"Outbox:       {status.backlog:,} events waiting; lag {status.lag_s:,.1f} s "
        "(age of the oldest)",
        f"Engine:       {status.steps_per_s:,.1f} steps/s, {status.rule_runs_per_s:,.1f} rule "
        f"runs/s, {status.entries_per_s:,.1f} entries/s (mean of the last minute)",
        f"Due now:      {status.due:,} people at a step the engine has yet to run",
        "",
        f"{'id':>6}  {'state':<8} {'in it':>10} {'waiting':>10} {'due now':>10} {'steps/s':>9}"
        "  automation (account)",
    ]
    for line in status.automations:
        automation = line.automation
        lines.append(
            f"{automation.pk:>6}  {automation.state:<8} {line.active:>10,} {line.waiting:>10,} "
            f"{line.due:>10,} {line.steps_per_s:>9,.1f}  {automation.name} "
            f"({automation.account.name})"
        )
    if not status.automations:
        lines.append("        (no active or paused automation)")
    lines += ["", f"{'id':>6}  {'state':<8} {'fired':>10} {'fired/s':>10}  rule (account)"]
    for line in status.rules:
        rule = line.rule
        lines.append(
            f"{rule.pk:>6}  {'enabled' if rule.enabled else 'disabled':<8} "
            f"{rule.fired_count:>10,} {line.fired_per_s:>10,.1f}  {rule.name} ({rule.account.name})"
        )
    if not status.rules:
        lines.append("        (no rule)")
    return lines


class Command(BaseCommand):
    help = (
        "Shows whether rules and automations keep up. Outbox: the changes (a tag added, a form "
        "joined, a link clicked ...) waiting for the engine, and the lag, the age of the oldest "
        "one: how long a change now waits before its rules and automations react. Engine: "
        "automation steps run, subscribers rules fired for and subscribers who entered an "
        "automation, per second over the last minute. Then each active or paused automation: "
        "people in it, waiting (in a delay or a wait, or for an event or their sequence) and "
        "due now (a step the engine has yet to run; paused automations hold theirs), and its "
        "steps per second; and each rule: how many times it fired, in all and per second. A lag "
        "or a due count that keeps growing while every rate is 0 means nothing runs the engine: "
        "celery beat queues automations.run every second, for a worker of the fanout queue. "
        "With --account, only that account's "
        "automations and rules (the outbox and the rates stay the whole engine's). With --watch, "
        "again every --interval seconds until Ctrl-C."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--account", help="only the automations and rules of this account (id or name)"
        )
        parser.add_argument("--watch", action="store_true", help="repeat until Ctrl-C")
        parser.add_argument(
            "--interval", type=float, default=2.0, help="seconds between readings (2)"
        )

    def handle(self, *args, **options):
        account = account_find(options["account"]) if options["account"] else None
        try:
            while True:
                status = automation_status_read(account=account)
                self.stdout.write("\n".join(status_lines(status)))
                if not options["watch"]:
                    return
                self.stdout.flush()
                time.sleep(max(0.2, options["interval"]))
                self.stdout.write("")
        except KeyboardInterrupt:
            return
