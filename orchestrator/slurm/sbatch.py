"""``python -m orchestrator sbatch SPEC ...``: run stop-and-go as a Slurm batch job.

The wrapper writes a readable sbatch script into the run dir (``--dry-run`` shows it and
stops), submits it with ``sbatch --parsable``, follows the job (state changes and the tail
of its log), and exits with the orchestrator's own exit code once the job has ended:
0/1/2/3/4/5/6 as in the README, 130 if the job was cancelled (``scancel``) or the wrapper
was interrupted (it cancels the job first), 5 if Slurm ended the job at its time limit.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from orchestrator.arguments import OneLineParser, UsageError
from orchestrator.exit_codes import ExitCode
from orchestrator.slurm.jobs import ENV_GO_ON_OTHER_NODES, ENV_SBATCH_OPTIONS, ENV_SIGNAL_BEFORE, job_nodes
from orchestrator.slurm.script import EXIT_CODE_FILE, SCRIPT_FILE, JobSpec, render_script, sbatch_directives
from orchestrator.slurm.steps import ENV_SLURM_JOBS
from orchestrator.spec_file import check_spec_file
from orchestrator.wrap.cli import parse_run_args

POLL_INTERVAL_S = 1.0
# The wrapper's options that take no value.
_FLAGS = {"--go-as-new-job", "--go-on-other-nodes", "--dry-run", "--quiet", "--help"}
# Job states that mean the job has ended (squeue stops listing a job some time after).
FINAL_STATES = {
    "BOOT_FAIL",
    "CANCELLED",
    "COMPLETED",
    "DEADLINE",
    "FAILED",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "PREEMPTED",
    "TIMEOUT",
}


class SlurmError(Exception):
    """Slurm refused or failed a request; the message is one line."""


def build_parser() -> argparse.ArgumentParser:
    """Options of the sbatch wrapper; anything after ``--`` goes to the orchestrator."""
    parser = OneLineParser(
        prog="python -m orchestrator sbatch",
        description="Submit a stop-and-go run as a Slurm job; stop, go and the reference run as job steps. "
        "Orchestrator options (--timeout, --kill-signal, --no-reference, ...) go after --.",
        epilog="exit codes: the orchestrator's (see python -m orchestrator --help); 130 when the job was cancelled",
    )
    parser.add_argument(
        "spec",
        type=Path,
        help="a Python file defining a StopAndGoHarness subclass; or `run [RUN OPTIONS] -- SCRIPT ARGS` "
        "(last) to submit a wrapped training script as `stop-and-go run` runs it",
    )
    parser.add_argument("--nodes", type=int, default=1, metavar="N", help="nodes: one torchrun agent each (default: 1)")
    parser.add_argument("--gpus-per-node", type=int, default=0, metavar="G", help="GPUs per node (default: 0)")
    parser.add_argument(
        "--nproc-per-node", type=int, metavar="P", help="workers per node (default: G if G > 0, else 1)"
    )
    parser.add_argument("--partition", metavar="X", help="the Slurm partition")
    parser.add_argument("--time", metavar="T", help="the job's time limit, as sbatch --time takes it")
    parser.add_argument("--account", metavar="A", help="the account to charge")
    parser.add_argument(
        "--signal-before",
        type=int,
        metavar="SECONDS",
        help="ask for Slurm's pre-timeout signal (--signal=B:USR1@SECONDS), the orchestrator's stop trigger",
    )
    parser.add_argument(
        "--go-as-new-job",
        action="store_true",
        help="run the orchestrator here and every phase as its own job; go waits for the stop job to end "
        "(--dependency=afterany), so it resumes in a new allocation",
    )
    parser.add_argument(
        "--go-on-other-nodes",
        action="store_true",
        help="with --go-as-new-job: go's jobs exclude the stop job's nodes (--exclude), so nothing the stop "
        "left on them can help; the partition needs that many other nodes",
    )
    parser.add_argument("--run-dir", type=Path, metavar="DIR", help="default: ./stop_and_go_runs/<spec>-<time>")
    parser.add_argument("--dry-run", action="store_true", help="write and print the sbatch script; submit nothing")
    parser.add_argument("--quiet", action="store_true", help="do not echo the job's log")
    return parser


def split_passthrough(argv: list[str]) -> tuple[list[str], list[str]]:
    """The wrapper's own arguments, and the orchestrator options after ``--``.

    With ``run`` in the spec's place, everything after it is the ``stop-and-go run``
    command line (its options, then ``-- SCRIPT ARGS``); the spec slot keeps ``run``.
    """
    at = 0
    while at < len(argv) and argv[at] != "--":
        if argv[at] == "run":
            return argv[: at + 1], argv[at + 1 :]
        # Skip an option's value ("--partition run" names a partition, not the run form).
        at += 2 if argv[at].startswith("--") and "=" not in argv[at] and argv[at] not in _FLAGS else 1
    if "--" in argv:
        at = argv.index("--")
        return argv[:at], argv[at + 1 :]
    return argv, []


def job_from_args(args: argparse.Namespace) -> JobSpec:
    """The job to submit, after the checks that need no Slurm."""
    script_mode = str(args.spec) == "run"
    if script_mode:  # the script, its placeholders and run's options, checked as `run` checks them
        _, command = parse_run_args(list(args.orchestrator_args))
        args.spec = command.script
        split = args.orchestrator_args.index("--")
        args.orchestrator_args = [*args.orchestrator_args[:split], "--", str(command.script), *command.args]
    else:
        check_spec_file(args.spec)
    if args.nodes < 1:
        raise UsageError("--nodes must be at least 1")
    if args.gpus_per_node < 0:
        raise UsageError("--gpus-per-node must not be negative")
    nproc = args.nproc_per_node or (args.gpus_per_node or 1)
    if nproc < 1:
        raise UsageError("--nproc-per-node must be at least 1")
    if args.go_on_other_nodes and not args.go_as_new_job:
        raise UsageError("--go-on-other-nodes needs --go-as-new-job (within one job, go runs on the job's nodes)")
    if args.signal_before is not None and args.signal_before < 1:
        raise UsageError("--signal-before must be at least 1 second")
    run_dir = (
        args.run_dir or Path("stop_and_go_runs") / f"{args.spec.stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    ).resolve()
    if (run_dir / "run.json").exists() or (run_dir / SCRIPT_FILE).exists():
        raise UsageError(f"run dir {run_dir} already holds a run; choose another --run-dir or remove it")
    return JobSpec(
        python=sys.executable,
        spec=args.spec.resolve(),
        run_dir=run_dir,
        workdir=Path.cwd(),
        nodes=args.nodes,
        nproc_per_node=nproc,
        gpus_per_node=args.gpus_per_node,
        partition=args.partition,
        time_limit=args.time,
        account=args.account,
        job_name=f"stop-and-go-{args.spec.stem}",
        signal_before_s=args.signal_before,
        orchestrator_args=list(args.orchestrator_args),
        script_mode=script_mode,
    )


def write_and_submit(script: Path, text: str, dry_run: bool, tag: str) -> str | None:
    """Writes a batch script and, unless ``dry_run``, submits it.

    The job id is also recorded in ``slurm_job_id`` beside the script. Returns the job
    id, or None for a dry run (which prints the script instead). Raises ``SlurmError``.
    """
    script.write_text(text, encoding="utf-8")
    os.chmod(script, 0o755)
    if dry_run:
        print(script.read_text(), end="")
        print(f"[{tag}] dry run: script written to {script}; nothing submitted", flush=True)
        return None
    job_id = submit(script)
    (script.parent / "slurm_job_id").write_text(job_id + "\n")
    return job_id


def submit(script: Path) -> str:
    """``sbatch --parsable SCRIPT``; returns the job id."""
    try:
        proc = subprocess.run(["sbatch", "--parsable", str(script)], capture_output=True, text=True, timeout=60)
    except FileNotFoundError as err:
        raise SlurmError("sbatch not found: is Slurm installed here? (scripts/start_slurm.sh starts one)") from err
    if proc.returncode != 0:
        detail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise SlurmError(f"sbatch refused the job: {detail}")
    # --parsable prints "jobid" or "jobid;cluster".
    return proc.stdout.strip().split(";")[0]


def job_state(job_id: str) -> tuple[str | None, str | None]:
    """(JobState, ExitCode) from ``scontrol show job``; (None, None) once Slurm forgot the job."""
    proc = subprocess.run(
        ["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True, timeout=30, check=False
    )
    if proc.returncode != 0:
        return None, None
    fields = dict(word.split("=", 1) for word in proc.stdout.split() if "=" in word)
    return fields.get("JobState"), fields.get("ExitCode")


def lost_nodes(job_id: str) -> list[str]:
    """The job's nodes that Slurm now has down or not responding (``sinfo``)."""
    nodes = job_nodes(job_id)
    if not nodes:
        return []
    proc = subprocess.run(["sinfo", "-h", "-N", "-n", nodes, "-o", "%N %T"], capture_output=True, text=True, timeout=30)
    lost = [line.split() for line in proc.stdout.splitlines() if len(line.split()) == 2]
    return sorted({node for node, state in lost if state.startswith(("down", "fail")) or state.endswith("*")})


