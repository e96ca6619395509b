"""Variable sets: organization-wide variables applied to many workspaces (issue 6)."""
