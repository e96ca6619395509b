"""Run tasks: external services called at a run's pre-plan, post-plan and pre-apply stages."""
