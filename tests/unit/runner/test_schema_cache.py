"""The provider-schema cache: keyed by engine and lock file, used by plans, bounded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from terrapod.runner import schema_cache
from terrapod.runner.engines import Engine
from terrapod.runner.execute import SCHEMA_CACHE_DIR
from terrapod.runner.schema_cache import SchemaCache
from tests.unit.runner.conftest import FakeJobIO, Jobs

ENGINE = Engine(name="terraform", version="1.15.5", path=Path("/bin/terraform"))


def test_the_key_follows_the_engine_and_the_lock_file(tmp_path: Path) -> None:
    cache = SchemaCache(tmp_path / "cache")
    module = tmp_path / "module"
    module.mkdir()
    without_lock = cache.key(ENGINE, module)
    (module / ".terraform.lock.hcl").write_text('provider "x" { version = "1.0.0" }\n')
    with_lock = cache.key(ENGINE, module)
    other_engine = Engine(name="terraform", version="1.14.0", path=Path("/bin/terraform-1.14"))
    assert len({without_lock, with_lock, cache.key(other_engine, module)}) == 3


def test_entries_round_trip_and_the_oldest_go_beyond_the_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(schema_cache, "MAX_ENTRIES", 2)
    cache = SchemaCache(tmp_path)
    assert cache.get("a") is None
    for name in ("a", "b", "c"):
        cache.put(name, name.encode())
    assert cache.get("a") is None
    assert cache.get("c") == b"c"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.json", "c.json"]


async def test_a_plan_takes_the_schemas_from_the_cache(jobs: Jobs) -> None:
    files = {"main.tf": 'resource "terraform_data" "cached" { input = "x" }\n'}
    first = FakeJobIO(files)
    assert (await jobs.run(jobs.spec(plan_only=True), first)).outcome == "finished"
    cache = SchemaCache(jobs.workdir_root / SCHEMA_CACHE_DIR)
    entries = list(cache.directory.glob("*.json"))
    assert len(entries) == 1
    real = json.loads(entries[0].read_bytes())
    # A marker in the cached answer shows up in the next plan's redacted JSON: the engine was
    # not asked again.
    real["format_version"] = "cached-marker"
    entries[0].write_text(json.dumps(real))
    second = FakeJobIO(files)
    assert (await jobs.run(jobs.spec(plan_only=True), second)).outcome == "finished"
    assert second.redacted_json["provider_format_version"] == "cached-marker"
