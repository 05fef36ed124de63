"""The Dockerfile builds two non-root images whose entrypoint and commands are the CLI."""

from __future__ import annotations

import json
import re

from deploy_files import DOCKERFILE, REPO, is_cli_command, subcommand_words

INSTRUCTION = re.compile(r"^(?P<op>[A-Z]+)\s+(?P<args>.*)$")


def stages() -> dict[str, list[tuple[str, str]]]:
    """Instructions of each build stage, by stage name (continuation lines joined)."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result: dict[str, list[tuple[str, str]]] = {}
    current = ""
    for line in joined.splitlines():
        match = INSTRUCTION.match(line.strip())
        if not match:
            continue
        op, args = match["op"], match["args"]
        if op == "FROM":
            current = args.split(" AS ")[-1].strip() if " AS " in args else args
            result[current] = []
        result.setdefault(current, []).append((op, args))
    return result


def last(stage: str, op: str) -> str:
    chain = [stage]
    names = stages()
    while True:
        base = names[chain[-1]][0][1].split(" AS ")[0].strip()
        if base not in names:
            break
        chain.append(base)
    for name in chain:
        found = [args for o, args in names[name] if o == op]
        if found:
            return found[-1]
    raise AssertionError(f"no {op} for {stage}")


def test_both_images_start_from_python_311_slim() -> None:
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in DOCKERFILE.read_text()
    assert {"central", "collector"} <= set(stages())


def test_entrypoint_is_the_postmarket_cli() -> None:
    for target in ("central", "collector"):
        assert json.loads(last(target, "ENTRYPOINT")) == ["postmarket"]
    assert is_cli_command(())


def test_default_commands_are_real_subcommands() -> None:
    for target in ("central", "collector"):
        argv = json.loads(last(target, "CMD"))
        assert is_cli_command(subcommand_words(argv)), target


def test_images_run_as_an_unprivileged_user() -> None:
    for target in ("central", "collector"):
        assert not last(target, "USER").startswith(("0", "root"))


def test_central_image_installs_worker_and_dashboards_extras_only_with_constraints() -> None:
    install = last("build-central", "RUN")
    assert "pip install -c constraints.txt '.[worker,dashboards]'" in install


def test_collector_image_installs_only_the_collector_extra() -> None:
    install = last("build-collector", "RUN")
    assert "pip install -c constraints.txt '.[collector]'" in install
    assert dict(stages()["collector"])["COPY"].startswith("--from=build-collector ")


def test_copied_sources_exist_and_survive_the_dockerignore() -> None:
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    sources = {
        source
        for instructions in stages().values()
        for op, args in instructions
        if op == "COPY" and not args.startswith("--from")
        for source in args.split()[:-1]
    }
    assert sources
    for source in sources:
        assert (REPO / source).exists(), source
        assert source in allowed, source
