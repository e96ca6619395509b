"""Configuration versions: create, upload through the signed URL, read, list, download and
archive; every unsafe or broken tarball refused; the upload hook; deleting workspaces."""

from __future__ import annotations

import gzip
import io
import re
import tarfile
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from terrapod.access.principal import SYSTEM
from terrapod.configversions import service
from terrapod.configversions.models import ConfigurationVersion
from terrapod.db.engine import WRITE_OPTION
from terrapod.errors import Conflict, Invalid, NotFound
from terrapod.storage import keys
from tests.factories import make_org, make_user

WS = "/api/v2/organizations/default/workspaces"
BASE = "https://terrapod.test"
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

Member = tuple[tarfile.TarInfo, bytes]


# -- tarballs --------------------------------------------------------------------------------


def file(name: str, data: bytes = b"# terraform\n") -> Member:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    return info, data


def directory(name: str) -> Member:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    return info, b""


def link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> Member:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, b""


def device(name: str) -> Member:
    info = tarfile.TarInfo(name)
    info.type = tarfile.CHRTYPE
    info.devmajor, info.devminor = 1, 3
    return info, b""


def tarball(*members: Member, compress: bool = True) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for info, data in members:
            archive.addfile(info, io.BytesIO(data) if info.isreg() else None)
    raw = buffer.getvalue()
    return gzip.compress(raw) if compress else raw


# What go-slug packs for a small configuration: directories, files, a relative symlink.
GOOD = tarball(
    file("main.tf", b'resource "terraform_data" "x" {}\n'),
    directory("modules"),
    directory("modules/net"),
    file("modules/net/main.tf", b"variable v {}\n"),
    link("current.tf", "main.tf"),
)
GOOD_MEMBERS = 5


# -- helpers ---------------------------------------------------------------------------------


async def new_workspace(client: httpx.AsyncClient, name: str = "app") -> str:
    r = await client.post(WS, json={"data": {"type": "workspaces", "attributes": {"name": name}}})
    assert r.status_code == 201, r.text
    return str(r.json()["data"]["id"])


async def create_cv(client: httpx.AsyncClient, ws: str, **attributes: Any) -> dict[str, Any]:
    r = await client.post(
        f"/api/v2/workspaces/{ws}/configuration-versions",
        json={"data": {"type": "configuration-versions", "attributes": attributes}},
    )
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()["data"]
    return data


def path_of(url: str) -> str:
    assert url.startswith(BASE + "/objects/"), url
    return url.removeprefix(BASE)


async def upload(anon: httpx.AsyncClient, cv: dict[str, Any], content: bytes) -> httpx.Response:
    """PUT the tarball as terraform does: no Authorization header."""
    return await anon.put(
        path_of(cv["attributes"]["upload-url"]),
        content=content,
        headers={"Content-Type": "application/octet-stream"},
    )


async def uploaded_cv(
    admin: httpx.AsyncClient, anon: httpx.AsyncClient, ws: str, content: bytes = GOOD
) -> str:
    cv = await create_cv(admin, ws)
    r = await upload(anon, cv, content)
    assert r.status_code == 200, r.text
    return str(cv["id"])


async def show(client: httpx.AsyncClient, cv_id: str) -> dict[str, Any]:
    r = await client.get(f"/api/v2/configuration-versions/{cv_id}")
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()["data"]
    return data


async def row(app: FastAPI, cv_id: str) -> ConfigurationVersion | None:
    async with app.state.sessionmaker() as session:
        found: ConfigurationVersion | None = await session.get(ConfigurationVersion, cv_id)
        return found


async def stored(app: FastAPI, cv_id: str) -> bool:
    return await app.state.object_store.head(keys.configuration_version(cv_id)) is not None


# -- create, read, list ------------------------------------------------------------------------


async def test_create_answers_pending_with_an_absolute_signed_upload_url(
    admin: httpx.AsyncClient,
) -> None:
    ws = await new_workspace(admin)
    cv = await create_cv(admin, ws)
    assert cv["type"] == "configuration-versions" and cv["id"].startswith("cv-")
    attrs = cv["attributes"]
    assert attrs["status"] == "pending" and attrs["source"] == "tfe-api"
    assert attrs["auto-queue-runs"] is True
    assert attrs["speculative"] is False and attrs["provisional"] is False
    assert attrs["error"] is None and attrs["error-message"] is None
    assert list(attrs["status-timestamps"]) == ["queued-at"]
    assert ISO_Z.match(attrs["status-timestamps"]["queued-at"])
    assert attrs["upload-url"].startswith(BASE + "/objects/")
    assert cv["relationships"] == {"ingress-attributes": {"data": None}}
    assert cv["links"] == {
        "self": f"/api/v2/configuration-versions/{cv['id']}",
        "download": f"/api/v2/configuration-versions/{cv['id']}/download",
    }
    # As in TFE, the upload URL is only handed out once.
    assert (await show(admin, cv["id"]))["attributes"]["upload-url"] is None


