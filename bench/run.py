"""`make bench`: every benchmark, each writing its section of docs/BENCHMARKS.md.

`python -m bench.run [NAME ...]` runs only the named ones (explainers, collection, app, real, sae, clusters, zoo,
attribution, deletion, startup, models, models-real, zoo-cause, engines, big-store).
"""

from __future__ import annotations

import json
import sys

from bench import (
    app_render,
    attribution,
    big_store,
    clusters,
    collection,
    deletion,
    engines,
    explainers,
    models,
    real_tasks,
    sae,
    startup,
    zoo,
)

BENCHES = {
    "explainers": explainers.main,
    "collection": collection.main,
    "app": app_render.main,
    "real": real_tasks.main,
    "sae": sae.main,
    "clusters": clusters.main,
    "zoo": zoo.main,
    "zoo-cause": zoo.cause_main,
    "attribution": attribution.main,
    "deletion": deletion.main,
    "startup": startup.main,
    "models": models.speed_main,
    "models-real": models.real_main,
    "engines": engines.main,
    "big-store": big_store.main,
}


def main(names: list[str]) -> None:
    out = {}
    for name in names or list(BENCHES):
        out[name] = BENCHES[name]()
        print(json.dumps({name: out[name]}, default=str), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
