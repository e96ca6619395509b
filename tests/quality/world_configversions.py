"""What the generic endpoint suite's world holds for the configversions routes: in the main
workspace, two uploaded configuration versions and a pending one. ``cv_id`` is the older
uploaded one (readable, downloadable and, not being the latest, archivable)."""

from __future__ import annotations

import gzip
import io
import tarfile

import httpx
from fastapi import FastAPI

# IDs that look real but name nothing (for the 401-before-lookup checks).
PLACEHOLDERS: dict[str, str] = {"cv_id": "cv-AAAAAAAAAAAAAAAA"}


def _tarball(name: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        data = b'resource "terraform_data" "x" {}\n'
        info = tarfile.TarInfo(name)
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return gzip.compress(buffer.getvalue())


async def _create(admin: httpx.AsyncClient, workspace_id: str) -> dict[str, str]:
    r = await admin.post(
        f"/api/v2/workspaces/{workspace_id}/configuration-versions",
        json={"data": {"type": "configuration-versions", "attributes": {"auto-queue-runs": False}}},
    )
    assert r.status_code == 201, r.text
    data = r.json()["data"]
    return {"id": data["id"], "upload_url": data["attributes"]["upload-url"]}


async def extend(app: FastAPI, admin: httpx.AsyncClient, values: dict[str, str]) -> dict[str, str]:
    """Create what the configversions routes need in the world; return the values their paths
    use."""
    uploaded = []
    for name in ("old.tf", "new.tf"):
        cv = await _create(admin, values["workspace_id"])
        path = "/" + cv["upload_url"].split("/", 3)[3]
        r = await admin.put(path, content=_tarball(name), headers={"Authorization": ""})
        assert r.status_code == 200, r.text
        uploaded.append(cv["id"])
    await _create(admin, values["workspace_id"])
    return {"cv_id": uploaded[0]}