async def test_create_takes_what_terraform_sends(admin: httpx.AsyncClient) -> None:
    ws = await new_workspace(admin)
    cv = await create_cv(admin, ws, **{"auto-queue-runs": False, "speculative": True})
    assert cv["attributes"]["auto-queue-runs"] is False and cv["attributes"]["speculative"] is True
    cv = await create_cv(admin, ws, provisional=True)
    assert cv["attributes"]["provisional"] is True and cv["attributes"]["auto-queue-runs"] is True
    # go-tfe sends no attributes at all when every option is left unset.
    r = await admin.post(
        f"/api/v2/workspaces/{ws}/configuration-versions",
        json={"data": {"type": "configuration-versions"}},
    )
    assert r.status_code == 201 and r.json()["data"]["attributes"]["auto-queue-runs"] is True


async def test_create_refuses_wrong_types_naming_the_attribute(admin: httpx.AsyncClient) -> None:
    ws = await new_workspace(admin)
    r = await admin.post(
        f"/api/v2/workspaces/{ws}/configuration-versions",
        json={"data": {"type": "configuration-versions", "attributes": {"speculative": "yes"}}},
    )
    assert r.status_code == 422
    assert r.json()["errors"][0]["source"]["pointer"] == "/data/attributes/speculative"


async def test_list_is_newest_first_and_paginated(admin: httpx.AsyncClient) -> None:
    ws = await new_workspace(admin)
    ids = [(await create_cv(admin, ws))["id"] for _ in range(3)]
    other = await new_workspace(admin, "other")
    await create_cv(admin, other)
    r = await admin.get(f"/api/v2/workspaces/{ws}/configuration-versions")
    body = r.json()
    assert [cv["id"] for cv in body["data"]] == ids[::-1]
    assert body["meta"]["pagination"]["total-count"] == 3
    r = await admin.get(
        f"/api/v2/workspaces/{ws}/configuration-versions",
        params={"page[size]": "2", "page[number]": "2"},
    )
    page = r.json()
    assert [cv["id"] for cv in page["data"]] == [ids[0]]
    assert page["meta"]["pagination"]["current-page"] == 2
    assert page["meta"]["pagination"]["next-page"] is None


async def test_include_ingress_attributes_is_accepted_and_adds_nothing(
    admin: httpx.AsyncClient,
) -> None:
    ws = await new_workspace(admin)
    cv = await create_cv(admin, ws)
    for path in (
        f"/api/v2/configuration-versions/{cv['id']}",
        f"/api/v2/workspaces/{ws}/configuration-versions",
    ):
        r = await admin.get(path, params={"include": "ingress_attributes"})
        assert r.status_code == 200 and "included" not in r.json()


async def test_unknown_and_malformed_ids_are_404(admin: httpx.AsyncClient) -> None:
    for cv_id in ("cv-AAAAAAAAAAAAAAAA", "nonsense", "ws-AAAAAAAAAAAAAAAA"):
        for method, suffix in (("GET", ""), ("GET", "/download"), ("POST", "/actions/archive")):
            r = await admin.request(method, f"/api/v2/configuration-versions/{cv_id}{suffix}")
            assert r.status_code == 404, (method, suffix, r.text)
    r = await admin.get("/api/v2/workspaces/ws-AAAAAAAAAAAAAAAA/configuration-versions")
    assert r.status_code == 404


# -- upload ------------------------------------------------------------------------------------


