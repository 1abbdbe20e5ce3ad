"""What a failure means to a command line: its exit status.

Errors a user can fix exit with 2 (after one ``error: ...`` line), a diverged training run or a
server that stopped serving with 1, Ctrl-C with 130; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from cvae_sdk.backends import TrainingDiverged

USER_ERRORS = (ValueError, TypeError, ImportError, OSError)
EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


class StoppedServing(RuntimeError):
    """A server stopped because it could no longer answer (its batcher's worker died): a supervisor
    restarts it on the non-zero exit instead of a process that answers 504 forever."""


def exit_status(err: BaseException) -> int | None:
    """The exit status a command gives for ``err``; None for anything else (a bug: let it raise)."""
    if isinstance(err, (TrainingDiverged, StoppedServing)):
        return EXIT_FAILED
    if isinstance(err, USER_ERRORS):
        return EXIT_USAGE
    if isinstance(err, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    return None
