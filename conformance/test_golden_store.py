"""The golden store still covers the PR gate."""

from conformance.matrix import grid
from golden.store import Store


def test_store_covers_default_grid():
    """Every `default` case is in golden/manifest.json (stored file or output hash)."""
    store = Store()
    missing = [c.id for c in grid("default") if not store.covers(c.id)]
    assert not missing, (f"{len(missing)} default cases are not in {store.manifest_path}, e.g. "
                         f"{missing[:3]}; run `python -m golden generate`")