async def test_upload_makes_it_uploaded_and_download_returns_the_bytes(
    app: FastAPI, admin: httpx.AsyncClient, anon: httpx.AsyncClient
) -> None:
    ws = await new_workspace(admin)
    cv = await create_cv(admin, ws)
    dl = f"/api/v2/configuration-versions/{cv['id']}/download"
    assert (await admin.get(dl)).status_code == 404, "nothing to download while pending"
    r = await upload(anon, cv, GOOD)
    assert r.status_code == 200, r.text
    shown = await show(admin, cv["id"])
    attrs = shown["attributes"]
    assert attrs["status"] == "uploaded" and attrs["error-message"] is None
    stamps = attrs["status-timestamps"]
    assert set(stamps) == {"queued-at", "uploaded-at"}
    assert all(ISO_Z.match(v) for v in stamps.values())
    assert stamps["uploaded-at"] >= stamps["queued-at"]
    saved = await row(app, cv["id"])
    assert saved is not None and saved.size == len(GOOD) and saved.file_count == GOOD_MEMBERS
    got = await admin.get(dl)
    assert got.status_code == 200 and got.content == GOOD
    assert got.headers["content-type"] == "application/octet-stream"
    assert (await anon.get(dl)).status_code == 401


async def test_a_second_upload_is_refused_and_changes_nothing(
    app: FastAPI, admin: httpx.AsyncClient, anon: httpx.AsyncClient
) -> None:
    ws = await new_workspace(admin)
    cv = await create_cv(admin, ws)
    assert (await upload(anon, cv, GOOD)).status_code == 200
    again = await upload(anon, cv, tarball(file("other.tf")))
    assert again.status_code == 409
    got = await admin.get(f"/api/v2/configuration-versions/{cv['id']}/download")
    assert got.content == GOOD


async def test_the_upload_url_is_bound_to_put(
    admin: httpx.AsyncClient, anon: httpx.AsyncClient
) -> None:
    ws = await new_workspace(admin)
    cv = await create_cv(admin, ws)
    assert (await anon.get(path_of(cv["attributes"]["upload-url"]))).status_code == 403