def exit_code_of(
    state: str | None, run_dir: Path, slurm_exit: str | None, lost: list[str] | None = None
) -> tuple[int, str]:
    """The wrapper's exit code and a one-line reason, from the job's end (``lost``: its failed nodes)."""
    if state == "NODE_FAIL":
        # Slurm killed the whole job (the orchestrator too): no phase could be judged.
        which = f" ({', '.join(lost)} down)" if lost else ""
        return int(ExitCode.NODE_LOST), f"node lost: Slurm ended the job with NODE_FAIL{which}; the run was not judged"
    if state == "CANCELLED":
        return int(ExitCode.INTERRUPTED), "job cancelled (scancel); its processes were killed"
    recorded = run_dir / EXIT_CODE_FILE
    if recorded.exists() and recorded.read_text().strip().lstrip("-").isdigit():
        code = int(recorded.read_text().strip())
        return code, f"job ended {state or 'and left the queue'}; orchestrator exit {code}"
    if state in ("TIMEOUT", "DEADLINE"):
        return int(ExitCode.TIMEOUT), f"job hit its time limit ({state}) before the orchestrator finished"
    if slurm_exit and slurm_exit.split(":")[0].isdigit() and int(slurm_exit.split(":")[0]) != 0:
        code = int(slurm_exit.split(":")[0])
        return code, f"job {state}: batch script exit {code}"
    return int(ExitCode.INTERNAL_ERROR), f"job {state or 'vanished'} without an orchestrator exit code"


