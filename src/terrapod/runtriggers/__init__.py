"""Run triggers: an applied run in a source workspace queues runs in its destinations (issue 6)."""