REFUSALS: dict[str, tuple[bytes, str]] = {
    "traversal": (tarball(file("main.tf"), file("../x")), "escapes the archive root"),
    "absolute path": (tarball(file("/etc/cron.d/x")), "absolute path"),
    "escaping symlink": (tarball(link("out", "../../etc/passwd")), "points outside"),
    "symlink then write through it": (
        tarball(link("d", "."), link("e", "d/.."), file("e/x")),
        "outside",
    ),
    "escaping hard link": (tarball(link("h", "/etc/passwd", tarfile.LNKTYPE)), "hard link"),
    "device file": (tarball(device("dev/null")), "device or fifo"),
    "corrupt gzip": (GOOD[: len(GOOD) // 2], "not a gzip-compressed tar archive"),
    "gzip of garbage": (gzip.compress(b"this is not a tar archive" * 40), "not a gzip"),
    "plain tar": (tarball(file("main.tf"), compress=False), "not a gzip-compressed tar"),
    "empty body": (b"", "not a gzip-compressed tar archive"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
async def test_unsafe_or_broken_tarballs_are_refused_and_discarded(
    app: FastAPI, admin: httpx.AsyncClient, anon: httpx.AsyncClient, case: str
) -> None:
    content, reason = REFUSALS[case]
    await _expect_refused(app, admin, anon, content, reason)


async def _expect_refused(
    app: FastAPI,
    admin: httpx.AsyncClient,
    anon: httpx.AsyncClient,
    content: bytes,
    reason: str,
) -> None:
    ws = await new_workspace(admin)
    cv = await create_cv(admin, ws)
    r = await upload(anon, cv, content)
    assert r.status_code == 422, r.text
    detail = r.json()["errors"][0]["detail"]
    assert reason in detail
    attrs = (await show(admin, cv["id"]))["attributes"]
    assert attrs["status"] == "errored"
    assert attrs["error-message"] == detail and attrs["error"] == detail
    assert set(attrs["status-timestamps"]) == {"queued-at", "errored-at"}
    assert not await stored(app, cv["id"]), "a refused tarball must not stay stored"
    dl = await admin.get(f"/api/v2/configuration-versions/{cv['id']}/download")
    assert dl.status_code == 404
    # An errored version takes no second attempt: the client creates a new version.
    assert (await upload(anon, cv, GOOD)).status_code == 409


async def test_a_configuration_over_the_size_limit_is_refused(
    app: FastAPI, admin: httpx.AsyncClient, anon: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app.state.settings.runs, "max_configuration_bytes", 4096)
    small = tarball(file("a.tf", b"x" * 3000))
    big = tarball(file("a.tf", b"x" * 3000), file("b.tf", b"y" * 3000))
    ws = await new_workspace(admin, "fits")
    await uploaded_cv(admin, anon, ws, small)
    await _expect_refused(app, admin, anon, big, "expands to more than 4096 bytes")


async def test_a_configuration_with_too_many_files_is_refused(
    app: FastAPI, admin: httpx.AsyncClient, anon: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service, "MAX_CONFIGURATION_FILES", GOOD_MEMBERS)
    ws = await new_workspace(admin, "fits")
    await uploaded_cv(admin, anon, ws, GOOD)
    crowded = tarball(*(file(f"f{i}.tf") for i in range(GOOD_MEMBERS + 1)))
    await _expect_refused(app, admin, anon, crowded, f"more than {GOOD_MEMBERS} members")


async def test_an_upload_after_the_workspace_is_deleted_leaves_nothing(
    app: FastAPI, admin: httpx.AsyncClient, anon: httpx.AsyncClient
) -> None:
    ws = await new_workspace(admin)
    cv = await create_cv(admin, ws)
    assert (await admin.delete(f"/api/v2/workspaces/{ws}")).status_code == 204
    assert (await upload(anon, cv, GOOD)).status_code == 409
    assert not await stored(app, cv["id"])


# -- the configuration_uploaded hook -------------------------------------------------------------


async def test_the_uploaded_hook_fires_once_inside_the_transaction(
    app: FastAPI, admin: httpx.AsyncClient, anon: httpx.AsyncClient
) -> None:
    seen: list[tuple[str, str, bool]] = []

    async def record(session: AsyncSession, cv: ConfigurationVersion) -> None:
        # Same transaction: the row it reads back already says uploaded.
        again = await session.get(ConfigurationVersion, cv.id)
        assert again is cv
        seen.append((cv.id, cv.status, session.in_transaction()))

    app.state.sessionmaker.kw["info"]["hooks"].configuration_uploaded.append(record)
    ws = await new_workspace(admin)
    cv = await create_cv(admin, ws, **{"auto-queue-runs": False})
    assert (await upload(anon, cv, GOOD)).status_code == 200
    assert (await upload(anon, cv, GOOD)).status_code == 409
    bad = await create_cv(admin, ws)
    assert (await upload(anon, bad, b"nope")).status_code == 422
    assert seen == [(cv["id"], "uploaded", True)]


async def test_a_failing_hook_leaves_the_version_pending_for_a_retry(
    app: FastAPI, admin: httpx.AsyncClient, anon: httpx.AsyncClient
) -> None:
    calls: list[str] = []

    async def refuse_once(session: AsyncSession, cv: ConfigurationVersion) -> None:
        calls.append(cv.id)
        if len(calls) == 1:
            raise Conflict("not now")

    app.state.sessionmaker.kw["info"]["hooks"].configuration_uploaded.append(refuse_once)
    ws = await new_workspace(admin)
    cv = await create_cv(admin, ws)
    assert (await upload(anon, cv, GOOD)).status_code == 409
    assert (await show(admin, cv["id"]))["attributes"]["status"] == "pending"
    assert (await upload(anon, cv, GOOD)).status_code == 200
    assert (await show(admin, cv["id"]))["attributes"]["status"] == "uploaded"


# -- races between uploads ----------------------------------------------------------------------


async def test_an_upload_replaced_before_it_was_checked_settles_nothing(
    app: FastAPI, admin: httpx.AsyncClient
) -> None:
    ws = await new_workspace(admin)
    cv = await create_cv(admin, ws)
    store = app.state.object_store
    key = keys.configuration_version(cv["id"])
    first = await store.put_bytes(key, GOOD)
    second_content = tarball(file("second.tf"))
    second = await store.put_bytes(key, second_content)  # landed before the first was checked
    limits = service.archive_limits(app.state.settings.runs)
    for info, expected in ((first, Conflict), (second, None)):
        inspection = await service.inspect_upload(store, info, limits)
        async with app.state.sessionmaker() as session:
            await session.connection(execution_options={WRITE_OPTION: True})
            if expected is None:
                await service.tarball_uploaded(session, store, info, inspection)
            else:
                with pytest.raises(expected):
                    await service.tarball_uploaded(session, store, info, inspection)
            await session.commit()
    saved = await row(app, cv["id"])
    assert saved is not None and saved.status == "uploaded" and saved.size == len(second_content)
    got = await admin.get(f"/api/v2/configuration-versions/{cv['id']}/download")
    assert got.content == second_content


async def test_an_upload_landing_after_acceptance_is_what_the_records_describe(
    app: FastAPI, admin: httpx.AsyncClient, anon: httpx.AsyncClient
) -> None:
    fired: list[str] = []

    async def record(session: AsyncSession, cv: ConfigurationVersion) -> None:
        fired.append(cv.id)

    app.state.sessionmaker.kw["info"]["hooks"].configuration_uploaded.append(record)
    ws = await new_workspace(admin)
    cv = await create_cv(admin, ws)
    assert (await upload(anon, cv, GOOD)).status_code == 200
    store = app.state.object_store
    key = keys.configuration_version(cv["id"])
    limits = service.archive_limits(app.state.settings.runs)

    async def late(content: bytes) -> None:
        # A PUT that passed the guard before the first upload was accepted.
        info = await store.put_bytes(key, content)
        inspection = await service.inspect_upload(store, info, limits)
        async with app.state.sessionmaker() as session:
            await session.connection(execution_options={WRITE_OPTION: True})
            try:
                await service.tarball_uploaded(session, store, info, inspection)
            finally:
                await session.commit()

    later = tarball(file("later.tf"), file("more.tf"))
    await late(later)
    saved = await row(app, cv["id"])
    assert saved is not None and saved.status == "uploaded"
    assert (saved.size, saved.file_count) == (len(later), 2)
    assert fired == [cv["id"]], "the hook fires for the first acceptance only"
    with pytest.raises(service.TarballRefused):
        await late(tarball(file("../escape")))
    saved = await row(app, cv["id"])
    assert saved is not None and saved.status == "errored"
    assert not await stored(app, cv["id"])


# -- archive -----------------------------------------------------------------------------------


async def test_archive_discards_an_older_uploaded_version(
    app: FastAPI, admin: httpx.AsyncClient, anon: httpx.AsyncClient
) -> None:
    ws = await new_workspace(admin)
    old = await uploaded_cv(admin, anon, ws)
    new = await uploaded_cv(admin, anon, ws)
    pending = (await create_cv(admin, ws))["id"]

    def archive(cv_id: str) -> Any:
        return admin.post(f"/api/v2/configuration-versions/{cv_id}/actions/archive")

    r = await archive(new)
    assert r.status_code == 409 and "latest" in r.json()["errors"][0]["detail"]
    assert (await archive(pending)).status_code == 409
    r = await archive(old)
    assert r.status_code == 202 and r.content == b""
    attrs = (await show(admin, old))["attributes"]
    assert attrs["status"] == "archived"
    assert set(attrs["status-timestamps"]) == {"queued-at", "uploaded-at", "archived-at"}
    assert not await stored(app, old)
    assert await stored(app, new)
    assert (await admin.get(f"/api/v2/configuration-versions/{old}/download")).status_code == 404
    r = await archive(old)
    assert r.status_code == 409 and "archived" in r.json()["errors"][0]["detail"]


# -- what the runs domain calls --------------------------------------------------------------------


async def test_latest_is_the_most_recently_uploaded_or_used(
    app: FastAPI, admin: httpx.AsyncClient, anon: httpx.AsyncClient
) -> None:
    ws = await new_workspace(admin)
    async with app.state.sessionmaker() as session:
        assert await service.latest(session, ws) is None
    first = await uploaded_cv(admin, anon, ws)
    second = await uploaded_cv(admin, anon, ws)
    await create_cv(admin, ws)  # pending: never the latest
    async with app.state.sessionmaker() as session:
        found = await service.latest(session, ws)
        assert found is not None and found.id == second
        cv, _, _ = await service.get_usable(session, SYSTEM, first)
        await service.mark_used(session, cv, ws)
        await session.commit()
    async with app.state.sessionmaker() as session:
        found = await service.latest(session, ws)
        assert found is not None and found.id == first
    # Now the second one is the older: it may be archived, the first may not.
    r = await admin.post(f"/api/v2/configuration-versions/{first}/actions/archive")
    assert r.status_code == 409
    r = await admin.post(f"/api/v2/configuration-versions/{second}/actions/archive")
    assert r.status_code == 202


async def test_a_version_used_by_another_workspace_stays_where_it_is(
    app: FastAPI, admin: httpx.AsyncClient, anon: httpx.AsyncClient
) -> None:
    source = await new_workspace(admin, "source")
    target = await new_workspace(admin, "target")
    old = await uploaded_cv(admin, anon, source)
    new = await uploaded_cv(admin, anon, source)
    async with app.state.sessionmaker() as session:
        cv, _, _ = await service.get_usable(session, SYSTEM, old)
        await service.mark_used(session, cv, target)
        await session.commit()
        found = await service.latest(session, source)
        assert found is not None and found.id == new
        assert await service.latest(session, target) is None


async def test_only_uploaded_versions_are_usable_by_runs(
    app: FastAPI, admin: httpx.AsyncClient, anon: httpx.AsyncClient
) -> None:
    ws = await new_workspace(admin)
    pending = (await create_cv(admin, ws))["id"]
    errored = await create_cv(admin, ws)
    assert (await upload(anon, errored, b"junk")).status_code == 422
    outsider = await make_user(app, organization=await make_org(app), role="owner")
    async with app.state.sessionmaker() as session:
        principal = await app.state.tokens.resolve(session, outsider.token)
        for cv_id, why in ((pending, "no configuration uploaded"), (errored["id"], "errored")):
            with pytest.raises(Invalid) as refused:
                await service.get_usable(session, SYSTEM, cv_id)
            assert why in refused.value.detail and refused.value.pointer == service.CV_POINTER
        usable = await uploaded_cv(admin, anon, ws)
        with pytest.raises(NotFound):
            await service.get_usable(session, principal, usable)
        cv, found_ws, _ = await service.get_usable(session, SYSTEM, usable)
        assert cv.id == usable and found_ws.id == ws


# -- permissions ---------------------------------------------------------------------------------


async def test_members_create_and_read_and_other_organizations_see_nothing(
    app: FastAPI, admin: httpx.AsyncClient, anon: httpx.AsyncClient
) -> None:
    ws = await new_workspace(admin)
    cv_id = await uploaded_cv(admin, anon, ws)
    older = cv_id
    await uploaded_cv(admin, anon, ws)
    member = await make_user(app, organization="default", role="member")
    async with member.client(app) as c:
        created = await c.post(
            f"/api/v2/workspaces/{ws}/configuration-versions",
            json={"data": {"type": "configuration-versions", "attributes": {}}},
        )
        assert created.status_code == 201
        assert (await c.get(f"/api/v2/configuration-versions/{cv_id}")).status_code == 200
        assert (await c.get(f"/api/v2/workspaces/{ws}/configuration-versions")).status_code == 200
        dl = await c.get(f"/api/v2/configuration-versions/{cv_id}/download")
        assert dl.status_code == 200 and dl.content == GOOD
    outsider = await make_user(app, organization=await make_org(app), role="owner")
    async with outsider.client(app) as c:
        for method, path in (
            ("GET", f"/api/v2/configuration-versions/{cv_id}"),
            ("GET", f"/api/v2/configuration-versions/{cv_id}/download"),
            ("POST", f"/api/v2/configuration-versions/{older}/actions/archive"),
            ("GET", f"/api/v2/workspaces/{ws}/configuration-versions"),
            ("POST", f"/api/v2/workspaces/{ws}/configuration-versions"),
        ):
            body = {"data": {"type": "configuration-versions"}} if method == "POST" else None
            r = await c.request(method, path, json=body)
            assert r.status_code == 404, (method, path, r.text)
    assert (await show(admin, older))["attributes"]["status"] == "uploaded"
    for method, path in (
        ("GET", f"/api/v2/configuration-versions/{cv_id}"),
        ("POST", f"/api/v2/workspaces/{ws}/configuration-versions"),
    ):
        assert (await anon.request(method, path)).status_code == 401


# -- deleting workspaces and organizations --------------------------------------------------------


async def test_deleting_a_workspace_or_organization_deletes_its_tarballs(
    app: FastAPI, admin: httpx.AsyncClient, anon: httpx.AsyncClient
) -> None:
    doomed = await new_workspace(admin, "doomed")
    kept = await new_workspace(admin, "kept")
    doomed_cv = await uploaded_cv(admin, anon, doomed)
    kept_cv = await uploaded_cv(admin, anon, kept)
    assert (await admin.delete(f"/api/v2/workspaces/{doomed}")).status_code == 204
    assert not await stored(app, doomed_cv)
    assert await stored(app, kept_cv), "another workspace's configuration must survive"

    await make_org(app, "gone")
    r = await admin.post(
        "/api/v2/organizations/gone/workspaces",
        json={"data": {"type": "workspaces", "attributes": {"name": "w"}}},
    )
    inner_cv = await uploaded_cv(admin, anon, r.json()["data"]["id"])
    assert await stored(app, inner_cv)
    assert (await admin.delete("/api/v2/organizations/gone")).status_code == 204
    assert not await stored(app, inner_cv)
    assert await stored(app, kept_cv)
