"""Notification configurations and their deliveries (generic webhooks, Slack, email) (issue 6)."""
