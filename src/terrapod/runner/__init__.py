"""The runner: executes one job (the plan or the apply phase of a run) with a real engine.

No database and no HTTP: the caller (the agent) hands over a
:class:`~terrapod.runner.spec.JobSpec`, implements :class:`~terrapod.runner.spec.JobIO` and
steers through a :class:`~terrapod.runner.spec.JobControl`.

* :mod:`~terrapod.runner.execute` — :func:`execute` and :func:`discard_workdir`.
* :mod:`~terrapod.runner.spec` — what goes in and out.
* :mod:`~terrapod.runner.engines` — the workspace's version setting resolved to a binary.
* :mod:`~terrapod.runner.workdir` — the job's directory and the files added to the
  configuration (backend override, variables), the engine's environment.
* :mod:`~terrapod.runner.process` — running engine commands under cancel, force and timeout.
* :mod:`~terrapod.runner.masking` — sensitive values out of logs and stored JSON.
* :mod:`~terrapod.runner.planjson` — a plan's summary and its redacted form for the CLI.
"""
