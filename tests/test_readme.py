"""The README's configuration table stays true to the settings."""

from __future__ import annotations

from pathlib import Path

from lkpool.config import env_name, fields

README = Path(__file__).parent.parent / "README.md"


def test_every_setting_is_in_the_readme_table() -> None:
    """Each setting has a row with its variable and its help text; no row names a stale one."""
    text = README.read_text()
    rows = {line.split("|")[1].strip().strip("`") for line in text.splitlines()
            if line.startswith("| `") and line.count("|") == 4}
    names = {env_name(f) for f in fields()}
    assert names <= rows, f"missing from README: {sorted(names - rows)}"
    assert not {r for r in rows if r.isupper()} - names - {"HOST", "PORT"}, "stale rows"
    for f in fields():
        assert f.metadata["help"] in text, f"help of {env_name(f)} differs from the README"