class _LogTail:
    """Prints the lines appended to the job's log since the last call."""

    def __init__(self, path: Path, echo: bool) -> None:
        self.path = path
        self.echo = echo
        self.offset = 0

    def pump(self) -> None:
        if not self.echo or not self.path.exists():
            return
        with open(self.path, "rb") as log:
            log.seek(self.offset)
            data = log.read()
        # Only whole lines; a partial last line waits for the next call.
        end = data.rfind(b"\n") + 1
        if end:
            sys.stdout.write(data[:end].decode("utf-8", errors="replace"))
            sys.stdout.flush()
            self.offset += end


def follow(job_id: str, run_dir: Path, echo: bool = True) -> tuple[int, str]:
    """Waits for the job to end, printing state changes and its log; returns (code, reason)."""
    tail = _LogTail(run_dir / f"slurm-{job_id}.out", echo)
    last_state: str | None = None
    state, slurm_exit = job_state(job_id)
    while state not in FINAL_STATES and state is not None:
        if state != last_state:
            print(f"[sbatch] job {job_id}: {state}", flush=True)
            last_state = state
        tail.pump()
        time.sleep(POLL_INTERVAL_S)
        state, slurm_exit = job_state(job_id)
    # The exit code file is written just before the batch script exits: let the FS catch up.
    deadline = time.monotonic() + 10
    while state not in ("CANCELLED", None) and not (run_dir / EXIT_CODE_FILE).exists():
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    tail.pump()
    print(f"[sbatch] job {job_id}: {state or 'gone'}", flush=True)
    return exit_code_of(state, run_dir, slurm_exit, lost_nodes(job_id) if state == "NODE_FAIL" else None)


