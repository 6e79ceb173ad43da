"""The MLflow UI, opened in a real browser, shows a registered model's versions and aliases."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

VOID_ELEMENTS = {
    "area",
    "base",
    "br",
    "col",
    "embed",
    "hr",
    "img",
    "input",
    "link",
    "meta",
    "source",
    "track",
    "wbr",
}


class VersionRows(HTMLParser):
    """Collects the text of each table row (``role="row"``) of the rendered MLflow app."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[str] = []
        self._depth = 0  # element depth inside the current row; 0 = outside any row

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._depth:
            self._depth += tag not in VOID_ELEMENTS  # void elements never get an end tag
            title = dict(attrs).get("title")
            if title:
                self.rows[-1] += f" [{title}] "
        elif dict(attrs).get("role") == "row":
            self.rows.append("")
            self._depth = 1

    def handle_endtag(self, tag: str) -> None:
        if self._depth and tag not in VOID_ELEMENTS:
            self._depth -= 1

    def handle_data(self, data: str) -> None:
        if self._depth:
            self.rows[-1] += f" {data}"


def version_row(dom: str, version: int) -> str:
    """The model page's table row of one version, as text (alias tags appear as ``@ alias``)."""
    parser = VersionRows()
    parser.feed(dom)
    rows = [" ".join(row.replace("\xa0", " ").split()) for row in parser.rows]
    matching = [row for row in rows if re.search(rf"\bVersion {version}\b", row)]
    assert matching, f"no row for version {version} in the rendered page; rows: {rows}"
    return matching[0]


def assert_model_page_shows(
    chromium, server_url: str, model: str, version: int, alias: str, shot: Path
) -> None:
    page = f"{server_url}/#/models/{model}"
    dom = chromium(page, screenshot=shot)
    assert shot.stat().st_size > 10_000, "the screenshot is (nearly) empty"
    row = version_row(dom, version)
    assert f"@ {alias}" in row, row


def test_model_page_shows_the_version_and_its_alias(mlflow_server, chromium, tmp_path: Path) -> None:
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)
    run = client.create_run(client.create_experiment("ui-check"))
    client.log_metric(run.info.run_id, "accuracy", 0.9)
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text("{}")
    client.log_artifacts(run.info.run_id, str(tmp_path / "adapter"), "adapter")
    client.set_terminated(run.info.run_id)
    client.create_registered_model("ui-check")
    for _ in range(2):
        client.create_model_version("ui-check", f"runs:/{run.info.run_id}/adapter", run_id=run.info.run_id)
    client.set_registered_model_alias("ui-check", "production", "1")
    assert mlflow.get_tracking_uri() != mlflow_server.url  # the client, not global state, was pointed

    assert_model_page_shows(chromium, mlflow_server.url, "ui-check", 1, "production", tmp_path / "model.png")
    # The alias is on version 1 only: a page that printed it everywhere would not pass.
    parser_row = version_row(chromium(f"{mlflow_server.url}/#/models/ui-check"), 2)
    assert "production" not in parser_row
    # The artifact went through the server's proxy into the stand-in object store.
    stored = list(mlflow_server.artifacts.rglob("adapter_config.json"))
    assert len(stored) == 1 and run.info.run_id in str(stored[0])
