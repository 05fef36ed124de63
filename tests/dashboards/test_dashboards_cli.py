"""``postmarket dashboards build | publish``: arguments, files, and the payload sent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from dashboards import publish as publish_module
from dashboards.build import DASHBOARDS, render_all
from dashboards.publish import (
    FOLDER_UID,
    GRAFANA_URL_ENV,
    GrafanaTarget,
    PublishError,
    check_url,
    payloads,
    publish,
    read_token,
)
from launcher.cli import app
from postmarket.secrets import write_secret_file

TOKEN = "glsa_" + "not-a-real-token-0123456789"  # built, so no secret scanner trips
runner = CliRunner()


class RecordingGrafana:
    """Stands in for ``grafana_client.GrafanaApi``: records what would go over HTTP."""

    def __init__(self, folder_exists: bool = True) -> None:
        self.folder_exists = folder_exists
        self.created_folders: list[tuple[str, str]] = []
        self.posted: list[dict[str, Any]] = []
        self.folder = self
        self.dashboard = self

    def get_folder(self, uid: str) -> dict[str, Any]:
        from grafana_client.client import GrafanaClientError

        if not self.folder_exists:
            raise GrafanaClientError(404, {}, "Not found")
        return {"uid": uid}

    def create_folder(self, title: str, uid: str) -> dict[str, Any]:
        self.created_folders.append((title, uid))
        return {"uid": uid}

    def update_dashboard(self, payload: dict[str, Any]) -> dict[str, Any]:
        self.posted.append(payload)
        return {"url": f"/d/{payload['dashboard']['uid']}/x", "status": "success"}


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "grafana-token"
    write_secret_file(path, f"{TOKEN}\n".encode())
    return path


def test_build_writes_one_file_per_dashboard(tmp_path: Path) -> None:
    result = runner.invoke(app, ["dashboards", "build", "--output", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(render_all())


def test_build_check_fails_on_a_stale_directory(tmp_path: Path) -> None:
    result = runner.invoke(app, ["dashboards", "build", "--check", "--output", str(tmp_path)])
    assert result.exit_code == 1
    assert "fleet.json" in result.output


def test_build_check_passes_on_the_committed_json() -> None:
    result = runner.invoke(app, ["dashboards", "build", "--check"])
    assert result.exit_code == 0, result.output


def test_publish_requires_a_token_file() -> None:
    assert runner.invoke(app, ["dashboards", "publish"]).exit_code == 2
    assert runner.invoke(app, ["dashboards", "publish", "--url", "http://g:3000"]).exit_code == 2


@pytest.fixture
def grafana_targets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[GrafanaTarget]:
    """The targets publish connects to; no grafana_url variable, no postmarket.toml."""
    monkeypatch.delenv(GRAFANA_URL_ENV, raising=False)
    monkeypatch.setenv("POSTMARKET_CONFIG", str(tmp_path / "absent.toml"))
    seen: list[GrafanaTarget] = []

    def connect(target: GrafanaTarget) -> RecordingGrafana:
        seen.append(target)
        return RecordingGrafana()

    monkeypatch.setattr(publish_module, "connect_grafana", connect)
    monkeypatch.setattr(publish_module, "check_grafana", lambda target: None)
    return seen


def publish_with(token_file: Path, *arguments: str) -> Any:
    return runner.invoke(
        app, ["dashboards", "publish", "--token-file", str(token_file), *arguments]
    )


def test_publish_without_url_goes_to_grafana_on_loopback(
    token_file: Path, grafana_targets: list[GrafanaTarget]
) -> None:
    result = publish_with(token_file)
    assert result.exit_code == 0, result.output
    assert [target.url for target in grafana_targets] == ["http://127.0.0.1:3000"]


def test_publish_without_url_takes_grafana_url_from_the_toml_file(
    tmp_path: Path,
    token_file: Path,
    grafana_targets: list[GrafanaTarget],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = tmp_path / "postmarket.toml"
    config.write_text('grafana_url = "https://grafana.hospital.example:3000/"\n')
    monkeypatch.setenv("POSTMARKET_CONFIG", str(config))
    result = publish_with(token_file)
    assert result.exit_code == 0, result.output
    assert grafana_targets[0].url == "https://grafana.hospital.example:3000"


def test_the_environment_overrides_the_toml_file_and_url_overrides_both(
    tmp_path: Path,
    token_file: Path,
    grafana_targets: list[GrafanaTarget],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = tmp_path / "postmarket.toml"
    config.write_text('grafana_url = "http://from-toml:3000"\n')
    monkeypatch.setenv("POSTMARKET_CONFIG", str(config))
    monkeypatch.setenv(GRAFANA_URL_ENV, "http://from-env:3000")
    assert publish_with(token_file).exit_code == 0
    assert publish_with(token_file, "--url", "http://from-option:3000").exit_code == 0
    assert [t.url for t in grafana_targets] == ["http://from-env:3000", "http://from-option:3000"]


def test_a_bad_grafana_url_setting_is_refused_naming_the_setting(
    token_file: Path, grafana_targets: list[GrafanaTarget], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(GRAFANA_URL_ENV, "grafana:3000")
    result = publish_with(token_file)
    assert result.exit_code == 1
    assert f"grafana_url ({GRAFANA_URL_ENV}" in result.output and "--url" not in result.output
    assert grafana_targets == []


def test_an_unreadable_toml_file_is_one_line_not_a_traceback(
    tmp_path: Path,
    token_file: Path,
    grafana_targets: list[GrafanaTarget],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = tmp_path / "postmarket.toml"
    config.write_text("grafana_url = \n")
    monkeypatch.setenv("POSTMARKET_CONFIG", str(config))
    result = publish_with(token_file)
    assert result.exit_code == 1
    assert f"cannot read grafana_url from {GRAFANA_URL_ENV} or {config}" in result.output
    assert "Traceback" not in result.output and grafana_targets == []


@pytest.mark.parametrize(
    "url", ["grafana:3000", "ftp://grafana", "http://", "http://admin:admin@grafana:3000"]
)
def test_publish_refuses_a_url_that_is_not_plain_http(url: str, token_file: Path) -> None:
    result = runner.invoke(
        app, ["dashboards", "publish", "--url", url, "--token-file", str(token_file)]
    )
    assert result.exit_code == 1
    assert "--url" in result.output


def test_publish_refuses_a_missing_token_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    result = runner.invoke(
        app, ["dashboards", "publish", "--url", "http://g:3000", "--token-file", str(missing)]
    )
    assert result.exit_code == 1
    assert str(missing) in result.output


def test_publish_refuses_an_empty_token_file(tmp_path: Path) -> None:
    empty = tmp_path / "token"
    write_secret_file(empty, b"\n")
    with pytest.raises(PublishError, match="is empty"):
        read_token(empty)


def test_the_token_is_read_stripped_and_kept_out_of_repr(token_file: Path) -> None:
    target = GrafanaTarget(check_url("https://grafana.example/"), read_token(token_file))
    assert target.token == TOKEN
    assert TOKEN not in repr(target)
    assert target.url == "https://grafana.example"


def test_publish_never_prints_the_token(token_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    grafana = RecordingGrafana()
    seen: list[GrafanaTarget] = []

    def connect(target: GrafanaTarget) -> RecordingGrafana:
        seen.append(target)
        return grafana

    monkeypatch.setattr(publish_module, "connect_grafana", connect)
    monkeypatch.setattr(publish_module, "check_grafana", lambda target: None)
    result = runner.invoke(
        app, ["dashboards", "publish", "--url", "http://g:3000", "--token-file", str(token_file)]
    )
    assert result.exit_code == 0, result.output
    assert TOKEN not in result.output
    assert seen[0].token == TOKEN
    assert len(grafana.posted) == len(DASHBOARDS)


def test_publish_sends_every_dashboard_into_the_folder_with_overwrite() -> None:
    grafana = RecordingGrafana(folder_exists=False)
    urls = publish(GrafanaTarget("http://g:3000", TOKEN), connect=lambda _: grafana)
    assert grafana.created_folders == [("Post-market surveillance", FOLDER_UID)]
    assert grafana.posted == payloads()
    assert {p["folderUid"] for p in grafana.posted} == {FOLDER_UID}
    assert all(p["overwrite"] is True and "id" not in p["dashboard"] for p in grafana.posted)
    assert urls == [f"http://g:3000/d/{p['dashboard']['uid']}/x" for p in grafana.posted]


def test_a_grafana_refusal_is_reported_without_the_token() -> None:
    from grafana_client.client import GrafanaUnauthorizedError

    class Refusing(RecordingGrafana):
        def update_dashboard(self, payload: dict[str, Any]) -> dict[str, Any]:
            raise GrafanaUnauthorizedError({"message": "invalid API key"})

    with pytest.raises(PublishError, match="HTTP 401") as refused:
        publish(GrafanaTarget("http://g:3000", TOKEN), connect=lambda _: Refusing())
    assert TOKEN not in str(refused.value)