def cancel(job_id: str) -> None:
    """``scancel JOBID``, and waits (up to a minute) until the job has ended."""
    subprocess.run(["scancel", job_id], capture_output=True, timeout=30, check=False)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and job_state(job_id)[0] not in FINAL_STATES | {None}:
        time.sleep(0.5)


class _Interrupted(Exception):
    pass


def main(argv: list[str] | None = None) -> int:
    """Submits the run as a job and follows it; returns the orchestrator's exit code."""
    try:
        own, passthrough = split_passthrough(sys.argv[1:] if argv is None else list(argv))
        args = build_parser().parse_args(own)
        args.orchestrator_args = passthrough
        job = job_from_args(args)
        job.run_dir.mkdir(parents=True, exist_ok=True)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return int(ExitCode.USAGE)
    except OSError as err:
        print(f"error: cannot create run dir: {err}", file=sys.stderr)
        return int(ExitCode.USAGE)
    if args.go_as_new_job:
        return run_as_separate_jobs(job, args.dry_run, args.go_on_other_nodes)
    script = job.run_dir / SCRIPT_FILE
    try:
        job_id = write_and_submit(script, render_script(job), args.dry_run, "sbatch")
    except SlurmError as err:
        print(f"error: {err}", file=sys.stderr)
        return int(ExitCode.USAGE)
    if job_id is None:
        return 0
    print(f"[sbatch] submitted job {job_id}: {script} (log: {job.run_dir}/slurm-{job_id}.out)", flush=True)
    previous = {s: signal.signal(s, _raise_interrupted) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        code, reason = follow(job_id, job.run_dir, echo=not args.quiet)
    except _Interrupted:
        for s in previous:
            signal.signal(s, signal.SIG_IGN)
        cancel(job_id)
        print(f"error: interrupted; job {job_id} cancelled (logs in {job.run_dir})", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if code != 0:
        print(f"error: {reason}", file=sys.stderr)
    return code


def run_as_separate_jobs(job: JobSpec, dry_run: bool, go_on_other_nodes: bool = False) -> int:
    """``--go-as-new-job``: the orchestrator runs here; each phase is a job of its own.

    Returns the orchestrator's exit code (130 if interrupted: it cancels its jobs first).
    """
    directives = [line.removeprefix("#SBATCH ") for line in sbatch_directives(job)]
    # Name, node count, output and workdir are per phase; the rest applies to every job.
    keep = ("--gpus-per-node=", "--partition=", "--time=", "--account=")
    options = [d for d in directives if d.startswith(keep)]
    env = dict(os.environ, **{ENV_SLURM_JOBS: "1", ENV_SBATCH_OPTIONS: shlex.join(options)})
    if job.signal_before_s is not None:
        env[ENV_SIGNAL_BEFORE] = str(job.signal_before_s)
    if go_on_other_nodes:
        env[ENV_GO_ON_OTHER_NODES] = "1"
    command = job.orchestrator_command()
    if dry_run:
        other = f"{ENV_GO_ON_OTHER_NODES}=1 " if go_on_other_nodes else ""
        sbatch_env = f"{ENV_SBATCH_OPTIONS}={shlex.quote(shlex.join(options))}"
        print(f"{ENV_SLURM_JOBS}=1 {other}{sbatch_env} {shlex.join(command)}")
        print("[sbatch] dry run: stop, go and the reference would each be a job; nothing submitted", flush=True)
        return 0
    print(f"[sbatch] go as a new job: the orchestrator runs here, each phase as its own job ({job.run_dir})")
    proc = subprocess.Popen(command, env=env)
    # The orchestrator handles SIGINT/SIGTERM itself (cancels its job, exits 130); pass TERM on.
    previous = {
        signal.SIGINT: signal.signal(signal.SIGINT, signal.SIG_IGN),
        signal.SIGTERM: signal.signal(signal.SIGTERM, lambda signum, frame: proc.send_signal(signal.SIGTERM)),
    }
    try:
        return proc.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    raise _Interrupted(signal.Signals(signum).name)
