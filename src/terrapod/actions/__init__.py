"""Terraform actions: the provider-defined actions of a workspace's configuration and what its
runs invoked (HCP Terraform's "Terraform actions API", seed 002)."""
