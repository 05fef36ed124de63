"""``postmarket audit``: the append-only, hash-chained audit trail."""

from __future__ import annotations

from typing import Annotated

import typer

from evidence.cli_common import EXIT_HEAD_DIFFERS, UrlOption, fail, open_store

audit_app = typer.Typer(help="The append-only, hash-chained audit trail.", no_args_is_help=True)


@audit_app.command("verify")
def verify(
    expect_head: Annotated[
        str | None,
        typer.Option(
            "--expect-head",
            metavar="HASH",
            help="head hash kept from an earlier verify or report; exit 4 if the head differs",
        ),
    ] = None,
    url: UrlOption = None,
) -> None:
    """Recompute every entry's hash and link; exit 1 naming the first tampered entry.

    Print the head hash: keep it elsewhere and pass it back with --expect-head, since
    removing the newest entries leaves a shorter chain that is still consistent. Exit 3
    when there is no evidence store at --url (a command that only reads creates none).
    """
    from evidence.audit import verify_chain

    with open_store(url, read_only=True) as store:
        entries = store.audit_entries()
    verdict = verify_chain(entries)
    if verdict.problem is not None:
        raise fail(f"audit trail broken at {verdict.problem}")
    if expect_head is not None and expect_head.strip().lower() != verdict.head_hash:
        kept = expect_head.strip().lower()
        raise fail(
            f"audit trail head is {verdict.head_hash}, expected {kept} "
            f"({_where_kept_head_is(kept, [entry.entry_hash for entry in entries])})",
            EXIT_HEAD_DIFFERS,
        )
    typer.echo(
        f"audit trail intact: {verdict.entries} entries, head hash {verdict.head_hash} "
        "(keep this hash elsewhere: it also reveals removal of the newest entries)"
    )


def _where_kept_head_is(kept: str, chain: list[str]) -> str:
    """Whether the chain only grew since ``kept`` was the head, or lost or changed entries.

    >>> _where_kept_head_is("b", ["a", "b", "c"])
    'it is entry 2 of 3: 1 entry was added since'
    >>> _where_kept_head_is("x", ["a"])
    'it is not in the chain: entries were removed or rewritten since'
    """
    if kept not in chain:
        return "it is not in the chain: entries were removed or rewritten since"
    position = chain.index(kept) + 1
    added = len(chain) - position
    return f"it is entry {position} of {len(chain)}: {added} {_entries(added)} added since"


def _entries(count: int) -> str:
    return "entry was" if count == 1 else "entries were"
