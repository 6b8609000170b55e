"""The private names of submitit that makemore-sweep relies on, in one place, each with its reason.

tests/test_compat.py fails loudly when a new submitit release renames or removes one of them.
"""

from __future__ import annotations

import logging
import signal
import subprocess

from submitit.slurm.slurm import SlurmJobEnvironment

log = logging.getLogger(__name__)

# submitit runs `scontrol requeue` from inside the job through this method; submitit has no
# public hook to tell a requeue that SLURM interrupted from one that failed.
REQUEUE_METHOD = "_requeue"


def survive_own_requeue() -> None:
    """Let submitit's requeue succeed even when SLURM stops the job before `scontrol` returns.

    On the warning signal submitit runs `scontrol requeue JOBID` from inside the job. SLURM
    then stops the job at once, SIGTERM to every process in it, `scontrol` included: on a
    fast scheduler that can happen before `scontrol` exits, although the requeue went through.
    submitit would take the killed `scontrol` for a failed requeue and fail the trial instead
    of letting it come back, so a `scontrol` stopped by SIGTERM counts as done.
    """
    requeue = getattr(SlurmJobEnvironment, REQUEUE_METHOD)
    if getattr(requeue, "survives_own_requeue", False):
        return

    def requeue_surviving_sigterm(self: SlurmJobEnvironment, countdown: int) -> None:
        try:
            requeue(self, countdown)
        except subprocess.CalledProcessError as error:
            if error.returncode != -signal.SIGTERM:
                raise
            log.info("scontrol was stopped by the requeue it made; job %s is requeued", self.job_id)

    requeue_surviving_sigterm.survives_own_requeue = True  # type: ignore[attr-defined]
    setattr(SlurmJobEnvironment, REQUEUE_METHOD, requeue_surviving_sigterm)
