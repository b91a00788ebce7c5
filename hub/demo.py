"""`make demo`: build the example models, publish them into a local store, show what to try."""
from __future__ import annotations

import os
import tempfile

from .examples import BUILDERS, DESCRIPTIONS
from .registry import Registry


def main() -> None:
    store = os.environ.get("MODELHUB_STORE", "demo-store")
    registry = Registry.open(store)
    published = set(registry.model_names())
    with tempfile.TemporaryDirectory(prefix="modelhub-examples-") as work:
        for name, build in BUILDERS.items():
            if name in published:
                print(f"{name}: already published")
                continue
            path = build(os.path.join(work, name))
            manifest = registry.publish(path, name, description=DESCRIPTIONS[name],
                                        tags={"example": "true"}, license="Apache-2.0",
                                        aliases=["stable"])
            print(f"published {name}/{manifest['version']} (alias stable)")
    print(f"""
The example models are in the store at {store}. Try:

  export MODELHUB_STORE={store}
  .venv/bin/modelhub ls
  .venv/bin/modelhub show half_plus_two@stable
  .venv/bin/modelhub pull half_plus_two -o /tmp/half_plus_two
  .venv/bin/modelhub publish /tmp/half_plus_two --name half_plus_two --alias canary
  .venv/bin/modelhub alias set half_plus_two/1 stable
""")


if __name__ == "__main__":
    main()
