"""``sandbox list``: the catalog's strategies, prospects and scenarios, with their sources."""

from __future__ import annotations

from rich.table import Table

from sandbox.cli.common import PersonasOpt, app, console, open_catalog


@app.command("list")
def list_content(personas: PersonasOpt = None) -> None:
    """Show rep strategies, prospects and scenarios, with the sources they come from."""
    catalog = open_catalog(personas)

    def sources(items) -> str:  # noqa: ANN001
        return "\n".join(f"{s.title} ({s.author})" for s in items)

    table = Table(title="Rep strategies", show_lines=True)
    for col in ("id", "name", "source"):
        table.add_column(col)
    for s in catalog.strategies.values():
        table.add_row(s.id, s.name + (" [dim](anti-pattern)[/]" if s.anti_pattern else ""), sources(s.sources))
    console.print(table)

    table = Table(title="Prospects", show_lines=True)
    for col in ("id", "name", "source"):
        table.add_column(col)
    for p in catalog.prospects.values():
        table.add_row(p.id, p.name, sources(p.sources))
    console.print(table)

    table = Table(title="Scenarios", show_lines=True)
    for col in ("id", "title", "list price", "source"):
        table.add_column(col)
    for sc in catalog.scenarios.values():
        table.add_row(sc.id, sc.title, f"{sc.money(sc.list_price)} {sc.price_unit}", sources(sc.sources))
    console.print(table)
