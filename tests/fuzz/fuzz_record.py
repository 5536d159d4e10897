"""What a fuzz run found, case by case: `ok` (output meeting the contract), `flagged_as_unreadable` (a one-line
FibroclassError: an unreadable file, a refused plate map or request) and `crashed` (any other exception, a
broken contract, or a MemoryError/RecursionError passed off as "unreadable"), with the exceptions by class and
the module that raised them, so a reviewer sees which decoder errors were turned into "unreadable".
"""

from __future__ import annotations

import traceback
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from fibroclass.errors import FibroclassError

NEVER_UNREADABLE = (MemoryError, RecursionError)  # a resource blow-up is a bug even when caught and flagged
MAX_EXAMPLES = 3


def _origin(exc: BaseException) -> str:
    """`Class in module` of the innermost frame that raised `exc` (e.g. `TiffFileError in tifffile.tifffile`)."""
    tb = exc.__traceback__
    module = "?"
    while tb is not None:
        module = str(tb.tb_frame.f_globals.get("__name__", "?"))
        tb = tb.tb_next
    return f"{type(exc).__name__} in {module}"


@dataclass
class TargetRecord:
    """The outcomes of one target's cases."""

    cases: int = 0
    ok: int = 0
    flagged_as_unreadable: int = 0
    crashed: int = 0
    flagged_by_class: Counter = field(default_factory=Counter)
    crashed_by_class: Counter = field(default_factory=Counter)
    crash_examples: list[dict[str, str]] = field(default_factory=list)

    def crash(self, exc: BaseException, case: Any) -> None:
        self.crashed += 1
        self.crashed_by_class[_origin(exc)] += 1
        if len(self.crash_examples) < MAX_EXAMPLES:
            text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            self.crash_examples.append({"input": repr(case)[:600], "traceback": text[-2000:]})

    def add(self, outcome: BaseException | None, case: Any) -> None:
        """Count a case whose check returned `outcome`: None (ok) or the FibroclassError it handled."""
        self.cases += 1
        if outcome is None:
            self.ok += 1
            return
        cause = outcome.__cause__ or outcome
        if isinstance(cause, NEVER_UNREADABLE):
            self.crash(cause, case)
            return
        self.flagged_as_unreadable += 1
        self.flagged_by_class[_origin(cause)] += 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "cases": self.cases,
            "ok": self.ok,
            "flagged_as_unreadable": self.flagged_as_unreadable,
            "crashed": self.crashed,
            "flagged_by_class": dict(self.flagged_by_class.most_common()),
            "crashed_by_class": dict(self.crashed_by_class.most_common()),
            "crash_examples": self.crash_examples,
        }


@dataclass
class FuzzRecord:
    """Per-target records of a run (`fuzz_targets.fuzz_runs(..., record=...)` fills them)."""

    targets: dict[str, TargetRecord] = field(default_factory=dict)

    def target(self, name: str) -> TargetRecord:
        return self.targets.setdefault(name, TargetRecord())

    def run_case(self, name: str, check: Any, args: tuple) -> None:
        """Run one case, counting its outcome; exceptions other than FibroclassError are crashes (recorded,
        not raised, so the run goes on and the record counts them all). Hypothesis' own control flow passes."""
        from hypothesis.errors import HypothesisException

        rec = self.target(name)
        try:
            outcome = check(*args)
        except HypothesisException:
            raise
        except FibroclassError as exc:  # a check that let a user error through: still a flagged case
            rec.add(exc, args)
            return
        except Exception as exc:  # noqa: BLE001 - a crash is what the record counts
            rec.cases += 1
            rec.crash(exc, args)
            return
        rec.add(outcome if isinstance(outcome, BaseException) else None, args)


__all__ = ["FuzzRecord", "TargetRecord"]
