"""Every child allocbench starts goes through here: where its binaries are,
what environment a child gets, how long it may run, and the one-line error
when it does not end well.  The bottom layer: it imports nothing of allocbench.

Two kinds of child:
- allocbench's own programs (cells, probes, calibration, the launcher, a fresh
  interpreter for the toy): run_json() runs one and parses the JSON object on
  its last line of output;
- a user's program (exec, record): run_user() gives it the user's input and
  output, as `time` or hyperfine would: stdin from a file or /dev/null (never
  the terminal, so no run waits on it), stdout and stderr to a log file, to
  the terminal (show), or discarded, all as bytes.

Every child starts in a session of its own, and a timeout or Ctrl-C kills the
whole session: a shell script's background jobs and the launcher's program
(which the launcher puts in a process group of its own) end with it."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

DEFAULT_TIMEOUT_S = 300
HERE = os.path.dirname(os.path.abspath(__file__))


class ChildFailed(RuntimeError):
    """A child that crashed, hung, exited non-zero or printed no JSON; the message says which, in one line."""


REBUILD = "run `make build` in a clone, or reinstall the package (pip install builds it)"


def program(name: str, override: str | None = None) -> str:
    """One of allocbench's C programs, built beside this package (helpers.HELPERS);
    the environment variable `override` may point elsewhere (e.g. a debug build)."""
    path = (override and os.environ.get(override)) or os.path.join(HERE, name)
    if not os.access(path, os.X_OK):
        raise FileNotFoundError(f"{path} is missing or not executable: {REBUILD}")
    return path


def library(name: str) -> str:
    """A preload library built beside this package (librecord.so, libexplain.so, ...)."""
    path = os.path.join(HERE, name)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} is missing: {REBUILD}")
    return path



def child_env(preload: str | None = None, extra: dict | None = None) -> dict:
    """The environment of a child: this one, except that its malloc is the one
    asked for, never an LD_PRELOAD inherited from whoever started allocbench."""
    out = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    if preload:
        out["LD_PRELOAD"] = preload
    out.update(extra or {})
    return out


def check_command(command: list[str], cwd: str | None = None) -> None:
    """ValueError (one line) unless `command` names a program that can be run
    (from cwd, when given)."""
    if not command:
        raise ValueError("no command: give it after --, e.g. allocbench exec -- python3 script.py")
    if cwd is not None and not os.path.isdir(cwd):
        raise ValueError(f"no such folder to run {command[0]} in: {cwd}")
    name = os.path.join(cwd, command[0]) if cwd and os.sep in command[0] else command[0]
    if not shutil.which(name):
        raise ValueError(f"command not found: {command[0]}" + (f" (from {cwd})" if cwd else ""))


def exit_on_sigterm(name: str = "allocbench") -> None:
    """SIGTERM (a `timeout`, a service manager, CI) unwinds as SystemExit(143), as Ctrl-C unwinds:
    run_in_session kills each child's session on the way out and every temporary file goes.  Python's
    default died at once and left the launcher and the program running to their own timeout."""
    def terminated(signum, frame):
        print(f"{name}: terminated", file=sys.stderr, flush=True)
        raise SystemExit(128 + signal.SIGTERM)

    signal.signal(signal.SIGTERM, terminated)


def kill_session(sid: int) -> None:
    """SIGKILL every process of session `sid` (a child started with
    start_new_session: its process groups, the launcher's program's among them)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
            # after the command's closing parenthesis: state ppid pgrp session
            if int(stat[stat.rindex(b")") + 2:].split()[3]) == sid:
                os.kill(int(entry), signal.SIGKILL)
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile, or not ours to kill


def run_in_session(argv: list[str], timeout: float, **kwargs) -> subprocess.CompletedProcess:
    """subprocess.run in a session of its own; on a timeout or Ctrl-C the whole
    session is killed before the exception goes on."""
    with subprocess.Popen(argv, start_new_session=True, **kwargs) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except BaseException:  # TimeoutExpired, KeyboardInterrupt: nothing of it may outlive this call
            proc.kill()
            proc.communicate()
            raise
        finally:
            kill_session(proc.pid)  # the rest of its session: what it started, and what it left running
        return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def run_json(argv: list[str], env: dict | None = None, timeout: float = DEFAULT_TIMEOUT_S) -> dict:
    """Run one of allocbench's own programs and parse the JSON object on its last
    line of output.  Raises ChildFailed with the reason; Ctrl-C (which reaches
    allocbench alone: the child has a session of its own) kills it and goes on as
    KeyboardInterrupt."""
    try:
        proc = run_in_session(argv, timeout, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                    env=child_env() if env is None else env)
    except subprocess.TimeoutExpired:
        raise ChildFailed(f"timeout: no result within {timeout:.1f} s") from None
    except OSError as e:
        raise ChildFailed(f"cannot run {argv[0]}: {e.strerror}") from None
    if proc.returncode < 0:
        raise ChildFailed(f"crashed: killed by {signal.Signals(-proc.returncode).name}")
    lines = proc.stdout.decode(errors="replace").strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.decode(errors="replace").strip().splitlines() or ["no output"])[-1]
        raise ChildFailed(f"exit status {proc.returncode}: {tail}")
    try:
        return json.loads(lines[-1])
    except json.JSONDecodeError:
        raise ChildFailed(f"unreadable output: {lines[-1][:200]!r}") from None


def run_python(code: str, timeout: float = 120) -> dict:
    """`code` in a fresh interpreter that can import this package; its last line's JSON."""
    return run_json([sys.executable, "-c", code], env=child_env(extra={"PYTHONPATH": os.path.dirname(HERE)}),
                    timeout=timeout)


SHOW = "show"  # run_user(output=SHOW): the program writes to allocbench's own stdout and stderr


def run_user(argv: list[str], env: dict, timeout: float, stdin: str | None = None,
             output: str | None = None, cwd: str | None = None) -> int:
    """Run a user's program (or the launcher that runs it) to its end; returns
    its exit status.  stdin: a file, else /dev/null.  output: a log file for
    both stdout and stderr (created, with its folder), SHOW for the terminal,
    or None to discard them.  cwd: where it runs (default: here).  A timeout
    is ChildFailed("timeout: ...")."""
    try:
        src = open(stdin, "rb") if stdin else open(os.devnull, "rb")
    except OSError as e:
        raise ChildFailed(f"--input {stdin}: {e.strerror}") from None
    try:
        if output == SHOW:
            sink = None
        elif output:
            os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
            sink = open(output, "wb")
        else:
            sink = subprocess.DEVNULL
        try:
            proc = run_in_session(argv, timeout, stdin=src, stdout=sink, stderr=subprocess.STDOUT if sink is not None
                        else None, env=env, cwd=cwd)
        finally:
            if sink not in (None, subprocess.DEVNULL):
                sink.close()
    except subprocess.TimeoutExpired:
        raise ChildFailed(f"timeout: killed after {timeout:g} s") from None
    except OSError as e:
        raise ChildFailed(f"cannot run {argv[0]}: {e.strerror}") from None
    finally:
        src.close()
    return proc.returncode


def tail(path: str | None, lines: int = 5) -> list[str]:
    """The last lines of a log, decoded for reading (bytes that are not UTF-8 are replaced)."""
    if not path or not os.path.exists(path):
        return []
    with open(path, "rb") as f:
        f.seek(max(0, os.path.getsize(path) - 4096))
        return f.read().decode(errors="replace").strip().splitlines()[-lines:]
